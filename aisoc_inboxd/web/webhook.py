"""
C{POST /v1/inbox/{tenant_token}}: the generic JSON webhook (one object, an array, or NDJSON).
"""
from __future__ import annotations

from urllib.parse import parse_qs

from twisted.web.server import Request

from aisoc_inboxd.formats.json_body import BodyError, Record, decode_json_records
from aisoc_inboxd.web.body import FORM, require_json_carrier
from aisoc_inboxd.web.token_route import Decoded, TokenRoute


def webhook_records(media_type: str, body: bytes) -> list[Record]:
    """
    The records of a webhook body of C{media_type} (lowercase, without parameters); L{BodyError}.
    """
    if media_type == FORM:
        # GitHub's form-encoded deliveries carry the JSON in payload=
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        if "payload" not in fields:
            raise BodyError("form body without a payload= field")
        body = fields["payload"][0].encode("utf-8")
    return decode_json_records(body)


class WebhookRoute(TokenRoute):
    route = "webhook"

    def decode(self, request: Request, body: bytes) -> Decoded:
        return Decoded(webhook_records(require_json_carrier(request), body))
