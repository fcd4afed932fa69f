"""
RFC 6587 framing of syslog over a byte stream (TCP, TLS), as an incremental decoder: feed it whatever
the transport delivers, get back the complete frames.

Both framings of RFC 6587 are accepted, and detected per frame, because senders and relays mix them:

  - B{octet counting} (section 3.4.1): C{MSG-LEN SP SYSLOG-MSG}, MSG-LEN in octets, no trailer. A
    frame is read this way when it starts with a count (1-10 digits, no leading zero), one space and
    C{<} (a syslog message always starts with its PRI). That last check keeps a PRI-less line such
    as C{1493738863000 host CEF:...} or C{123 apples} from being taken for a count.
  - B{non-transparent framing} (section 3.4.2) otherwise: the frame runs to the next LF. A CR before
    the LF is dropped (CRLF senders), and empty frames (blank lines, a stray LF after an
    octet-counted frame) are skipped.

A frame longer than C{max_frame_size} is dropped and counted in C{oversized}; the stream stays in
sync: the rest of an octet-counted frame is skipped by its count, an LF frame is discarded up to the
next LF. No Twisted here: a Protocol wraps this and calls L{FrameDecoder.end} on connection loss.
"""
from __future__ import annotations

_LF = 0x0A
_CR = 0x0D
_SPACE = 0x20
_LESS_THAN = 0x3C
_MAX_COUNT_DIGITS = 10


class FrameDecoder:
    """
    Splits one connection's byte stream into syslog frames.

    @ivar oversized: frames dropped for exceeding C{max_frame_size}.
    @ivar truncated: octet-counted frames cut short by the end of the stream.
    """

    def __init__(self, max_frame_size: int = 64 * 1024) -> None:
        self.max_frame_size = max_frame_size
        self.oversized = 0
        self.truncated = 0
        self._buffer = bytearray()
        self._skip = 0  # octets of an oversized octet-counted frame still to discard
        self._discarding = False  # inside an oversized LF frame: drop up to the next LF

    def feed(self, data: bytes) -> list[bytes]:
        """
        The frames completed by C{data}, in order; partial frames wait for the next feed.
        """
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            if self._skip:
                taken = min(self._skip, end - pos)
                self._skip -= taken
                pos += taken
                continue
            if self._discarding:
                newline = buffer.find(b"\n", pos)
                if newline < 0:
                    pos = end
                    break
                self._discarding = False
                pos = newline + 1
                continue
            if buffer[pos] in (_LF, _CR):
                pos += 1
                continue
            count, start = _octet_count(buffer, pos)
            if start < 0:
                break  # a count may be arriving: wait for the bytes that decide
            if count:
                if count > self.max_frame_size:
                    self.oversized += 1
                    self._skip = count
                    pos = start
                elif end - start >= count:
                    frames.append(bytes(buffer[start:start + count]))
                    pos = start + count
                else:
                    break
                continue
            newline = buffer.find(b"\n", pos)
            if newline < 0:
                if end - pos > self.max_frame_size:
                    self.oversized += 1
                    self._discarding = True
                    pos = end
                break
            self._append_line(frames, buffer[pos:newline])
            pos = newline + 1
        del buffer[:pos]
        return frames

    def end(self) -> list[bytes]:
        """
        At the end of the stream: the last LF-framed frame if its LF never came. An unfinished
        octet-counted frame is counted in C{truncated} and dropped.
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

    def _append_line(self, frames: list[bytes], line: bytes | bytearray) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_frame_size:
            self.oversized += 1
        elif line:
            frames.append(bytes(line))


def _octet_count(buffer: bytes | bytearray, pos: int) -> tuple[int, int]:
    """
    C{(count, start of message)} when an octet-counted frame starts at C{pos}; C{(0, pos)} when an
    LF-framed one does; C{(0, -1)} when the bytes so far could still be either.
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
