"""
C{X-AiSOC-Idempotency-Key}: a request repeated with the same key for the same token within 24 h is
not published again; it gets the first request's reply, marked as a replay.

The decision is made in the store (so several daemon instances on one PostgreSQL agree): the first
request claims the key, publishes, and records its reply. A repeat that arrives while the first is
still running in this process waits for it; one running in another instance gets 409 and retries.
A claim whose request never finished (a crash) expires after a lease, so the key is not stuck; that
is the one window in which a retried request may be published twice (at-least-once).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aisoc_inboxd.store import StoreError
from aisoc_inboxd.web.errors import HttpError, store_unavailable

HEADER = "X-AiSOC-Idempotency-Key"
MAX_KEY_BYTES = 255
#: how long a key is remembered after its request succeeded
TTL_SECONDS = 24 * 60 * 60
#: how long a claim without a recorded reply blocks its key (a request that died mid-way)
LEASE_SECONDS = 120


@dataclass(frozen=True)
class StoredReply:
    status: int
    body: dict[str, Any]


class IdempotencyStore(Protocol):
    def claim_idempotency_key(self, fingerprint: str, key: str, now: float,
                              lease: float) -> Deferred[tuple[bool, int | None, str | None]]: ...

    def complete_idempotency_key(self, fingerprint: str, key: str, status: int, body: str,
                                 expires_at: float) -> Deferred[int]: ...

    def release_idempotency_key(self, fingerprint: str, key: str) -> Deferred[int]: ...


def check_key(raw: bytes | None) -> str | None:
    """
    The key of a request, or C{None}; 400 when it is empty, too long or not text.
    """
    if raw is None:
        return None
    if not raw.strip() or len(raw) > MAX_KEY_BYTES:
        raise HttpError(400, f"{HEADER} must be 1 to {MAX_KEY_BYTES} bytes", "bad_request")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise HttpError(400, f"{HEADER} must be UTF-8 text", "bad_request") from None


class Idempotency:
    """
    The key is claimed in the store before anything is published: when the store does not answer,
    the request is 503 with nothing published. Once published, a reply the store cannot record is
    still sent (the events are durable); the claim then expires after its lease.
    """

    _log = Logger()

    def __init__(self, store: IdempotencyStore, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock
        self._running: dict[tuple[str, str], list[Deferred[None]]] = {}

    async def once(self, fingerprint: str, key: str,
                   work: Callable[[], Awaitable[StoredReply]]) -> tuple[StoredReply, bool]:
        """
        Run C{work} unless this key was already answered; returns the reply and whether it is a replay.
        Only successful replies are remembered: after an error the sender may retry with the same key.
        """
        slot = (fingerprint, key)
        while slot in self._running:
            waiter: Deferred[None] = Deferred()
            self._running[slot].append(waiter)
            await waiter
        self._running[slot] = []
        try:
            return await self._claim_and_run(fingerprint, key, work)
        finally:
            for waiter in self._running.pop(slot):
                waiter.callback(None)

    async def _claim_and_run(self, fingerprint: str, key: str,
                             work: Callable[[], Awaitable[StoredReply]]) -> tuple[StoredReply, bool]:
        try:
            claimed, status, body = await self._store.claim_idempotency_key(
                fingerprint, key, self._clock.seconds(), LEASE_SECONDS)
        except StoreError:
            raise store_unavailable() from None
        if not claimed:
            if status is not None and body is not None:
                return StoredReply(status, json.loads(body)), True
            raise HttpError(409, f"a request with this {HEADER} is still being processed; retry shortly",
                            "conflict", {"Retry-After": "1"})
        try:
            reply = await work()
        except BaseException:
            await self._settle(self._store.release_idempotency_key(fingerprint, key), "released")
            raise
        if reply.status < 300:
            await self._settle(self._store.complete_idempotency_key(
                fingerprint, key, reply.status, json.dumps(reply.body), self._clock.seconds() + TTL_SECONDS),
                "recorded")
        else:
            await self._settle(self._store.release_idempotency_key(fingerprint, key), "released")
        return reply, False

    async def _settle(self, update: Deferred[int], done: str) -> None:
        """
        Wait for the store to record a key's fate; if it cannot, the claim stays until its lease
        expires (a retry meanwhile gets 409), which is logged rather than failing the request.
        """
        try:
            await update
        except StoreError as e:
            self._log.warn("an idempotency key could not be {done} ({error}); it stays claimed for up to "
                           "{lease} s", done=done, error=str(e), lease=LEASE_SECONDS)
