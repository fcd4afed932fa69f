"""
C{POST /v1/inbox/email/{tenant_token}}: e-mail relays (Postmark, SES through SNS, SendGrid Inbound
Parse, Mailgun routes, generic JSON) and raw MIME, each turned into one e-mail record.

Success is exactly C{200} (Postmark retries anything else; Mailgun treats 406 as a rejection).
"""
from __future__ import annotations

from twisted.web.server import Request

from aisoc_inboxd.formats.email.relays import decode_email_body
from aisoc_inboxd.intake.intake import Binding
from aisoc_inboxd.web.body import media_type
from aisoc_inboxd.web.errors import unsupported_media
from aisoc_inboxd.web.token_route import Decoded, TokenRoute

#: what relays send; a missing Content-Type is read by content too
EMAIL_CARRIERS = frozenset({
    "application/json", "text/json", "text/plain", "multipart/form-data",
    "application/x-www-form-urlencoded", "message/rfc822", "application/octet-stream",
})


class EmailRoute(TokenRoute):
    route = "email"

    def decode(self, request: Request, body: bytes) -> Decoded:
        kind = media_type(request)
        if kind and kind not in EMAIL_CARRIERS and not kind.endswith("+json"):
            raise unsupported_media(
                f"unsupported Content-Type {kind!r}: send relay JSON, multipart/form-data, "
                f"application/x-www-form-urlencoded or message/rfc822")
        header = (request.getHeader(b"content-type") or b"").decode("latin-1")
        email = decode_email_body(kind, header, body, max_events=self._max_events)
        return Decoded(email.records, email.sns_envelope)

    async def screen(self, binding: Binding, decoded: Decoded) -> None:
        """
        SES through SNS: the SNS envelope gets the same checks as on the aws-sns template (signature
        when configured; a subscription confirmation logged and, for an allowed topic, confirmed).
        """
        if decoded.envelope is not None:
            await self._vendors.screen_sns(decoded.envelope)
