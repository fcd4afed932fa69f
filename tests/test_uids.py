"""
The event UIDs (L{aisoc_inboxd.normalizer.uids}): the pool's column-wise formatting against the
standard library's text of each version 4 UUID, over hypothesis bytes and the bytes that set or
clear every version and variant bit; and what C{new_uid} hands out.
"""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from aisoc_inboxd.normalizer.uids import BATCH, new_uid, uuid_texts, uuid_texts_one_by_one

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@given(st.lists(st.binary(min_size=16, max_size=16), max_size=40).map(b"".join))
def test_uuid_texts_are_the_standard_librarys(raw: bytes) -> None:
    assert uuid_texts(raw) == uuid_texts_one_by_one(raw)


def test_every_nibble_in_every_position() -> None:
    """
    Each of the 16 nibble values in every one of the 32 positions (the version and variant ones
    included), in one call.
    """
    raw = b"".join(bytes([value * 0x11]) * 16 for value in range(16)) + bytes(range(0, 256, 16)) + bytes(range(15, 256, 16))
    assert uuid_texts(raw) == uuid_texts_one_by_one(raw)


def test_new_uid_hands_out_fresh_version_4_texts() -> None:
    uids = [new_uid() for _ in range(3 * BATCH + 1)]  # past a refill or two
    assert all(UUID4.fullmatch(uid) for uid in uids)
    assert len(set(uids)) == len(uids)
