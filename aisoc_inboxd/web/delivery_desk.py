"""
The admin API's side of recent deliveries: listing a token's, and redelivering one — its recorded
body published again through the token's current template, as a new request with its own
idempotency key, and kept as a new delivery (so its reply and OCSF event are seen like any other).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aisoc_inboxd.deliveries import REDACTED, Delivery, DeliveryLog
from aisoc_inboxd.formats.json_body import BodyError
from aisoc_inboxd.idempotency import HEADER as IDEMPOTENCY_HEADER, StoredReply
from aisoc_inboxd.intake import Binding, Intake
from aisoc_inboxd.tokens import TokenAdmin, log_id
from aisoc_inboxd.web.body import media_type_of
from aisoc_inboxd.web.errors import HttpError, bad_request, unknown_template
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import Exchange, Reply
from aisoc_inboxd.web.webhook import WebhookRoute, webhook_records

#: the header a redelivery's record carries, naming the delivery it repeats
REDELIVERY_HEADER = "X-AiSOC-Redelivery-Of"


class DeliveryDesk:
    def __init__(self, recorder: DeliveryRecorder, intake: Intake, admin: TokenAdmin) -> None:
        self._recorder = recorder
        self._intake = intake
        self._admin = admin

    @property
    def log(self) -> DeliveryLog:
        return self._recorder.log

    def key(self, tenant: str, key_or_prefix: str) -> str:
        """
        The key a fingerprint (or a unique prefix of one, of C{tenant}'s tokens) is kept under.
        """
        return self.log.key_of(tenant, key_or_prefix.lower()) or key_or_prefix.lower()

    def listing(self, tenant: str, key_or_prefix: str, after: int) -> dict[str, Any]:
        """
        The deliveries kept for a token of C{tenant}, newest first, only those numbered above C{after}.
        """
        key = self.key(tenant, key_or_prefix)
        return {"tenant": tenant, "key": key, "per_token": self.log.settings.per_token,
                "deliveries": [d.as_dict() for d in self.log.of(key, tenant) if d.number > after]}

    def syslog_listing(self, tenant: str, listener: str, malformed: bool, after: int) -> dict[str, Any]:
        """
        The last frames (or malformed frames) a syslog listener of C{tenant} read, newest first.
        """
        samples = self.log.samples.get(listener)
        if samples is None or samples.tenant_id != tenant:
            raise HttpError(404, f"tenant {tenant} has no syslog listener named {listener!r}", "not_found")
        return {"tenant": tenant, "listener": listener, "malformed": malformed,
                "per_listener": self.log.settings.per_token,
                "deliveries": [d.as_dict() for d in samples.deliveries(malformed) if d.number > after]}

    async def redeliver(self, tenant: str, key_or_prefix: str, number: int, idempotency_key: str | None) -> Reply:
        """
        Publish delivery C{number} of a token again; 404 when it is not kept, 409 when its body was
        not kept or only in part, or the token is no longer active, 400 for a route other than the
        webhook's or a body the current template's route cannot read.
        """
        fingerprint = self.key(tenant, key_or_prefix)
        original = self.log.one(fingerprint, tenant, number)
        if original is None:
            raise HttpError(404, f"no delivery {number} is kept for token {log_id(fingerprint)} of tenant {tenant}",
                            "not_found")
        body = _whole_body(original)
        record = next((r for r in await self._admin.list(tenant) if r.fingerprint == fingerprint and r.active), None)
        if record is None:
            raise HttpError(409, f"token {log_id(fingerprint)} is no longer active: a delivery is redelivered only "
                                 "through a live token", "conflict")
        template = self._intake.catalog.get(record.template_id)
        if template is None:
            raise unknown_template(record.template_id, record)
        key = idempotency_key or f"redeliver-{uuid.uuid4()}"
        headers = {name.lower(): value for name, value in original.request_headers if value != REDACTED}
        try:
            records = webhook_records(media_type_of(headers.get("content-type", "")), body)
        except BodyError as e:
            raise bad_request(f"bad body: {e}", template.id) from None
        received_at = self._intake.now()
        exchange = Exchange(received_at=received_at, body=body, records=records, headers=headers)
        binding = exchange.bound(Binding(tenant, template, record))
        started = time.monotonic()

        async def publish() -> StoredReply:
            accepted = exchange.count_published(
                await self._intake.deliver(binding, WebhookRoute.route, records, received_at, headers))
            return StoredReply(200, {"accepted": accepted, "template": template.id})

        stored, replay = await self._intake.idempotency.once(fingerprint, key, publish, explicit=True)
        reply = Reply(stored.status, stored.body, template.id, "replay" if replay else "ok")
        kept = self._recorder.keep(
            WebhookRoute.route, original.method,
            [*original.request_headers, (REDELIVERY_HEADER, str(number)), (IDEMPOTENCY_HEADER, key)],
            [("Content-Type", "application/json")], exchange, reply, json.dumps(stored.body).encode(),
            time.monotonic() - started, "redelivered by the admin API")
        return Reply(200, {"redelivered": number, "n": kept.number if kept else None, "idempotency_key": key,
                           "replay": replay, **stored.body}, template.id)


def _whole_body(delivery: Delivery) -> bytes:
    """
    The body a delivery kept whole; 409 when it kept none or only its first bytes, 400 for a route
    whose bodies are not redelivered.
    """
    if delivery.route != WebhookRoute.route:
        raise bad_request(f"delivery {delivery.number} came by the {delivery.route} route: only webhook "
                          "deliveries are redelivered")
    if delivery.body is None:
        raise HttpError(409, f"the body of delivery {delivery.number} was not kept (deliveries.keep_bodies): "
                             "there is nothing to redeliver", "conflict")
    if delivery.truncated:
        raise HttpError(409, f"only the first {len(delivery.body)} of the {delivery.body_size} bytes of delivery "
                             f"{delivery.number}'s body were kept (deliveries.body_bytes): redelivering them would "
                             "publish another body", "conflict")
    return delivery.body
