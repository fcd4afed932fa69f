"""
C{X-AiSOC-Idempotency-Key}: a request repeated with the same key for the same token within 24 h is
not published again; it gets the first request's reply, marked as a replay. A vendor's own delivery
id (C{X-GitHub-Delivery}, an SNS C{MessageId}, …, as the template names it) is used the same way.

The decision is made in the store (so several daemon instances on one PostgreSQL agree): the first
request claims the key under an owner id of its own, publishes, and records its reply. A repeat that
arrives while the first is still running in this process waits for it; one running in another
instance gets 409 and retries. A claim whose request never finished (a crash) expires after a lease,
so the key is not stuck; that is the one window in which a retried request may be published twice
(at-least-once).

When the store does not answer, the fate of a claim may be unknown to it: the claim call timed out
but went through on the server later, or the reply could not be recorded. This process keeps what
to record — release the claim, or complete it with the reply — and records it once the store
answers: at once when a retry of the same key finds the key held (its claim waited for the late one
to land), else every few seconds (L{Idempotency.settle_unsettled}), so a retry is not refused with
409 until the lease runs out. Only the owner settles a claim, never one another request took since.

A vendor delivery id the store cannot claim is published without de-duplication (the vendor does
not retry a 503, and a duplicate is what at-least-once allows anyway), counted in
C{aisoc_ingest_idempotency_skipped_total{reason="store_unavailable"}}; an explicit
C{X-AiSOC-Idempotency-Key} gets 503 instead: its sender asked for exactly-once and retries.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aisoc_inboxd.episode import Episode
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.store import StoreError
from aisoc_inboxd.intake.refusals import bad_request, idempotency_conflict, store_unavailable

HEADER = "X-AiSOC-Idempotency-Key"
MAX_KEY_BYTES = 255
#: how long a key is remembered after its request succeeded
TTL_SECONDS = 24 * 60 * 60
#: how long a claim without a recorded reply blocks its key (a request that died mid-way)
LEASE_SECONDS = 120
#: claims whose fate the store has not recorded, kept to settle later (the oldest dropped past it:
#: their lease frees their keys anyway)
MAX_UNSETTLED = 10_000
#: seconds before a claim the store found nothing of is looked for again (doubling each time): a
#: claim whose call timed out may still be committing on the server
SETTLE_RETRY = 2.0

Slot = tuple[str, str]
"""A token fingerprint and a key."""


@dataclass(frozen=True)
class StoredReply:
    status: int
    body: dict[str, Any]


@dataclass
class _Unsettled:
    """
    A claim to settle once the store answers: complete it with C{reply}, or release it (C{None});
    not before C{due}, and pointless after C{until}, when its lease has run out.
    """

    reply: StoredReply | None
    until: float
    due: float
    wait: float = SETTLE_RETRY


class IdempotencyStore(Protocol):
    def claim_idempotency_key(self, fingerprint: str, key: str, now: float, lease: float,
                              owner: str) -> Deferred[tuple[bool, int | None, str | None]]: ...

    def complete_idempotency_key(self, fingerprint: str, key: str, owner: str, status: int, body: str,
                                 expires_at: float) -> Deferred[int]: ...

    def release_idempotency_key(self, fingerprint: str, key: str, owner: str) -> Deferred[int]: ...


def check_key(raw: bytes | None) -> str | None:
    """
    The key of a request, or C{None}; refused (C{bad_request}) when it is empty, too long or not text.
    """
    if raw is None:
        return None
    if not raw.strip() or len(raw) > MAX_KEY_BYTES:
        raise bad_request(f"{HEADER} must be 1 to {MAX_KEY_BYTES} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise bad_request(f"{HEADER} must be UTF-8 text") from None


class Idempotency:
    """
    The key is claimed in the store before anything is published: when the store does not answer,
    an explicit key's request is 503 with nothing published, a vendor delivery id's is published
    without de-duplication. Once published, a reply the store cannot record is still sent (the
    events are durable) and recorded later.
    """

    _log = Logger()

    def __init__(self, store: IdempotencyStore, clock: IReactorTime, metrics: Metrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._running: dict[Slot, list[Deferred[None]]] = {}
        #: slot → owner → what to record of a claim the store has not settled
        self._unsettled: dict[Slot, dict[str, _Unsettled]] = {}
        self._unsettled_count = 0
        self._skipping = Episode(clock)

    @property
    def unsettled(self) -> int:
        """
        Claims waiting for the store to settle them.
        """
        return self._unsettled_count

    async def once(self, fingerprint: str, key: str, work: Callable[[], Awaitable[StoredReply]],
                   explicit: bool = True) -> tuple[StoredReply, bool]:
        """
        Run C{work} unless this key was already answered; returns the reply and whether it is a replay.
        Only successful replies are remembered: after an error the sender may retry with the same key.

        @param explicit: the sender set C{X-AiSOC-Idempotency-Key}; else C{key} is the vendor's
            delivery id, published without de-duplication when the store cannot claim it.
        """
        slot = (fingerprint, key)
        while slot in self._running:
            waiter: Deferred[None] = Deferred()
            self._running[slot].append(waiter)
            await waiter
        self._running[slot] = []
        try:
            return await self._claim_and_run(slot, work, explicit)
        finally:
            for waiter in self._running.pop(slot):
                waiter.callback(None)

    async def _claim_and_run(self, slot: Slot, work: Callable[[], Awaitable[StoredReply]],
                             explicit: bool) -> tuple[StoredReply, bool]:
        owner = secrets.token_hex(8)
        until = self._clock.seconds() + LEASE_SECONDS
        try:
            claimed, status, body = await self._claim(slot, owner)
            if not claimed and status is None and slot in self._unsettled:
                await self._settle_now(slot)  # the key is held by a claim this process left unsettled
                claimed, status, body = await self._claim(slot, owner)
        except StoreError as e:
            return await self._unclaimed(slot, owner, until, work, explicit, e)
        self._claimed()
        if not claimed:
            if status is not None and body is not None:
                return StoredReply(status, json.loads(body)), True
            raise idempotency_conflict(HEADER)
        try:
            reply = await work()
        except BaseException:
            await self._settle(slot, owner, None, until)
            raise
        await self._settle(slot, owner, reply, until)
        return reply, False

    def _claim(self, slot: Slot, owner: str) -> Deferred[tuple[bool, int | None, str | None]]:
        return self._store.claim_idempotency_key(*slot, self._clock.seconds(), LEASE_SECONDS, owner)

    async def _unclaimed(self, slot: Slot, owner: str, until: float, work: Callable[[], Awaitable[StoredReply]],
                         explicit: bool, error: StoreError) -> tuple[StoredReply, bool]:
        """
        The store did not answer while claiming: 503 for an explicit key, publishing without
        de-duplication for a vendor's. The claim may have gone through all the same: it is settled
        once the store answers.
        """
        if explicit:
            self._leave(slot, owner, None, until)
            raise store_unavailable() from None
        self._skipped(error)
        reply: StoredReply | None = None
        try:
            reply = await work()
        finally:
            self._leave(slot, owner, reply, until)
        return reply, False

    async def _settle(self, slot: Slot, owner: str, reply: StoredReply | None, until: float) -> None:
        """
        Record the reply of a claim (a success), or release it; when the store does not answer,
        keep it to record later.
        """
        try:
            await self._record(slot, owner, _Unsettled(reply, until, 0.0))
        except StoreError:
            self._leave(slot, owner, reply, until)

    async def _record(self, slot: Slot, owner: str, fate: _Unsettled) -> bool:
        """
        Whether the store found the claim to settle.
        """
        fingerprint, key = slot
        if fate.reply is None or fate.reply.status >= 300:
            return bool(await self._store.release_idempotency_key(fingerprint, key, owner))
        return bool(await self._store.complete_idempotency_key(
            fingerprint, key, owner, fate.reply.status, json.dumps(fate.reply.body),
            self._clock.seconds() + TTL_SECONDS))

    def _leave(self, slot: Slot, owner: str, reply: StoredReply | None, until: float) -> None:
        """
        Keep a claim's fate to record once the store answers.
        """
        if self._unsettled_count >= MAX_UNSETTLED:
            oldest = next(iter(self._unsettled))
            self._drop(oldest, next(iter(self._unsettled[oldest])))
        owners = self._unsettled.setdefault(slot, {})
        self._unsettled_count += owner not in owners
        owners[owner] = _Unsettled(reply, until, self._clock.seconds())

    def _drop(self, slot: Slot, owner: str) -> None:
        owners = self._unsettled.get(slot, {})
        if owners.pop(owner, None) is not None:
            self._unsettled_count -= 1
        if not owners:
            self._unsettled.pop(slot, None)

    async def _settle_now(self, slot: Slot) -> None:
        """
        Record what this process left unsettled of a key another claim of it found held: that
        claim waited for any late one to land, so what the store finds now is final.

        @raise StoreError: the store did not answer; the rest stays to settle later.
        """
        for owner, fate in list(self._unsettled.get(slot, {}).items()):
            await self._record(slot, owner, fate)
            self._drop(slot, owner)

    async def settle_unsettled(self) -> None:
        """
        Record the claims left unsettled while the store did not answer (run every few seconds),
        each once it is due; one the store found nothing of may still be committing, so it is looked
        for again later, until its lease ends. Stops at the first call the store does not answer.
        """
        now = self._clock.seconds()
        for slot, owners in list(self._unsettled.items()):
            if slot in self._running:
                continue  # its request settles it
            for owner, fate in list(owners.items()):
                if fate.until <= now:
                    self._drop(slot, owner)
                elif fate.due <= now:
                    try:
                        found = await self._record(slot, owner, fate)
                    except StoreError:
                        return
                    if found:
                        self._drop(slot, owner)
                    else:
                        fate.due, fate.wait = now + fate.wait, fate.wait * 2

    def _skipped(self, error: StoreError) -> None:
        if self._metrics is not None:
            self._metrics.idempotency_skipped.labels("store_unavailable").inc()
        news = self._skipping.occurred()
        if news == "began":
            self._log.warn("vendor delivery ids are published without de-duplication while the token store "
                           "cannot claim them ({error}); counted in aisoc_ingest_idempotency_skipped_total",
                           error=str(error))
        elif news == "ongoing":
            self._log.warn("vendor delivery ids still published without de-duplication after {seconds:.0f} s "
                           "({requests} requests)", seconds=self._skipping.lasted(),
                           requests=self._skipping.occurrences)

    def _claimed(self) -> None:
        ended = self._skipping.end()
        if ended is not None:
            self._log.info("vendor delivery ids are de-duplicated again, after {seconds:.0f} s in which "
                           "{requests} requests were published without", seconds=ended[0], requests=ended[1])
