"""
Push stats per token: the in-memory accumulator and its flushes on a fake clock, the in-memory rate
and error rings of the status page, and the running daemon counting token-route replies into the
store, read back through the admin API and the CLI.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from aisoc_inboxd.activity import EventRates, RecentErrors
from aisoc_inboxd.push_stats import BUCKET, RETENTION, PushStatsRecorder
from aisoc_inboxd.testing import STORE_DOWN, FakeStore
from aisoc_inboxd.store import PushBucket, PushTotals, TokenRecord
from aisoc_inboxd.tokens import fingerprint, push_row
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.test_cli import cli

T0 = 1_700_000_040.0  # a minute boundary
A1 = TokenRecord(fingerprint=fingerprint("aisoc_inbox_a1"), tenant_id="tenant-a", template_id="pagerduty")
A2 = TokenRecord(fingerprint=fingerprint("aisoc_inbox_a2"), tenant_id="tenant-a", template_id="generic-json")
B1 = TokenRecord(fingerprint=fingerprint("aisoc_inbox_b1"), tenant_id="tenant-b", template_id="opsgenie")
#: replies as the routes tell their observers: outcome, status, error message
OK = ("ok", 200, None)
REPLAY = ("replay", 200, None)
BAD_SIGNATURE = ("invalid_signature", 401, "invalid signature")
UNAVAILABLE = ("unavailable", 503, "events could not be made durable")


def recorder(drained: Deferred[None] | None = None) -> tuple[PushStatsRecorder, FakeStore, Clock]:
    clock = Clock()
    clock.advance(T0)
    store = FakeStore()
    return PushStatsRecorder(store, clock, lambda: drained or succeed(None)), store, clock  # type: ignore[arg-type]


def test_replies_are_counted_per_token_and_minute_and_flushed_per_tenant() -> None:
    """Every reply of a resolved token counts a request, 4xx/5xx count as errors, and one write per tenant adds them."""
    rec, store, clock = recorder()
    rec.replied("webhook", A1, *OK)
    clock.advance(10)
    rec.replied("webhook", A1, *BAD_SIGNATURE)
    rec.replied("email", A2, *UNAVAILABLE)
    rec.replied("webhook", B1, *OK)
    clock.advance(55)  # into the next minute
    rec.replied("webhook", A1, *OK)
    rec.replied("webhook", None, "invalid_token", 401, "invalid token")
    rec.flush()
    assert sorted(store.added) == [
        ("tenant-a", sorted([PushBucket(A1.fingerprint, "pagerduty", T0, 2, 1, T0 + 10),
                             PushBucket(A1.fingerprint, "pagerduty", T0 + BUCKET, 1, 0, T0 + 65),
                             PushBucket(A2.fingerprint, "generic-json", T0, 1, 1, T0 + 10)],
                            key=lambda b: (b.fingerprint, b.bucket_start))),
        ("tenant-b", [PushBucket(B1.fingerprint, "opsgenie", T0, 1, 0, T0 + 10)])]
    rec.flush()
    assert len(store.added) == 2  # nothing new, nothing written


def test_a_replay_is_a_request_but_never_an_error() -> None:
    """A replayed idempotent answer counts as a request and not as an error."""
    rec, store, _ = recorder()
    rec.replied("webhook", A1, *REPLAY)
    rec.flush()
    assert store.added == [("tenant-a", [PushBucket(A1.fingerprint, "pagerduty", T0, 1, 0, T0)])]


def test_the_running_recorder_flushes_on_its_interval_and_sweeps_old_buckets() -> None:
    """Started, it writes every 5 s of the clock without a write per request, and sweeps what is older than 25 h."""
    rec, store, clock = recorder()
    rec.startService()
    rec.replied("webhook", A1, *OK)
    rec.replied("webhook", A1, *OK)
    assert store.added == []
    clock.advance(5)
    assert store.added == [("tenant-a", [PushBucket(A1.fingerprint, "pagerduty", T0, 2, 0, T0)])]
    clock.advance(600)
    assert store.swept == [T0 + 605 - RETENTION]
    rec.stopService()


def test_a_failed_write_keeps_its_counts_for_the_next_flush() -> None:
    """When the store fails, the counts stay in memory, are added to the next ones, and the loop keeps
    running; the log says when the failures begin, reminds after five minutes and says when the counts
    are stored again, each in one line without a traceback."""
    rec, store, clock = recorder()
    rec.startService()
    store.down = True
    rec.replied("webhook", A1, *BAD_SIGNATURE)
    with capturedLogs() as logs:
        clock.advance(5)
        clock.advance(600)
        assert store.added == []
        store.down = False
        rec.replied("webhook", A1, *OK)
        clock.advance(5)
    lost = STORE_DOWN
    assert [formatEvent(e) for e in logs] == [
        f"push stats: storing counts failed: {lost}; retrying in 5s (the counts are kept)",
        f"push stats: storing counts still failing after 600 s (2 attempts); latest: {lost}",
        f"push-stats-sweep failed: {lost}; retrying in 600s",
        "push stats: storing counts works again after 605 s (2 attempts failed)"]
    assert [e for e in logs if "log_failure" in e] == []
    assert store.added == [("tenant-a", [PushBucket(A1.fingerprint, "pagerduty", T0, 1, 1, T0),
                                         PushBucket(A1.fingerprint, "pagerduty", T0 + 10 * BUCKET, 1, 0, T0 + 605)])]
    rec.stopService()


def test_counts_the_store_never_took_are_dropped_after_the_retention() -> None:
    """Counts that could not be written for longer than the 25 h retention are given up instead of piling up."""
    rec, store, clock = recorder()
    store.down = True
    rec.replied("webhook", A1, *OK)
    with capturedLogs():
        clock.advance(RETENTION + BUCKET)
        rec.flush()
    store.down = False
    rec.flush()
    assert store.added == []


def test_stop_flushes_at_once_and_again_when_in_flight_requests_replied() -> None:
    """Stopping writes what was counted without waiting, and the counts of requests still in flight once they replied."""
    drained: Deferred[None] = Deferred()
    rec, store, clock = recorder(drained)
    rec.startService()
    rec.replied("webhook", A1, *OK)
    stopped: list[object] = []
    rec.stopService().addCallback(stopped.append)
    assert stopped == [None]
    assert store.added == [("tenant-a", [PushBucket(A1.fingerprint, "pagerduty", T0, 1, 0, T0)])]
    rec.replied("webhook", A1, *UNAVAILABLE)  # a request that was still in flight
    drained.callback(None)
    assert store.added[1:] == [("tenant-a", [PushBucket(A1.fingerprint, "pagerduty", T0, 1, 1, T0)])]
    assert clock.getDelayedCalls() == []


def test_push_row_rates_errors_and_says_never_without_requests() -> None:
    """The Push tab row gives the error rate over 24 h, and no rate and no last-seen time for an unused token."""
    totals = PushTotals("tenant-a", A1.fingerprint, "pagerduty", requests=8, errors=2, last_seen=T0)
    row = push_row(A1, totals)
    assert row == {"fingerprint": A1.fingerprint, "template": "pagerduty", "label": None, "state": "active",
                   "requests_24h": 8, "errors_24h": 2, "error_rate_24h": 0.25, "last_seen": "2023-11-14T22:14:00Z"}
    assert push_row(A1, None) == {
        "fingerprint": A1.fingerprint, "template": "pagerduty", "label": None, "state": "active", "requests_24h": 0,
        "errors_24h": 0, "error_rate_24h": None, "last_seen": None}


# -- the status page's in-memory rings ------------------------------------------------------------

def test_event_rates_sum_the_last_minute_and_hour_per_template() -> None:
    """Events count in the last minute for 60 s and in the last hour for 3600 s, per template."""
    clock = Clock()
    clock.advance(T0)
    rates = EventRates(clock)
    rates.published("pagerduty", 3)
    clock.advance(30)
    rates.published("pagerduty", 2)
    rates.published("opsgenie", 1)
    assert rates.rates() == {"pagerduty": (5, 5), "opsgenie": (1, 1)}
    clock.advance(45)
    assert rates.rates() == {"pagerduty": (2, 5), "opsgenie": (1, 1)}
    clock.advance(3545)  # the first events are 3620 s old, the others 3590 s
    assert rates.rates() == {"pagerduty": (0, 2), "opsgenie": (0, 1)}
    clock.advance(30)
    assert rates.rates() == {}


def test_recent_errors_keep_the_newest_error_replies_without_tokens() -> None:
    """Only 4xx/5xx replies are kept, newest first, at most `size`, with the fingerprint prefix and a capped message."""
    clock = Clock()
    errors = RecentErrors(clock, size=3)
    errors.replied("webhook", A1, *OK)
    for status in (400, 401, 413, 503):
        clock.advance(1)
        errors.replied("webhook", A1, "x", status, f"e{status} " + "x" * 500)
    errors.replied("email", None, "invalid_token", 401, "invalid token")
    entries = errors.entries()
    assert [(e.route, e.status, e.token) for e in entries] == [
        ("email", 401, None), ("webhook", 503, A1.fingerprint[:8]), ("webhook", 413, A1.fingerprint[:8])]
    assert entries[1].at == 4 and entries[1].message.startswith("e503 ") and len(entries[1].message) == 300


# -- through the running daemon -------------------------------------------------------------------

@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state"))
    yield running
    if running.daemon.running:
        await running.stop()


def recorder_of(running: RunningDaemon) -> PushStatsRecorder:
    service = running.daemon.getServiceNamed("push-stats")
    assert isinstance(service, PushStatsRecorder)
    return service


@pytest_twisted.ensureDeferred
async def test_daemon_counts_token_replies_for_the_admin_api_and_the_cli(inboxd: RunningDaemon,
                                                                         tmp_path: Path) -> None:
    """Accepted, replayed and refused requests of a token show in its admin API and CLI stats; an unknown token in none."""
    token = await inboxd.mint("acme", signing_secret=b"s3cret")
    unused = await inboxd.mint("acme", "pagerduty")
    await inboxd.mint("other")
    body = b'{"id": "a1", "title": "Impossible travel"}'
    signed = {"X-Signature": hmac.new(b"s3cret", body, hashlib.sha256).hexdigest(),
              "X-AiSOC-Idempotency-Key": "k1"}
    assert (await inboxd.post(f"/v1/inbox/{token}", body, signed))[0] == 200
    assert (await inboxd.post(f"/v1/inbox/{token}", body, signed))[0] == 200  # replay
    assert (await inboxd.post(f"/v1/inbox/{token}", body, {"X-Signature": "00"}))[0] == 401
    assert (await inboxd.post(f"/v1/inbox/aisoc_inbox_{'a' * 52}", body))[0] == 401
    await recorder_of(inboxd).flush()

    status, reply = await inboxd.call_admin("GET", "/v1/admin/tenants/acme/tokens/stats")
    assert status == 200
    rows = {r["fingerprint"]: r for r in reply["tokens"]}
    mine = rows[fingerprint(token)]
    assert (mine["requests_24h"], mine["errors_24h"], mine["error_rate_24h"]) == (3, 1, 0.3333)
    assert (mine["template"], mine["state"]) == ("generic-json", "active") and mine["last_seen"].endswith("Z")
    assert (rows[fingerprint(unused)]["requests_24h"], rows[fingerprint(unused)]["last_seen"]) == (0, None)
    assert token not in json.dumps(reply)

    done = await threads.deferToThread(cli, tmp_path / "state", "token", "stats", "--tenant", "acme", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == reply["tokens"]
    text = await threads.deferToThread(cli, tmp_path / "state", "token", "stats", "--tenant", "acme")
    assert fingerprint(token)[:16] in text.stdout and "33.3%" in text.stdout and "never" in text.stdout


@pytest_twisted.ensureDeferred
async def test_daemon_stop_flushes_what_it_counted(inboxd: RunningDaemon, tmp_path: Path) -> None:
    """Counts not yet flushed when the daemon stops are written by its final flush."""
    token = await inboxd.mint("acme")
    assert (await inboxd.post(f"/v1/inbox/{token}", b'{"title": "x"}'))[0] == 200
    assert (await inboxd.post(f"/v1/inbox/{token}", b"not json"))[0] == 400
    await inboxd.stop()
    done = await threads.deferToThread(cli, tmp_path / "state", "token", "stats", "--tenant", "acme", "--json")
    [row] = json.loads(done.stdout)
    assert (row["requests_24h"], row["errors_24h"]) == (2, 1)


@pytest.mark.parametrize("key", ["", "wrong"])
@pytest_twisted.ensureDeferred
async def test_stats_api_requires_the_admin_key(inboxd: RunningDaemon, key: str) -> None:
    """The stats route answers 401 without the admin key."""
    status, _ = await inboxd.call_admin("GET", "/v1/admin/tenants/acme/tokens/stats", key=key)
    assert status == 401


@pytest_twisted.ensureDeferred
async def test_refusals_after_the_token_resolved_count_as_its_errors(reactor: Any, tmp_path: Path) -> None:
    """A token held back by its tenant's rate limit (429), or whose template left the allowed list
    (400), has those requests counted as its errors, on the webhook and the HEC routes alike."""
    import dataclasses

    settings = daemon_settings(tmp_path / "state", http={"rate_limit_per_min": 2})
    running = await start_daemon(reactor, settings)
    try:
        token = await running.mint("acme")
        codes = [(await running.post(f"/v1/inbox/{token}", b'{"title": "x"}'))[0] for _ in range(3)]
        codes.append((await running.post("/services/collector/event", b'{"event": "x"}',
                                         {"Authorization": f"Splunk {token}"}))[0])
        assert codes == [200, 200, 429, 503]
        await recorder_of(running).flush()
        status, reply = await running.call_admin("GET", "/v1/admin/tenants/acme/tokens/stats")
        [row] = reply["tokens"]
        assert (row["requests_24h"], row["errors_24h"]) == (4, 2)
    finally:
        await running.stop()
    narrowed = dataclasses.replace(settings, templates=dataclasses.replace(settings.templates, allowed=["pagerduty"]),
                                   http=dataclasses.replace(settings.http, rate_limit_per_min=600))
    running = await start_daemon(reactor, narrowed)
    try:
        assert (await running.post(f"/v1/inbox/{token}", b'{"title": "x"}'))[0] == 400
        await recorder_of(running).flush()
        status, reply = await running.call_admin("GET", "/v1/admin/tenants/acme/tokens/stats")
        [row] = reply["tokens"]
        assert (row["requests_24h"], row["errors_24h"]) == (5, 3)
    finally:
        await running.stop()
