"""
The status page's redeliver button (issue 18's "done when"), on the real daemon: in headless
Chromium driven by chromedriver, a user whose sender got a 400 reads the body and the exact reply
from the page alone, fixes the template (trying it on the recorded body with C{templates render
--delivery}), redelivers from the page and sees the OCSF event; a form posted from another site —
by a browser holding the admin's Basic credentials, or by hand without the page's anti-CSRF token or
origin — is refused and publishes nothing; no surface shows a token, a secret or the admin key.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import pytest_twisted
import treq
from twisted.internet import task, threads
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from aisoc_inboxd.config import TemplateSettings
from aisoc_inboxd.tokens import fingerprint
from aisoc_inboxd.web.status_forms import TOKEN_LIFETIME, FormGuard
from tests.support.browser import Browser
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.test_deliveries_daemon import cli

TEMPLATE = """\
id: {id}
vendor_name: Acme
product_name: Acme Alerts
class_uid: 2004
class_name: Detection Finding
activity_id: 1
field_map:
  alert.id: finding_info.uid
  alert.title: finding_info.title
"""
BODY = b'{"alert": {"id": "A-7", "title": "Login from a new country <b>NZ</b>"}}'


@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    """
    The daemon with a templates directory of the user's own, C{acme-alerts}.
    """
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "acme-alerts.yaml").write_text(TEMPLATE.format(id="acme-alerts"))
    settings = daemon_settings(tmp_path / "state", templates=TemplateSettings(directories=[str(templates)]))
    running = await start_daemon(reactor, settings)
    yield running
    await running.stop()


async def reload(daemon: RunningDaemon) -> None:
    assert daemon.daemon.reloads is not None
    outcome = await Deferred.fromCoroutine(daemon.daemon.reloads.reload())
    assert outcome.applied, outcome.rejection


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"operator:{key}".encode()).decode()


async def deliveries(daemon: RunningDaemon, fp: str) -> list[dict[str, Any]]:
    code, listing = await daemon.call_admin("GET", f"/v1/admin/tenants/acme/tokens/{fp}/deliveries")
    assert code == 200
    return list(listing["deliveries"])


@pytest_twisted.ensureDeferred
async def test_a_user_fixes_the_template_and_redelivers_from_the_status_page_in_chromium(
        inboxd: RunningDaemon, tmp_path: Path) -> None:
    """In Chromium, from the status page alone: the 400 a sender got shows its body and the exact reply;
    after the template is fixed (tried on that body with templates render --delivery), the delivery's
    Redeliver button publishes it again and the page opens the new delivery with its OCSF event. The
    same browser, holding the admin's Basic credentials, posting the form from another site is refused
    and publishes nothing. No page shows the token or the admin key."""
    templates = tmp_path / "templates"
    token = await inboxd.mint("acme", "acme-alerts")
    fp = fingerprint(token)
    # the author renames the template by mistake: the token's template is gone, its sender gets 400
    (templates / "acme-alerts.yaml").unlink()
    (templates / "acme-alert.yaml").write_text(TEMPLATE.format(id="acme-alert"))
    await reload(inboxd)
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", BODY)
    assert status == 400 and "acme-alerts" in reply["error"]
    assert inboxd.events() == []

    port = inboxd.daemon.address("admin").port
    base = f"http://operator:{inboxd.admin_key}@127.0.0.1:{port}"
    browser = await threads.deferToThread(Browser, tmp_path / "profile")
    pages: list[str] = []
    try:
        await threads.deferToThread(browser.open, f"{base}/status?tenant=acme")
        await threads.deferToThread(browser.click, f'a[href*="deliveries={fp}"]')
        await threads.deferToThread(browser.text_showing, "Recent deliveries of token")
        await threads.deferToThread(browser.click, "#delivery-1 summary")
        shown = await threads.deferToThread(browser.text_showing, "POST (webhook route)")
        pages.append(await threads.deferToThread(browser.page))
        assert BODY.decode() in shown, shown[shown.find("Request"):][:3000]
        assert "400 (unknown_template" in shown and json.dumps(reply) in shown

        fixed = tmp_path / "acme-alerts.yaml"
        fixed.write_text(TEMPLATE.format(id="acme-alerts"))
        code, out, err = await cli(inboxd, "templates", "render", str(fixed), "--tenant", "acme",
                                   "--delivery", f"{fp[:12]}:1", "--validate")
        assert code == 0, err
        assert json.loads(out)["finding_info"]["title"] == "Login from a new country <b>NZ</b>"
        (templates / "acme-alerts.yaml").write_text(fixed.read_text())
        await reload(inboxd)

        await threads.deferToThread(browser.click, "#delivery-1 form.redeliver button")
        shown = await threads.deferToThread(browser.text_showing, "redelivered by the status page")
        after = await threads.deferToThread(browser.url)
        pages.append(await threads.deferToThread(browser.page))
        assert after.endswith("opened=2#delivery-2"), after
        assert re.search(r"#2 .* redelivered by the status page .* 200 ok +events=1", shown), shown
        assert "X-AiSOC-Redelivery-Of: 1" in shown and '"title": "Login from a new country <b>NZ</b>"' in shown
        assert [e["finding_info"]["uid"] for e in inboxd.events()] == ["A-7"]

        # another site (another origin) posts the same form into the browser holding the credentials
        form = (f'<form method="post" action="http://127.0.0.1:{port}/status">'
                f'<input type="hidden" name="tenant" value="acme"><input type="hidden" name="fingerprint" '
                f'value="{fp}"><input type="hidden" name="n" value="1"><button>win a prize</button></form>')
        evil = Resource()
        evil.putChild(b"", Data(form.encode(), "text/html"))
        listening = inboxd.reactor.listenTCP(0, Site(evil), interface="127.0.0.1")
        try:
            await threads.deferToThread(browser.open, f"http://localhost:{listening.getHost().port}/")
            await threads.deferToThread(browser.click, "button")
            refused = await threads.deferToThread(browser.text_showing, "Refused")
        finally:
            await listening.stopListening()
        assert "Refused: the form was posted from another site (Origin). Nothing was redelivered." in refused
    finally:
        await threads.deferToThread(browser.close)
    assert len(inboxd.events()) == 1 and len(await deliveries(inboxd, fp)) == 2
    for page in pages:
        assert token not in page and token[len("aisoc_inbox_"):] not in page and inboxd.admin_key not in page


async def post_form(daemon: RunningDaemon, fields: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    response = await treq.post(f"{daemon.admin_url}/status", data=urlencode(fields).encode(),
                               headers={"Content-Type": ["application/x-www-form-urlencoded"],
                                        **{k: [v] for k, v in headers.items()}})
    return response.code, (await response.content()).decode()


@pytest_twisted.ensureDeferred
async def test_a_forged_redeliver_is_refused_and_publishes_nothing(inboxd: RunningDaemon) -> None:
    """With the admin's Basic credentials (what a browser re-sends cross-site), a redeliver form without
    Origin and Referer, from a foreign Origin or Referer, without the page's token, with a token altered
    or made for another admin key is refused 403 and publishes nothing; without credentials it is 401.
    The same form with the page's token from the page's own origin redelivers (303 to the new delivery)."""
    token = await inboxd.mint("acme", "acme-alerts")
    fp = fingerprint(token)
    assert (await inboxd.post(f"/v1/inbox/{token}", BODY))[0] == 200
    page = (await treq.get(f"{inboxd.admin_url}/status?tenant=acme&deliveries={fp}",
                           headers={"Authorization": [basic(inboxd.admin_key)]}))
    html = (await page.content()).decode()
    assert page.headers.getRawHeaders("Referrer-Policy") == ["same-origin"]
    [csrf] = set(re.findall(r'name="csrf" value="([^"]+)"', html))
    own = inboxd.admin_url
    issued, _, mac = csrf.partition(".")
    other_key = FormGuard(b"another admin key", inboxd.reactor)
    form = {"tenant": "acme", "fingerprint": fp, "n": "1", "csrf": csrf}
    creds = {"Authorization": basic(inboxd.admin_key)}
    forged = [
        (form, creds, "no Origin or Referer"),
        (form, {**creds, "Origin": "http://evil.example"}, "another site (Origin)"),
        (form, {**creds, "Origin": "null"}, "another site (Origin)"),
        (form, {**creds, "Referer": "http://evil.example/status"}, "another site (Referer)"),
        ({**form, "csrf": ""}, {**creds, "Origin": own}, "anti-CSRF token is missing or wrong"),
        ({k: v for k, v in form.items() if k != "csrf"}, {**creds, "Origin": own}, "missing or wrong"),
        ({**form, "csrf": f"{issued}.{'0' * len(mac)}"}, {**creds, "Origin": own}, "missing or wrong"),
        ({**form, "csrf": f"{int(issued) + 1}.{mac}"}, {**creds, "Origin": own}, "missing or wrong"),
        ({**form, "csrf": other_key.token()}, {**creds, "Origin": own}, "missing or wrong"),
    ]
    for fields, headers, why in forged:
        code, answer = await post_form(inboxd, fields, headers)
        assert code == 403 and why in answer and "Nothing was redelivered" in answer, (headers, fields, answer)
    assert (await post_form(inboxd, form, {"Origin": own}))[0] == 401
    api = await treq.post(f"{own}/v1/admin/tenants/acme/tokens/{fp}/deliveries/1/redeliver",
                          headers={"Authorization": [basic(inboxd.admin_key)], "Origin": [own]})
    assert api.code == 401  # the admin API takes no Basic credentials for a change
    assert len(inboxd.events()) == 1 and len(await deliveries(inboxd, fp)) == 1

    response = await treq.post(f"{own}/status", data=urlencode(form).encode(), allow_redirects=False,
                               headers={"Content-Type": ["application/x-www-form-urlencoded"],
                                        "Authorization": [basic(inboxd.admin_key)], "Referer": [f"{own}/status"]})
    assert response.code == 303
    assert response.headers.getRawHeaders("Location") == [
        f"status?tenant=acme&deliveries={fp}&opened=2#delivery-2"]
    assert len(inboxd.events()) == 2 and len(await deliveries(inboxd, fp)) == 2


def test_a_form_token_is_good_for_an_hour_of_this_process_and_admin_key() -> None:
    """A page's token is accepted for an hour, then refused as stale; one made by another process (a
    restart: another secret) or for another admin key is refused."""
    clock = task.Clock()
    clock.advance(1_700_000_000)
    guard = FormGuard(b"key", clock)

    class Posted:
        def __init__(self) -> None:
            self.headers = {b"origin": b"http://127.0.0.1:9109", b"host": b"127.0.0.1:9109"}

        def getHeader(self, name: bytes) -> bytes | None:
            return self.headers.get(name)

    posted: Any = Posted()
    token = guard.token()
    assert guard.refusal(posted, token) is None
    clock.advance(TOKEN_LIFETIME)
    assert guard.refusal(posted, token) is None
    clock.advance(1)
    assert guard.refusal(posted, token) == "the page is more than an hour old: reload the status page"
    assert "missing or wrong" in str(guard.refusal(posted, guard.token()[:-1]))
    assert "missing or wrong" in str(guard.refusal(posted, FormGuard(b"key", clock).token()))
    assert "missing or wrong" in str(guard.refusal(posted, FormGuard(b"other", clock, b"s").token()))
    posted.headers[b"origin"] = b"https://127.0.0.1:9109"  # through a TLS proxy: the same host
    assert guard.refusal(posted, guard.token()) is None
    posted.headers[b"origin"] = b"http://127.0.0.1:9110"
    assert "another site (Origin)" in str(guard.refusal(posted, guard.token()))

