"""
A syslog frame carrying CEF, end to end to the bytes the sink is given: the listeners' path (the
one-pass L{read_frame} and the template's generated function) against the reference (the two-stage
L{frame_record} and the template interpreter), for every CEF and syslog fixture line, every frame or
CEF line the suite writes, the workspace's corpus when it is there (each CEF line also wrapped in
RFC 5424 headers), and hypothesis-generated frames (escapes, duplicate keys, missing fields, wrong
types, unicode, malformed frames). Both must give the same OCSF event byte for byte (the event uid
aside), or the same problem for the frame's delivery record.
"""
from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.fastjson import dumps_compact
from aisoc_inboxd.formats.cef import CefError
from aisoc_inboxd.formats.cef_events import fused_events
from aisoc_inboxd.formats.syslog_cef import CefFrames, FrameParts, frame_items, frame_parts, read_frame
from aisoc_inboxd.formats.syslog_records import cef_problem, frame_record
from aisoc_inboxd.normalizer import IngestContext, load_templates, normalize_record
from aisoc_inboxd.normalizer.apply import NO_HEADERS
from aisoc_inboxd.pipeline import event_values
from tests.support.shared import CORPUS as SHARED_CORPUS
from tests.support.shared import PROJECT
from tests.test_one_pass_cef import CORPUS, NOW, ZONES, _CEF, _FRAME, _SD, _STAMP, _framed

TEMPLATES = load_templates([PROJECT / "templates"])
FUSED = fused_events(TEMPLATES["cef-syslog"])


def _shared_lines() -> list[bytes]:
    lines: list[bytes] = []
    for directory in (SHARED_CORPUS / "syslog", SHARED_CORPUS / "cef"):
        for path in sorted(directory.glob("*.txt")) if directory.is_dir() else ():
            lines.extend(line for line in path.read_bytes().split(b"\n") if line.strip())
    return lines


LINES = sorted(set(CORPUS) | set(_shared_lines()))


#: how a frame is read: the reference (L{frame_record} and the interpreter), the record path
#: (L{read_frame} and the generated C{to_event}), the fused path (L{frame_parts} and the template's
#: L{fused_events}, the record path for what it leaves), and what the listeners run: their decode
#: (L{frame_items}) and the pipeline's L{event_values}, which picks between the last two
PATHS = ("reference", "records", "fused", "listener")


def events(frame: bytes, path: str, zone: Any = UTC) -> tuple[Any, ...]:
    """
    What a listener makes of C{frame}: the event's bytes as the sink gets them (uid masked) under
    the template the frame goes to (C{cef-syslog} or C{syslog}), or the malformed frame's problem.
    """
    if path == "listener":
        return _listened(frame, zone)
    try:
        if path == "fused" and (made := _fused(frame, zone)) is not None:
            return (_masked(made),)
        parsed = (frame_record if path == "reference" else read_frame)(frame, NOW, zone)
    except CefError as error:
        return ("malformed", cef_problem(frame, error))
    template = TEMPLATES["cef-syslog" if parsed.is_cef else "syslog"]
    context = IngestContext("tenant-a", "syslog", NOW, raw=parsed.record.raw)
    try:
        made = normalize_record(template, parsed.record.data, context, interpret=path == "reference")
    except Exception as error:  # noqa: BLE001 - any error must be the reference's too
        return ("error", type(error).__name__, str(error))
    return tuple(_masked(event) for event in made)


def _fused(frame: bytes, zone: Any) -> dict[str, Any] | None:
    """
    The fused path's event of C{frame}, or None where it leaves the frame to the record path.
    """
    parts = frame_parts(frame, NOW, zone)
    return None if parts is None else FUSED.event(parts, "tenant-a", "syslog", NOW)


def _listened(frame: bytes, zone: Any) -> tuple[Any, ...]:
    """
    What a syslog listener makes of C{frame}: its decode, then the pipeline's events of each batch.
    """
    split = frame_items([frame], NOW, zone)
    if split.malformed:
        return ("malformed", *split.problems)
    made: list[bytes] = []
    try:
        for template_id, records in split.batches("syslog", "cef-syslog"):
            made += event_values(TEMPLATES[template_id], "tenant-a", "syslog", records, NOW, NO_HEADERS)
    except Exception as error:  # noqa: BLE001 - any error must be the reference's too
        return ("error", type(error).__name__, str(error))
    return tuple(value.replace(orjson.loads(value)["metadata"]["uid"].encode(), b"UID") for value in made)


def _masked(event: dict[str, Any]) -> bytes:
    uid = event["metadata"]["uid"]
    return dumps_compact(event).replace(uid.encode(), b"UID")


def assert_same(frame: bytes) -> None:
    for zone in ZONES:
        expected = events(frame, "reference", zone)
        for path in PATHS[1:]:
            assert events(frame, path, zone) == expected, (path, frame)


@pytest.mark.parametrize("line", LINES, ids=range(len(LINES)))
def test_corpus(line: bytes) -> None:
    for frame in _framed(line):
        assert_same(frame)


def test_corpus_makes_events_and_problems() -> None:
    """
    The corpus reaches both ends: events of several classes from the fast path, and malformed frames.
    """
    outcomes = [events(frame, "fused") for line in LINES for frame in _framed(line)]
    classes = {event.split(b'"class_uid":', 1)[1].split(b",", 1)[0] for made in outcomes
               if made and made[0] not in ("malformed", "error") for event in made}
    assert {b"3002", b"4001", b"2004", b"0"} <= classes
    assert sum(made[0] == "malformed" for made in outcomes if made) > 20


_KEY = st.sampled_from(["rt", "end", "start", "src", "dst", "spt", "dpt", "shost", "dhost", "smac", "dmac",
                        "suser", "duser", "fname", "filePath", "fsize", "fileHash", "cat", "cs1", "cs1Label",
                        "request", "requestMethod", "act", "msg", "outcome", "proto", "in", "out", "cnt",
                        "dvc", "dvchost", "externalId", "reason", "destinationDnsDomain", "name", "severity"])
#: values of the wrong type for the target (ports, counts, addresses, times), unicode, escapes, blanks
_VALUE = st.one_of(
    st.sampled_from(["443", "65536", "-1", "0x1bb", "\u0661\u0662", "10.0.0.1", "10.0.0.256", "::1", "fe80::1%eth0",
                     "blocked", "File quarantined", "allow", "GET", "post", "6", "TCP", "udp ", "1778230800000",
                     "May 08 2026 09:00:00", "Success", "failed login", "", " ", "a\\=b", "c:\\\\dir\\\\f.exe",
                     "line\\nbreak", "d41d8cd98f00b204e9800998ecf8427e", "\u00e9\u4e2d\U0001f600", "x=y"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
)
_NAME = st.sampled_from(["Logon", "User logged off", "DNS query", "HTTP request", "File deleted", "Trojan.Gen",
                         "API audit", "port scan attack", "Login failed", "", "\u00dcberwachung"])
_EXTENSION = st.lists(st.tuples(_KEY, _VALUE), max_size=12).map(  # keys may repeat: the last one wins
    lambda pairs: " ".join(f"{key}={value}" for key, value in pairs))
_MAPPED = st.tuples(st.sampled_from(["Acme|Edge|1.0", "Trend Micro|Deep Security|20", "||", "Acme\\|x|E|1"]),
                    st.sampled_from(["100", "4000010", "200", ""]), _NAME,
                    st.sampled_from(["0", "5", "10", "11", "High", "very-high", "Critical", " 7 ", ""]),
                    _EXTENSION).map(lambda c: f"CEF:0|{c[0]}|{c[1]}|{c[2]}|{c[3]}|{c[4]}")


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_STAMP, _SD, st.one_of(_MAPPED, _CEF))
def test_generated_cef(stamp: str, sd: str, cef: str) -> None:
    """
    Well-formed syslog headers around CEF whose keys are the ones the template maps.
    """
    assert_same(f"<134>1 {stamp} host app 42 ID7 {sd} {cef}".encode())


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FRAME)
def test_generated_frames(frame: bytes) -> None:
    assert_same(frame)


def test_corpus_takes_the_fused_path() -> None:
    """
    The fused path makes the events of most corpus frames itself, of every class the template has.
    """
    made = []
    for line in LINES:
        for frame in _framed(line):
            try:
                made.append(_fused(frame, UTC))
            except CefError:
                pass
    fused = [event for event in made if event is not None]
    assert {event["class_uid"] for event in fused} == {0, 1001, 2004, 3002, 4001, 4002, 4003, 6003}
    assert len(fused) > len(made) / 2


def test_listeners_take_the_fused_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The listeners' decode keeps the corpus's one-pass CEF frames as their parts, and the pipeline
    makes each of their events with the template's fused function, not from a record.
    """
    frames = [frame for line in LINES for frame in _framed(line)]
    split = frame_items(frames, NOW, UTC)
    assert type(split.cef) is CefFrames
    kept_as_parts = sum(type(item) is FrameParts for item in split.cef)
    assert kept_as_parts > len(split.cef) / 2
    fused_calls = []
    made_by = FUSED.event

    def counted(parts: FrameParts, *args: Any) -> Any:
        fused_calls.append(parts)
        return made_by(parts, *args)

    monkeypatch.setattr(FUSED, "event", counted)
    values = event_values(TEMPLATES["cef-syslog"], "tenant-a", "syslog", split.cef, NOW, NO_HEADERS)
    assert len(fused_calls) == kept_as_parts and len(values) == len(split.cef)
