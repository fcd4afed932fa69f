"""
Random (version 4) UUIDs for C{metadata.uid}, formatted in batches.

C{str(uuid.uuid4())} costs one C{os.urandom} system call and a C{UUID} object per event (~5 µs,
5 % of the NDJSON-into-Kafka profile). Here one C{os.urandom} call fills L{BATCH} UUIDs at once and
they are handed out one by one: the same 122 random bits and the same text as C{uuid4}, formatted
by a few C-level copies per batch.
A forked worker drops what it inherited, so two processes never hand out the same UUIDs.
"""
from __future__ import annotations

import os
from uuid import UUID

#: UUIDs formatted per C{os.urandom} call
BATCH = 256

_pool: list[str] = []


def _fill() -> list[str]:
    """
    L{BATCH} fresh version 4 UUIDs as text.
    """
    return uuid_texts(os.urandom(16 * BATCH))


#: a hex digit of byte 8's high nibble → that nibble as the variant leaves it (binary 10, then the
#: digit's two low bits)
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
#: (position in the 36 characters of the text, position in the 32 hex digits) of every hex digit
#: taken as it is: all but 12 (the version) and 16 (the variant)
_COPIED = tuple((digit + (digit >= 8) + (digit >= 12) + (digit >= 16) + (digit >= 20), digit)
                for digit in range(32) if digit not in (12, 16))


def uuid_texts(raw: bytes) -> list[str]:
    """
    The version 4 UUID text of each 16 bytes of C{raw}: what L{uuid_texts_one_by_one} gives, with
    no Python step per UUID. RFC 9562 puts the version (4) in the high nibble of byte 6 and the
    variant (binary 10) in the two high bits of byte 8, as C{uuid.UUID(version=4)} does. The texts
    are laid out one per line, 37 bytes apart, a column at a time: each column one strided copy
    of every UUID's hex digit at that position.
    """
    count = len(raw) // 16
    digits = raw.hex().encode()
    lines = bytearray(b"-" * (37 * count))  # the dashes stay where no column is copied
    for position, digit in _COPIED:
        lines[position::37] = digits[digit::32]
    lines[14::37] = b"4" * count
    lines[19::37] = digits[16::32].translate(_VARIANT)
    lines[36::37] = b"\n" * count
    return lines.decode().split()


def uuid_texts_one_by_one(raw: bytes) -> list[str]:
    """
    The reference for L{uuid_texts}: the standard library's text of each version 4 UUID.
    """
    return [str(UUID(bytes=raw[start:start + 16], version=4)) for start in range(0, len(raw), 16)]


def new_uid() -> str:
    """
    A fresh random UUID as text (C{xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx}).

    C{list.pop} is atomic, so threads never get the same one; a thread that finds the pool empty
    refills it (two refilling at once only add more fresh UUIDs).
    """
    while True:
        try:
            return _pool.pop()
        except IndexError:
            _pool.extend(_fill())


os.register_at_fork(after_in_child=_pool.clear)
