"""
The fast paths the generated template functions call (L{aisoc_inboxd.normalizer.fastpaths})
against the reference helpers the interpreter calls: exactly the same answer, over every fixture
record (with the consumed trees of every template's source paths) and hypothesis values (nulls at
any depth, nested objects and lists, subclasses of dict and str, texts shaped like ISO 8601 times and
like everything close to them). The whole events, generated against interpreted, are compared in
C{tests/test_compiled_templates.py}.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.normalizer.apply import consumed_tree, leftovers
from aisoc_inboxd.normalizer.fastpaths import (
    fast_leftovers,
    fast_to_epoch_ms,
    leftovers_for,
    record_leftovers,
    tree_leftovers,
)
from aisoc_inboxd.normalizer.timeparse import to_epoch_ms
from tests.test_compiled_templates import FIXTURE_RECORDS, _source_paths, templates


def same(fast: Any, reference: Any) -> bool:
    """
    Equal, with the same key order and the same types all the way down.
    """
    return json.dumps(fast, default=repr) == json.dumps(reference, default=repr) and _types(fast) == _types(reference)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return type(value), [(key, _types(item)) for key, item in value.items()]
    if isinstance(value, list):
        return type(value), [_types(item) for item in value]
    return type(value)


def _unshared(fast: Any, record: Any) -> bool:
    """
    Whether C{fast} shares no object or list with C{record} (the event's unmapped is a copy).
    """
    containers = {id(node) for node in _containers(record)}
    return not any(id(node) in containers for node in _containers(fast))


def _containers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(node for item in value.values() for node in _containers(item))]
    if isinstance(value, list):
        return [value, *(node for item in value for node in _containers(item))]
    return []


@pytest.mark.parametrize("template_id", sorted(templates()))
def test_leftovers_of_every_fixture_as_the_reference(template_id: str) -> None:
    paths = _source_paths(templates()[template_id])
    trees = [consumed_tree(tuple(paths)), *(consumed_tree((path,)) for path in paths), consumed_tree(())]
    for name, record, _ in FIXTURE_RECORDS:
        for tree in trees:
            fasts = (fast_leftovers(record, tree), record_leftovers(record, tree), leftovers_for(tree)(record, tree))
            for fast in fasts:
                assert same(fast, leftovers(record, tree)), (name, tree)
                assert _unshared(fast, record), (name, tree)


keys = st.sampled_from(["a", "b", "c", "0", "1", "x y"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=4),
                    st.text(max_size=4).map(type("Text", (str,), {})))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4),
    st.dictionaries(keys, inner, max_size=3).map(OrderedDict)), max_leaves=12)
paths = st.lists(st.lists(keys, min_size=1, max_size=3).map(tuple), max_size=5)


@settings(max_examples=2000)
@given(st.dictionaries(keys, values, max_size=6) | values, paths)
def test_leftovers_of_generated_values_as_the_reference(record: Any, consumed: list[tuple[str, ...]]) -> None:
    tree = consumed_tree(tuple(consumed))
    for fast in (fast_leftovers(record, tree), record_leftovers(record, tree), leftovers_for(tree)(record, tree)):
        assert same(fast, leftovers(record, tree))
        assert _unshared(fast, record)


tree_paths = st.lists(st.lists(keys, min_size=1, max_size=4).map(tuple), min_size=1, max_size=6)


@settings(max_examples=3000)
@given(st.dictionaries(keys, values, max_size=6) | values, tree_paths)
def test_tree_leftovers_as_the_reference(record: Any, consumed: list[tuple[str, ...]]) -> None:
    """
    Trees of objects (a CEF record's one level deep, a webhook's deeper), which L{leftovers_for}
    gives to L{tree_leftovers}.
    """
    tree = consumed_tree(tuple(consumed))
    if type(tree) is dict:
        assert leftovers_for(tree) is tree_leftovers
    fast = tree_leftovers(record, tree) if type(tree) is dict else leftovers_for(tree)(record, tree)
    assert same(fast, leftovers(record, tree))
    assert _unshared(fast, record)


def test_leftovers_without_a_tree_as_the_reference() -> None:
    record = {"a": None, "b": {"c": [None, 1]}}
    assert same(fast_leftovers(record, None), leftovers(record, None))


iso_parts = st.tuples(st.integers(0, 12000).map(lambda n: f"{n:04d}"), st.integers(0, 13), st.integers(0, 32),
                      st.sampled_from(["T", " ", "t", "_"]), st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
                      st.sampled_from(["Z", "z", "+00:00", "-05:30", "+0000", "+14:00", "+24:00", "", ".123Z", " ", "Z ",
                                     ".169Z", ".1234567Z", ".123456+00:00", ".123456789-05:30", ",169Z", ".Z",
                                     ".1.2Z", ".12٣Z", ".169Z\x1c", ".169z"]))
iso_like = iso_parts.map(lambda p: f"{p[0]}-{p[1]:02d}-{p[2]:02d}{p[3]}{p[4]:02d}:{p[5]:02d}:{p[6]:02d}{p[7]}")
near_iso = st.text(alphabet="0123456789-:TWZ+. ١²wt,\x1c", max_size=26)


@settings(max_examples=3000)
@given(iso_like | near_iso | st.sampled_from(["2026-W19-5T09:00:00Z", "2026-05-08", "2026-05-08T09:00Z",
                                              "2026-0508T09:00:00Z", " 2026-05-08T09:00:00Z",
                                              "2026-W19-5T09:00:00.5Z", "2026-05-08T09:00:00.1234567+00:00"]))
@example("5138-11-16T09:46:40Z")  # the plausible range's ends (TIMESTAMP_MAX_MS is past it, MIN_MS in it)
@example("5138-11-16T09:46:39Z")
@example("1973-03-03T09:46:40Z")
@example("1973-03-03T09:46:39Z")
@example("1973-03-03T10:46:39+01:00")
def test_iso_time_as_the_reference(text: str) -> None:
    assert fast_to_epoch_ms(text) == to_epoch_ms(text)


@pytest.mark.parametrize("value, formats", [
    (1778230800, ()), (1778230800.5, ()), (True, ()), (None, ()), ({"a": 1}, ()), ("1778230800", ()),
    ("2026-05-08T09:00:00Z", ("%Y-%m-%dT%H:%M:%SZ",)), ("May 08 2026 09:00:00", ("%b %d %Y %H:%M:%S",)),
    ("Fri, 08 May 2026 09:00:00 GMT", ()),
])
def test_other_times_as_the_reference(value: Any, formats: tuple[str, ...]) -> None:
    assert fast_to_epoch_ms(value, formats) == to_epoch_ms(value, formats)


@settings(max_examples=3000)
@given(st.integers(-2 * 10**11, 2 * 10**11) | st.integers() | st.floats() | st.sampled_from([100_000_000, 99_999_999.9995,
                                                                                          -0.0, 10**11 - 1, 10**11]),
       st.sampled_from([(), ("%Y-%m-%d",)]))
def test_epoch_numbers_as_the_reference(value: float, formats: tuple[str, ...]) -> None:
    """Numbers (epoch seconds, read at once by the fast path, and every other) as the reference."""
    assert fast_to_epoch_ms(value, formats) == to_epoch_ms(value, formats)


def test_fixture_times_as_the_reference() -> None:
    texts = [item for _, record, _ in FIXTURE_RECORDS for item in _scalars_of(record) if isinstance(item, str)]
    assert len(texts) > 1000
    for text in texts:
        assert fast_to_epoch_ms(text) == to_epoch_ms(text), text


def _scalars_of(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [item for child in value.values() for item in _scalars_of(child)]
    if isinstance(value, list):
        return [item for child in value for item in _scalars_of(child)]
    return [value]
