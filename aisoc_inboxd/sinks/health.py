"""
Whether a sink's directory takes writes now: what C{/readyz}, the status page and C{/metrics} say
about a full or failing disk, and how the daemon's log reports it without flooding.

Two things tell. Each write's outcome: a failed one makes the directory unwritable until a write
succeeds or a check proves it writable again. And a check every L{CHECK_INTERVAL} seconds on the
sink's writer thread (so it never overlaps a flush): below L{MIN_FREE_BYTES} free the filesystem
counts as full, before any write fails; after a failed write the check also writes, fsyncs and
removes a small probe file, so readiness comes back with the disk, without waiting for a sender.

The log says when writes start failing (error level, with errno), at most once per
L{LOG_INTERVAL} how many failed since, and when they succeed again.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from aisoc_inboxd.sinks import SinkUnavailable
from aisoc_inboxd.sinks.group_commit import GroupCommitWriter

#: a filesystem with less free space than this counts as full (room for a few typical batches)
MIN_FREE_BYTES = 64 * 1024

#: seconds between checks of a sink's directory
CHECK_INTERVAL = 1.0

#: seconds between log lines about one directory's failing writes
LOG_INTERVAL = 60.0

#: the file a check writes, fsyncs and removes in the sink's directory after a failed write
PROBE_NAME = ".write-probe"
_PROBE = b"\0" * 4096

#: metric reason of each errno; any other is C{other}
_REASONS = {errno.ENOSPC: "disk_full", errno.EDQUOT: "quota_exceeded", errno.EROFS: "read_only",
            errno.EACCES: "permission_denied", errno.EPERM: "permission_denied", errno.EIO: "io_error"}
_TEXT = {"disk_full": "disk full", "quota_exceeded": "disk quota exceeded", "read_only": "read-only filesystem",
         "permission_denied": "permission denied", "io_error": "I/O error"}
REASONS = (*_TEXT, "other")


def reason_of(error: OSError) -> str:
    """
    The metric label of a failed write's error.
    """
    return _REASONS.get(error.errno or 0, "other")


def describe(error: OSError) -> str:
    """
    A short text for a failed write's error, without any path (it goes into 503 bodies).
    """
    return _TEXT.get(reason_of(error)) or error.strerror or "error"


def check_directory(directory: Path, probe: bool) -> OSError | None:
    """
    Why C{directory} cannot take writes now, or None. Runs on the sink's writer thread.

    @param probe: also write, fsync and remove a probe file, after a write failed.
    """
    try:
        st = os.statvfs(directory)
        # root may use the blocks reserved for it (ext4 keeps 5 %), others may not
        free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
        if free < MIN_FREE_BYTES:
            return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free} bytes free)")
        if probe:
            path = directory / PROBE_NAME
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, _PROBE)
                os.fsync(fd)
            finally:
                os.close(fd)
                path.unlink(missing_ok=True)
    except OSError as e:
        return e
    return None


class DiskHealth:
    """
    The state of one sink directory's disk, from its writes' outcomes and a periodic check.

    @param what: names the files in log lines and replies (C{"the event log"}, C{"the spool"}).
    @param label: the C{sink} label of the metrics (C{file}, C{spool}).
    @param writer: the sink's writer, whose thread runs the checks.
    """

    _log = Logger()

    def __init__(self, what: str, label: str, directory: Path, writer: GroupCommitWriter[Any],
                 clock: IReactorTime) -> None:
        self._what = what
        self._label = label
        self._directory = directory
        self._writer = writer
        self._clock = clock
        #: failed writes since start, by reason (all reasons present, so scrapes never see it resize)
        self.failures = dict.fromkeys(REASONS, 0)
        #: when the directory last became unwritable, while it is
        self.since: float | None = None
        #: set by a failed write, cleared by a write that succeeds or a check that passes
        self._write_error: OSError | None = None
        #: what the last check found (a full filesystem, a failed probe), None when it passed
        self._check_error: OSError | None = None
        self._last_error: OSError | None = None
        self._unreported = 0
        self._last_line = float("-inf")
        self._alarm = False
        self._summary: IDelayedCall | None = None
        self._loop: LoopingCall | None = None
        self._stopped: Deferred[Any] = succeed(None)

    @property
    def error(self) -> OSError | None:
        """
        Why the directory cannot take writes, or None when it can.
        """
        return self._write_error or self._check_error

    @property
    def failed_writes(self) -> int:
        return sum(self.failures.values())

    def problem(self) -> str | None:
        """
        C{"<what> cannot be written: disk full"} while unwritable, else None; never a path.
        """
        error = self.error
        return None if error is None else self._cannot(error)

    def _cannot(self, error: OSError) -> str:
        return f"{self._what} cannot be written: {describe(error)}"

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_Collector(self, self._label))

    def start(self) -> None:
        self._loop = LoopingCall(self._check)
        self._loop.clock = self._clock
        self._stopped = self._loop.start(CHECK_INTERVAL, now=True)

    def stop(self) -> Deferred[Any]:
        """
        Stop checking; fires once a check that is running has returned.
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        return self._stopped

    def failed(self, error: OSError) -> SinkUnavailable:
        """
        Note a write that failed; returns the exception that refuses it (the sender gets a 503).
        """
        self.failures[reason_of(error)] += 1
        self._unreported += 1
        before, self._write_error = self.error, error
        self._changed(before)
        return SinkUnavailable(self._cannot(error))

    def succeeded(self) -> None:
        if self._write_error is not None:
            before, self._write_error = self.error, None
            self._changed(before)

    async def _check(self) -> None:
        try:
            found = await self._writer.call(check_directory, self._directory, probe=self._write_error is not None)
        except Exception:
            self._log.failure("checking {what} in {path} failed", what=self._what, path=str(self._directory))
            return
        before, self._check_error = self.error, found
        if found is None:
            self._write_error = None
        self._changed(before)

    def _changed(self, before: OSError | None) -> None:
        after = self.error
        if after is None:
            if before is not None:
                self._recovered()
            return
        self._last_error = after
        if before is None:
            self.since = self._clock.seconds()
        self._report()

    def _report(self) -> None:
        """
        Log now if a line is due, else make sure a summary is scheduled for when it is.
        """
        due = self._last_line + LOG_INTERVAL
        now = self._clock.seconds()
        if now >= due:
            self._line(now)
        elif self._summary is None or not self._summary.active():
            self._summary = self._clock.callLater(due - now, self._summarise)

    def _summarise(self) -> None:
        self._summary = None
        self._line(self._clock.seconds())

    def _line(self, now: float) -> None:
        """
        The first line of a failure, or a summary of the failed writes not yet reported.
        """
        error = self._last_error
        assert error is not None
        keys = {"what": self._what, "path": str(self._directory), "errno": error.errno,
                "errno_name": errno.errorcode.get(error.errno or 0, str(error.errno)),
                "strerror": error.strerror, "reason": reason_of(error)}
        if self.error is not None and not self._alarm:
            self._log.error("{what} in {path} cannot be written: [{errno_name}] {strerror}; /readyz is 503 and "
                            "events that fail to be written are refused (503) until it can", **keys)
            self._alarm = True
        elif self._unreported:
            self._alarm = self.error is not None
            self._log.error("{count} writes to {what} failed in the last {seconds:.0f}s: [{errno_name}] {strerror}; "
                            "{now}", count=self._unreported, seconds=now - self._last_line,
                            now="it is still unwritable" if self._alarm else "it is writable now", **keys)
        else:
            return
        self._unreported = 0
        self._last_line = now

    def _recovered(self) -> None:
        since, self.since = self.since, None
        if not self._alarm:
            return  # its failure is not logged yet either: the scheduled summary counts its writes
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._log.info("{what} in {path} is writable again after {seconds:.0f}s; {count} more writes failed since "
                       "the last report", what=self._what, path=str(self._directory),
                       seconds=self._clock.seconds() - (since or 0.0), count=self._unreported)
        self._alarm = False
        self._unreported = 0


class _Collector:
    """
    The health's metrics, read at scrape time (the metrics endpoint may render on its own thread).
    """

    def __init__(self, health: DiskHealth, label: str) -> None:
        self._health = health
        self._label = label

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "aisoc_ingest_sink_write_failures",
            "Event writes the sink's disk refused (each answered 503), by sink (file: the event log; spool: the "
            "Kafka outage spool) and reason (disk_full, quota_exceeded, read_only, permission_denied, io_error, "
            "other).", labels=["sink", "reason"])
        for reason, count in list(self._health.failures.items()):
            failures.add_metric([self._label, reason], count)
        yield failures
        unwritable = GaugeMetricFamily(
            "aisoc_ingest_sink_unwritable",
            "1 while the sink's directory cannot take writes (disk full or failing), by sink; summed over the "
            "processes of a daemon with workers.", labels=["sink"])
        unwritable.add_metric([self._label], 0.0 if self._health.error is None else 1.0)
        yield unwritable
