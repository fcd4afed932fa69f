"""
Fakes for in-memory tests, shipped with the package as Twisted ships C{twisted.internet.testing}: a
token store kept in dicts (L{FakeStore}, with the semantics the store contract pins for SQLite and
PostgreSQL) that a test can take down, a sink that keeps what it is given (L{FakeSink}), and
L{MemoryInbox}, the real resource trees, intake, cache, idempotency and admin code wired over them
on a L{Clock}, served to L{treq.testing.StubTreq} instead of a socket.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from prometheus_client import generate_latest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.server import Site

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import CefSettings, DeliverySettings, HecSettings, HttpSettings
from aisoc_inboxd.deliveries import DeliveryLog
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.idempotency import Idempotency
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.reload import Replaceable
from aisoc_inboxd.sinks import SinkRecord, SinkUnavailable
from aisoc_inboxd.store import PushBucket, PushTotals, StoreError, TokenRecord
from aisoc_inboxd.tokens import LookupBudget, TokenAdmin, TokenCache, TokenResolver
from aisoc_inboxd.vendors import VendorGate
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.hec_acks import AckChannels, Acks, LocalAcks
from aisoc_inboxd.web.hec import HecDeps
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import OnReply
from aisoc_inboxd.web.site import inbox_site
from aisoc_inboxd.web.tree import WebDeps, build_admin_resource, build_root_resource

ADMIN_KEY = b"admin-key-for-tests"
#: what every call of a L{FakeStore} that is C{down} fails with
STORE_DOWN = "PostgreSQL at db:5432/inbox as aisoc: connection refused"
#: when a L{MemoryInbox}'s clock starts: a real moment, so events carry plausible epoch times
EPOCH = 1_700_000_000.0
_CATALOG: list[TemplateCatalog] = []


def catalog() -> TemplateCatalog:
    """
    The bundled templates, loaded once per test session.
    """
    if not _CATALOG:
        _CATALOG.append(TemplateCatalog.load([], None))
    return _CATALOG[0]


@dataclass
class _Claim:
    owner: str
    expires_at: float
    status: int | None = None
    body: str | None = None


class FakeStore:
    """
    The store calls of the routes, the admin API, push stats and the status page. While C{down},
    every call fails as an unreachable store's does; while C{answers_lost}, writes are made but
    their answer never arrives (the call timed out, the server went ahead all the same); while
    C{commits_late}, claims time out too and land only at L{land_late_claims} (a commit that took
    longer than the call).

    @ivar added: every L{add_push_stats} call that was made, as C{(tenant, buckets)}.
    @ivar swept: the C{before} of every L{sweep_push_stats} call.
    """

    def __init__(self, tokens: Sequence[TokenRecord] = ()) -> None:
        self.tokens: dict[str, TokenRecord] = {token.fingerprint: token for token in tokens}
        self.claims: dict[tuple[str, str], _Claim] = {}
        self.buckets: dict[tuple[str, str, float], PushBucket] = {}
        self.added: list[tuple[str, list[PushBucket]]] = []
        self.swept: list[float] = []
        self.down = False
        self.answers_lost = False
        self.commits_late = False
        self._late: list[tuple[tuple[str, str], _Claim]] = []
        self.calls = 0

    def land_late_claims(self) -> None:
        for slot, claim in self._late:
            self.claims.setdefault(slot, claim)
        self._late.clear()

    def _down(self) -> Deferred[Any]:
        self.calls += 1
        return fail(StoreError(STORE_DOWN, "connection"))

    def _answer(self, value: Any, writes: bool = False) -> Deferred[Any]:
        self.calls += 1
        if writes and self.answers_lost:
            return fail(StoreError("PostgreSQL at db:5432/inbox as aisoc: no answer within 3 s", "timeout"))
        return succeed(value)

    # -- tokens --------------------------------------------------------------------------------

    def resolve(self, fingerprint: str) -> Deferred[TokenRecord | None]:
        if self.down:
            return self._down()
        record = self.tokens.get(fingerprint)
        return self._answer(record if record is not None and record.active else None)

    def insert_token(self, record: TokenRecord) -> Deferred[None]:
        if self.down:
            return self._down()
        self.tokens[record.fingerprint] = record
        return self._answer(None, writes=True)

    def list_tokens(self, tenant_id: str) -> Deferred[list[TokenRecord]]:
        if self.down:
            return self._down()
        return self._answer([r for r in self.tokens.values() if r.tenant_id == tenant_id])

    def rotate_token(self, tenant_id: str, fingerprint: str, new: TokenRecord, now: float) -> Deferred[bool]:
        if self.down:
            return self._down()
        if not self._retire(tenant_id, fingerprint, rotated_at=now):
            return self._answer(False)
        self.tokens[new.fingerprint] = new
        return self._answer(True, writes=True)

    def revoke_token(self, tenant_id: str, fingerprint: str, now: float) -> Deferred[bool]:
        if self.down:
            return self._down()
        return self._answer(self._retire(tenant_id, fingerprint, revoked_at=now), writes=True)

    def _retire(self, tenant_id: str, fingerprint: str, **when: float) -> bool:
        old = self.tokens.get(fingerprint)
        if old is None or old.tenant_id != tenant_id or not old.active:
            return False
        self.tokens[fingerprint] = replace(old, **when)
        return True

    def broadcast_invalidation(self, fingerprint: str) -> Deferred[None]:
        return self._down() if self.down else self._answer(None)

    def status_tokens(self, since: float, tenant_id: str | None, limit: int) -> Deferred[list[TokenRecord]]:
        if self.down:
            return self._down()
        listed = [t for t in self.tokens.values() if tenant_id in (None, t.tenant_id)
                  and (t.active or max(t.rotated_at or 0.0, t.revoked_at or 0.0) >= since)]
        return self._answer(sorted(listed, key=lambda t: t.created_at, reverse=True)[:limit])

    # -- push stats ----------------------------------------------------------------------------

    def add_push_stats(self, tenant_id: str, buckets: Sequence[PushBucket]) -> Deferred[None]:
        if self.down:
            return self._down()
        self.added.append((tenant_id, sorted(buckets, key=lambda b: (b.fingerprint, b.bucket_start))))
        for bucket in buckets:
            slot = (tenant_id, bucket.fingerprint, bucket.bucket_start)
            known = self.buckets.get(slot)
            self.buckets[slot] = bucket if known is None else replace(
                known, requests=known.requests + bucket.requests, errors=known.errors + bucket.errors,
                last_seen=max(known.last_seen, bucket.last_seen))
        return self._answer(None, writes=True)

    def push_totals(self, tenant_id: str, since: float) -> Deferred[list[PushTotals]]:
        if self.down:
            return self._down()
        return self._answer(self._totals(since, tenant_id))

    def all_push_totals(self, since: float) -> Deferred[list[PushTotals]]:
        if self.down:
            return self._down()
        return self._answer(self._totals(since, None))

    def _totals(self, since: float, tenant_id: str | None) -> list[PushTotals]:
        totals: dict[str, PushTotals] = {}
        for (tenant, fp, start), bucket in sorted(self.buckets.items(), key=lambda item: item[0][2]):
            if tenant_id not in (None, tenant):
                continue
            known = totals.get(fp) or PushTotals(tenant, fp, bucket.template_id, 0, 0, bucket.last_seen)
            counted = start >= since
            totals[fp] = replace(known, template_id=bucket.template_id,
                                 requests=known.requests + (bucket.requests if counted else 0),
                                 errors=known.errors + (bucket.errors if counted else 0),
                                 last_seen=max(known.last_seen, bucket.last_seen))
        return sorted(totals.values(), key=lambda t: t.last_seen, reverse=True)

    def sweep_push_stats(self, before: float) -> Deferred[int]:
        self.swept.append(before)
        if self.down:
            return self._down()
        newest: dict[str, float] = {}
        for _, fp, start in self.buckets:
            newest[fp] = max(newest.get(fp, start), start)
        gone = [slot for slot in self.buckets if slot[2] < before and slot[2] != newest[slot[1]]]
        for slot in gone:
            del self.buckets[slot]
        return self._answer(len(gone), writes=True)

    # -- idempotency keys ----------------------------------------------------------------------

    def claim_idempotency_key(self, fingerprint: str, key: str, now: float, lease: float,
                              owner: str) -> Deferred[tuple[bool, int | None, str | None]]:
        if self.down:
            return self._down()
        if self.commits_late:
            self._late.append(((fingerprint, key), _Claim(owner, now + lease)))
            return self._down()
        claim = self.claims.get((fingerprint, key))
        if claim is None or claim.expires_at < now:
            self.claims[(fingerprint, key)] = _Claim(owner, now + lease)
            return self._answer((True, None, None), writes=True)
        return self._answer((False, claim.status, claim.body), writes=True)

    def complete_idempotency_key(self, fingerprint: str, key: str, owner: str, status: int, body: str,
                                 expires_at: float) -> Deferred[int]:
        if self.down:
            return self._down()
        claim = self.claims.get((fingerprint, key))
        if claim is None or claim.owner != owner:
            return self._answer(0, writes=True)
        claim.status, claim.body, claim.expires_at = status, body, expires_at
        return self._answer(1, writes=True)

    def release_idempotency_key(self, fingerprint: str, key: str, owner: str) -> Deferred[int]:
        if self.down:
            return self._down()
        claim = self.claims.get((fingerprint, key))
        if claim is None or claim.owner != owner or claim.status is not None:
            return self._answer(0, writes=True)
        del self.claims[(fingerprint, key)]
        return self._answer(1, writes=True)


class FakeSink:
    """
    Keeps every record it is given, and the size of each write in C{writes} (so a test sees how an
    intake batches); while C{failing} is set (the reason), refuses writes and is not ready, as a
    sink that cannot make events durable; while C{holding}, keeps each write waiting in C{held}
    until L{release} (so a test can interleave requests).
    """

    def __init__(self) -> None:
        self.records: list[SinkRecord] = []
        self.writes: list[int] = []
        self.failing: str | None = None
        self.holding = False
        self.held: list[tuple[Sequence[SinkRecord], Deferred[None]]] = []

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        self.writes.append(len(records))
        if self.failing is not None:
            return fail(SinkUnavailable(self.failing))
        if self.holding:
            waiting: Deferred[None] = Deferred()
            self.held.append((records, waiting))
            return waiting
        self.records.extend(records)
        return succeed(None)

    def release(self, index: int) -> None:
        """
        Make the held write at C{index} durable.
        """
        records, waiting = self.held.pop(index)
        self.records.extend(records)
        waiting.callback(None)

    def not_ready(self) -> str | None:
        return self.failing

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.records]


def serving(site: Site) -> StubTreq:
    """
    A L{StubTreq} whose requests reach C{site} itself (its request class, body limit and channel),
    not the plain L{Site} treq puts around C{site.resource}.
    """
    client = StubTreq(site.resource)
    client._agent._serverFactory = site  # treq has no public way to hand its agent a site
    return client


def memory_clock(now: float = EPOCH) -> Clock:
    """
    A L{Clock} that reads C{now}.
    """
    clock = Clock()
    clock.advance(now)
    return clock


@dataclass
class MemoryInbox:
    """
    One daemon instance's HTTP and admin trees over C{store}, a L{FakeSink} and C{clock}: C{http}
    for the inbox routes (C{base_url}) through the listener's own site, C{admin_http} for the admin
    routes (key L{ADMIN_KEY}), C{admin} to mint and retire tokens as the CLI does.
    """

    store: FakeStore
    clock: Clock = field(default_factory=memory_clock)
    http_settings: HttpSettings = field(default_factory=HttpSettings)
    unknown_lookups_per_sec: float = 20.0
    hec: HecSettings = field(default_factory=HecSettings)
    cef: CefSettings = field(default_factory=CefSettings)
    vendors: VendorGate = field(default_factory=VendorGate)
    observers: tuple[OnReply, ...] = ()
    #: the HEC ack registry the routes ask: the daemon's own by default, a worker's L{RemoteAcks} in a test
    acks: Acks | None = None
    deliveries_settings: DeliverySettings = field(default_factory=DeliverySettings)

    base_url = "http://inbox"

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        self.sink = FakeSink()
        self.cache = TokenCache(self.clock)
        self.intake = Intake(TokenResolver(self.store, self.cache,  # type: ignore[arg-type]
                                           LookupBudget(self.clock, self.unknown_lookups_per_sec),
                                           self.metrics.token_store),
                             catalog(), Pipeline(self.sink, self.metrics),  # type: ignore[arg-type]
                             RateLimiter(self.clock, self.http_settings.rate_limit_per_min),
                             Idempotency(self.store, self.clock, self.metrics), self.clock)  # type: ignore[arg-type]
        self.deliveries = DeliveryLog(self.deliveries_settings)
        deps = WebDeps(intake=self.intake, metrics=self.metrics, inflight=InFlight(self.clock),
                       max_body_bytes=self.http_settings.max_body_bytes,
                       max_events=self.http_settings.max_events_per_request, vendors=self.vendors,
                       observers=self.observers,
                       hec=HecDeps(self.hec, self.acks or LocalAcks(AckChannels.build(self.hec, self.clock))),
                       cef=Replaceable(self.cef), clients=ClientAddresses(self.http_settings.trusted_proxies),
                       deliveries=DeliveryRecorder(self.deliveries, self.clock))
        self.http = serving(inbox_site(build_root_resource(deps), self.http_settings, self.metrics, self.clock))
        self.admin = TokenAdmin(self.store, self.clock, catalog().allowed,  # type: ignore[arg-type]
                                self.cache.invalidate)
        self.admin_http = StubTreq(build_admin_resource(self.admin, self.store, self.cache,  # type: ignore[arg-type]
                                                        ADMIN_KEY, deps))

    async def mint(self, tenant: str = "acme", template: str = "generic-json",
                   signing_secret: bytes | None = None, hec_acks: bool = False) -> str:
        return (await self.admin.mint(tenant, template, signing_secret=signing_secret, hec_acks=hec_acks)).token

    async def send(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                   method: str = "POST") -> tuple[int, bytes, Any]:
        """
        One request; the status, the body bytes exactly as sent, and the response.
        """
        response = await self.http.request(method, self.base_url + path, data=body,
                                           headers={k: [v] for k, v in (headers or {}).items()})
        return response.code, await response.content(), response

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None,
                   method: str = "POST") -> tuple[int, Any, Any]:
        """
        L{send}, with the body parsed as JSON.
        """
        status, content, response = await self.send(path, body, headers, method)
        return status, json.loads(content), response

    async def call_admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, Any]:
        response = await self.admin_http.request(method, "http://admin" + path,
                                                 headers={"Authorization": [b"Bearer " + ADMIN_KEY]},
                                                 data=json.dumps(body).encode() if body is not None else None)
        return response.code, json.loads(await response.content()), response

    def events(self) -> list[dict[str, Any]]:
        return self.sink.events()

    def metrics_text(self) -> str:
        """
        The metrics as the metrics listener would serve them.
        """
        return generate_latest(self.metrics.registry).decode("utf-8")

    def requests(self, route: str, template: str, outcome: str) -> float:
        return self.metrics.registry.get_sample_value(
            "aisoc_ingest_inbox_requests_total", {"route": route, "template": template, "outcome": outcome}) or 0.0
