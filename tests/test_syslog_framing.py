"""
RFC 6587 stream framing (L{aisoc_inboxd.syslog.framing}): corpus streams, per-frame detection, LF and
NUL trailers, size limits, and a property test over random frames, framings and chunkings.
"""
from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisoc_inboxd.syslog.framing import MAX_SKIPPED_FRAME, FrameDecoder
from tests.support.shared import CORPUS, FIXTURES, require_shared

SYSLOG_FIXTURES = FIXTURES / "syslog"


def _decode(stream: bytes, chunk: int, max_frame_size: int = 64 * 1024) -> tuple[list[bytes], FrameDecoder]:
    decoder = FrameDecoder(max_frame_size)
    frames: list[bytes] = []
    for offset in range(0, len(stream), chunk):
        frames += decoder.feed(stream[offset:offset + chunk])
    frames += decoder.end()
    return frames, decoder


def _octets(frame: bytes) -> bytes:
    return b"%d %s" % (len(frame), frame)


@pytest.mark.parametrize("chunk", [1, 7, 64, 100_000])
def test_rfc6587_octet_counted_stream(chunk: int) -> None:
    """The four octet-counted RFC 5424 examples come back whole, counted in octets, however the stream is cut."""
    stream = (SYSLOG_FIXTURES / "rfc6587-octet-counted-stream.txt").read_bytes()
    expect = json.loads((SYSLOG_FIXTURES / "rfc6587-octet-counted-stream.expected.json").read_text("utf-8"))["expect"]
    frames, decoder = _decode(stream, chunk)
    assert len(frames) == expect["frame_count"]
    assert [(len(f), f[:20].decode()) for f in frames] == [(e["octets"], e["starts_with"]) for e in expect["frames"]]
    examples = (SYSLOG_FIXTURES / "rfc5424-examples.txt").read_bytes().split(b"\n")
    assert frames == [line for line in examples if line]
    assert (decoder.oversized, decoder.truncated) == (0, 0)


def test_lf_framed_rfc5424_examples() -> None:
    """The same examples as LF-terminated lines, one byte at a time, give the same four frames."""
    stream = (SYSLOG_FIXTURES / "rfc5424-examples.txt").read_bytes()
    frames, _ = _decode(stream, 1)
    assert frames == [line for line in stream.split(b"\n") if line]
    assert b"\xef\xbb\xbf" in frames[0]


def test_cef_in_rfc5424_octet_counted_stream() -> None:
    """The five CEF-carrying frames of the shared octet-counted stream have the expected octet counts."""
    path = require_shared(CORPUS / "syslog" / "cef-in-rfc5424-octet-counted.txt")
    cases = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))["cases"]
    frames, _ = _decode(path.read_bytes(), 13)
    assert [len(f) for f in frames] == [c["octets"] for c in cases]
    assert all(f.startswith(b"<134>1 ") for f in frames)


def test_framing_is_detected_per_frame() -> None:
    """Octet-counted and LF-framed frames may alternate on one connection."""
    stream = _octets(b"<1>a\nb") + b"<2>line two\r\n" + _octets(b"<3>c") + b"\n\n<4>d\n"
    frames, _ = _decode(stream, 3)
    assert frames == [b"<1>a\nb", b"<2>line two", b"<3>c", b"<4>d"]


@pytest.mark.parametrize(
    "line",
    [b"1493738863000 hostname.example.com CEF:0|V|P|1|2|n|3|", b"123 apples", b"2021-03-03T20:14:22Z CEF:0|x",
     b"0 <13>zero is no count", b"12<13>no space"],
)
def test_lines_starting_with_digits_are_lf_frames(line: bytes) -> None:
    """A line that starts with digits but not with C{count SP <} is an LF frame, not a count."""
    frames, decoder = _decode(line + b"\n" + _octets(b"<5>next"), 1)
    assert frames == [line, b"<5>next"]
    assert decoder.oversized == 0


def test_count_is_in_octets_not_characters() -> None:
    """MSG-LEN counts UTF-8 octets, so a multibyte message is not cut short."""
    frame = "<13>1 - h a - - - h\u00e9llo \u3042".encode()
    assert len(frame) > len(frame.decode())
    frames, _ = _decode(_octets(frame) + _octets(b"<13>x"), 2)
    assert frames == [frame, b"<13>x"]


def test_undecided_prefix_waits_for_more_bytes() -> None:
    """Digits, or digits and a space, at the end of a feed are kept until the next bytes decide."""
    decoder = FrameDecoder()
    assert decoder.feed(b"15") == []
    assert decoder.feed(b" ") == []
    assert decoder.feed(b"<13>hello wo") == []
    assert decoder.feed(b"rld") == [b"<13>hello world"]


def test_oversized_octet_counted_frame_is_skipped_by_its_count() -> None:
    """A counted frame over the limit is dropped and counted, skipped across feeds, and the next frame is intact."""
    big = b"<13>" + b"x" * 500
    frames, decoder = _decode(_octets(big) + _octets(b"<13>small") + b"<14>lf\n", 50, max_frame_size=100)
    assert frames == [b"<13>small", b"<14>lf"]
    assert decoder.oversized == 1


def test_oversized_lf_frame_is_discarded_to_the_next_lf() -> None:
    """An LF frame over the limit is dropped and counted once, whether or not its LF has arrived yet."""
    stream = b"<13>" + b"y" * 300 + b"\n<13>ok\n<13>" + b"z" * 101 + b"\n" + _octets(b"<13>after")
    for chunk in (1, 40, len(stream)):
        frames, decoder = _decode(stream, chunk, max_frame_size=100)
        assert frames == [b"<13>ok", b"<13>after"]
        assert decoder.oversized == 2


def test_frame_of_exactly_the_limit_is_kept() -> None:
    """A frame of exactly C{max_frame_size} octets is delivered in both framings."""
    frame = b"<13>" + b"a" * 96
    frames, decoder = _decode(_octets(frame) + frame + b"\n", 9, max_frame_size=100)
    assert frames == [frame, frame]
    assert decoder.oversized == 0


def test_nul_ends_a_frame_like_lf() -> None:
    """Python's SysLogHandler ends each record with NUL (C{append_nul}): every record is its own frame,
    however the stream is cut, and NUL, LF and CRLF trailers may mix."""
    stream = b"<12>first\x00<12>second\x00<12>third\n\x00<12>fourth\r\n" + _octets(b"<13>counted") + b"\x00<12>last\x00"
    for chunk in (1, 5, len(stream)):
        frames, decoder = _decode(stream, chunk)
        assert frames == [b"<12>first", b"<12>second", b"<12>third", b"<12>fourth", b"<13>counted", b"<12>last"]
        assert (decoder.oversized, decoder.truncated) == (0, 0)


def test_a_long_nul_terminated_stream_is_not_one_oversized_frame() -> None:
    """700 NUL-terminated records on one connection (over 64 KiB together, no LF anywhere) are 700 frames."""
    records = [b"<12>record %d of a long-lived SysLogHandler connection %s" % (n, b"x" * 60) for n in range(700)]
    stream = b"".join(record + b"\x00" for record in records)
    assert len(stream) > 64 * 1024 and b"\n" not in stream
    for chunk in (1000, 65536):
        frames, decoder = _decode(stream, chunk)
        assert frames == records
        assert decoder.oversized == 0


def test_nul_inside_an_octet_counted_frame_is_kept() -> None:
    """Octet counting is transparent: a NUL (or LF) inside a counted frame does not cut it."""
    frame = b"<13>1 - h a - - - nul\x00inside\nand lf"
    frames, _ = _decode(_octets(frame) + _octets(b"<13>next"), 3)
    assert frames == [frame, b"<13>next"]


def test_oversized_lf_frame_is_discarded_to_the_next_nul() -> None:
    """An oversized non-transparent frame is discarded up to its NUL trailer too, and the next record is intact."""
    frames, decoder = _decode(b"<12>" + b"y" * 300 + b"\x00<12>ok\x00", 7, max_frame_size=100)
    assert frames == [b"<12>ok"]
    assert decoder.oversized == 1


@pytest.mark.parametrize("claim", [MAX_SKIPPED_FRAME + 1, 999_999_999])
def test_a_count_too_large_to_skip_abandons_the_stream(claim: int) -> None:
    """A frame claiming more than MAX_SKIPPED_FRAME octets is counted as oversized and the stream is
    given up at once (the connection is closed): nothing after it is read as frames, end() included."""
    decoder = FrameDecoder()
    assert decoder.feed(_octets(b"<13>before") + b"%d <13>huge" % claim) == [b"<13>before"]
    assert (decoder.oversized, decoder.abandoned) == (1, claim)
    assert decoder.feed(b"<13>after\n" + _octets(b"<13>more")) == []
    assert decoder.end() == []
    assert decoder.truncated == 0


def test_a_large_but_skippable_count_keeps_the_stream() -> None:
    """A claim over the frame limit but within MAX_SKIPPED_FRAME is skipped by its count, not abandoned."""
    decoder = FrameDecoder(max_frame_size=100)
    body = b"<13>" + b"z" * (MAX_SKIPPED_FRAME - 4)
    assert decoder.feed(_octets(body)[:1000]) == []
    assert decoder.abandoned is None
    frames = []
    for offset in range(1000, len(_octets(body)), 65536):
        frames += decoder.feed(_octets(body)[offset:offset + 65536])
    assert frames + decoder.feed(b"<13>next\n") == [b"<13>next"]
    assert (decoder.oversized, decoder.abandoned) == (1, None)


def test_the_skip_limit_grows_with_a_larger_frame_limit() -> None:
    """With max_frame_size above MAX_SKIPPED_FRAME, any frame within the limit is kept and a larger claim abandons."""
    limit = MAX_SKIPPED_FRAME + 10
    decoder = FrameDecoder(max_frame_size=limit)
    frame = b"<13>" + b"w" * (limit - 4)
    assert decoder.feed(_octets(frame)) == [frame]
    assert decoder.feed(b"%d <13>" % (limit + 1)) == []
    assert decoder.abandoned == limit + 1


def test_end_returns_an_unterminated_lf_frame() -> None:
    """At end of stream the last LF frame without its LF is still delivered (CR dropped)."""
    decoder = FrameDecoder()
    assert decoder.feed(b"<13>one\n<13>two\r") == [b"<13>one"]
    assert decoder.end() == [b"<13>two"]
    assert decoder.end() == []


def test_end_drops_and_counts_a_truncated_octet_frame() -> None:
    """An octet-counted frame cut short by the end of the stream is counted as truncated, not delivered."""
    decoder = FrameDecoder()
    assert decoder.feed(_octets(b"<13>complete") + b"40 <13>cut") == [b"<13>complete"]
    assert decoder.end() == []
    assert decoder.truncated == 1


def test_end_inside_an_oversized_frame_delivers_nothing() -> None:
    """Ending while an oversized frame is being discarded delivers no fragment of it."""
    decoder = FrameDecoder(max_frame_size=10)
    assert decoder.feed(b"<13>" + b"q" * 20) == []
    assert decoder.end() == []
    assert decoder.oversized == 1


# --- properties ----------------------------------------------------------------------------------

# Syslog frames start with '<'. A non-transparent frame holds no LF or NUL and does not end in CR.
FRAME_BODY = st.binary(max_size=200)
FRAMED = st.one_of(
    FRAME_BODY.map(lambda body: (b"<" + body, "octets")),
    st.tuples(FRAME_BODY.map(lambda body: body.replace(b"\n", b"").replace(b"\x00", b"").rstrip(b"\r")),
              st.sampled_from(["lf", "nul"])).map(lambda t: (b"<" + t[0], t[1])),
)

_TRAILERS = {"lf": b"\n", "nul": b"\x00"}


def _frame(frame: bytes, method: str) -> bytes:
    return _octets(frame) if method == "octets" else frame + _TRAILERS[method]


@given(framed=st.lists(FRAMED, max_size=20), cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
def test_any_frames_any_framing_any_chunks(framed: list[tuple[bytes, str]], cuts: list[int]) -> None:
    """Framing any frames with either method and feeding the stream in random chunks gives back the frames."""
    stream = b"".join(_frame(frame, method) for frame, method in framed)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = FrameDecoder()
    frames: list[bytes] = []
    for start, stop in itertools.pairwise(bounds):
        frames += decoder.feed(stream[start:stop])
    frames += decoder.end()
    assert frames == [frame for frame, _ in framed]


@given(framed=st.lists(FRAMED, max_size=15), chunk=st.integers(min_value=1, max_value=64))
def test_limit_drops_exactly_the_oversized_frames(framed: list[tuple[bytes, str]], chunk: int) -> None:
    """With a limit, exactly the frames over it are dropped and counted; the others arrive in order."""
    limit = 100
    stream = b"".join(_frame(frame, method) for frame, method in framed)
    frames, decoder = _decode(stream, chunk, max_frame_size=limit)
    assert frames == [frame for frame, _ in framed if len(frame) <= limit]
    assert decoder.oversized == sum(1 for frame, _ in framed if len(frame) > limit)
