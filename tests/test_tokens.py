"""
Token minting, fingerprints, the resolution cache (LRU + TTL + invalidate, unknown tokens apart) and
the per-address budget of store lookups, on a fake clock.
"""
from __future__ import annotations

import base64
import hashlib

from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from aisoc_inboxd.metrics import Metrics, count
from aisoc_inboxd.store import StoreError, TokenRecord
from aisoc_inboxd.tenants import InvalidTenant, check_tenant_id
from aisoc_inboxd.tokens import (LookupBudget, LookupBudgetSpent, TokenCache, TokenResolver, fingerprint,
                                 looks_like_token, mint_token)


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


@pytest.mark.parametrize("tenant", ["acme", "default", "tenant-a", "t1", "a", "Org_7.prod",
                                    "0b8e5a4c-3f1d-4e2a-9c7b-5d6e7f8a9b0c", "x" * 64])
def test_tenant_ids_in_use_are_valid(tenant: str) -> None:
    """The tenant ids the walkthrough, the embedded default and the tests use, UUIDs, and 64 characters pass."""
    assert check_tenant_id(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", "a b/c", "-acme", ".hidden", "x" * 65, "acmé", "a\nb", "tenant;drop", "a/b"])
def test_other_tenant_ids_are_refused_naming_the_rule(tenant: str) -> None:
    """Empty, spaces, slashes, a leading dot or dash, non-ASCII and over 64 characters are refused with the rule."""
    with pytest.raises(InvalidTenant) as error:
        check_tenant_id(tenant)
    assert str(error.value) == (f"invalid tenant id {tenant!r}: a tenant id is 1 to 64 characters of "
                                f"A-Z a-z 0-9 . _ -, starting with a letter or a digit")


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


# -- unknown tokens: their own bounded set, and a lookup budget per client address ----------------

class CountingStore:
    """
    A store that knows some fingerprints and counts the lookups that reach it; C{hold} keeps every
    answer back until C{release}, as a slow database would.
    """

    def __init__(self, known: frozenset[str] = frozenset(), hold: bool = False) -> None:
        self.known = known
        self.lookups = 0
        self.hold = hold
        self.held: list[tuple[Deferred[TokenRecord | None], TokenRecord | None]] = []

    def resolve(self, fp: str) -> Deferred[TokenRecord | None]:
        self.lookups += 1
        answer = record(fp) if fp in self.known else None
        if not self.hold:
            return succeed(answer)
        d: Deferred[TokenRecord | None] = Deferred()
        self.held.append((d, answer))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, answer in held:
            d.callback(answer)


def resolved(d: Any) -> Any:
    """The result of a coroutine that must not wait on anything."""
    results: list[Any] = []
    ensureDeferred(d).addBoth(results.append)
    assert results, "the lookup is still waiting"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def test_a_flood_of_unknown_tokens_evicts_no_valid_token() -> None:
    """20 valid tokens cached, then 10,000 distinct random tokens: every valid one is still served
    from the cache (the store is not asked again), and the unknown ones stay within their own bound."""
    valid = [mint_token() for _ in range(20)]
    store = CountingStore(frozenset(fingerprint(t) for t in valid))
    cache = TokenCache(Clock(), max_size=10_000, negative_max_size=10_000)
    resolver = TokenResolver(store, cache)  # type: ignore[arg-type]
    for token in valid:
        assert resolved(resolver.resolve(token)) is not None
    for _ in range(10_000):
        assert resolved(resolver.resolve(mint_token())) is None
    assert store.lookups == 10_020
    for token in valid:
        assert resolved(resolver.resolve(token)) == record(fingerprint(token))
    assert store.lookups == 10_020
    assert (len(cache), cache.unknown) == (20, 10_000)


def test_unknown_tokens_have_their_own_bound_and_ttl() -> None:
    """Past negative_max_size the oldest unknown token is forgotten (asked again), valid ones stay;
    an unknown entry lasts negative_ttl, a valid one ttl."""
    clock = Clock()
    sizes: list[int] = []
    cache = TokenCache(clock, ttl=60, negative_ttl=5, max_size=2, negative_max_size=3, on_negative_size=sizes.append)
    cache.put("v", record("v"))
    for fp in "abcde":
        cache.put(fp, None)
    assert [cache.get(fp) for fp in "abcde"] == [(False, None)] * 2 + [(True, None)] * 3
    assert cache.get("v") == (True, record("v"))
    assert sizes[-1] == 3
    clock.advance(5)
    assert cache.get("e") == (False, None)
    assert cache.get("v")[0]


def test_a_client_spends_its_lookups_on_unknown_tokens_only() -> None:
    """With 5 lookups a second per address: the 6th unknown token from one address in the same instant
    is refused without asking the store, for about 1/5 s; another address is not affected; lookups that
    find a valid token are given back, so valid tokens never run out; the budget refills with time."""
    clock = Clock()
    valid = [mint_token() for _ in range(50)]
    store = CountingStore(frozenset(fingerprint(t) for t in valid))
    metrics = Metrics()
    resolver = TokenResolver(store, TokenCache(clock), LookupBudget(clock, 5), metrics.token_store)  # type: ignore[arg-type]
    for _ in range(5):
        assert resolved(resolver.resolve(mint_token(), "192.0.2.1")) is None
    with pytest.raises(LookupBudgetSpent) as spent:
        resolved(resolver.resolve(mint_token(), "192.0.2.1"))
    assert 0 < spent.value.wait <= 0.2
    assert store.lookups == 5
    assert resolved(resolver.resolve(mint_token(), "198.51.100.7")) is None
    for token in valid:
        assert resolved(resolver.resolve(token, "198.51.100.7")) is not None
    assert store.lookups == 56
    clock.advance(0.2)
    assert resolved(resolver.resolve(mint_token(), "192.0.2.1")) is None
    assert (count(metrics.token_store.lookups), count(metrics.token_store.lookups_refused)) == (57, 1)


def test_an_ipv6_client_counts_by_its_slash_64() -> None:
    """Addresses of one IPv6 /64 share a budget (a host there may use any of them); an IPv4-mapped
    address counts as its IPv4 address."""
    clock = Clock()
    resolver = TokenResolver(CountingStore(), TokenCache(clock), LookupBudget(clock, 2))  # type: ignore[arg-type]
    for client in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"):
        assert resolved(resolver.resolve(mint_token(), client)) is None
    with pytest.raises(LookupBudgetSpent):
        resolved(resolver.resolve(mint_token(), "2001:db8:1:2::abcd"))
    assert resolved(resolver.resolve(mint_token(), "2001:db8:1:3::1")) is None
    for client in ("192.0.2.9", "::ffff:192.0.2.9"):
        assert resolved(resolver.resolve(mint_token(), client)) is None
    with pytest.raises(LookupBudgetSpent):
        resolved(resolver.resolve(mint_token(), "192.0.2.9"))


def test_concurrent_lookups_cannot_overdraw_the_budget() -> None:
    """Lookups are paid for before they are made: 50 concurrent unknown tokens from one address while
    the store is slow reach it 5 times, not 50."""
    clock = Clock()
    store = CountingStore(hold=True)
    resolver = TokenResolver(store, TokenCache(clock), LookupBudget(clock, 5))  # type: ignore[arg-type]
    outcomes: list[Any] = []
    for _ in range(50):
        ensureDeferred(resolver.resolve(mint_token(), "192.0.2.1")).addBoth(outcomes.append)
    store.release()
    assert store.lookups == 5
    assert sum(isinstance(o, Failure) and o.check(LookupBudgetSpent) is not None for o in outcomes) == 45
    assert outcomes.count(None) == 5


def test_concurrent_misses_for_one_valid_token_share_one_lookup() -> None:
    """32 requests with one valid token on a cold cache while the store is slow (a burst at start, or
    when the entry expires): one store lookup, every request gets the record, none is refused as a
    flood of unknown tokens though the address may make only one lookup a second."""
    clock = Clock()
    token = mint_token()
    store = CountingStore(frozenset([fingerprint(token)]), hold=True)
    resolver = TokenResolver(store, TokenCache(clock), LookupBudget(clock, 1))  # type: ignore[arg-type]
    outcomes: list[Any] = []
    for _ in range(32):
        ensureDeferred(resolver.resolve(token, "192.0.2.1")).addBoth(outcomes.append)
    assert outcomes == [] and store.lookups == 1
    store.release()
    assert outcomes == [record(fingerprint(token))] * 32
    store.hold = False
    assert resolved(resolver.resolve(mint_token(), "192.0.2.1")) is None  # the lookup was given back


def test_a_failed_shared_lookup_fails_every_request_waiting_for_it() -> None:
    """When the one store lookup fails, every request that waited for it fails with the store's
    error; the next request asks the store again."""
    clock = Clock()
    token = mint_token()
    store = CountingStore(frozenset([fingerprint(token)]), hold=True)
    resolver = TokenResolver(store, TokenCache(clock), LookupBudget(clock, 5))  # type: ignore[arg-type]
    outcomes: list[Any] = []
    for _ in range(3):
        ensureDeferred(resolver.resolve(token, "192.0.2.1")).addBoth(outcomes.append)
    (held, _), = store.held
    held.errback(StoreError("the database went away"))
    assert [o.check(StoreError) for o in outcomes] == [StoreError] * 3
    store.hold = False
    assert resolved(resolver.resolve(token, "192.0.2.1")) == record(fingerprint(token))
    assert store.lookups == 2
