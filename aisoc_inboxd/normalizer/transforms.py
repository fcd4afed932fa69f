"""
Value transforms a template applies to a source value before it is used anywhere.

Vendors send what the mapping needs in a slightly wrong shape: a country code in lowercase where
OCSF wants ISO 3166 uppercase, a float severity that a map keyed by integers should match, a list
that belongs in one string, a vendor word that stands for an enum id. The template's C{transforms}
key names, per source path, a list of steps applied in order; each step is a name (C{lowercase}) or
a one-key mapping with an argument (C{join: ", "}). They are compiled once at load; a step that
cannot handle a value makes the source count as absent, so the next candidate is tried and the
value stays in C{unmapped}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

from aisoc_inboxd.normalizer.paths import MISSING, SourceGetter, compile_source, get_source

Transform = Callable[[Any], Any]
#: the C{map} key whose value stands for every value not listed (an enum's 99 Other, say)
OTHERWISE = "*"


def _each_text(change: Callable[[str], Any]) -> Transform:
    """
    C{change} applied to a text, or to each text of a list (a source read through a list,
    C{cwes.name}); an item it makes absent becomes C{None}, keeping the others in place.
    """

    def transform(value: Any) -> Any:
        if isinstance(value, str):
            return change(value)
        if isinstance(value, list):
            return [None if (changed := change(item) if isinstance(item, str) else item) is MISSING else changed
                    for item in value]
        return value

    return transform


_lowercase = _each_text(str.lower)
_uppercase = _each_text(str.upper)
#: strip whitespace; an empty string counts as absent (vendors send C{""} for "not set")
_trim = _each_text(lambda text: text.strip() or MISSING)


def _integer(value: Any) -> Any:
    """
    Truncate toward zero: C{5.7} and C{"5.7"} become C{5}; anything not numeric is absent.
    """
    if isinstance(value, bool):
        return MISSING
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return MISSING
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return MISSING


def _string(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return MISSING


def _join(separator: Any) -> Transform:
    if not isinstance(separator, str):
        raise ValueError("join takes a separator string, e.g. {join: ', '}")

    def join(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        parts = [_string(item) for item in value if item is not None]
        return separator.join(p for p in parts if p is not MISSING)

    return join


def _split(separator: Any) -> Transform:
    if not isinstance(separator, str) or not separator:
        raise ValueError("split takes a non-empty separator string, e.g. {split: ','}")

    def split(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return [part.strip() for part in value.split(separator) if part.strip()]

    return split


def _lookup(table: Any) -> Transform:
    if not isinstance(table, dict) or not table:
        raise ValueError("map takes a non-empty mapping of source value -> value")
    for key, value in table.items():
        if isinstance(key, (dict, list)) or key is None or isinstance(value, (dict, list)) or value is None:
            raise ValueError("map keys and values must be strings or numbers")
    folded = {str(k).casefold(): v for k, v in table.items()}
    otherwise = folded.pop(OTHERWISE, MISSING)

    def lookup(value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return MISSING
        return folded.get(str(value).casefold(), otherwise)

    return lookup


_PLAIN: dict[str, Transform] = {
    "lowercase": _lowercase, "uppercase": _uppercase, "trim": _trim, "int": _integer, "string": _string,
}
_WITH_ARGUMENT: dict[str, Callable[[Any], Transform]] = {"join": _join, "split": _split, "map": _lookup}
_DEFAULT_ARGUMENT = {"join": ", "}
NAMES = tuple(sorted([*_PLAIN, *_WITH_ARGUMENT]))


def compile_steps(spec: Any) -> Transform:
    """
    One function for a list of steps; C{ValueError} naming what is wrong.
    """
    steps = spec if isinstance(spec, list) else [spec]
    if not steps:
        raise ValueError("must name at least one transform")
    compiled: list[Transform] = []
    for step in steps:
        if isinstance(step, str) and step in _PLAIN:
            compiled.append(_PLAIN[step])
        elif isinstance(step, str) and step in _DEFAULT_ARGUMENT:
            compiled.append(_WITH_ARGUMENT[step](_DEFAULT_ARGUMENT[step]))
        elif isinstance(step, dict) and len(step) == 1 and next(iter(step)) in _WITH_ARGUMENT:
            name, argument = next(iter(step.items()))
            compiled.append(_WITH_ARGUMENT[name](argument))
        else:
            raise ValueError(f"unknown transform {step!r} (known: {', '.join(NAMES)}; "
                             f"join, split and map take an argument as {{name: argument}})")

    def run(value: Any) -> Any:
        for transform in compiled:
            value = transform(value)
            if value is MISSING:
                break
        return value

    return run


class Source(NamedTuple):
    """
    A parsed source path and its compiled reader: C{read(record, headers)} is L{Reader.read}.
    """

    keys: tuple[str, ...]
    read: SourceGetter


@dataclass(frozen=True)
class Reader:
    """
    Reads a parsed source from a record (or the request headers) with its transforms applied.
    """

    transforms: Mapping[tuple[str, ...], Transform] = field(default_factory=dict)

    def read(self, record: Any, source: tuple[str, ...], headers: Mapping[str, str] | None = None) -> Any:
        value = get_source(record, source, headers)
        if value is MISSING or value is None:
            return value
        transform = self.transforms.get(source)
        return value if transform is None else transform(value)

    def bind(self, source: tuple[str, ...]) -> Source:
        """
        L{read} for one source, compiled at load: its path walk and its transform are looked up
        once, not per event.
        """
        getter = compile_source(source)
        transform = self.transforms.get(source)
        if transform is None:
            return Source(source, getter)

        def read(record: Any, headers: Mapping[str, str] | None = None) -> Any:
            value = getter(record, headers)
            return value if value is MISSING or value is None else transform(value)

        return Source(source, read)
