"""
The embedded default sink: NDJSON appended and fsynced before a write's Deferred fires.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest_twisted
from twisted.internet.defer import gatherResults

from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.sinks.file import FileSink


def rec(n: int) -> SinkRecord:
    return SinkRecord("t1", "generic-json", "webhook", 1.0, json.dumps({"n": n}).encode())


@pytest_twisted.ensureDeferred
async def test_concurrent_writes_land_whole_and_in_order(reactor, tmp_path: Path) -> None:
    """Many concurrent writes each fire once their lines are on disk, none lost, none torn."""
    sink = FileSink(tmp_path, reactor)
    sink.startService()
    try:
        writes = [sink.write([rec(i * 10 + j) for j in range(10)]) for i in range(50)]
        await gatherResults(writes)
        lines = (tmp_path / "events.ndjson").read_text().splitlines()
        assert [json.loads(line)["n"] for line in lines] == list(range(500))
    finally:
        await sink.stopService()


@pytest_twisted.ensureDeferred
async def test_rotation_keeps_every_line(reactor, tmp_path: Path) -> None:
    """Past max_bytes the live file is renamed and a new one started; no line is lost across files."""
    sink = FileSink(tmp_path, reactor, max_bytes=200)
    sink.startService()
    try:
        for i in range(100):
            await sink.write([rec(i)])
    finally:
        await sink.stopService()
    files = sorted(tmp_path.glob("events-*.ndjson")) + [tmp_path / "events.ndjson"]
    assert len(files) > 2
    numbers = [json.loads(line)["n"] for f in files for line in f.read_text().splitlines()]
    assert sorted(numbers) == list(range(100))


@pytest_twisted.ensureDeferred
async def test_unwritable_log_fails_the_write(reactor, tmp_path: Path) -> None:
    """When the log cannot be written the write fails (the sender gets 503) and readiness drops."""
    from aisoc_inboxd.sinks import SinkUnavailable

    sink = FileSink(tmp_path, reactor)
    sink.startService()
    try:
        import os

        os.close(sink._fd)  # the disk went away under us
        sink._fd = os.open(os.devnull, os.O_RDONLY)
        try:
            await sink.write([rec(1)])
        except SinkUnavailable as e:
            assert "events.ndjson" in str(e)
        else:
            raise AssertionError("the write should have failed")
        assert not sink.ready()
    finally:
        await sink.stopService()
