"""
Recent deliveries on the real daemon (real listeners, store and sink): the CLI reads them from the
admin API (also with --follow), the status page shows them (also in Chromium), no surface — admin
API, CLI, status page, log — ever holds a token, a signing secret or an authorization value, and a
worker's cross the real control channel whatever their size.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, threads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import formatEvent, globalLogPublisher

from aisoc_inboxd.admin_client import admin_url
from aisoc_inboxd.config import DeliverySettings, HecSettings
from aisoc_inboxd.deliveries import TOKENS, WORKER_NUMBERS, Delivery, DeliveryLog
from aisoc_inboxd.hec_acks import AckChannels
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.tokens import fingerprint
from aisoc_inboxd.workers.control import DaemonSide, WorkerSide, adopt, socket_pair
from tests.support.daemon import RunningDaemon, wait_for
from tests.support.shared import PROJECT
from tests.test_status_page import basic, dump_dom, get_status
from tests.test_status_page import inboxd as daemon  # noqa: F401 (a fixture)

SECRET = b"whsec_never_recorded_0123456789"
BODY = b'{"id": "a1", "title": "<script>alert(1)</script> Impossible travel", "severity": "high"}'


def cli_env(daemon: RunningDaemon) -> dict[str, str]:
    """
    The environment that points the CLI at this daemon's state directory and admin listener.
    """
    port = daemon.admin_url.rsplit(":", 1)[1]
    return dict(os.environ, AISOC_INBOX_STATE_DIR=daemon.settings.state_dir,
                AISOC_INBOX_ADMIN_LISTEN=f"tcp:{port}:interface=127.0.0.1")


async def cli(daemon: RunningDaemon, *args: str) -> tuple[int, str, str]:
    out, err, code = await getProcessOutputAndValue(sys.executable, ["-m", "aisoc_inboxd.cli", *args],
                                                    env=cli_env(daemon), path=str(PROJECT))
    return code, out.decode(), err.decode()


async def status_page(daemon: RunningDaemon, query: str = "") -> str:
    code, _, page = await get_status(daemon, basic("operator", daemon.admin_key), query)
    assert code == 200
    return page


def sign(body: bytes) -> str:
    return hmac.new(SECRET, body, hashlib.sha256).hexdigest()


@pytest_twisted.ensureDeferred
async def test_no_surface_records_a_token_secret_or_authorization(daemon: RunningDaemon) -> None:
    """A token in the path, in Authorization (Bearer and Splunk), in a cookie and in a header of its
    own, signature headers and the signing secret: none of them reaches the admin API's deliveries,
    the CLI (table and JSON), the status page or the log, while the deliveries themselves are there."""
    token = await daemon.mint("acme", signing_secret=SECRET)
    hec_token = await daemon.mint("acme")
    lines: list[str] = []
    observer = lambda event: lines.append(formatEvent(event) + repr(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        status, _, _ = await daemon.post(f"/v1/inbox/{token}", BODY, {
            "Authorization": f"Bearer {token}", "Cookie": f"session={token}; s2={SECRET.decode()}",
            "X-Inbox-Token": token, "X-Signature": sign(BODY), "X-Hub-Signature-256": "sha256=" + sign(BODY)})
        assert status == 200
        status, _, _ = await daemon.post(f"/v1/inbox/{token}", BODY, {"X-Signature": "0" * 64})
        assert status == 401
        status, _, _ = await daemon.post("/services/collector/event", b'{"event": "hello"}',
                                         {"Authorization": f"Splunk {hec_token}"})
        assert status == 200
        fp, hec_fp = fingerprint(token), fingerprint(hec_token)
        surfaces = []
        for key in (fp, hec_fp):
            code, api = await daemon.call_admin("GET", f"/v1/admin/tenants/acme/tokens/{key}/deliveries")
            assert code == 200
            surfaces.append(json.dumps(api))
            for extra in ((), ("--json",)):
                code, out, err = await cli(daemon, "token", "deliveries", "--tenant", "acme", key, *extra)
                assert code == 0, err
                surfaces += [out, err]
            surfaces.append(await status_page(daemon, f"?tenant=acme&deliveries={key}"))
    finally:
        globalLogPublisher.removeObserver(observer)
    surfaces.append("\n".join(lines))
    webhook_deliveries = json.loads(surfaces[0])["deliveries"]
    assert [(d["status"], d["outcome"]) for d in webhook_deliveries] == [(401, "invalid_signature"), (200, "ok")]
    assert "Impossible travel" in surfaces[0] and "hello" in surfaces[6]
    for secret in (token, hec_token, SECRET.decode(), sign(BODY), "0" * 64, token[len("aisoc_inbox_"):]):
        for surface in surfaces:
            assert secret not in surface


@pytest_twisted.ensureDeferred
async def test_status_page_shows_request_reply_and_ocsf_escaped(daemon: RunningDaemon) -> None:
    """The token's row links to its deliveries; each opens to the request body, the reply and the
    OCSF event, and the tenant's HTML in them is escaped, never markup."""
    token = await daemon.mint("acme")
    await daemon.post(f"/v1/inbox/{token}", BODY, {"X-Vendor": "<b>bold</b>"})
    await daemon.post(f"/v1/inbox/{token}", b'{"broken": ')
    fp = fingerprint(token)
    overview = await status_page(daemon, "?tenant=acme")
    assert f'href="status?tenant=acme&amp;deliveries={fp}#deliveries"' in overview
    page = await status_page(daemon, f"?tenant=acme&deliveries={fp}")
    assert page.count('<details class="delivery" id="delivery-') == 2
    assert "<script>alert(1)</script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Impossible travel" in page
    assert "X-Vendor: &lt;b&gt;bold&lt;/b&gt;" in page
    assert "400 bad_request" in page and "invalid JSON at line 1 column" in page
    assert '"class_uid"' in page or "class_uid" in page


class _Lines(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.ended = False

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def processEnded(self, reason: Any) -> None:
        self.ended = True


@pytest_twisted.ensureDeferred
async def test_cli_follow_prints_new_deliveries_as_they_arrive(daemon: RunningDaemon, reactor: Any) -> None:
    """token deliveries --follow prints the kept deliveries, then each new one as it arrives."""
    token = await daemon.mint("acme")
    await daemon.post(f"/v1/inbox/{token}", b'{"n": 1}')
    follower = _Lines()
    process = reactor.spawnProcess(follower, sys.executable,
                                   [sys.executable, "-u", "-m", "aisoc_inboxd.cli", "token", "deliveries",
                                    "--tenant", "acme", fingerprint(token)[:12], "--follow", "--json"],
                                   env=cli_env(daemon), path=str(PROJECT))
    try:
        await wait_for(lambda: follower.out.count(b"\n") >= 1, reactor)
        await daemon.post(f"/v1/inbox/{token}", b'{"n": 2}')
        await daemon.post(f"/v1/inbox/{token}", b"not json")
        await wait_for(lambda: follower.out.count(b"\n") >= 3, reactor)
    finally:
        process.signalProcess("INT")
        await wait_for(lambda: follower.ended, reactor)
    printed = [json.loads(line) for line in follower.out.decode().splitlines()]
    assert [(d["n"], d["status"]) for d in printed] == [(1, 200), (2, 200), (3, 400)]


@pytest_twisted.ensureDeferred
async def test_cli_says_when_the_admin_api_does_not_answer(tmp_path: Path) -> None:
    """Without a running daemon the CLI says which admin API it could not reach, exit 1."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin.key").write_text("k")
    env = dict(os.environ, AISOC_INBOX_STATE_DIR=str(state), AISOC_INBOX_ADMIN_LISTEN="tcp:1:interface=127.0.0.1")
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "aisoc_inboxd.cli", "token", "deliveries", "--tenant", "acme", "abcdef12"],
        env=env, path=str(PROJECT))
    assert code == 1
    assert b"the admin API at http://127.0.0.1:1 does not answer" in err


@pytest.mark.parametrize("endpoint, url", [
    ("tcp:9109:interface=127.0.0.1", "http://127.0.0.1:9109"),
    ("tcp:port=9109", "http://127.0.0.1:9109"),
    (r"tcp6:9109:interface=\:\:1", "http://[::1]:9109"),
    ("ssl:9443:privateKey=k.pem:certKey=c.pem:interface=0.0.0.0", "https://127.0.0.1:9443"),
])
def test_admin_url_of_listen_endpoints(endpoint: str, url: str) -> None:
    """The CLI finds the admin API at the address of the first admin.listen endpoint."""
    assert admin_url(endpoint) == url


@pytest_twisted.ensureDeferred
async def test_templates_render_a_recorded_delivery(daemon: RunningDaemon) -> None:
    """templates render --delivery FINGERPRINT:N renders what the sender actually posted (with its
    headers) through a template; a delivery not kept is an error naming how to list those kept."""
    token = await daemon.mint("acme")
    await daemon.post(f"/v1/inbox/{token}", BODY)
    fp = fingerprint(token)
    code, out, err = await cli(daemon, "templates", "render", "generic-json", "--tenant", "acme",
                               "--delivery", f"{fp[:12]}:1", "--validate")
    assert code == 0, err
    event = json.loads(out)
    assert json.loads(event["raw_data"]) == json.loads(BODY)
    code, out, err = await cli(daemon, "templates", "render", "generic-json", "--tenant", "acme",
                               "--delivery", f"{fp[:12]}:7")
    assert code == 1 and "delivery 7 of token" in err and "token deliveries --tenant acme" in err


@pytest_twisted.ensureDeferred
async def test_an_operator_reads_a_400_and_a_redelivery_in_chromium(daemon: RunningDaemon, tmp_path: Path) -> None:
    """In headless Chromium, from the status page alone: the token's row opens its deliveries, the
    400 shows the body the sender posted and the exact reply; a good delivery redelivered through the
    admin API shows as a new delivery with its OCSF event."""
    token = await daemon.mint("acme", "pagerduty")
    event = (b'{"event": {"event_type": "incident.triggered", "occurred_at": "2026-05-08T09:00:00Z",'
             b' "data": {"id": "Q1", "title": "Database CPU > 90%", "urgency": "high"}}}')
    assert (await daemon.post(f"/v1/inbox/{token}", b'{"event": {"data": oops}}'))[0] == 400
    assert (await daemon.post(f"/v1/inbox/{token}", event))[0] == 200
    fp = fingerprint(token)
    code, reply = await daemon.call_admin("POST", f"/v1/admin/tenants/acme/tokens/{fp}/deliveries/2/redeliver")
    assert code == 200 and reply["n"] == 3 and reply["accepted"] == 1
    port = daemon.daemon.address("admin").port
    base = f"http://operator:{daemon.admin_key}@127.0.0.1:{port}"
    overview = await threads.deferToThread(dump_dom, f"{base}/status?tenant=acme", tmp_path / "profile")
    link = re.search(r'href="(status\?tenant=acme&amp;deliveries=[0-9a-f]{64}#deliveries)"', overview)
    assert link is not None and fp in link.group(1)
    dom = await threads.deferToThread(dump_dom, f"{base}/{html.unescape(link.group(1))}", tmp_path / "profile")
    assert dom.count('<details class="delivery" id="delivery-') == 3
    assert "#1 " in dom and "400 bad_request" in dom and "invalid JSON at line 1 column" in dom
    assert '{"event": {"data": oops}}' in dom
    assert "#3 " in dom and "X-AiSOC-Redelivery-Of: 2" in dom and "Database CPU &gt; 90%" in dom
    assert token not in dom and daemon.admin_key not in dom


@pytest_twisted.ensureDeferred
async def test_a_workers_deliveries_cross_the_control_channel_whatever_their_size(reactor: Any) -> None:
    """The daemon reads a worker's deliveries over the real control channel, also when they are
    larger than one AMP value (64 KiB): the bodies arrive whole, numbered in the worker's range."""
    log = DeliveryLog(DeliverySettings(body_bytes=200_000), worker=2)
    bodies = [bytes([65 + i]) * 150_000 for i in range(3)]
    for body in bodies:
        log.add(Delivery(key="f" * 64, number=log.next_number("f" * 64), tenant_id="acme", received_at=1.0,
                         client=None, route="webhook", method="POST", status=200, outcome="ok", template=None,
                         events=1, error=None, duration_ms=1.0, request_headers=[], response_headers=[],
                         response_body="{}", body=body, body_size=len(body)))
    lost: list[Any] = []
    ours, theirs = socket_pair()
    daemon_end = DaemonSide(RateLimiter(reactor, 60), AckChannels.build(HecSettings(), reactor), lambda: None,
                            lambda fingerprint: defer.succeed(None), reactor)
    worker_end = WorkerSide(lambda: lost.append(True), reactor)
    worker_end.deliveries = log
    adopt(reactor, ours.fileno(), daemon_end)
    adopt(reactor, theirs.fileno(), worker_end)
    ours.close()
    theirs.close()
    try:
        read = await daemon_end.read_deliveries(TOKENS, "acme", "ffff")
        assert [d["request"]["body"]["text"].encode() for d in read] == bodies[::-1]
        assert [d["n"] for d in read] == [2 * WORKER_NUMBERS + 3, 2 * WORKER_NUMBERS + 2, 2 * WORKER_NUMBERS + 1]
        assert await daemon_end.read_deliveries(TOKENS, "other", "ffff") == []
    finally:
        daemon_end.transport.loseConnection()
        await wait_for(lambda: bool(lost), reactor)
