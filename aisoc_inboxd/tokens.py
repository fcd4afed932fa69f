"""
Inbox tokens: minting, fingerprints, and resolving a presented token to its tenant and template.

A token is C{aisoc_inbox_} followed by the unpadded lowercase base32 of 32 random bytes. Only its
SHA-256 fingerprint is ever stored; the token itself is shown once at mint. Resolution goes through
an LRU cache with a TTL (the spec's 60 s), so a rotated or revoked token stops resolving within the
TTL, or at once when the rotation flow calls L{TokenCache.invalidate}.

Unknown tokens are remembered apart from valid ones, so a flood of random tokens cycles only its
own bounded set; and each client address may send only so many store lookups a second for tokens
the cache does not know (L{LookupBudget}), so such a flood reaches the store at a bounded rate.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from aisoc_inboxd.metrics import TokenStoreMetrics
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.store import PUSH_WINDOW, PushTotals, Store, TokenRecord
from aisoc_inboxd.tenants import check_tenant_id

TOKEN_PREFIX = "aisoc_inbox_"
_TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"aisoc_inbox_[a-z2-7]{52}\Z")


def mint_token() -> str:
    """
    A fresh token: the prefix and 256 random bits, base32 without padding, lowercase.
    """
    body = base64.b32encode(secrets.token_bytes(_TOKEN_BYTES)).decode("ascii").rstrip("=")
    return TOKEN_PREFIX + body.lower()


def fingerprint(token: str) -> str:
    """
    The SHA-256 hex digest that the store keeps in place of the token.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(candidate: str) -> bool:
    """
    Whether C{candidate} has a minted token's shape; anything else cannot resolve, so it is refused
    without a cache or store lookup.
    """
    return _TOKEN_SHAPE.match(candidate) is not None


def log_id(fingerprint_hex: str) -> str:
    """
    The part of a fingerprint that may appear in logs, metrics and status pages.
    """
    return fingerprint_hex[:8]


class TokenCache:
    """
    Fingerprint → resolved record, each entry valid for a TTL on the injected clock: valid tokens
    in a bounded LRU, unknown ones (C{None}) in a bounded set of their own, oldest dropped first.
    """

    def __init__(self, clock: IReactorTime, ttl: float = 60.0, negative_ttl: float = 5.0,
                 max_size: int = 10_000, negative_max_size: int = 10_000,
                 on_size: Callable[[int], None] | None = None,
                 on_negative_size: Callable[[int], None] | None = None) -> None:
        """
        @param on_size: told the number of valid tokens cached whenever it changes.
        @param on_negative_size: told the number of unknown tokens remembered whenever it changes.
        """
        self._clock = clock
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_size = max_size
        self._negative_max_size = negative_max_size
        self._entries: OrderedDict[str, tuple[float, TokenRecord]] = OrderedDict()
        # one TTL for all: insertion order is expiry order, so the oldest entry is the first to go
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._on_size = on_size or (lambda size: None)
        self._on_negative_size = on_negative_size or (lambda size: None)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def unknown(self) -> int:
        """
        Unknown tokens remembered.
        """
        return len(self._unknown)

    def get(self, fingerprint_hex: str) -> tuple[bool, TokenRecord | None]:
        """
        C{(True, record)} on a fresh hit (record is C{None} for a cached unknown token),
        C{(False, None)} on a miss or an expired entry.
        """
        now = self._clock.seconds()
        entry = self._entries.get(fingerprint_hex)
        if entry is not None:
            expires, record = entry
            if now < expires:
                self._entries.move_to_end(fingerprint_hex)
                return True, record
            del self._entries[fingerprint_hex]
            self._on_size(len(self._entries))
            return False, None
        expires_unknown = self._unknown.get(fingerprint_hex)
        if expires_unknown is None:
            return False, None
        if now < expires_unknown:
            return True, None
        del self._unknown[fingerprint_hex]
        self._on_negative_size(len(self._unknown))
        return False, None

    def put(self, fingerprint_hex: str, record: TokenRecord | None) -> None:
        now = self._clock.seconds()
        if record is None:
            self._unknown.pop(fingerprint_hex, None)
            self._unknown[fingerprint_hex] = now + self._negative_ttl
            while len(self._unknown) > self._negative_max_size:
                self._unknown.popitem(last=False)
            self._on_negative_size(len(self._unknown))
            return
        if self._unknown.pop(fingerprint_hex, None) is not None:
            self._on_negative_size(len(self._unknown))
        self._entries[fingerprint_hex] = (now + self._ttl, record)
        self._entries.move_to_end(fingerprint_hex)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
        self._on_size(len(self._entries))

    def invalidate(self, fingerprint_hex: str | None = None) -> None:
        """
        Forget one fingerprint, or everything when none is given.
        """
        if fingerprint_hex is None:
            self._entries.clear()
            self._unknown.clear()
            self._on_negative_size(0)
        else:
            self._entries.pop(fingerprint_hex, None)
            if self._unknown.pop(fingerprint_hex, None) is not None:
                self._on_negative_size(len(self._unknown))
        self._on_size(len(self._entries))


class LookupBudgetSpent(Exception):
    """
    The client address spent its store lookups for unknown tokens; C{wait} seconds until the next.
    """

    def __init__(self, wait: float) -> None:
        super().__init__(f"retry after {wait:.1f} s")
        self.wait = wait


class LookupBudget:
    """
    Store lookups per second per client address for tokens the cache does not know: a token bucket
    of one second's worth per address (per /64 for IPv6, which hands a host a whole /64). A lookup is
    paid for before it is made (so no number of concurrent requests gets past the rate) and refunded
    when it finds a valid token, so only unknown tokens spend the budget.
    """

    def __init__(self, clock: IReactorTime, per_second: float) -> None:
        self._buckets = RateLimiter(clock, per_minute=per_second * 60, burst=max(1.0, per_second))

    def spend(self, client: str) -> None:
        """
        @raise LookupBudgetSpent: when C{client} has no lookup left right now.
        """
        wait = self._buckets.acquire(_budget_key(client))
        if wait:
            raise LookupBudgetSpent(wait)

    def refund(self, client: str) -> None:
        self._buckets.refund(_budget_key(client))


def _budget_key(client: str) -> str:
    """
    An IPv4 address as it is (also when IPv4-mapped), an IPv6 address as its /64.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class TokenResolver:
    """
    Presented token → active L{TokenRecord}, through the cache, asking the store only on a miss
    (and only within the client's L{LookupBudget}, when there is one).

    Concurrent misses for one fingerprint share a single store lookup: the requests that arrive
    while it is out wait for its answer and spend no budget. Otherwise a burst of requests with one
    valid token on a cold cache (at start, or when its entry expires) would each pay for a lookup
    before the first refund, and all but the first few would be refused as a flood of unknown tokens.
    """

    def __init__(self, store: Store, cache: TokenCache, budget: LookupBudget | None = None,
                 metrics: TokenStoreMetrics | None = None) -> None:
        self._store = store
        self._cache = cache
        self._budget = budget
        self._metrics = metrics
        #: fingerprint → the requests waiting for its store lookup, which is out
        self._lookups: dict[str, list[Deferred[TokenRecord | None]]] = {}

    async def resolve(self, token: str, client: str | None = None) -> TokenRecord | None:
        """
        @param client: the address the request came from, whose budget a store lookup spends.
        @raise LookupBudgetSpent: the client has no store lookup left; the store was not asked.
        @raise aisoc_inboxd.store.StoreError: the store did not answer.
        """
        if not looks_like_token(token):
            return None
        fp = fingerprint(token)
        hit, record = self._cache.get(fp)
        if hit:
            return record
        answer: Deferred[TokenRecord | None] = Deferred()
        waiting = self._lookups.get(fp)
        if waiting is not None:
            waiting.append(answer)
            return await answer
        if self._budget is not None and client is not None:
            try:
                self._budget.spend(client)
            except LookupBudgetSpent:
                if self._metrics is not None:
                    self._metrics.lookups_refused.inc()
                raise
        self._lookups[fp] = [answer]
        Deferred.fromCoroutine(self._look_up(fp, client))
        return await answer

    async def _look_up(self, fp: str, client: str | None) -> None:
        """
        Ask the store for C{fp} once and answer every request waiting for it; a valid token gives
        C{client}'s lookup back. Not the first request's own coroutine, so that request going away
        does not take the answer from the others.
        """
        if self._metrics is not None:
            self._metrics.lookups.inc()
        try:
            record = await self._store.resolve(fp)
        except Exception:
            failure = Failure()
            for waiter in self._lookups.pop(fp):
                waiter.errback(failure)
            return
        self._cache.put(fp, record)
        if record is not None and self._budget is not None and client is not None:
            self._budget.refund(client)
        for waiter in self._lookups.pop(fp):
            waiter.callback(record)


@dataclass(frozen=True)
class MintedToken:
    """
    A token as minted: the only moment the full token exists outside the sender's hands.
    """

    token: str
    record: TokenRecord

    def as_dict(self, base_path: str = "/v1/inbox/") -> dict[str, str]:
        return {
            "token": self.token,
            "fingerprint": self.record.fingerprint,
            "tenant": self.record.tenant_id,
            "template": self.record.template_id,
            "path": base_path + self.token,
        }


def iso(epoch: float | None) -> str | None:
    """
    Epoch seconds as ISO 8601 UTC to the second, as the CLI and the admin API show times.
    """
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def token_row(record: TokenRecord) -> dict[str, object]:
    """
    A token as C{token list --json} and the admin API show it: never the token, never the secret.
    """
    return {"fingerprint": record.fingerprint, "tenant": record.tenant_id, "template": record.template_id,
            "label": record.label, "signed": record.signing_secret is not None, "hec_acks": record.hec_acks,
            "state": record.state,
            "created": iso(record.created_at), "rotated": iso(record.rotated_at),
            "revoked": iso(record.revoked_at)}


def push_row(record: TokenRecord, totals: PushTotals | None) -> dict[str, object]:
    """
    A token with its push activity over the last 24 hours, as C{token stats --json} and the admin
    API show it (the console's Push tab); C{error_rate_24h} is C{None} without requests.
    """
    row = token_row(record)
    requests, errors = (totals.requests, totals.errors) if totals else (0, 0)
    return {"fingerprint": record.fingerprint, "template": record.template_id, "label": record.label,
            "state": row["state"], "requests_24h": requests, "errors_24h": errors,
            "error_rate_24h": round(errors / requests, 4) if requests else None,
            "last_seen": iso(totals.last_seen if totals else None)}


class UnknownTemplate(ValueError):
    """
    A mint or rotation named a template that is not loaded or not allowed.
    """


class UnknownToken(LookupError):
    """
    No active token of this tenant matches the fingerprint given.
    """


class TokenAdmin:
    """
    The operations behind C{aisoc-inboxd token …} and the admin API: one implementation for both.

    @param template_allowed: whether a template id may be bound to a new token.
    @param invalidate: called with a fingerprint after a rotation or revocation, so this process's
        cache (and, through the store, other instances') forget it at once.
    """

    def __init__(self, store: Store, clock: IReactorTime, template_allowed: Callable[[str], bool],
                 invalidate: Callable[[str], None] = lambda fp: None) -> None:
        self._store = store
        self._clock = clock
        self._template_allowed = template_allowed
        self._invalidate = invalidate

    async def mint(self, tenant_id: str, template_id: str, label: str | None = None,
                   signing_secret: bytes | None = None, hec_acks: bool = False) -> MintedToken:
        """
        A new token; C{hec_acks} turns on Splunk HEC indexer acknowledgement (ackId replies).

        @raise aisoc_inboxd.tenants.InvalidTenant: for a tenant id outside the rule.
        @raise UnknownTemplate: for a template that is not loaded or not allowed.
        """
        check_tenant_id(tenant_id)
        if not self._template_allowed(template_id):
            raise UnknownTemplate(template_id)
        minted = self._new(TokenRecord(fingerprint="", tenant_id=tenant_id, template_id=template_id,
                                       label=label, signing_secret=signing_secret, hec_acks=hec_acks))
        await self._store.insert_token(minted.record)
        return minted

    async def rotate(self, tenant_id: str, fingerprint_or_prefix: str,
                     signing_secret: bytes | None = None, keep_secret: bool = True) -> MintedToken:
        """
        Replace an active token with a new one bound to the same template and label. The signing
        secret is kept unless a new one is given (or C{keep_secret} is false, which drops it).
        """
        old = await self.find_active(tenant_id, fingerprint_or_prefix)
        secret = signing_secret if signing_secret is not None else (old.signing_secret if keep_secret else None)
        minted = self._new(replace(old, signing_secret=secret))
        if not await self._store.rotate_token(tenant_id, old.fingerprint, minted.record, self._clock.seconds()):
            raise UnknownToken(fingerprint_or_prefix)
        self._invalidate(old.fingerprint)
        return minted

    async def revoke(self, tenant_id: str, fingerprint_or_prefix: str) -> TokenRecord:
        old = await self.find_active(tenant_id, fingerprint_or_prefix)
        if not await self._store.revoke_token(tenant_id, old.fingerprint, self._clock.seconds()):
            raise UnknownToken(fingerprint_or_prefix)
        self._invalidate(old.fingerprint)
        return old

    async def list(self, tenant_id: str) -> list[TokenRecord]:
        return await self._store.list_tokens(tenant_id)

    async def stats(self, tenant_id: str) -> list[dict[str, object]]:
        """
        Every token of the tenant (as L{list}) with its push activity over the last 24 hours, as far
        as the daemons sharing the store have flushed it (every few seconds).
        """
        since = self._clock.seconds() - PUSH_WINDOW
        totals = {t.fingerprint: t for t in await self._store.push_totals(tenant_id, since)}
        return [push_row(r, totals.get(r.fingerprint)) for r in await self._store.list_tokens(tenant_id)]

    async def find_active(self, tenant_id: str, fingerprint_or_prefix: str) -> TokenRecord:
        """
        The one active token of this tenant whose fingerprint starts with the given hex (at least 8
        characters, as C{token list} shows them), or a full token, whose fingerprint is taken.
        """
        wanted = fingerprint_or_prefix.strip().lower()
        if wanted.startswith(TOKEN_PREFIX):
            wanted = fingerprint(fingerprint_or_prefix.strip())
        if len(wanted) < 8:
            raise UnknownToken(f"{fingerprint_or_prefix!r}: give at least 8 hex characters of the fingerprint")
        matches = [r for r in await self._store.list_tokens(tenant_id)
                   if r.active and r.fingerprint.startswith(wanted)]
        if len(matches) != 1:
            why = "no active token" if not matches else f"{len(matches)} active tokens"
            raise UnknownToken(f"{why} of tenant {tenant_id!r} match {wanted[:16]!r}")
        return matches[0]

    def _new(self, template: TokenRecord) -> MintedToken:
        token = mint_token()
        record = replace(template, fingerprint=fingerprint(token), created_at=self._clock.seconds(),
                         rotated_at=None, revoked_at=None)
        return MintedToken(token, record)
