"""
The embedded default sink: NDJSON appended and fsynced before a write's Deferred fires, and a log
that stays parseable whatever the disk does: a failed write leaves nothing behind, a torn tail left
by a crash is cut at start-up, and a full disk is answered with 503 and shown by /readyz.
"""
from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
import treq
from prometheus_client import CollectorRegistry
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent

from aisoc_inboxd.sinks import SinkRecord, SinkUnavailable
from aisoc_inboxd.sinks.file import FileSink
from tests.support.daemon import daemon_settings, start_daemon
from tests.support.filesystem import FailingDisk, Filler, in_directory, mount_small_tmpfs, on_file


def rec(n: int, pad: int = 0) -> SinkRecord:
    return SinkRecord("t1", "generic-json", "webhook", 1.0, json.dumps({"n": n, "pad": "x" * pad}).encode())


def numbers(path: Path) -> list[int]:
    """The C{n} of every line, failing the test on a line that is not whole JSON."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"torn tail: {data[-60:]!r}"
    return [json.loads(line)["n"] for line in data.splitlines()]


def file_sink(directory: Path, reactor: Any, **options: Any) -> FileSink:
    return FileSink(directory, reactor, registry=CollectorRegistry(), **options)


@pytest_twisted.ensureDeferred
async def test_concurrent_writes_land_whole_and_in_order(reactor, tmp_path: Path) -> None:
    """Many concurrent writes each fire once their lines are on disk, none lost, none torn."""
    sink = file_sink(tmp_path, reactor)
    sink.startService()
    try:
        writes = [sink.write([rec(i * 10 + j) for j in range(10)]) for i in range(50)]
        await gatherResults(writes)
        assert numbers(tmp_path / "events.ndjson") == list(range(500))
    finally:
        await sink.stopService()


@pytest_twisted.ensureDeferred
async def test_rotation_keeps_every_line(reactor, tmp_path: Path) -> None:
    """Past max_bytes the live file is renamed and a new one started; no line is lost across files."""
    sink = file_sink(tmp_path, reactor, max_bytes=200)
    sink.startService()
    try:
        for i in range(100):
            await sink.write([rec(i)])
    finally:
        await sink.stopService()
    files = sorted(tmp_path.glob("events-*.ndjson")) + [tmp_path / "events.ndjson"]
    assert len(files) > 2
    assert sorted(n for f in files for n in numbers(f)) == list(range(100))


@pytest.mark.parametrize("mode", ["short write, then ENOSPC", "EIO on write", "EIO on fsync"])
@pytest_twisted.ensureDeferred
async def test_a_failed_write_leaves_only_acknowledged_lines(reactor, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """A write that fails part-way is cut back out of the log: the file holds exactly the acknowledged
    lines, each whole JSON, and the next acknowledged batch is readable, not glued to a torn line."""
    sink = file_sink(tmp_path, reactor)
    sink.startService()
    try:
        await sink.write([rec(1), rec(2)])
        disk = FailingDisk(monkeypatch, on_file(sink.path), mode)
        with pytest.raises(SinkUnavailable) as refused:
            await sink.write([rec(n, pad=3000) for n in range(3, 10)])
        assert disk.failed
        assert str(tmp_path) not in str(refused.value) and "events.ndjson" not in str(refused.value)
        assert sink.not_ready() is not None
        disk.heal()
        await sink.write([rec(10), rec(11)])
        assert sink.not_ready() is None
    finally:
        await sink.stopService()
    assert numbers(tmp_path / "events.ndjson") == [1, 2, 10, 11]


@pytest_twisted.ensureDeferred
async def test_a_write_queued_behind_a_failing_one_is_readable(reactor, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines queued while a failing write runs are flushed after it has been cut back out."""
    sink = file_sink(tmp_path, reactor)
    sink.startService()
    try:
        await sink.write([rec(1)])
        FailingDisk(monkeypatch, on_file(sink.path), "short write, then ENOSPC")
        failing = sink.write([rec(2, pad=5000)])
        queued = sink.write([rec(3)])
        with pytest.raises(SinkUnavailable):
            await failing
        monkeypatch.undo()
        await queued
    finally:
        await sink.stopService()
    assert numbers(tmp_path / "events.ndjson") == [1, 3]


@pytest_twisted.ensureDeferred
async def test_a_failing_disk_is_logged_once_not_per_write(reactor, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifty writes refused by a full disk log one error line with errno, and one line when writes succeed
    again, not a line per write."""
    sink = file_sink(tmp_path, reactor)
    sink.startService()
    try:
        with capturedLogs() as events:
            disk = FailingDisk(monkeypatch, in_directory(tmp_path), "ENOSPC")
            for n in range(50):
                with pytest.raises(SinkUnavailable):
                    await sink.write([rec(n)])
            disk.heal()
            await sink.write([rec(50)])
            await wait_until(reactor, lambda: sink.not_ready() is None)
    finally:
        await sink.stopService()
    logged = [e for e in events if e["log_namespace"].startswith("aisoc_inboxd.sinks")]
    assert [formatEvent(e) for e in logged] == [
        f"the event log in {tmp_path} cannot be written: [ENOSPC] No space left on device; /readyz is 503 and "
        "events that fail to be written are refused (503) until it can",
        f"the event log in {tmp_path} is writable again after {logged[1]['seconds']:.0f}s; 49 more writes failed "
        "since the last report"]
    assert (logged[0]["log_level"], logged[0]["errno"]) == (LogLevel.error, errno.ENOSPC)
    assert numbers(tmp_path / "events.ndjson") == [50]


@pytest.mark.parametrize(("content", "kept"), [
    (b'{"n":1}\n{"n":2}\n{"n":3,"pa', b'{"n":1}\n{"n":2}\n'),
    (b'{"n":1,"pad":"' + b"x" * 70_000, b""),
    (b'{"n":1}\n' + b"\0" * 9000, b'{"n":1}\n'),
])
@pytest_twisted.ensureDeferred
async def test_start_up_cuts_a_torn_tail(reactor, tmp_path: Path, content: bytes, kept: bytes) -> None:
    """A last line without its newline (a crash mid-write) is cut at start-up, and how many bytes is logged,
    so the next line cannot be glued to it."""
    (tmp_path / "events.ndjson").write_bytes(content)
    sink = file_sink(tmp_path, reactor)
    with capturedLogs() as events:
        sink.startService()
    try:
        await sink.write([rec(4)])
    finally:
        await sink.stopService()
    assert (tmp_path / "events.ndjson").read_bytes() == kept + json.dumps({"n": 4, "pad": ""}).encode() + b"\n"
    cut = [formatEvent(e) for e in events if "torn" in formatEvent(e)]
    assert len(cut) == 1 and f"{len(content) - len(kept)} bytes" in cut[0]


@pytest_twisted.ensureDeferred
async def test_a_whole_log_is_left_alone_at_start_up(reactor, tmp_path: Path) -> None:
    """A log that ends with a newline is appended to as it is, and nothing is logged as cut."""
    (tmp_path / "events.ndjson").write_bytes(b'{"n":1}\n')
    sink = file_sink(tmp_path, reactor)
    with capturedLogs() as events:
        sink.startService()
    try:
        await sink.write([rec(2)])
    finally:
        await sink.stopService()
    assert numbers(tmp_path / "events.ndjson") == [1, 2]
    assert not [e for e in events if "torn" in formatEvent(e)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at C{tmp_path/state/events}, where the daemon's event log lives."""
    yield from mount_small_tmpfs(tmp_path / "state" / "events", 1024 * 1024)


async def wait_until(reactor: Any, condition: Callable[[], bool], deadline: float = 20.0) -> None:
    """Poll C{condition} every 0.1 s for at most C{deadline} seconds."""
    for _ in range(int(deadline / 0.1)):
        if condition():
            return
        await deferLater(reactor, 0.1)
    raise AssertionError(f"not true within {deadline}s")


async def readyz(running: Any) -> tuple[int, Any]:
    return (await running.post("/readyz", b"", method="GET"))[:2]


async def wait_ready(reactor: Any, running: Any, deadline: float = 20.0) -> tuple[int, Any]:
    """Poll /readyz until it answers 200, for at most C{deadline} seconds."""
    for _ in range(int(deadline / 0.1)):
        status, body = await readyz(running)
        if status == 200:
            break
        await deferLater(reactor, 0.1)
    return status, body


@pytest_twisted.ensureDeferred
async def test_full_disk_answers_503_and_keeps_the_log_readable(reactor, tmp_path: Path, small_disk: Path) -> None:
    """On a real filesystem that fills, senders get 503 without the server's path, /readyz is 503 with the
    reason, /metrics counts the failures; once space is freed /readyz is 200 again without any write,
    and the log holds exactly the acknowledged events, every line whole JSON."""
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state"))
    acknowledged: list[int] = []
    try:
        token = await running.mint()

        async def post(n: int) -> tuple[int, Any]:
            body = json.dumps({"n": n, "pad": "y" * 1500}).encode()
            status, reply, _ = await running.post(f"/v1/inbox/{token}", body)
            if status == 200:
                acknowledged.append(n)
            return status, reply

        assert (await post(0))[0] == 200
        filler = Filler(small_disk)
        filler.fill()
        filler.free(6000)
        replies = [await post(n) for n in range(1, 12)]
        statuses = [status for status, _ in replies]
        assert statuses == sorted(statuses) and set(statuses) <= {200, 503} and statuses[-3:] == [503] * 3, replies
        refused = [reply for status, reply in replies if status == 503]
        assert all(reply == {"error": "events could not be made durable, retry later: the event log cannot be "
                                      "written: disk full"} for reply in refused)
        assert await readyz(running) == (503, {"status": "not ready",
                                               "error": "the sink cannot accept events: the event log cannot be "
                                                        "written: disk full"})
        metrics = await running.metrics()
        assert 'aisoc_ingest_sink_unwritable{sink="file"} 1.0' in metrics
        failures = [line for line in metrics.splitlines()
                    if line.startswith('aisoc_ingest_sink_write_failures_total{reason="disk_full",sink="file"}')]
        assert failures and float(failures[0].split()[-1]) >= len(refused)
        status_page = await treq.get(running.admin_url + "/status",
                                     headers={"Authorization": [f"Bearer {running.admin_key}"]})
        html = (await status_page.content()).decode()
        assert "not ready: the event log cannot be written: disk full" in html
        assert f"<th>event log writes failed</th><td class=\"num\">{len(refused)}</td>" in html

        filler.free()
        assert await wait_ready(reactor, running) == (200, {"status": "ok"})
        assert (await post(100))[0] == 200
        assert 'aisoc_ingest_sink_unwritable{sink="file"} 0.0' in await running.metrics()
    finally:
        await running.stop()
    assert [e["unmapped"]["n"] for e in running.events()] == acknowledged


@pytest_twisted.ensureDeferred
async def test_readyz_sees_a_full_disk_before_any_write_fails(reactor, tmp_path: Path, small_disk: Path) -> None:
    """/readyz turns 503 once the event log's filesystem is full, before a sender is refused, and 200 once
    it has room again."""
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state"))
    try:
        filler = Filler(small_disk)
        filler.fill()
        for _ in range(100):
            status, body = await readyz(running)
            if status == 503:
                break
            await deferLater(reactor, 0.1)
        assert (status, body["error"]) == (503, "the sink cannot accept events: the event log cannot be written: "
                                                 "disk full")
        filler.free()
        assert await wait_ready(reactor, running) == (200, {"status": "ok"})
    finally:
        await running.stop()
