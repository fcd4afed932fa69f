"""
The HTTP routes in memory, for fast behaviour tests: the real resource trees, intake, cache,
idempotency and admin code over a store kept in dicts (with the idempotency claim semantics the
store contract pins for SQLite and PostgreSQL) that a test can take down, and a sink that keeps what
it is given. Requests go through L{treq.testing.StubTreq}; time is a L{Clock}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import CefSettings, HttpSettings
from aisoc_inboxd.intake.idempotency import Idempotency
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.store import PushTotals, StoreError, TokenRecord
from aisoc_inboxd.tokens import LookupBudget, TokenAdmin, TokenCache, TokenResolver
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.tree import WebDeps, build_admin_resource, build_root_resource

ADMIN_KEY = b"admin-key-for-tests"
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


class MemoryStore:
    """
    The store calls the routes and the admin API make. While C{down}, every call fails as an
    unreachable store's does; while C{answers_lost}, writes are made but their answer never arrives
    (the call timed out, the server went ahead all the same); while C{commits_late}, claims time out
    too and land only at L{land_late_claims} (a commit that took longer than the call).
    """

    def __init__(self) -> None:
        self.tokens: dict[str, TokenRecord] = {}
        self.claims: dict[tuple[str, str], _Claim] = {}
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
        return fail(StoreError("PostgreSQL at db:5432/inbox as aisoc: connection refused", "connection"))

    def _answer(self, value: Any, writes: bool = False) -> Deferred[Any]:
        self.calls += 1
        if writes and self.answers_lost:
            return fail(StoreError("PostgreSQL at db:5432/inbox as aisoc: no answer within 3 s", "timeout"))
        return succeed(value)

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

    def push_totals(self, tenant_id: str, since: float) -> Deferred[list[PushTotals]]:
        return self._down() if self.down else self._answer([])

    def broadcast_invalidation(self, fingerprint: str) -> Deferred[None]:
        return self._down() if self.down else self._answer(None)

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


class MemorySink:
    def __init__(self) -> None:
        self.records: list[SinkRecord] = []

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        self.records.extend(records)
        return succeed(None)

    def ready(self) -> bool:
        return True

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.records]


@dataclass
class MemoryInbox:
    """
    One daemon instance's routes over C{store}: C{http} for the inbox routes, C{admin} for the
    admin listener (key L{ADMIN_KEY}).
    """

    store: MemoryStore
    clock: Clock = field(default_factory=Clock)
    http_settings: HttpSettings = field(default_factory=HttpSettings)
    unknown_lookups_per_sec: float = 20.0

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        self.sink = MemorySink()
        self.cache = TokenCache(self.clock)
        self.intake = Intake(TokenResolver(self.store, self.cache,  # type: ignore[arg-type]
                                           LookupBudget(self.clock, self.unknown_lookups_per_sec),
                                           self.metrics.token_store),
                             catalog(), Pipeline(self.sink, self.metrics),  # type: ignore[arg-type]
                             RateLimiter(self.clock, self.http_settings.rate_limit_per_min),
                             Idempotency(self.store, self.clock, self.metrics), self.clock)  # type: ignore[arg-type]
        deps = WebDeps(intake=self.intake, metrics=self.metrics, inflight=InFlight(self.clock),
                       max_body_bytes=self.http_settings.max_body_bytes, cef=CefSettings(),
                       clients=ClientAddresses(self.http_settings.trusted_proxies))
        self.http = StubTreq(build_root_resource(deps))
        self.token_admin = TokenAdmin(self.store, self.clock, catalog().allowed,  # type: ignore[arg-type]
                                      self.cache.invalidate)
        self.admin = StubTreq(build_admin_resource(self.token_admin, self.store, self.cache,  # type: ignore[arg-type]
                                                   ADMIN_KEY, deps))

    async def mint(self, tenant: str = "acme", template: str = "generic-json") -> str:
        return (await self.token_admin.mint(tenant, template)).token

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        response = await self.http.post("http://inbox" + path, data=body,
                                        headers={k: [v] for k, v in (headers or {}).items()})
        return response.code, json.loads(await response.content()), response

    async def call_admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, Any]:
        response = await self.admin.request(method, "http://admin" + path,
                                            headers={"Authorization": [b"Bearer " + ADMIN_KEY]},
                                            data=json.dumps(body).encode() if body is not None else None)
        return response.code, json.loads(await response.content()), response

    def requests(self, route: str, template: str, outcome: str) -> float:
        return self.metrics.registry.get_sample_value(
            "aisoc_ingest_inbox_requests_total", {"route": route, "template": template, "outcome": outcome}) or 0.0
