"""
Token minting, fingerprints and the resolution cache (LRU + TTL + invalidate) on a fake clock.
"""
from __future__ import annotations

import base64
import hashlib

from twisted.internet.task import Clock

from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.tokens import TokenCache, fingerprint, looks_like_token, mint_token


def record(fp: str = "f" * 64) -> TokenRecord:
    return TokenRecord(fingerprint=fp, tenant_id="t1", template_id="generic-json")


def test_mint_is_prefix_and_lowercase_base32_of_32_random_bytes() -> None:
    """A token is aisoc_inbox_ plus unpadded lowercase base32 of 32 bytes, and never repeats."""
    tokens = {mint_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("aisoc_inbox_")
        body = token[len("aisoc_inbox_"):]
        assert body == body.lower() and "=" not in body and len(body) == 52
        assert len(base64.b32decode(body.upper() + "====")) == 32
        assert looks_like_token(token)


def test_fingerprint_is_sha256_hex_of_the_token() -> None:
    """Only sha256(token) hex is stored."""
    token = mint_token()
    assert fingerprint(token) == hashlib.sha256(token.encode()).hexdigest()


def test_shape_check_refuses_near_misses() -> None:
    """Wrong prefix, case, length or alphabet never reaches the cache or the store."""
    token = mint_token()
    for bad in ["", "aisoc_inbox_", token[:-1], token + "a", token.upper(), token.replace("aisoc", "aisoq"),
                token[:-1] + "1", token[:-1] + "="]:
        assert not looks_like_token(bad), bad


def test_cache_entry_expires_after_ttl() -> None:
    """A resolved token is served from the cache for 60 s, then asked of the store again."""
    clock = Clock()
    cache = TokenCache(clock, ttl=60)
    cache.put("a", record("a"))
    clock.advance(59.9)
    assert cache.get("a") == (True, record("a"))
    clock.advance(0.1)
    assert cache.get("a") == (False, None)
    assert len(cache) == 0


def test_unknown_tokens_are_cached_briefly() -> None:
    """A miss in the store is remembered for the negative TTL only."""
    clock = Clock()
    cache = TokenCache(clock, ttl=60, negative_ttl=5)
    cache.put("x", None)
    assert cache.get("x") == (True, None)
    clock.advance(5)
    assert cache.get("x") == (False, None)


def test_invalidate_forgets_at_once() -> None:
    """The rotation flow's invalidate() makes the next lookup go to the store."""
    sizes: list[int] = []
    cache = TokenCache(Clock(), on_size=sizes.append)
    cache.put("a", record("a"))
    cache.put("b", record("b"))
    cache.invalidate("a")
    assert cache.get("a") == (False, None)
    assert cache.get("b")[0]
    cache.invalidate()
    assert len(cache) == 0
    assert sizes == [1, 2, 1, 0]


def test_lru_bound_evicts_least_recently_used() -> None:
    """The cache never holds more than max_size entries; a recent hit survives eviction."""
    cache = TokenCache(Clock(), max_size=2)
    cache.put("a", record("a"))
    cache.put("b", record("b"))
    cache.get("a")
    cache.put("c", record("c"))
    assert cache.get("b") == (False, None)
    assert cache.get("a")[0] and cache.get("c")[0]
