"""
The status page's recent deliveries of one token (C{/status?tenant=T&deliveries=FINGERPRINT}):
one row per delivery, each opening (HTML C{<details>}, no script) to the request, the reply and
the first OCSF event side by side, and a webhook delivery whose body was kept whole to a
redeliver button (a form posted to C{/status}, guarded by L{aisoc_inboxd.web.status_forms}).
Everything shown is tenant data and hostile: it goes into the page only through
L{twisted.web.template}, which escapes it.
"""
from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from twisted.web.template import Tag, tags

from aisoc_inboxd.tokens import log_id
from aisoc_inboxd.web.status_forms import TOKEN_FIELD

CSS = """
details.delivery { border-top: 1px solid #ddd; padding: .3em 0; }
details.delivery summary { cursor: pointer; font-family: ui-monospace, monospace; }
.sides { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 1em; margin-top: .5em; }
form.redeliver { margin: .5em 0 0; }
.sides pre { white-space: pre-wrap; word-break: break-all; background: #fff; border: 1px solid #ddd;
             padding: .5em; max-height: 30em; overflow: auto; font-size: 12px; }
"""


def deliveries_link(tenant: str, fingerprint: str, opened: int | None = None) -> str:
    """
    The status page URL that shows the deliveries of a token (relative to C{/status}), with
    delivery C{opened} open and scrolled to when given.
    """
    query: dict[str, Any] = {"tenant": tenant, "deliveries": fingerprint}
    if opened is None:
        return f"status?{urlencode(query)}#deliveries"
    return f"status?{urlencode({**query, 'opened': opened})}#delivery-{opened}"


def deliveries_section(listing: dict[str, Any], form_token: str, opened: int | None = None) -> list[Tag]:
    """
    The heading and the deliveries of a token's L{DeliveryDesk.listing}, newest first, delivery
    C{opened} open; C{form_token} guards their redeliver forms.
    """
    tenant, key, kept = listing["tenant"], listing["key"], listing["deliveries"]
    heading = tags.h2(f"Recent deliveries of token {log_id(key)} ({tenant})", id="deliveries")
    if not kept:
        return [heading, tags.p("No delivery kept for this token: none since the daemon started, or another "
                                "tenant's token.", class_="note")]
    note = tags.p(f"The last {listing['per_token']} per token (and process), newest first. Redeliver publishes a "
                  "webhook delivery's body again through the token's current template, as a new delivery "
                  f"(also POST /v1/admin/tenants/{tenant}/tokens/{key}/deliveries/N/redeliver).", class_="note")
    return [heading, note, *(_delivery(d, tenant, form_token, d["n"] == opened) for d in kept)]


def _delivery(d: dict[str, Any], tenant: str, form_token: str, opened: bool) -> Tag:
    received = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(d["received_at"]))
    summary = (f"#{d['n']}  {received}  {d['client'] or '-'}  {d['route']}  {d['status']} {d['outcome']}  "
               f"events={d['events']}" + (f"  {d['error']}" if d["error"] else ""))
    status_class = "ok" if d["status"] < 400 else "bad"
    return tags.details(class_="delivery", id=f"delivery-{d['n']}", **({"open": "open"} if opened else {}))(
        tags.summary(tags.span(summary, class_=status_class)),
        tags.div(class_="sides")(
            tags.div(tags.h3("Request"), tags.pre(_request(d))),
            tags.div(tags.h3("Response"), tags.pre(_response(d))),
            tags.div(tags.h3("OCSF (first event)"), tags.pre(_ocsf(d)))),
        *((_redeliver_form(d, tenant, form_token),) if _redeliverable(d) else ()))


def _redeliverable(d: dict[str, Any]) -> bool:
    """
    Whether the admin API would take delivery C{d} to redeliver: a webhook's, its body kept whole.
    """
    body = d["request"]["body"]
    return d["route"] == "webhook" and body["kept"] and not body["truncated"]


def _redeliver_form(d: dict[str, Any], tenant: str, form_token: str) -> Tag:
    return tags.form(method="post", action="status", class_="redeliver")(
        tags.input(type="hidden", name=TOKEN_FIELD, value=form_token),
        tags.input(type="hidden", name="tenant", value=tenant),
        tags.input(type="hidden", name="fingerprint", value=d["key"]),
        tags.input(type="hidden", name="n", value=str(d["n"])),
        tags.button(f"Redeliver #{d['n']}", type="submit"))


def _headers(pairs: list[list[str]]) -> str:
    return "".join(f"{name}: {value}\n" for name, value in pairs)


def _request(d: dict[str, Any]) -> str:
    body = d["request"]["body"]
    if not body["kept"]:
        shown = ("(body lost: the client left before it was read)" if body.get("lost")
                 else f"(body of {body['size']} bytes not kept: deliveries.keep_bodies)")
    else:
        shown = body["text"] + (f"\n… (first {len(body['text'])} of {body['size']} bytes)" if body["truncated"] else "")
        if body["encoding"] == "base64":
            shown = "(not UTF-8; base64)\n" + shown
    return f"{d['method']} ({d['route']} route)\n{_headers(d['request']['headers'])}\n{shown}"


def _response(d: dict[str, Any]) -> str:
    response = d["response"]
    return (f"{response['status']} ({d['outcome']}, {d['duration_ms']} ms)\n{_headers(response['headers'])}\n"
            f"{response['body'] or '(the client was gone before the reply)'}")


def _ocsf(d: dict[str, Any]) -> str:
    if d["ocsf"] is not None:
        return json.dumps(d["ocsf"], indent=2, ensure_ascii=False)
    return d["ocsf_error"] or (d["error"] or "no event: the body was not kept or not published")
