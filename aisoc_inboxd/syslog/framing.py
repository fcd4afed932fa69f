"""
RFC 6587 framing of syslog over a byte stream (TCP, TLS), as an incremental decoder: feed it whatever
the transport delivers, get back the complete frames.

Both framings of RFC 6587 are accepted, and detected per frame, because senders and relays mix them:

  - B{octet counting} (section 3.4.1): C{MSG-LEN SP SYSLOG-MSG}, MSG-LEN in octets, no trailer. A
    frame is read this way when it starts with a count (1-10 digits, no leading zero), one space and
    C{<} (a syslog message always starts with its PRI). That last check keeps a PRI-less line such
    as C{1493738863000 host CEF:...} or C{123 apples} from being taken for a count. The count is
    trusted: LF and NUL inside a counted frame are part of it.
  - B{non-transparent framing} (section 3.4.2) otherwise: the frame runs to the next LF or NUL, the
    two trailers section 3.4.2 names (Python's C{SysLogHandler} ends every record with NUL; a NUL is
    no valid syslog text anyway). A CR before the trailer is dropped (CRLF senders), and empty
    frames (blank lines, a stray trailer after an octet-counted frame) are skipped.

A frame longer than C{max_frame_size} is dropped and counted in C{oversized}; the stream stays in
sync: the rest of an octet-counted frame is skipped by its count, a non-transparent frame is
discarded up to its trailer. A count too large to skip (over L{MAX_SKIPPED_FRAME} and over
C{max_frame_size}: a broken or hostile sender, not a long message) gives the stream up instead:
L{FrameDecoder.abandoned} is set, nothing more is decoded, and the caller closes the connection
rather than read and discard up to a gigabyte. No Twisted here: a Protocol wraps this and calls
L{FrameDecoder.end} on connection loss.
"""
from __future__ import annotations

_LF = 0x0A
_CR = 0x0D
_NUL = 0x00
_SPACE = 0x20
_LESS_THAN = 0x3C
_MAX_COUNT_DIGITS = 10

#: the largest oversized octet-counted frame skipped by its count; a larger claim abandons the stream
MAX_SKIPPED_FRAME = 1 << 20


class FrameDecoder:
    """
    Splits one connection's byte stream into syslog frames.

    @ivar oversized: frames dropped for exceeding C{max_frame_size}.
    @ivar truncated: octet-counted frames cut short by the end of the stream.
    @ivar abandoned: the MSG-LEN of a frame too large to skip, after which the stream is no longer
        decoded (the caller closes the connection); None while the stream is readable.
    """

    def __init__(self, max_frame_size: int = 64 * 1024) -> None:
        self.max_frame_size = max_frame_size
        self.oversized = 0
        self.truncated = 0
        self.abandoned: int | None = None
        self._skip_limit = max(max_frame_size, MAX_SKIPPED_FRAME)
        self._buffer = bytearray()
        self._skip = 0  # octets of an oversized octet-counted frame still to discard
        self._discarding = False  # inside an oversized non-transparent frame: drop up to its trailer
        self._next_lf = -1  # within one feed: the next LF at or after the position, or -1 for none

    def feed(self, data: bytes) -> list[bytes]:
        """
        The frames completed by C{data}, in order; partial frames wait for the next feed.
        """
        if self.abandoned is not None:
            return []
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        end = len(buffer)
        self._next_lf = buffer.find(b"\n")
        while pos < end:
            if self._skip:
                taken = min(self._skip, end - pos)
                self._skip -= taken
                pos += taken
                continue
            if self._discarding:
                trailer = self._trailer(pos, end)
                if trailer < 0:
                    pos = end
                    break
                self._discarding = False
                pos = trailer + 1
                continue
            if buffer[pos] in (_LF, _CR, _NUL):
                pos += 1
                continue
            count, start = _octet_count(buffer, pos)
            if start < 0:
                break  # a count may be arriving: wait for the bytes that decide
            if count:
                if count > self.max_frame_size:
                    self.oversized += 1
                    if count > self._skip_limit:
                        self.abandoned = count
                        buffer.clear()
                        return frames
                    self._skip = count
                    pos = start
                elif end - start >= count:
                    frames.append(bytes(buffer[start:start + count]))
                    pos = start + count
                else:
                    break
                continue
            trailer = self._trailer(pos, end)
            if trailer < 0:
                if end - pos > self.max_frame_size:
                    self.oversized += 1
                    self._discarding = True
                    pos = end
                break
            self._append_line(frames, buffer[pos:trailer])
            pos = trailer + 1
        del buffer[:pos]
        return frames

    def end(self) -> list[bytes]:
        """
        At the end of the stream: the last non-transparent frame if its trailer never came. An
        unfinished octet-counted frame is counted in C{truncated} and dropped.
        """
        rest = bytes(self._buffer)
        self._buffer.clear()
        skipping = self._skip or self._discarding
        self._skip, self._discarding = 0, False
        frames: list[bytes] = []
        if rest and not skipping:
            count, _ = _octet_count(rest, 0)
            if count:
                self.truncated += 1
            else:
                self._append_line(frames, rest)
        return frames

    def _trailer(self, pos: int, end: int) -> int:
        """
        The index of the LF or NUL ending the frame at C{pos}, or -1 if neither has arrived. The
        next LF is remembered across calls of one feed and the NUL search stops at it, so a feed
        costs one pass over the buffer whichever trailer the sender uses.
        """
        if 0 <= self._next_lf < pos:
            self._next_lf = self._buffer.find(b"\n", pos)
        newline = self._next_lf
        nul = self._buffer.find(b"\x00", pos, newline if newline >= 0 else end)
        return nul if nul >= 0 else newline

    def _append_line(self, frames: list[bytes], line: bytes | bytearray) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_frame_size:
            self.oversized += 1
        elif line:
            frames.append(bytes(line))


def _octet_count(buffer: bytes | bytearray, pos: int) -> tuple[int, int]:
    """
    C{(count, start of message)} when an octet-counted frame starts at C{pos}; C{(0, pos)} when a
    non-transparent one does; C{(0, -1)} when the bytes so far could still be either.
    """
    end = min(len(buffer), pos + _MAX_COUNT_DIGITS + 1)
    digits_end = pos
    while digits_end < end and 0x30 <= buffer[digits_end] <= 0x39:
        digits_end += 1
    digits = digits_end - pos
    if digits == 0 or buffer[pos] == 0x30 or digits > _MAX_COUNT_DIGITS:
        return 0, pos
    for offset, expected in ((0, _SPACE), (1, _LESS_THAN)):
        if digits_end + offset == len(buffer):
            return 0, -1
        if buffer[digits_end + offset] != expected:
            return 0, pos
    return int(buffer[pos:digits_end]), digits_end + 1
