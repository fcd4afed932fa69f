"""
C{POST /v1/inbox/{tenant_token}}: the generic JSON webhook (one object, an array, or NDJSON).
"""
from __future__ import annotations

from urllib.parse import parse_qs

from twisted.web.server import Request

from aisoc_inboxd.formats.json_body import BodyError, Record, decode_json_records, decode_text
from aisoc_inboxd.web.body import FORM, require_json_carrier
from aisoc_inboxd.web.token_route import Decoded, TokenRoute


def webhook_records(media_type: str, body: bytes, max_events: int) -> list[Record]:
    """
    The records of a webhook body of C{media_type} (lowercase, without parameters), at most
    C{max_events}; L{BodyError}.
    """
    if media_type == FORM:
        # GitHub's form-encoded deliveries carry the JSON in payload=; bytes that are not UTF-8,
        # sent as they are or percent-encoded, are refused like in a JSON body, never replaced
        fields = parse_qs(decode_text(body), keep_blank_values=True, errors="surrogateescape")
        if "payload" not in fields:
            raise BodyError("form body without a payload= field")
        body = fields["payload"][0].encode("utf-8", "surrogateescape")
        decode_text(body, "the payload= field (percent-decoded)")
    return decode_json_records(body, max_events)


class WebhookRoute(TokenRoute):
    route = "webhook"

    def decode(self, request: Request, body: bytes) -> Decoded:
        return Decoded(webhook_records(require_json_carrier(request), body, self._max_events))
