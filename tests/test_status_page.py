"""
The status page on the admin listener: its authentication, what it shows of a sink with an outage
spool, that it escapes what senders control, and — loaded in headless Chromium after real traffic —
what an operator reads there.
"""
from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.internet import threads
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from prometheus_client import CollectorRegistry

from aisoc_inboxd.activity import EventRates, RecentErrors
from aisoc_inboxd.metrics import Metrics, SyslogMetrics
from aisoc_inboxd.push_stats import PushStatsRecorder
from aisoc_inboxd.reload import ReloadOutcome
from aisoc_inboxd.sinks import IKafkaDestination, ISpooling
from aisoc_inboxd.store import PushBucket, StoreError, TokenRecord
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.testing import FakeStore
from aisoc_inboxd.tokens import TokenCache, fingerprint, mint_token
from aisoc_inboxd.web.status import MAX_TOKENS, StatusPage, StatusSources, TokenStoreView
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon

T0 = 1_700_000_000.0
BODY = b'{"id": "a1", "title": "Impossible travel", "severity": "high"}'


@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state"))
    yield running
    await running.stop()


async def flush(running: RunningDaemon) -> None:
    recorder = running.daemon.getServiceNamed("push-stats")
    assert isinstance(recorder, PushStatsRecorder)
    await recorder.flush()


async def get_status(running: RunningDaemon, authorization: str | None, query: str = "") -> tuple[int, Any, str]:
    headers = {"Authorization": [authorization]} if authorization else {}
    response = await treq.get(f"{running.admin_url}/status{query}", headers=headers)
    return response.code, response.headers, (await response.content()).decode("utf-8")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Text(HTMLParser):
    """
    The page as a person reads it: the text of each table row, cells separated by " | ".
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.text: list[str] = []
        self._cells: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self._cells = []
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._cells is not None:
            self.rows.append(" | ".join(c.strip() for c in self._cells))
            self._cells = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cells:
            self._cells[-1] += data


def read(page: str) -> Text:
    parser = Text()
    parser.feed(page)
    return parser


# -- authentication -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_browser_without_the_key_gets_a_basic_challenge(inboxd: RunningDaemon) -> None:
    """No credentials, a wrong Basic password or a wrong Bearer key get 401 with a Basic challenge and no data."""
    for authorization in (None, basic("admin", "wrong"), basic(inboxd.admin_key, ""), "Bearer wrong",
                          "Basic !!not-base64"):
        status, headers, page = await get_status(inboxd, authorization)
        assert status == 401, authorization
        assert headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="aisoc-inboxd admin", charset="UTF-8"']
        assert "Listeners" not in page


@pytest_twisted.ensureDeferred
async def test_the_key_opens_it_as_basic_password_of_any_user_or_as_bearer(inboxd: RunningDaemon) -> None:
    """The admin key as the Basic password (any user name) or as a Bearer token shows the page, uncached."""
    for authorization in (basic("admin", inboxd.admin_key), basic("", inboxd.admin_key),
                          f"Bearer {inboxd.admin_key}"):
        status, headers, page = await get_status(inboxd, authorization)
        assert status == 200
        assert headers.getRawHeaders("Content-Type") == ["text/html; charset=utf-8"]
        assert headers.getRawHeaders("Cache-Control") == ["no-store"]
        assert "default-src 'none'" in headers.getRawHeaders("Content-Security-Policy")[0]
        assert "aisoc-inboxd status" in read(page).text


@pytest_twisted.ensureDeferred
async def test_the_admin_api_takes_the_key_as_basic_password_too(inboxd: RunningDaemon) -> None:
    """The admin API accepts the same Basic credentials a browser keeps for the status page."""
    response = await treq.get(f"{inboxd.admin_url}/v1/admin/tenants/acme/tokens",
                              headers={"Authorization": [basic("ops", inboxd.admin_key)]})
    assert response.code == 200
    assert await response.json() == {"tokens": []}


@pytest_twisted.ensureDeferred
async def test_the_admin_api_refuses_changes_sent_with_basic_credentials(inboxd: RunningDaemon) -> None:
    """A browser logged in to the status page sends its Basic credentials with any site's form post:
    so a change (mint, revoke, redeliver, invalidate) needs the Bearer header, and mints nothing."""
    for path in ("/v1/admin/tenants/acme/tokens", "/v1/admin/invalidate"):
        response = await treq.post(f"{inboxd.admin_url}{path}", data=b'{"template": "generic-json"}',
                                   headers={"Authorization": [basic("ops", inboxd.admin_key)],
                                            "Content-Type": ["application/x-www-form-urlencoded"]})
        assert response.code == 401
        assert "Basic auth is accepted for reads only" in (await response.json())["error"]
    listed = await treq.get(f"{inboxd.admin_url}/v1/admin/tenants/acme/tokens",
                            headers={"Authorization": [basic("ops", inboxd.admin_key)]})
    assert await listed.json() == {"tokens": []}


# -- what it shows --------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_sender_controlled_text_is_escaped(inboxd: RunningDaemon) -> None:
    """A tenant name and an error message carrying markup appear as text, never as elements. (Tenant ids
    minted today cannot hold markup; a row written before that rule, or by another writer, can.)"""
    tenant = '<img src=x onerror="alert(1)">'
    token = mint_token()
    await inboxd.daemon.store.insert_token(TokenRecord(fingerprint(token), tenant, "generic-json"))
    assert (await inboxd.post(f"/v1/inbox/{token}", BODY))[0] == 200
    assert (await inboxd.post(f"/v1/inbox/{token}", BODY, {"Content-Type": "text/html<script>"}))[0] == 415
    await flush(inboxd)
    _, _, page = await get_status(inboxd, basic("admin", inboxd.admin_key))
    assert "<img" not in page and "<script" not in page
    assert html.escape(tenant, quote=False) in page
    assert any(tenant in row for row in read(page).rows)


class FakeDisk:
    since = T0 - 90
    failed_writes = 7

    def problem(self) -> str | None:
        return "the spool cannot be written: disk full"


class FakeSpool:
    bytes = 123_456
    segments = 3
    oldest_received_at: float | None = T0 - 125
    disk = FakeDisk()


@implementer(ISpooling, IKafkaDestination)
class FakeKafkaSink:
    name = "kafka-sink"
    spool = FakeSpool()
    topic = "ocsf.events"
    bootstrap_servers = "kafka-1:9093,kafka-2:9093"

    def not_ready(self) -> str | None:
        return "Kafka is unreachable and the spool cannot be written: disk full"


ONE, TWO, IDLE = (fingerprint(f"aisoc_inbox_{name}") for name in ("one", "two", "idle"))


def seeded_store(tokens: list[TokenRecord] | None = None) -> FakeStore:
    """
    Four tokens: one used lately, one rotated 22 hours ago and last used a day ago, two never used
    (one of a tenant that never pushed anything).
    """
    store = FakeStore(tokens if tokens is not None else [
        TokenRecord(IDLE, "acme", "opsgenie", label="never used yet", created_at=T0 - 60),
        TokenRecord(ONE, "acme", "pagerduty", label="prod PagerDuty", created_at=T0 - 3600),
        TokenRecord(TWO, "globex", "opsgenie", created_at=T0 - 200_000, rotated_at=T0 - 80_000),
        TokenRecord(fingerprint("aisoc_inbox_new"), "initech", "generic-json", created_at=T0 - 10)])
    store.add_push_stats("acme", [PushBucket(ONE, "pagerduty", T0 - 60, 40, 10, T0 - 30)])
    store.add_push_stats("globex", [PushBucket(TWO, "opsgenie", T0 - 90_060, 5, 0, T0 - 90_000)])
    return store


class FakeListener:
    name = "syslog-tcp"
    description = "tcp:6514"
    port = None


def render(page: StatusPage, query: dict[bytes, list[bytes]] | None = None) -> str:
    request = DummyRequest([b""])
    request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer key"])
    request.args = query or {}
    result = page.render_GET(request)
    assert result is not None and request.finished
    return b"".join(request.written).decode("utf-8")


def fake_page(metrics: CollectorRegistry | None = None, clock: Clock | None = None,
              tokens: TokenStoreView | None = None, last_reload: ReloadOutcome | None = None,
              store: FakeStore | None = None) -> StatusPage:
    if clock is None:
        clock = Clock()
        clock.advance(T0)
    rates, errors = EventRates(clock), RecentErrors(clock)
    sources = StatusSources(lambda: [FakeListener()], FakeKafkaSink(), store or seeded_store(),  # type: ignore[arg-type]
                            rates, errors, clock, metrics or CollectorRegistry(), lambda: last_reload, tokens)
    return StatusPage(sources, b"key")


def test_kafka_spool_unbound_listener_and_push_stats_are_shown() -> None:
    """A Kafka sink shows its topic and bootstrap servers, not ready with the reason, its spool size,
    segments, oldest age and a full disk since when with its failed writes; an unbound listener says so;
    every token is listed with its label and state, latest request first, the one never used too."""
    rows = read(render(fake_page())).rows
    assert "syslog-tcp | tcp:6514 | — | not bound" in rows
    assert {"type | kafka-sink", "topic | ocsf.events", "bootstrap servers | kafka-1:9093,kafka-2:9093",
            "ready | not ready: Kafka is unreachable and the spool cannot be written: disk full",
            "spool bytes | 123456", "spool segments | 3", "oldest spooled event | 2 min",
            "spool disk | the spool cannot be written: disk full (since 2023-11-14 22:11:50 UTC, 1 min ago)",
            "spool writes failed | 7"} <= set(rows)
    tokens = [row for row in rows if row.split(" | ")[0] in (ONE[:8], TWO[:8], IDLE[:8], "token")]
    assert tokens == [
        "token | tenant | template | label | state | requests | last seen | error rate",
        f"{ONE[:8]} | acme | pagerduty | prod PagerDuty | active | 40 | 2023-11-14 22:12:50 UTC (30 s ago) | 25.0 %",
        f"{TWO[:8]} | globex | opsgenie | — | rotated | 0 | 2023-11-13 21:13:20 UTC (1 d ago) | —",
        f"{IDLE[:8]} | acme | opsgenie | never used yet | active | 0 | never | —"]


def test_the_token_list_is_capped_with_a_note() -> None:
    """A tenant with more tokens than the page lists shows the newest ones and says where to see them all."""
    many = [TokenRecord(fingerprint(f"aisoc_inbox_{n}"), "acme", "generic-json", created_at=T0 - n)
            for n in range(MAX_TOKENS + 3)]
    for query, note in [({}, f"Only the {MAX_TOKENS} newest tokens are listed: choose a tenant."),
                        ({b"tenant": [b"acme"]}, f"Only the {MAX_TOKENS} newest tokens of acme are listed: "
                                                 f"aisoc-inboxd token stats --tenant acme lists every one.")]:
        page = read(render(fake_page(store=seeded_store(many)), query))
        assert [row for row in page.rows if " | generic-json | " in row][-1].startswith(fingerprint(
            f"aisoc_inbox_{MAX_TOKENS - 1}")[:8])
        assert len([row for row in page.rows if " | generic-json | " in row]) == MAX_TOKENS
        assert note in " ".join("".join(page.text).split())
    page = read(render(fake_page()))
    assert "newest tokens" not in "".join(page.text)


def test_syslog_accounting_is_shown_per_listener() -> None:
    """Each syslog listener has a row with the terms of its accounting (frames read, durable, in flight,
    dropped by every reason), what none of them accounts for, then its events and connections (closed
    idle or for a frame too large), 0 where nothing happened yet."""
    registry = CollectorRegistry()
    syslog = SyslogMetrics(registry)
    syslog.listener("tcp")
    syslog.listener("udp")
    syslog.connections.labels("tcp").inc(9)
    syslog.frames.labels("tcp").inc(130)
    syslog.durable.labels("tcp").inc(110)
    syslog.in_flight.labels("tcp").set(11)
    syslog.events.labels("tcp").inc(112)
    for reason, count in (("oversized", 2), ("malformed", 3), ("truncated", 4)):
        syslog.dropped.labels("tcp", reason).inc(count)
    syslog.closed.labels("tcp", "idle").inc(5)
    syslog.closed.labels("tcp", "oversized").inc(1)
    syslog.frames.labels("udp").inc(40)
    for reason, count in (("saturated", 7), ("unavailable", 8), ("shutdown", 9), ("error", 10)):
        syslog.dropped.labels("udp", reason).inc(count)
    rows = read(render(fake_page(registry))).rows
    assert ("listener | frames read | durable | in flight | dropped: oversized | dropped: malformed CEF | "
            "dropped: cut short | dropped: saturated | dropped: sink refused | dropped: shutdown | dropped: error | "
            "unaccounted | events durable | connections | closed: idle | closed: frame too large") in rows
    assert "tcp | 130 | 110 | 11 | 2 | 3 | 4 | 0 | 0 | 0 | 0 | 0 | 112 | 9 | 5 | 1" in rows
    assert "udp | 40 | 0 | 0 | 0 | 0 | 0 | 7 | 8 | 9 | 10 | 6 | 0 | 0 | 0 | 0" in rows
    assert "No syslog listener is configured." in render(fake_page())


def test_a_down_token_store_and_flood_counters_are_shown() -> None:
    """A store that stopped answering shows as down for how long with its last error, the LISTEN link
    as reconnecting, and the cache sizes, lookups, refused unknown-token lookups and errors by reason."""
    clock = Clock()
    clock.advance(T0)
    metrics = Metrics()
    health = StoreHealth(clock, metrics.token_store)
    cache = TokenCache(clock)
    cache.put(fingerprint("aisoc_inbox_valid"), TokenRecord(fingerprint("aisoc_inbox_valid"), "acme", "generic-json"))
    for n in range(3):
        cache.put(fingerprint(f"aisoc_inbox_unknown{n}"), None)
    metrics.token_store.lookups.inc(7)
    metrics.token_store.lookups_refused.inc(40)
    health.link(False)
    health.failed(StoreError("PostgreSQL at db:5432/aisoc as inboxd: connection refused", "connection"))
    health.failed(StoreError("PostgreSQL at db:5432/aisoc as inboxd: no answer within 3 s", "timeout"))
    clock.advance(90)
    rows = read(render(fake_page(clock=clock, tokens=TokenStoreView(health, metrics.token_store, cache)))).rows
    assert {"state | token store down for 1 min: uncached tokens get 503",
            "last error | PostgreSQL at db:5432/aisoc as inboxd: no answer within 3 s",
            "invalidation link (LISTEN) | reconnecting: the cache is dropped once it is back",
            "valid tokens cached | 1", "unknown tokens remembered | 3", "store lookups | 7",
            "lookups refused: unknown-token flood (429) | 40", "store errors | connection 1, timeout 1"} <= set(rows)
    health.answered()
    health.link(True)
    rows = read(render(fake_page(clock=clock, tokens=TokenStoreView(health, metrics.token_store, cache)))).rows
    assert {"state | answering", "invalidation link (LISTEN) | listening"} <= set(rows)


def test_the_last_reload_is_shown_with_its_time_result_and_reason() -> None:
    """Before any reload the page says so; after one it shows when, whether it was applied, and why it was not."""
    assert "No reload since the daemon started." in read(render(fake_page())).text
    assert {"time | 2023-11-14 22:12:20 UTC (1 min ago)", "result | applied"} <= set(
        read(render(fake_page(last_reload=ReloadOutcome(T0 - 60)))).rows)
    rejected = read(render(fake_page(last_reload=ReloadOutcome(T0 - 5, "http certificate: keys do not match")))).rows
    assert {"time | 2023-11-14 22:13:15 UTC (5 s ago)",
            "result | rejected: the previous configuration keeps serving",
            "reason | http certificate: keys do not match"} <= set(rejected)


def test_the_tenant_selector_narrows_push_stats() -> None:
    """Choosing a tenant shows only its tokens, and the selector offers every tenant with tokens or stats."""
    page = render(fake_page(), {b"tenant": [b"globex"]})
    rows = read(page).rows
    assert not any(fingerprint("aisoc_inbox_one")[:8] in row for row in rows)
    assert any(fingerprint("aisoc_inbox_two")[:8] in row for row in rows)
    assert re.search(r'<option value="globex" selected="selected">globex</option>', page)
    assert '<option value="acme">acme</option>' in page
    assert '<option value="initech">initech</option>' in page


# -- in a real browser ----------------------------------------------------------------------------

def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: run scripts/test-services (it installs the Debian package)")
    return path


def dump_dom(url: str, profile: Path) -> str:
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest_twisted.ensureDeferred
async def test_an_operator_reads_traffic_errors_and_rates_in_chromium(inboxd: RunningDaemon, tmp_path: Path) -> None:
    """After real traffic, headless Chromium shows the token's prefix with its label, count and error rate, a
    token never used, the 401 in the recent errors, the template's event rate, the bound listeners and the
    event log's file — and the key reaches no log line."""
    token = (await inboxd.admin.mint("acme", "pagerduty", "prod <PagerDuty>")).token
    idle = (await inboxd.admin.mint("acme", "opsgenie")).token
    event = (b'{"event": {"event_type": "incident.triggered", "occurred_at": "2026-05-08T09:00:00Z",'
             b' "data": {"id": "Q1", "title": "Database CPU > 90%", "urgency": "high"}}}')
    for _ in range(3):
        assert (await inboxd.post(f"/v1/inbox/{token}", event))[0] == 200
    assert (await inboxd.post(f"/v1/inbox/{token}", b"{broken"))[0] == 400
    assert (await inboxd.post(f"/v1/inbox/aisoc_inbox_{'z' * 52}", event))[0] == 401
    await flush(inboxd)

    lines: list[str] = []
    observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        port = inboxd.daemon.address("admin").port
        dom = await threads.deferToThread(dump_dom, f"http://operator:{inboxd.admin_key}@127.0.0.1:{port}/status",
                                          tmp_path / "chromium-profile")
    finally:
        globalLogPublisher.removeObserver(observer)

    page = read(dom)
    prefix = fingerprint(token)[:8]
    assert any(re.fullmatch(rf"{prefix} \| acme \| pagerduty \| prod <PagerDuty> \| active \| 4 \| .* UTC "
                            rf"\(\d+ s ago\) \| 25\.0 %", row) for row in page.rows), page.rows
    assert f"{fingerprint(idle)[:8]} | acme | opsgenie | — | active | 0 | never | —" in page.rows
    assert any(re.fullmatch(r".* UTC \(\d+ s ago\) \| webhook \| 401 \| — \| invalid token", row)
               for row in page.rows), page.rows
    assert any(re.fullmatch(rf".* \| webhook \| 400 \| {prefix} \| bad body: .*", row) for row in page.rows)
    assert "pagerduty | 3 | 3" in page.rows
    http_port = inboxd.daemon.address("http").port
    assert any(re.fullmatch(rf"http \| .* \| 127\.0\.0\.1:{http_port} \| bound", row) for row in page.rows)
    assert {"type | file-sink", "ready | ready", "event log disk | writable", "event log writes failed | 0"} <= set(page.rows)
    assert f"events file | {(tmp_path / 'state' / 'events' / 'events.ndjson').absolute()}" in page.rows
    assert any("/status" in line for line in lines)
    assert not any(inboxd.admin_key in line for line in lines)
    assert token not in dom
