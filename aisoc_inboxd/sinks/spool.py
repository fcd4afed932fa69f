"""
The outage spool: events Kafka could not take, kept on local disk until the forwarder drains them.

A sender's 2xx during a Kafka outage rests on this file being fsynced, so appends go through
L{GroupCommitWriter} (one fsync for all concurrent requests) and every read, roll and delete runs on
that same writer thread, never on the reactor.

Layout: C{directory/NNNNNNNNNNNN-MMMMMMMMMMMMM.seg}, a sequence number (drain order) and the intake
time in milliseconds of the segment's first record (the oldest-age metric, without reading files).
Appends go to the newest segment until it reaches C{segment_bytes}; the forwarder seals the oldest
segment before reading it, and deletes it only once every record in it is acknowledged. After a
restart every segment found is sealed and drained in order; new appends start a new segment.

A record is framed as C{MAGIC | payload length | crc32(payload) | payload}, the payload being a JSON
header line (tenant, template, route, intake time) followed by the event bytes. Appends are
all-or-nothing (L{AppendFile}: a write that fails part-way, say on a full disk, is cut back out
before the senders get their 503), so an acknowledged frame never follows a torn one. A crash can
tear only the tail of the segment being written, after the last fsync, so the reader stops at the
first frame that is short or fails its checksum: what follows it was never acknowledged to a sender.
Segments found at start-up are sealed, never appended to, so a torn tail needs no repair.
"""
from __future__ import annotations

import json
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.sinks.appendfile import AppendFile
from aisoc_inboxd.sinks.group_commit import GroupCommitWriter
from aisoc_inboxd.sinks.health import DiskHealth

MAGIC = b"AIS1"
_FRAME = struct.Struct(">4sII")
_NAME = re.compile(r"^(\d{12})-(\d{13})\.seg$")

Line = tuple[Path, bytes]


def _segment_name(seq: int, first_ms: int) -> str:
    """
    A segment's file name, the layout L{_NAME} reads back.
    """
    return f"{seq:012d}-{first_ms:013d}.seg"


class SpoolFull(Exception):
    """
    Appending would take the spool past its C{max_bytes}; nothing was written.
    """


@dataclass(frozen=True)
class SpooledSegment:
    """
    The records of one sealed segment, in the order they were appended.
    """

    seq: int
    records: list[SinkRecord]


@dataclass
class _Segment:
    """
    What the reactor thread knows of one segment file; only the writer thread touches the file.
    """

    seq: int
    path: Path
    first_received_at: float
    size: int
    sealed: bool
    unflushed: int = 0
    flushed: list[Deferred[None]] = field(default_factory=list)


def encode_record(record: SinkRecord, header: bytes | None = None) -> bytes:
    """
    One framed record: the header line (C{header} when the caller already has it), the event
    bytes, a length and a checksum over both.
    """
    payload = (header or _header(record)) + b"\n" + record.value
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def encode_records(records: Sequence[SinkRecord]) -> bytes:
    """
    C{records} framed back to back; the records of one batch share their header line (tenant,
    template, route, intake time), which is serialised once per run of equal ones.
    """
    frames = []
    meta: tuple[str, str, str, float] | None = None
    header = b""
    for record in records:
        if record[:4] != meta:
            meta, header = record[:4], _header(record)
        frames.append(encode_record(record, header))
    return b"".join(frames)


def _header(record: SinkRecord) -> bytes:
    return json.dumps({"tenant": record.tenant_id, "template": record.template_id,
                       "route": record.route, "received_at": record.received_at},
                      separators=(",", ":")).encode()


def decode_records(data: bytes) -> tuple[list[SinkRecord], int]:
    """
    The records framed in C{data}, and how many trailing bytes were skipped as a torn write.
    """
    records: list[SinkRecord] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _FRAME.size:
            break
        magic, length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        payload = data[start:start + length]
        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        header, _, value = payload.partition(b"\n")
        meta = json.loads(header)
        records.append(SinkRecord(tenant_id=meta["tenant"], template_id=meta["template"],
                                  route=meta["route"], received_at=meta["received_at"],
                                  value=value))
        offset = start + length
    return records, len(data) - offset


class Spool:
    """
    Durable, size-bounded FIFO of L{SinkRecord}s in segment files under C{directory}.

    Call L{open} before use and L{close} after the last read; reads and deletes come from one
    consumer (the Kafka forwarder) at a time. An append the disk refuses fails with
    L{SinkUnavailable}; L{disk} tells whether the directory takes writes.

    @param max_bytes: bound on the bytes of all segments; an append past it raises L{SpoolFull}.
    @param segment_bytes: an append goes to a new segment once the newest has reached this size; the
        forwarder holds one segment in memory at a time.
    """

    _log = Logger()

    def __init__(self, directory: Path, max_bytes: int, reactor: Any,
                 segment_bytes: int = 4 * 1024 * 1024) -> None:
        """
        @param reactor: the reactor the writer thread hands results to, and the clock of the disk checks.
        """
        self._directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._writer: GroupCommitWriter[Line] = GroupCommitWriter(self._flush, reactor,
                                                                  name="kafka-spool")
        self.disk = DiskHealth("the spool", "spool", directory, self._writer, reactor)
        self._segments: dict[int, _Segment] = {}
        self._next_seq = 0
        self._bytes = 0
        self._oldest_received_at: float | None = None
        #: an append was refused for want of room, and nothing was deleted since
        self._refused_full = False
        # Owned by the writer thread: the segment file appends currently go to.
        self._file: AppendFile | None = None

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def bytes(self) -> int:
        """
        Bytes in all segments, counting appends still on their way to disk.
        """
        return self._bytes

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def is_empty(self) -> bool:
        return not self._segments

    def not_writable(self) -> str | None:
        """
        Why an append would be refused now (the spool is full, or its disk is), or None.
        """
        if self._refused_full:
            return f"the spool is full ({self._bytes} of {self._max_bytes} bytes)"
        return self.disk.problem()

    @property
    def oldest_received_at(self) -> float | None:
        """
        Intake time (epoch seconds) of the first record of the oldest segment, or None when empty.
        Kept in an attribute because the metrics endpoint reads it from its own thread.
        """
        return self._oldest_received_at

    def open(self) -> None:
        """
        Find the segments a previous run left and start the writer thread.

        This lists the directory on the calling thread: it runs once at start-up, before any intake
        listens, and sequence numbers for new segments depend on it.
        """
        self._directory.mkdir(parents=True, exist_ok=True)
        found = sorted((int(m[1]), int(m[2]), entry) for entry in os.scandir(self._directory)
                       if (m := _NAME.match(entry.name)))
        for seq, first_ms, entry in found:
            size = entry.stat().st_size
            self._segments[seq] = _Segment(seq, Path(entry.path), first_ms / 1000, size, sealed=True)
            self._bytes += size
        self._next_seq = found[-1][0] + 1 if found else 0
        self._segments_changed()
        if found:
            self._log.info("spool resumes with {segments} segments, {bytes} bytes",
                           segments=len(found), bytes=self._bytes)
        self._writer.start()
        self.disk.start()

    def close(self) -> Deferred[None]:
        """
        Fire once every append is on disk; then the writer thread is stopped and its file closed.
        """
        d = self.disk.stop()
        d.addCallback(lambda _: self._writer.stop())
        d.addCallback(lambda _: self._close_file())
        return d

    def append(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        """
        Fire once C{records} are fsynced.

        @raise SpoolFull: synchronously, before writing anything, when they do not fit.
        """
        if not records:
            return succeed(None)
        data = encode_records(records)
        size = len(data)
        if self._bytes + size > self._max_bytes:
            self._refused_full = True
            raise SpoolFull(f"the spool is full ({self._bytes} of {self._max_bytes} bytes)")
        self._refused_full = False
        segment = self._segment_for(records[0].received_at)
        segment.size += size
        segment.unflushed += 1
        self._bytes += size
        d = self._writer.write([(segment.path, data)])
        d.addBoth(self._appended, segment, size)
        return d

    def oldest(self) -> Deferred[SpooledSegment | None]:
        """
        Seal the oldest segment (later appends go to a new one) and read it, once all its appends
        have reached the disk; None when the spool is empty.
        """
        segment = next(iter(self._segments.values()), None)
        if segment is None:
            return succeed(None)
        segment.sealed = True
        return Deferred.fromCoroutine(self._read(segment))

    def delete(self, seq: int) -> Deferred[None]:
        """
        Remove a segment whose every record has been acknowledged downstream.
        """
        return Deferred.fromCoroutine(self._delete(self._segments[seq]))

    def _segment_for(self, received_at: float) -> _Segment:
        newest = next(reversed(self._segments.values()), None)
        if newest is not None and not newest.sealed and newest.size < self._segment_bytes:
            return newest
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        name = _segment_name(seq, round(received_at * 1000))
        segment = _Segment(seq, self._directory / name, received_at, 0, sealed=False)
        if newest is not None:
            newest.sealed = True
        self._segments[seq] = segment
        self._segments_changed()
        return segment

    def _appended(self, result: object, segment: _Segment, size: int) -> None:
        segment.unflushed -= 1
        if isinstance(result, Failure):
            # The failed write was cut back out of the file (or the file refuses writes until it is).
            segment.size -= size
            self._bytes -= size
        if segment.unflushed == 0:
            waiting, segment.flushed = segment.flushed, []
            for d in waiting:
                d.callback(None)
        if isinstance(result, Failure):
            result.trap(OSError)
            raise self.disk.failed(result.value)
        self.disk.succeeded()

    async def _read(self, segment: _Segment) -> SpooledSegment:
        if segment.unflushed:
            d: Deferred[None] = Deferred()
            segment.flushed.append(d)
            await d
        records, skipped = await self._writer.call(_read_file, segment.path)
        if skipped:
            self._log.warn("spool segment {path}: skipped {skipped} torn bytes after "
                           "{records} records", path=str(segment.path), skipped=skipped,
                           records=len(records))
        return SpooledSegment(segment.seq, records)

    async def _delete(self, segment: _Segment) -> None:
        await self._writer.call(self._unlink, segment.path)
        del self._segments[segment.seq]
        self._bytes -= segment.size
        self._refused_full = False
        self._segments_changed()

    def _segments_changed(self) -> None:
        first = next(iter(self._segments.values()), None)
        self._oldest_received_at = None if first is None else first.first_received_at

    # The methods below run on the writer thread.

    def _flush(self, lines: Sequence[Line]) -> None:
        for path, chunk in _runs(lines):
            self._file_for(path).append(chunk)

    def _file_for(self, path: Path) -> AppendFile:
        if self._file is not None and self._file.path == path:
            return self._file
        self._close_file()
        file = AppendFile.open(path)
        try:
            _fsync_dir(self._directory)  # the segment's name must outlive a crash before its records are acknowledged
        except OSError:
            file.close()
            raise
        self._file = file
        return file

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _unlink(self, path: Path) -> None:
        if self._file is not None and self._file.path == path:
            self._close_file()
        path.unlink(missing_ok=True)
        _fsync_dir(self._directory)


def _runs(lines: Sequence[Line]) -> Iterator[tuple[Path, bytes]]:
    """
    Consecutive lines for the same file, joined, so each file gets one write and one fsync.
    """
    start = 0
    for i in range(1, len(lines) + 1):
        if i == len(lines) or lines[i][0] != lines[start][0]:
            yield lines[start][0], b"".join(chunk for _, chunk in lines[start:i])
            start = i


def _read_file(path: Path) -> tuple[list[SinkRecord], int]:
    try:
        return decode_records(path.read_bytes())
    except FileNotFoundError:
        return [], 0  # its first write failed before the file could be created


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def absorb(directory: Path, orphan: Path) -> int:
    """
    Move the segments of a spool nobody drains any more (a worker process the config no longer
    has) behind C{directory}'s own, in their order, and remove C{orphan}. Runs at start-up, before
    either spool is opened. Returns the number of segments moved.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ours = [int(m[1]) for name in os.listdir(directory) if (m := _NAME.match(name))]
    theirs = sorted((int(m[1]), int(m[2]), name) for name in os.listdir(orphan) if (m := _NAME.match(name)))
    next_seq = max(ours, default=-1) + 1
    for offset, (_, first_ms, name) in enumerate(theirs):
        os.replace(orphan / name, directory / _segment_name(next_seq + offset, first_ms))
    _fsync_dir(directory)
    try:
        orphan.rmdir()
    except OSError:
        pass  # something else is in it: leave it for the operator to see
    return len(theirs)
