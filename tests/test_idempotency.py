"""
Idempotency keys while the token store does not answer, in memory: a vendor delivery id is
published without de-duplication (counted, logged once) where an explicit key gets 503; a claim
that went through after its request got 503 is settled so the retry is accepted, in this instance
and in another; the 503 and 409 replies are counted under the token's template.
"""
from __future__ import annotations

import json
import pytest_twisted
from twisted.logger import capturedLogs, formatEvent

from aisoc_inboxd.intake.idempotency import LEASE_SECONDS
from aisoc_inboxd.testing import FakeStore, MemoryInbox

INCIDENT = json.dumps({"event": {"id": "01ABCDEF", "event_type": "incident.triggered",
                                 "occurred_at": "2024-05-01T10:00:00Z",
                                 "data": {"id": "PT4KHLK", "title": "Disk full on db-1"}}}).encode()
STORE_DOWN = {"error": "token store unavailable"}


def skipped(inbox: MemoryInbox) -> float:
    return inbox.metrics.registry.get_sample_value("aisoc_ingest_idempotency_skipped_total",
                                                   {"reason": "store_unavailable"}) or 0.0


@pytest_twisted.ensureDeferred
async def test_a_vendor_delivery_id_is_published_without_dedupe_while_the_store_is_down() -> None:
    """A cached PagerDuty token's delivery (X-Webhook-Id) while the store does not answer is accepted and
    published — PagerDuty would not retry a 503 — counted in aisoc_ingest_idempotency_skipped_total and
    logged once however many follow; an explicit X-AiSOC-Idempotency-Key still gets 503 with nothing
    published. Once the store answers, delivery ids are de-duplicated again (and the log says so)."""
    inbox = MemoryInbox(FakeStore())
    token = await inbox.mint(template="pagerduty")
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-Webhook-Id": "w-0"}))[0] == 200  # cached now
    inbox.store.down = True
    with capturedLogs() as events:
        for delivery in ("w-1", "w-2", "w-2"):
            status, reply, _ = await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-Webhook-Id": delivery})
            assert (status, reply) == (200, {"accepted": 1, "template": "pagerduty"})
        status, reply, response = await inbox.post(f"/v1/inbox/{token}", INCIDENT,
                                                   {"X-AiSOC-Idempotency-Key": "k-1"})
        assert (status, reply) == (503, STORE_DOWN)
        assert response.headers.getRawHeaders("Retry-After") == ["5"]
        inbox.store.down = False
        assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-Webhook-Id": "w-3"}))[0] == 200
        status, _, response = await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-Webhook-Id": "w-3"})
    assert (status, response.headers.getRawHeaders("X-AiSOC-Idempotent-Replay")) == (200, ["true"])
    assert len(inbox.sink.records) == 5  # w-0, w-1, w-2 twice (no de-duplication while down), w-3 once
    assert skipped(inbox) == 3
    lines = [formatEvent(e) for e in events if e["log_namespace"] == "aisoc_inboxd.intake.idempotency.Idempotency"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("vendor delivery ids are published without de-duplication while the token store "
                               "cannot claim them (PostgreSQL at db:5432/inbox as aisoc: connection refused)")
    assert lines[1].startswith("vendor delivery ids are de-duplicated again") and "3 requests" in lines[1]


@pytest_twisted.ensureDeferred
async def test_a_claim_made_after_its_request_got_503_does_not_refuse_the_retry() -> None:
    """The claim of a request went through on the server but its answer never came (the call timed out):
    the request got 503 and nothing was published. Its retry with the same key is accepted rather than
    refused with 409 until the lease runs out, and published once."""
    inbox = MemoryInbox(FakeStore())
    token = await inbox.mint()
    headers = {"X-AiSOC-Idempotency-Key": "k-1"}
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, headers))[0] == 200  # caches the token
    inbox.store.answers_lost = True
    headers = {"X-AiSOC-Idempotency-Key": "k-2"}
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, headers))[:2] == (503, STORE_DOWN)
    assert len(inbox.store.claims) == 2  # k-2 is claimed all the same
    inbox.store.answers_lost = False
    inbox.clock.advance(5)  # the sender's Retry-After
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", INCIDENT, headers)
    assert (status, reply) == (200, {"accepted": 1, "template": "generic-json"})
    assert len(inbox.sink.records) == 2
    status, _, response = await inbox.post(f"/v1/inbox/{token}", INCIDENT, headers)
    assert (status, response.headers.getRawHeaders("X-AiSOC-Idempotent-Replay")) == (200, ["true"])
    assert len(inbox.sink.records) == 2


async def two_instances() -> tuple[FakeStore, MemoryInbox, MemoryInbox, str]:
    """
    Two instances sharing one store, and a token both have cached.
    """
    store = FakeStore()
    a, b = MemoryInbox(store), MemoryInbox(store)
    token = await a.mint()
    for inbox in (a, b):
        assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT))[0] == 200
    return store, a, b, token


@pytest_twisted.ensureDeferred
async def test_a_claim_left_behind_is_released_for_the_other_instances_once_the_store_answers() -> None:
    """Two instances share the store. Instance A's claim went through but its answer was lost (503); the
    store answers again, A's settler releases the claim within a few seconds, and the sender's retry,
    landing on instance B, is accepted instead of 409 for the whole lease."""
    store, a, b, token = await two_instances()
    store.answers_lost = True
    assert (await a.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"}))[0] == 503
    store.answers_lost, store.down = False, True
    await a.intake.idempotency.settle_unsettled()  # no answer: kept for later
    assert a.intake.idempotency.unsettled == 1
    store.down = False
    status, reply, _ = await b.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"})
    assert (status, reply["error"]) == (409, "a request with this X-AiSOC-Idempotency-Key is still being "
                                             "processed; retry shortly")
    await a.intake.idempotency.settle_unsettled()
    assert a.intake.idempotency.unsettled == 0
    assert (await b.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"}))[0] == 200
    assert len(a.sink.records) + len(b.sink.records) == 3


@pytest_twisted.ensureDeferred
async def test_a_claim_still_committing_when_first_looked_for_is_released_once_it_landed() -> None:
    """Instance A's claim commits only after A gave up on it and after A's first attempt to release it
    found nothing: A looks for it again a little later (2 s, then 4 s, …), finds it and releases it,
    so the sender's retry on instance B is accepted."""
    store, a, b, token = await two_instances()
    store.commits_late = True
    assert (await a.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"}))[0] == 503
    store.commits_late = False
    await a.intake.idempotency.settle_unsettled()  # nothing there yet
    store.land_late_claims()
    assert (await b.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"}))[0] == 409
    calls = store.calls
    await a.intake.idempotency.settle_unsettled()  # not due again yet
    assert store.calls == calls
    a.clock.advance(2)
    await a.intake.idempotency.settle_unsettled()
    assert a.intake.idempotency.unsettled == 0
    assert (await b.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"}))[0] == 200


@pytest_twisted.ensureDeferred
async def test_unsettled_claims_are_forgotten_once_their_lease_ran_out() -> None:
    """What the store never answered for is kept no longer than the lease: by then the claim has
    expired anyway and the key is free."""
    inbox = MemoryInbox(FakeStore())
    token = await inbox.mint()
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT))[0] == 200
    inbox.store.down = True
    for n in range(3):
        assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": f"k-{n}"}))[0] == 503
    assert inbox.intake.idempotency.unsettled == 3  # each claim may have reached the server
    inbox.store.down = False
    inbox.clock.advance(LEASE_SECONDS + 1)
    calls = inbox.store.calls
    await inbox.intake.idempotency.settle_unsettled()
    assert (inbox.intake.idempotency.unsettled, inbox.store.calls) == (0, calls)


@pytest_twisted.ensureDeferred
async def test_503_and_409_are_counted_under_the_tokens_template() -> None:
    """The token resolved before its idempotency key could not be claimed (503) or was held by another
    request (409): both replies count under its template, not template="none"."""
    store = FakeStore()
    inbox = MemoryInbox(store)
    token = await inbox.mint(template="pagerduty")
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT))[0] == 200
    store.down = True
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-1"}))[0] == 503
    store.down = False
    other = MemoryInbox(store)
    store.answers_lost = True
    assert (await other.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-2"}))[0] == 503
    store.answers_lost = False
    assert (await inbox.post(f"/v1/inbox/{token}", INCIDENT, {"X-AiSOC-Idempotency-Key": "k-2"}))[0] == 409
    assert inbox.requests("webhook", "pagerduty", "store_unavailable") == 1
    assert inbox.requests("webhook", "pagerduty", "conflict") == 1
    assert inbox.requests("webhook", "none", "store_unavailable") == inbox.requests("webhook", "none", "conflict") == 0
