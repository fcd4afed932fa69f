"""
The shortcuts of the CEF hot path against what they stand in for, over hypothesis-generated input:
each must give exactly what the slower code gives (the whole events are compared, compiled against
interpreted, in C{tests/test_compiled_templates.py}; the records, one-pass against two-stage, in
C{tests/test_one_pass_cef.py}).

  - L{TextMemo}, an extraction's search or a source's transforms remembered per text, against
    calling them;
  - the dotted-quad shortcut of C{ip_t} attributes against the OCSF pattern alone;
  - the digit shortcuts of the integer coercer and of L{to_epoch_ms} against their general readings;
  - the CEF frame's header stamp, now computed only when C{rt} and C{end} give no time, and the
    severity band, no longer read by the one-pass reader;
  - the epoch-ms range the generated functions take an C{int} time from without L{to_epoch_ms};
  - L{leftovers} of an object whose values are all plain scalars (copied and the consumed keys
    deleted, in C) against the comprehension it skips;
  - the epoch-ms digits of a CEF time against the general reading.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisoc_inboxd.formats.cef_records import cef_time
from aisoc_inboxd.formats.syslog_cef import read_frame
from aisoc_inboxd.formats.syslog_records import frame_record
from aisoc_inboxd.normalizer.apply import leftovers
from aisoc_inboxd.normalizer.coerce import _INTEGER_TEXT, INVALID, _to_integer, coercer_for, drop_nulls
from aisoc_inboxd.normalizer.extract import search
from aisoc_inboxd.normalizer.memo import KEPT_TEXT_LENGTH, KEPT_TEXTS, TextMemo
from aisoc_inboxd.normalizer.transforms import compile_steps
from aisoc_inboxd.normalizer.ocsf import ocsf_schema
from aisoc_inboxd.normalizer.paths import MISSING
from aisoc_inboxd.normalizer.timeparse import _NUMERIC, EPOCH_MS, to_epoch_ms

NOW = 1778230800.0
IP = ocsf_schema().attribute(4001, "src_endpoint.ip")
OUTCOME = re.compile(r"(?i)\b(?P<value>succe\w*|fail\w*|denied|invalid)\b")

octets = st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "007", "256", "", " 1", "1 ", "١"])
ip_like = (st.lists(octets, min_size=3, max_size=5).map(".".join)
           | st.text(alphabet="0123456789.:abcdefABCDEF \n", max_size=24))


@settings(max_examples=1000)
@given(ip_like)
def test_ip_shortcut_answers_as_the_ocsf_pattern(text: str) -> None:
    coerce = coercer_for(IP)
    expected = text if IP.regex.search(text) else INVALID
    assert coerce(text) == expected


@given(st.tuples(*[st.integers(0, 255)] * 4))
def test_every_dotted_quad_is_an_ocsf_ip(octets: tuple[int, ...]) -> None:
    text = ".".join(map(str, octets))
    assert IP.regex.search(text) and coercer_for(IP)(text) == text


digits_like = st.text(alphabet="0123456789+-. \n١٢²", max_size=12) | st.integers(0, 10**20).map(str)


@settings(max_examples=1000)
@given(digits_like)
def test_integer_shortcut_reads_as_the_pattern(text: str) -> None:
    expected = int(text.strip().split(".")[0]) if _INTEGER_TEXT.match(text.strip()) else INVALID
    assert _to_integer(text) == expected


@settings(max_examples=1000)
@given(digits_like | st.integers(0, 10**18).map(lambda n: f" {n}"))
def test_epoch_digit_shortcut_reads_as_the_number(text: str) -> None:
    spaced = f" {text} "  # a text with spaces around never takes the shortcut: the general reading
    assert to_epoch_ms(text) == to_epoch_ms(spaced) == (
        to_epoch_ms(int(text)) if text.isdigit() and text.isascii() else to_epoch_ms(spaced))


names = st.sampled_from(["Login succeeded", "Logon failed", "denied", "x", " ", "Invalid user", "FAILURE"]) \
    | st.text(max_size=8)


@given(st.lists(names, max_size=30))
def test_memo_of_a_search_gives_what_the_search_gives(texts: list[str]) -> None:
    matches = TextMemo(partial(search, OUTCOME))
    for text in texts + texts:  # the second time from what was kept
        assert matches[text] == search(OUTCOME, text)


@given(st.lists(names, max_size=30))
def test_memo_of_transforms_gives_what_they_give_and_never_shares_a_list(texts: list[str]) -> None:
    for steps in (["trim", "lowercase", {"map": {"failed": 2, "*": 99}}], [{"split": " "}]):
        transform = compile_steps(steps)
        memo = TextMemo(transform, MISSING)
        for text in texts + texts:
            assert memo[text] == transform(text)
            if isinstance(memo[text], list):
                assert memo[text] is not memo[text]


def test_memo_is_bounded() -> None:
    matches = TextMemo(partial(search, OUTCOME))
    long_text = "failed " * KEPT_TEXT_LENGTH
    assert matches[long_text] == "failed" and long_text not in matches
    for number in range(KEPT_TEXTS + 10):
        assert matches[f"{number} failed"] == "failed"
    assert 0 < len(matches) <= KEPT_TEXTS


def _record(frame: str) -> dict[str, Any]:
    return read_frame(frame.encode(), NOW).record.data


def test_header_stamp_is_the_time_only_without_rt_or_end() -> None:
    header = "<134>1 2026-05-08T09:00:01.500Z fw CEF - - - CEF:0|A|B|1|100|n|5|"
    assert (_record(header + "src=10.0.0.1")["time"], _record(header + "src=10.0.0.1")["original_time"]) == \
        (1778230801500, "2026-05-08T09:00:01.500Z")
    assert _record(header + "rt=1778230800000")["time"] == 1778230800000
    assert _record(header + "rt=never end=1778230800123")["time"] == 1778230800123
    impossible = "<134>1 2026-02-31T09:00:01Z fw CEF - - - CEF:0|A|B|1|100|n|5|src=10.0.0.1"
    assert "time" not in _record(impossible) and _record(impossible)["syslog"]["timestamp"] == "2026-02-31T09:00:01Z"


def test_severity_of_thousands_of_digits_fails_as_in_the_reference() -> None:
    """The one-pass reader no longer reads the severity band; such a frame goes to the reference, which raises."""
    frame = ("<134>1 - h a - - - CEF:0|A|B|1|100|n|" + "9" * 5000 + "|src=10.0.0.1").encode()
    with pytest.raises(ValueError):
        frame_record(frame, NOW)
    with pytest.raises(ValueError):
        read_frame(frame, NOW)


@settings(max_examples=1000)
@given(st.text(alphabet="0123456789+-.:TZ ", max_size=26) | st.sampled_from(
    ["2026-05-08T09:00:00Z", "2026-05-08", "-1234-5", "+123-", "1778230800000", "1778230800.5"]))
def test_number_pattern_never_matches_a_dash_after_four_characters(text: str) -> None:
    """L{to_epoch_ms} skips the number pattern for a text whose fifth character is "-": it could not match."""
    if text[4:5] == "-":
        assert _NUMERIC.match(text) is None


@settings(max_examples=1000)
@given(st.integers(-10**20, 10**20) | st.sampled_from([EPOCH_MS[0] - 1, *EPOCH_MS, EPOCH_MS[1] - 1]))
def test_int_in_the_epoch_ms_range_is_its_own_time(number: int) -> None:
    """The generated functions take an int in C{EPOCH_MS} as the time: exactly where to_epoch_ms gives it back."""
    assert (EPOCH_MS[0] <= number < EPOCH_MS[1]) == (to_epoch_ms(number) == number)


class _Dict(dict):  # type: ignore[type-arg]
    """A dict subclass: not one of the plain scalars the fast path of leftovers copies as they are."""


values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3) | st.lists(
    st.none() | st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2), st.none() | st.integers(),
                                                            max_size=2) | st.builds(_Dict, st.just({"a": None}))


@settings(max_examples=1000)
@given(st.dictionaries(st.sampled_from("abcdef"), values, max_size=6), st.frozensets(st.sampled_from("abcdefg")))
def test_leftovers_of_flat_objects_as_the_comprehension(record: dict[str, Any], consumed: frozenset[str]) -> None:
    """Keys consumed and nulls out, containers without their nulls, the rest as it is, in the record's order."""
    expected = {key: drop_nulls(item) if isinstance(item, (dict, list)) else item
                for key, item in record.items() if item is not None and key not in consumed} or INVALID
    left = leftovers(record, consumed)
    assert left == expected and (left is INVALID or list(left.items()) == list(expected.items()))
    assert all(type(left[key]) is type(expected[key]) for key in ([] if left is INVALID else left))


@settings(max_examples=1000)
@given(st.integers(0, 10**18).map(str) | st.sampled_from(["١٢٣", "0", "99999999999", "100000000000"]))
def test_cef_time_of_digits_as_the_general_reading(text: str) -> None:
    assert cef_time(text, NOW) == to_epoch_ms(text)
