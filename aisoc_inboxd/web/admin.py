"""
The admin API, on its own listener (127.0.0.1 by default), for the console and operators:

    GET    /v1/admin/tenants/{tenant}/tokens                      list (fingerprints, never tokens)
    POST   /v1/admin/tenants/{tenant}/tokens                      mint {"template", "label"?, "signing_secret"?}
    POST   /v1/admin/tenants/{tenant}/tokens/{fingerprint}/rotate rotate {"signing_secret"?}
    POST   /v1/admin/tenants/{tenant}/tokens/{fingerprint}/revoke revoke
    GET    /v1/admin/tenants/{tenant}/tokens/stats                push stats over 24 h (the Push tab)
    GET    /v1/admin/tenants/{tenant}/tokens/{fingerprint}/deliveries  recent deliveries (every
           process's), newest first; C{…/tenants/{tenant}/cef/deliveries} the CEF route's
    GET    /v1/admin/tenants/{tenant}/syslog/{listener}/deliveries   a syslog listener's last frames
    GET    /v1/admin/tenants/{tenant}/syslog/{listener}/malformed    … and its last malformed ones
    POST   /v1/admin/tenants/{tenant}/tokens/{fingerprint}/deliveries/{n}/redeliver  publish delivery n's
           body again through the token's current template (C{X-AiSOC-Idempotency-Key} optional)
    POST   /v1/admin/invalidate                                   {"token"} or {"fingerprint"}: the
           rotation flow's Invalidate(), reaching every instance sharing the store

Every request carries the admin key: C{Authorization: Bearer <admin key>}. A read (GET) may also
carry it as the HTTP Basic password (any user name), as a browser does after the status page's login;
a change may not, because a browser sends cached Basic credentials with any site's form post too
(cross-site request forgery), never a Bearer header. The same L{TokenAdmin}
serves the CLI. While the token store does not answer, every call is
C{503 {"error": "token store unavailable"}} with C{Retry-After}, as on the token routes.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from aisoc_inboxd import fastjson
from aisoc_inboxd.intake.idempotency import HEADER as IDEMPOTENCY_HEADER, check_key
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.tenants import InvalidTenant
from aisoc_inboxd.tokens import (
    TOKEN_PREFIX,
    TokenAdmin,
    UnknownTemplate,
    UnknownToken,
    fingerprint,
    token_row,
)
from aisoc_inboxd.store import StoreError
from aisoc_inboxd.web.delivery_desk import DeliveryDesk
from aisoc_inboxd.web.recorder import CEF_KEY
from aisoc_inboxd.intake.refusals import bad_request, store_unavailable
from aisoc_inboxd.web.errors import HttpError
from aisoc_inboxd.web.routes import Exchange, JsonRoute, Reply

Invalidate = Callable[[str], Deferred[None]]


class AdminRoute(JsonRoute):
    isLeaf = True
    route = "admin"
    methods = frozenset({b"GET", b"POST"})

    def __init__(self, admin: TokenAdmin, invalidate: Invalidate, api_key: bytes,
                 metrics: Metrics, inflight: InFlight, deliveries: DeliveryDesk | None = None) -> None:
        super().__init__(metrics, inflight)
        self._admin = admin
        self._invalidate = invalidate
        self._api_key = api_key
        self._desk = deliveries

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        self._authenticate(request)
        try:
            return await self._route(request)
        except StoreError:
            raise store_unavailable() from None

    async def _route(self, request: Request) -> Reply:
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method
        if path == ["invalidate"] and method == b"POST":
            return await self._invalidate_one(_json_body(request))
        if path[2:] == ["cef", "deliveries"] and path[0] == "tenants" and method == b"GET":
            return await self._list_deliveries(path[1], CEF_KEY)
        if (len(path) == 5 and path[0] == "tenants" and path[2] == "syslog" and path[4] in ("deliveries", "malformed")
                and method == b"GET"):
            return Reply(200, await self._delivery_desk().syslog_listing(path[1], path[3], path[4] == "malformed"),
                         None)
        if (len(path) == 7 and path[0] == "tenants" and path[2] == "tokens" and path[4] == "deliveries"
                and path[6] == "redeliver" and method == b"POST"):
            return await self._redeliver(request, path[1], path[3], path[5])
        if len(path) >= 3 and path[0] == "tenants" and path[2] == "tokens":
            tenant = path[1]
            rest = path[3:]
            if not rest and method == b"GET":
                rows = [token_row(r) for r in await self._admin.list(tenant)]
                return Reply(200, {"tokens": rows}, None)
            if not rest and method == b"POST":
                return await self._mint(tenant, _json_body(request))
            if rest == ["stats"] and method == b"GET":
                return Reply(200, {"tokens": await self._admin.stats(tenant)}, None)
            if len(rest) == 2 and rest[1] in ("rotate", "revoke") and method == b"POST":
                return await self._retire(tenant, rest[0], rest[1], _json_body(request))
            if len(rest) == 2 and rest[1] == "deliveries" and method == b"GET":
                return await self._list_deliveries(tenant, rest[0])
        raise HttpError(404, "no such admin route", "not_found")

    def _authenticate(self, request: Request) -> None:
        reading = request.method in (b"GET", b"HEAD")
        if not carries_admin_key(request, self._api_key, basic=reading):
            raise HttpError(401, "admin API key required: Authorization: Bearer <key from the admin key file>"
                            + ("" if reading else " (Basic auth is accepted for reads only)"),
                            "unauthorized", {"WWW-Authenticate": "Bearer"})

    async def _mint(self, tenant: str, body: dict[str, Any]) -> Reply:
        template = _string(body, "template", required=True)
        secret = _string(body, "signing_secret")
        try:
            minted = await self._admin.mint(tenant, template, _string(body, "label"),
                                            secret.encode("utf-8") if secret else None)
        except UnknownTemplate:
            raise bad_request(f"unknown template {template!r}") from None
        except InvalidTenant as e:
            raise bad_request(str(e)) from None
        return Reply(201, minted.as_dict(), minted.record.template_id)

    async def _retire(self, tenant: str, fingerprint_or_prefix: str, action: str, body: dict[str, Any]) -> Reply:
        try:
            if action == "rotate":
                secret = _string(body, "signing_secret")
                minted = await self._admin.rotate(tenant, fingerprint_or_prefix,
                                                  secret.encode("utf-8") if secret else None)
                return Reply(200, minted.as_dict(), minted.record.template_id)
            old = await self._admin.revoke(tenant, fingerprint_or_prefix)
            return Reply(200, {"revoked": old.fingerprint}, old.template_id)
        except UnknownToken as e:
            raise HttpError(404, str(e), "not_found") from None

    def _delivery_desk(self) -> DeliveryDesk:
        if self._desk is None:
            raise HttpError(404, "recent deliveries are not kept by this daemon", "not_found")
        return self._desk

    async def _list_deliveries(self, tenant: str, key_or_prefix: str) -> Reply:
        """
        The deliveries kept for a token of C{tenant}, newest first.
        """
        return Reply(200, await self._delivery_desk().listing(tenant, key_or_prefix), None)

    async def _redeliver(self, request: Request, tenant: str, key_or_prefix: str, number: str) -> Reply:
        if not number.isdigit():
            raise bad_request(f"delivery number: expected a whole number, got {number!r}")
        key = check_key(request.getHeader(IDEMPOTENCY_HEADER.encode("ascii")))
        return await self._delivery_desk().redeliver(tenant, key_or_prefix, int(number), key)

    async def _invalidate_one(self, body: dict[str, Any]) -> Reply:
        token = _string(body, "token")
        target = fingerprint(token) if token else _string(body, "fingerprint", required=True).lower()
        if token and not token.startswith(TOKEN_PREFIX):
            raise bad_request("token: not an inbox token")
        await self._invalidate(target)
        return Reply(200, {"invalidated": target}, None)


def carries_admin_key(request: Request, api_key: bytes, basic: bool = True) -> bool:
    """
    Whether the request presents the admin key, as a Bearer token or (if C{basic}) as the HTTP Basic
    password.
    """
    scheme, _, presented = (request.getHeader(b"authorization") or b"").partition(b" ")
    scheme = scheme.lower()
    if scheme == b"basic" and basic:
        try:
            presented = base64.b64decode(presented.strip(), validate=True).partition(b":")[2]
        except binascii.Error:
            return False
    elif scheme != b"bearer":
        return False
    return hmac.compare_digest(presented.strip(), api_key)


def _json_body(request: Request) -> dict[str, Any]:
    assert request.content is not None
    request.content.seek(0)
    raw = request.content.read()
    if not raw.strip():
        return {}
    try:
        body = fastjson.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise bad_request(f"bad body: not JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("bad body: expected a JSON object")
    return body


def _string(body: dict[str, Any], key: str, required: bool = False) -> Any:
    value = body.get(key)
    if value is None and required:
        raise bad_request(f"{key}: required")
    if value is not None and (not isinstance(value, str) or not value):
        raise bad_request(f"{key}: expected a non-empty string")
    return value
