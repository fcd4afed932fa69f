"""
The dotted paths of the template language: source paths read records, target paths build events.

A source path (C{event.data.service.summary}) walks nested objects; a segment of digits indexes a
list (C{alerts.0.id}), any other segment reads that key of every item of a list (C{cwes.cwe_id}:
the list of each item's C{cwe_id}, C{None} where an item has none, so positions stay aligned);
C{header:X-GitHub-Event} reads a request header instead. A target path (C{finding_info.src_url})
may mark array attributes with C{name[N]} (element N, created as needed), C{name[]} (append: at the
end of the path the value, or each item of a list value, is appended; inside the path each item
becomes a new element) or, inside the path, C{name[*]} (item N of a list value fills element N, so
that several sources fill the same elements: C{related_cwes[*].uid} and C{related_cwes[*].caption}).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping


class _Missing:
    """
    The type of L{MISSING}: a source path that leads nowhere (distinct from an explicit null).
    """

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_TARGET_SEGMENT = re.compile(r"^([^.\[\]\s]+)(?:\[(\d*|\*)\])?$")
#: how a source path names a request header (C{header:X-GitHub-Delivery})
HEADER_PREFIX = "header:"
# an RFC 9110 field name
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class Step:
    """
    One segment of a target path: an object key, optionally an array index, an append (C{[]}) or
    an alignment (C{[*]}: item N of the value goes to element N).
    """

    key: str
    index: int | None = None
    append: bool = False
    aligned: bool = False

    def __str__(self) -> str:
        if self.append:
            return f"{self.key}[]"
        if self.aligned:
            return f"{self.key}[*]"
        return self.key if self.index is None else f"{self.key}[{self.index}]"


def parse_source(path: str) -> tuple[str, ...]:
    """
    The keys of a source path; C{ValueError} if a segment is empty or padded with whitespace.

    A header source becomes C{("", name in lowercase)}: no field path has an empty segment, so the
    two never collide.
    """
    if not isinstance(path, str) or not path:
        raise ValueError("a source path must be a non-empty string")
    if path.startswith(HEADER_PREFIX):
        name = path[len(HEADER_PREFIX):]
        if not _HEADER_NAME.match(name):
            raise ValueError(f"malformed header source {path!r} (expected header:Header-Name)")
        return ("", name.lower())
    keys = tuple(path.split("."))
    for key in keys:
        if not key or key != key.strip():
            raise ValueError(f"malformed source path {path!r} (empty or blank-padded segment)")
    return keys


def is_header(keys: tuple[str, ...]) -> bool:
    """
    Whether parsed source C{keys} name a request header rather than a field of the record.
    """
    return keys[0] == ""


def get_source(record: Any, keys: tuple[str, ...], headers: Mapping[str, str] | None = None) -> Any:
    """
    The value at C{keys} in C{record} (or in C{headers}, by lowercase name), or L{MISSING}.
    """
    if is_header(keys):
        return (headers or {}).get(keys[1], MISSING)
    value = record
    for position, key in enumerate(keys):
        if isinstance(value, dict):
            value = value.get(key, MISSING)
        elif isinstance(value, list) and key.isdigit():
            value = value[int(key)] if int(key) < len(value) else MISSING
        elif isinstance(value, list):
            rest = keys[position:]
            return [None if (found := get_source(item, rest)) is MISSING else found for item in value]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


#: a compiled source path: C{getter(record, headers)} is L{get_source} for that path
SourceGetter = Callable[[Any, Mapping[str, str] | None], Any]
#: a compiled target path: C{writer(event, value)} is L{set_target} for those steps
TargetWriter = Callable[[dict[str, Any], Any], None]


def compile_source(keys: tuple[str, ...]) -> SourceGetter:
    """
    L{get_source} for C{keys}, decided once: the header check is done here, and a walk through
    plain objects (nearly every record) runs without per-segment type dispatch; anything else (a
    list index, a dead end) falls back to L{get_source}.
    """
    if is_header(keys):
        name = keys[1]
        return lambda record, headers=None: (headers or {}).get(name, MISSING)

    def getter(record: Any, headers: Mapping[str, str] | None = None) -> Any:
        value = record
        for key in keys:
            if type(value) is not dict:
                return get_source(record, keys)
            value = value.get(key, MISSING)
            if value is MISSING:
                return MISSING
        return value

    return getter


def parse_target(path: str) -> tuple[Step, ...]:
    """
    The steps of a target path; C{ValueError} when it is not C{name[.name…]} with optional
    C{[N]}/C{[]} suffixes.
    """
    if not isinstance(path, str) or not path:
        raise ValueError("a target path must be a non-empty string")
    steps = []
    for segment in path.split("."):
        match = _TARGET_SEGMENT.match(segment)
        if match is None:
            raise ValueError(f"malformed target path {path!r} (bad segment {segment!r})")
        key, index = match.group(1), match.group(2)
        if index is None:
            steps.append(Step(key))
        elif index == "":
            steps.append(Step(key, append=True))
        elif index == "*":
            steps.append(Step(key, aligned=True))
        else:
            steps.append(Step(key, index=int(index)))
    return tuple(steps)


def format_target(steps: tuple[Step, ...]) -> str:
    """
    The dotted form of C{steps}, the inverse of L{parse_target}.
    """
    return ".".join(str(step) for step in steps)


def set_target(event: dict[str, Any], steps: tuple[Step, ...], value: Any) -> None:
    """
    Put C{value} at C{steps} in C{event}, creating objects and array elements on the way.
    """
    container = event
    for position, step in enumerate(steps[:-1]):
        if step.aligned:  # item N fills element N; None (no value for that item) fills nothing
            array = container.setdefault(step.key, [])
            for item_index, item in enumerate(value if isinstance(value, list) else [value]):
                if item is None:
                    continue
                while len(array) <= item_index:
                    array.append({})
                set_target(array[item_index], steps[position + 1:], item)
            return
        if step.append:
            items = value if isinstance(value, list) else [value]
            array = container.setdefault(step.key, [])
            for item in items:
                element: dict[str, Any] = {}
                array.append(element)
                set_target(element, steps[position + 1:], item)
            return
        if step.index is None:
            container = container.setdefault(step.key, {})
            continue
        container = element_at(container.setdefault(step.key, []), step.index)
    last = steps[-1]
    if last.append:
        array = container.setdefault(last.key, [])
        array.extend(value if isinstance(value, list) else [value])
    else:
        container[last.key] = value


def element_at(array: list[Any], index: int) -> Any:
    """
    Item C{index} of C{array}, empty objects appended up to it first.
    """
    while len(array) <= index:
        array.append({})
    return array[index]


def compile_target(steps: tuple[Step, ...]) -> TargetWriter:
    """
    L{set_target} for C{steps}, decided once: a path of plain object keys (most targets) becomes a
    walk over its keys; paths with array steps keep the general L{set_target}. The writer's
    C{steps} attribute says what it writes (the template compiler inlines plain paths).
    """
    if any(step.index is not None or step.append or step.aligned for step in steps):
        def writer(event: dict[str, Any], value: Any) -> None:
            set_target(event, steps, value)
    else:
        *parents, last = (step.key for step in steps)

        def writer(event: dict[str, Any], value: Any) -> None:
            container = event
            for key in parents:
                container = container.setdefault(key, {})
            container[last] = value

    writer.steps = steps  # type: ignore[attr-defined]
    return writer
