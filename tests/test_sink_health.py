"""
How a sink reports a full or failing disk: one error line with errno when writes start failing, at
most one summary per interval while they keep failing, one line when they succeed again, and the
failures counted by reason in /metrics.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from aisoc_inboxd.sinks.group_commit import GroupCommitWriter
from aisoc_inboxd.sinks.health import DiskHealth, check_directory, describe, reason_of

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def health(tmp_path: Path, clock: Clock, registry: CollectorRegistry | None = None) -> DiskHealth:
    disk = DiskHealth("the event log", "file", tmp_path, GroupCommitWriter(lambda lines: None, clock, "test"),  # type: ignore[arg-type]
                      clock)
    if registry is not None:
        disk.register(registry)
    return disk


def test_failures_are_logged_once_then_summarised_once_per_interval(tmp_path: Path) -> None:
    """800 failed writes in 10 s log one error line with errno; the rest are summarised, at most once a minute."""
    clock = Clock()
    clock.advance(1_000)
    disk = health(tmp_path, clock)
    with capturedLogs() as events:
        for _ in range(800):
            disk.failed(ENOSPC)
            clock.advance(10 / 800)
        assert [formatEvent(e) for e in events] == [
            f"the event log in {tmp_path} cannot be written: [ENOSPC] No space left on device; /readyz is 503 and "
            "events that fail to be written are refused (503) until it can"]
        assert events[0]["log_level"] == LogLevel.error and events[0]["errno"] == errno.ENOSPC
        for _ in range(160):
            disk.failed(ENOSPC)
            clock.advance(1)
    lines = [formatEvent(e) for e in events]
    assert lines[1:] == ["849 writes to the event log failed in the last 60s: [ENOSPC] No space left on device; it is still unwritable",
                         "60 writes to the event log failed in the last 60s: [ENOSPC] No space left on device; "
                         "it is still unwritable"]


def test_recovery_is_logged_once_and_flapping_does_not_flood(tmp_path: Path) -> None:
    """A write that succeeds again is one line; a disk that flips between failing and working for a
    minute logs its first failure, its recovery and one summary, not a line per flip."""
    clock = Clock()
    disk = health(tmp_path, clock)
    with capturedLogs() as events:
        disk.failed(ENOSPC)
        clock.advance(5)
        disk.succeeded()
        for _ in range(100):
            clock.advance(0.25)
            disk.failed(ENOSPC)
            clock.advance(0.25)
            disk.succeeded()
        clock.pump([1] * 60)
    lines = [formatEvent(e) for e in events]
    assert lines == [
        f"the event log in {tmp_path} cannot be written: [ENOSPC] No space left on device; /readyz is 503 and "
        "events that fail to be written are refused (503) until it can",
        f"the event log in {tmp_path} is writable again after 5s; 0 more writes failed since the last report",
        "100 writes to the event log failed in the last 60s: [ENOSPC] No space left on device; it is writable now"]
    assert disk.error is None and disk.problem() is None


def test_state_and_metrics_follow_the_writes(tmp_path: Path) -> None:
    """A failed write makes the directory unwritable (with a reason and since when) and is counted by
    reason; a write that succeeds makes it writable again."""
    clock = Clock()
    clock.advance(500)
    registry = CollectorRegistry()
    disk = health(tmp_path, clock, registry)
    refusal = disk.failed(OSError(errno.EIO, os.strerror(errno.EIO)))
    disk.failed(ENOSPC)
    assert str(refusal) == "the event log cannot be written: I/O error"
    assert disk.problem() == "the event log cannot be written: disk full" and disk.since == 500
    sample = registry.get_sample_value
    assert sample("aisoc_ingest_sink_write_failures_total", {"sink": "file", "reason": "io_error"}) == 1
    assert sample("aisoc_ingest_sink_write_failures_total", {"sink": "file", "reason": "disk_full"}) == 1
    assert sample("aisoc_ingest_sink_write_failures_total", {"sink": "file", "reason": "read_only"}) == 0
    assert sample("aisoc_ingest_sink_unwritable", {"sink": "file"}) == 1
    disk.succeeded()
    assert (disk.problem(), disk.since, disk.failed_writes) == (None, None, 2)
    assert sample("aisoc_ingest_sink_unwritable", {"sink": "file"}) == 0


def test_reasons_name_the_errno_never_a_path() -> None:
    """Every errno maps to a metric reason and a short text without the file's path."""
    error = OSError(errno.EROFS, os.strerror(errno.EROFS), "/var/lib/aisoc-inboxd/events/events.ndjson")
    assert (reason_of(error), describe(error)) == ("read_only", "read-only filesystem")
    odd = OSError(errno.EBADF, os.strerror(errno.EBADF), "/secret/path")
    assert (reason_of(odd), describe(odd)) == ("other", "Bad file descriptor")


def test_a_check_probes_the_directory(tmp_path: Path) -> None:
    """The check passes on a directory with room, probing leaves no file behind, and a missing directory fails it."""
    assert check_directory(tmp_path, probe=True) is None
    assert list(tmp_path.iterdir()) == []
    missing = check_directory(tmp_path / "gone", probe=False)
    assert missing is not None and missing.errno == errno.ENOENT
