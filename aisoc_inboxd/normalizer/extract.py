"""
Derived sources: values a template pulls out of free text with a regular expression.

E-mail alerts carry what matters inside text (a C{[CrowdStrike] …} subject prefix, a C{Severity:
High} line in the body), and one text feeds several targets. The template's C{extract} key names
each derived value, the sources to search (the first that matches wins) and a pattern whose named
group C{value} is the result; field_map, severity_field and time_field then read it as
C{extracted.<name>}. A source that is a list (C{identifiers.value}) is searched item by item.
Patterns are compiled and checked when the template loads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from aisoc_inboxd.normalizer.paths import SourceGetter, compile_source, parse_source

#: the record key derived values appear under
EXTRACTED = "extracted"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYS = frozenset({"from", "pattern"})


@dataclass(frozen=True)
class Extraction:
    name: str
    sources: tuple[SourceGetter, ...]  # compiled at load, tried in order
    pattern: re.Pattern[str]
    paths: tuple[tuple[str, ...], ...] = ()  # the parsed paths of C{sources}, for the template compiler


def compile_extractions(raw: Any) -> tuple[Extraction, ...]:
    """
    The C{extract} mapping compiled; C{ValueError("<key>: <problem>")} naming the entry at fault.
    """
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ValueError("extract: must be a mapping of name -> {from, pattern}")
    compiled = []
    for name, spec in raw.items():
        key = f"extract.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{key}: a name is letters, digits and _ (it is read as extracted.<name>)")
        if not isinstance(spec, dict) or set(spec) - _KEYS or not _KEYS <= set(spec):
            raise ValueError(f"{key}: must have exactly the keys from (a source path or a list) and pattern")
        paths = spec["from"] if isinstance(spec["from"], list) else [spec["from"]]
        try:
            parsed = tuple(parse_source(path) for path in paths)
        except ValueError as exc:
            raise ValueError(f"{key}.from: {exc}") from exc
        if not parsed:
            raise ValueError(f"{key}.from: names no source")
        try:
            pattern = re.compile(spec["pattern"]) if isinstance(spec["pattern"], str) else None
        except re.error as exc:
            raise ValueError(f"{key}.pattern: not a regular expression: {exc}") from exc
        if pattern is None or "value" not in pattern.groupindex:
            raise ValueError(f"{key}.pattern: must be a regular expression with a named group (?P<value>…)")
        compiled.append(Extraction(name, tuple(map(compile_source, parsed)), pattern, parsed))
    return tuple(compiled)


def with_extracted(extractions: tuple[Extraction, ...], record: dict[str, Any]) -> dict[str, Any]:
    """
    C{record} plus C{extracted.<name>} for every extraction that matched (a copy; C{record} itself
    is left alone), or C{record} unchanged when the template extracts nothing.
    """
    if not extractions:
        return record
    found: dict[str, str] = {}
    for extraction in extractions:
        value = next((value for source in extraction.sources
                      if (value := first_match(extraction.pattern, source(record, None))) is not None), None)
        if value is not None:
            found[extraction.name] = value
    return {**record, EXTRACTED: found}


def first_match(pattern: re.Pattern[str], value: Any) -> str | None:
    """
    The first non-blank C{value} group C{pattern} finds in a text, or in the text items of a list.
    """
    return next(_matches(pattern, value), None)


def search(pattern: re.Pattern[str], text: str) -> str | None:
    """
    The C{value} group C{pattern} finds in C{text}, stripped; None when none or blank.
    """
    match = pattern.search(text)
    if match is None:
        return None
    value = match["value"]
    return None if value is None else value.strip() or None


def _matches(pattern: re.Pattern[str], value: Any) -> Iterator[str]:
    """
    The non-blank C{value} groups C{pattern} finds in a text, or in each text item of a list.
    """
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str) and (found := search(pattern, text)) is not None:
            yield found
