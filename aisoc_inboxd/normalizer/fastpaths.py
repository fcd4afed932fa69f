"""
Faster equivalents of two helpers the generated template functions call per event, for the records
that are common (a JSON object of scalars and small scalar objects and lists, an ISO 8601 time in
UTC); anything else goes to the reference helper, which the interpreter
(L{aisoc_inboxd.normalizer.apply.normalize}) keeps calling. Each returns exactly what its reference
returns: C{tests/test_normalizer_fast_paths.py} holds them equal over every fixture and hypothesis
values, and C{tests/test_compiled_templates.py} holds the generated functions equal to the
interpreter.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from aisoc_inboxd.normalizer.apply import SCALAR_TYPES, ConsumedTree, leftovers
from aisoc_inboxd.normalizer.coerce import INVALID, drop_nulls
from aisoc_inboxd.normalizer.ocsf import TIMESTAMP_MAX_MS, TIMESTAMP_MIN_MS
from aisoc_inboxd.normalizer.timeparse import EPOCH, SECONDS_BELOW, to_epoch_ms

_MILLISECOND = timedelta(milliseconds=1)


def fast_leftovers(value: Any, consumed: ConsumedTree | None) -> Any:
    """
    L{leftovers} of an object of which only whole top-level keys were consumed (a JSON webhook's
    record under C{generic-json}): a copy (C{dict.copy}, in C) with the consumed keys taken out
    (each looked up: C{frozenset.intersection} of a dict builds a set of its keys first),
    nulls dropped, and its objects and lists copied, each in one C{copy} when it holds only
    scalars; instead of a comprehension over every key and one over every nested container. Only
    a value of no scalar type is looked at further.
    """
    if type(value) is not dict or type(consumed) is not frozenset:
        return leftovers(value, consumed)
    kept = value.copy()
    for key in consumed:
        if key in kept:
            del kept[key]
    if not SCALAR_TYPES.issuperset(map(type, kept.values())):
        for key, item in list(kept.items()):
            kind = type(item)
            if kind in SCALAR_TYPES:
                continue
            if item is None:
                del kept[key]
            elif kind is dict:  # copied in one C{copy} when it holds only scalars (no call per object)
                kept[key] = item.copy() if SCALAR_TYPES.issuperset(map(type, item.values())) else drop_nulls(item)
            elif kind is list:
                kept[key] = item.copy() if SCALAR_TYPES.issuperset(map(type, item)) else drop_nulls(item)
            elif isinstance(item, (dict, list)):
                kept[key] = drop_nulls(item)
    return kept or INVALID


def record_leftovers(value: Any, consumed: ConsumedTree | None) -> Any:
    """
    L{leftovers} of a whole record of which only top-level keys were consumed (a JSON webhook's
    under C{generic-json}). A record of scalars only (found in C) goes to L{fast_leftovers}; one
    that holds objects or lists (most alerts) is built in one loop over its items: scalars kept,
    nulls dropped, objects and lists copied, each in one C{copy} when it holds only scalars; not
    copied whole and then patched key by key (deleting a key costs more than skipping it), nor by
    the reference's comprehension calling L{drop_nulls} for every container.
    """
    if (type(value) is not dict or type(consumed) is not frozenset
            or SCALAR_TYPES.issuperset(map(type, value.values()))):
        return fast_leftovers(value, consumed)
    kept = {}
    for key, item in value.items():
        if key in consumed:
            continue
        kind = type(item)
        if kind in SCALAR_TYPES:
            kept[key] = item
        elif kind is dict:
            kept[key] = item.copy() if SCALAR_TYPES.issuperset(map(type, item.values())) else drop_nulls(item)
        elif kind is list:
            kept[key] = item.copy() if SCALAR_TYPES.issuperset(map(type, item)) else drop_nulls(item)
        elif item is not None:  # a subclass of a JSON type: the reference's copy
            kept[key] = drop_nulls(item) if isinstance(item, (dict, list)) else item
    return kept or INVALID


def tree_leftovers(value: Any, consumed: dict[str, Any]) -> Any:
    """
    L{leftovers} under a consumed tree of objects (a CEF record's, one level deep: C{cef.src} …,
    C{syslog.hostname}, C{kind}, C{time}; a vendor webhook's, deeper: C{event.data.service.id}):
    the reference's walk of an object, each node whose keys are all consumed whole by
    L{fast_leftovers}, each deeper one by this walk, and each part not read from copied as
    L{fast_leftovers} copies one (one C{copy} when it holds only scalars). Anything but an object
    under a subtree (a list walked by index) goes to the reference.
    """
    if type(value) is not dict:
        return leftovers(value, consumed)
    kept = {}
    for key, item in value.items():
        sub = consumed.get(key)
        if sub is None:  # not read from: kept as it is, without nulls
            if type(item) in SCALAR_TYPES:  # (before the isinstance call: most values are scalars)
                kept[key] = item
            elif item is not None:
                kept[key] = _copy_without_nulls(item) if isinstance(item, (dict, list)) else item
        elif sub is not True and (left := (fast_leftovers if type(sub) is frozenset else tree_leftovers)(
                item, sub)) is not INVALID:
            kept[key] = left
    return kept or INVALID


def leftovers_for(consumed: ConsumedTree | None) -> Callable[[Any, Any], Any]:
    """
    The fastest of L{record_leftovers} and L{tree_leftovers} that gives L{leftovers} under
    C{consumed}: chosen once per consumed tree, not per record.
    """
    return tree_leftovers if type(consumed) is dict else record_leftovers


def _copy_without_nulls(value: dict[str, Any] | list[Any]) -> Any:
    """
    L{drop_nulls} of an object or list: one C{copy} when it holds only scalars.
    """
    kind = type(value)
    if (kind is dict and SCALAR_TYPES.issuperset(map(type, value.values()))  # type: ignore[union-attr]
            or kind is list and SCALAR_TYPES.issuperset(map(type, value))):
        return value.copy()
    return drop_nulls(value)


def fast_to_epoch_ms(value: Any, formats: Sequence[str] = ()) -> int | None:
    """
    L{to_epoch_ms} of an ISO 8601 text in extended format (C{2026-05-08T09:12:34Z},
    C{2020-10-02T18:45:22.169Z}) with a UTC offset or C{Z}: read by C{datetime.fromisoformat} at once,
    which is what the reference ends with for such a text after its checks for C{strptime} formats,
    surrounding space, epoch digits and numbers (a C{-} after four characters is none of them) and
    the shape of a date (C{YYYY-MM-DD}: an ISO week date, C{2026-W19-5}, is refused by the reference
    and read by C{fromisoformat}, so a C{W} goes to the reference; a text C{fromisoformat} refuses or
    reads as naive does too), and its cut of fractions past six digits (a fraction of seven digits or
    more, or a second C{.}, goes to the reference). Then the reference's milliseconds, inlined. Also a
    number of epoch seconds (HEC's C{time}), scaled here as the reference scales it, without its four
    frames.
    """
    kind = type(value)
    if kind is not str:  # (tested first: texts are the common case)
        if (kind is int or kind is float) and -SECONDS_BELOW < value < SECONDS_BELOW:
            ms = value * 1000 if kind is int else round(value * 1000)
            return ms if TIMESTAMP_MIN_MS <= ms < TIMESTAMP_MAX_MS else None
        return to_epoch_ms(value, formats)
    if formats or value[4:5] != "-" or "W" in value:
        return to_epoch_ms(value, formats)
    if "." in value:
        dot = value.find(".")
        if not value.isascii() or value.find(".", dot + 1) >= 0 or value[dot + 1:dot + 8].isdigit() \
                and len(value) >= dot + 8:
            return to_epoch_ms(value, formats)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return to_epoch_ms(value, formats)
    if moment.tzinfo is None:
        return to_epoch_ms(value, formats)
    try:  # L{plausible_ms} inline (floor division by a millisecond is its arithmetic in C): three frames fewer
        ms = (moment - EPOCH) // _MILLISECOND
    except OverflowError:
        return None
    return ms if TIMESTAMP_MIN_MS <= ms < TIMESTAMP_MAX_MS else None
