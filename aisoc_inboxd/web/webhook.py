"""
C{POST /v1/inbox/{tenant_token}}: the generic JSON webhook (one object, an array, or NDJSON).
"""
from __future__ import annotations

from urllib.parse import parse_qs

from twisted.web.server import Request

from aisoc_inboxd.formats.json_body import BodyError, Record, decode_json_records
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake import Intake
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.web.body import read_body, require_json_carrier
from aisoc_inboxd.web.errors import HttpError, bad_request
from aisoc_inboxd.web.routes import JsonRoute, Reply


class WebhookRoute(JsonRoute):
    route = "webhook"

    def __init__(self, token: str, intake: Intake, metrics: Metrics, inflight: InFlight,
                 max_body_bytes: int) -> None:
        super().__init__(metrics, inflight)
        self._token = token
        self._intake = intake
        self._max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Reply:
        received_at = self._intake.now()
        binding = await self._intake.authorize(self._token)
        template_id = binding.template.id
        try:
            kind = require_json_carrier(request)
            body = read_body(request, self._max_body_bytes)
            records = self._records(kind, body)
        except BodyError as e:
            raise bad_request(f"bad body: {e}", template_id) from None
        except HttpError as e:
            e.template = e.template or template_id
            raise
        accepted = await self._intake.deliver(binding, self.route, records, received_at)
        return Reply(200, {"accepted": accepted, "template": template_id}, template_id)

    @staticmethod
    def _records(kind: str, body: bytes) -> list[Record]:
        if kind == "application/x-www-form-urlencoded":
            # GitHub's "application/x-www-form-urlencoded" deliveries carry the JSON in payload=
            fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            if "payload" not in fields:
                raise BodyError("form body without a payload= field")
            body = fields["payload"][0].encode("utf-8")
        return decode_json_records(body)
