"""
The admin API's side of recent deliveries: listing a token's (this process's and, with workers,
every worker's, read over their control channels), and redelivering one — its recorded
body published again through the token's current template, as a new request with its own
idempotency key, and kept as a new delivery (so its reply and OCSF event are seen like any other).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Iterable, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from aisoc_inboxd.config import DeliverySettings, HttpSettings
from aisoc_inboxd.deliveries import FRAMES, MALFORMED, REDACTED, TOKENS, body_of
from aisoc_inboxd.formats.json_body import BodyError, TooManyEvents
from aisoc_inboxd.intake.idempotency import HEADER as IDEMPOTENCY_HEADER, StoredReply
from aisoc_inboxd.intake.intake import Binding, Intake
from aisoc_inboxd.intake.refusals import bad_request, unknown_template
from aisoc_inboxd.store import Store
from aisoc_inboxd.tokens import log_id
from aisoc_inboxd.web.body import media_type_of
from aisoc_inboxd.web.errors import HttpError, too_many_events
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import Exchange, Reply
from aisoc_inboxd.web.webhook import WebhookRoute, webhook_records

#: the header a redelivery's record carries, naming the delivery it repeats
REDELIVERY_HEADER = "X-AiSOC-Redelivery-Of"


class DeliveryPeer(Protocol):
    """
    Another process's recent deliveries (a worker's, over its control channel).
    """

    def read_deliveries(self, kind: str, tenant: str, key: str) -> Deferred[list[dict[str, Any]]]: ...


class DeliveryDesk:
    """
    @param peers: the processes (workers) whose recent deliveries are read with this one's.
    """

    _log = Logger()

    def __init__(self, recorder: DeliveryRecorder, intake: Intake, store: Store,
                 peers: Callable[[], Iterable[DeliveryPeer]] = tuple,
                 max_events: int = HttpSettings.max_events_per_request) -> None:
        """
        @param store: where a redelivered token's current record is read.
        @param max_events: the most events a redelivered body may carry, as on its route.
        """
        self._recorder = recorder
        self._intake = intake
        self._store = store
        self._peers = peers
        self._max_events = max_events

    @property
    def settings(self) -> DeliverySettings:
        return self._recorder.log.settings

    async def read(self, kind: str, tenant: str, key_or_name: str) -> list[dict[str, Any]]:
        """
        The deliveries of C{kind} (L{DeliveryLog.read}) that this process and every peer keep,
        newest first; a peer that does not answer is left out (and logged).
        """
        log = self._recorder.log
        kept = [d.as_dict() for d in log.read(kind, tenant, key_or_name.lower())]
        asked = [peer.read_deliveries(kind, tenant, key_or_name.lower()) for peer in self._peers()]
        for answer in await DeferredList(asked, consumeErrors=True):
            succeeded, result = answer
            if succeeded:
                kept += result
            else:
                self._log.warn("a worker's recent deliveries could not be read: {error}", error=result.value)
        return sorted(kept, key=lambda d: (d["received_at"], d["n"]), reverse=True)

    async def listing(self, tenant: str, key_or_prefix: str) -> dict[str, Any]:
        """
        The deliveries kept for a token of C{tenant} (by fingerprint or unique prefix), newest first.
        """
        kept = await self.read(TOKENS, tenant, key_or_prefix)
        return {"tenant": tenant, "key": kept[0]["key"] if kept else key_or_prefix.lower(),
                "per_token": self.settings.per_token, "deliveries": kept}

    async def syslog_listing(self, tenant: str, listener: str, malformed: bool) -> dict[str, Any]:
        """
        The last frames (or malformed frames) a syslog listener of C{tenant} read, newest first.
        """
        samples = self._recorder.log.samples.get(listener)
        if samples is None or samples.tenant_id != tenant:
            raise HttpError(404, f"tenant {tenant} has no syslog listener named {listener!r}", "not_found")
        return {"tenant": tenant, "listener": listener, "malformed": malformed,
                "per_listener": self.settings.per_token,
                "deliveries": await self.read(MALFORMED if malformed else FRAMES, tenant, listener)}

    async def redeliver(self, tenant: str, key_or_prefix: str, number: int, idempotency_key: str | None,
                        by: str = "the admin API") -> Reply:
        """
        Publish delivery C{number} of a token again; 404 when it is not kept, 409 when its body was
        not kept or only in part, or the token is no longer active, 400 for a route other than the
        webhook's or a body the current template's route cannot read.

        @param by: who asked (the admin API, the status page), shown as the new delivery's client.
        """
        original = next((d for d in await self.read(TOKENS, tenant, key_or_prefix) if d["n"] == number), None)
        if original is None:
            raise HttpError(404, f"no delivery {number} is kept for token {log_id(key_or_prefix)} of tenant "
                                 f"{tenant}", "not_found")
        fingerprint = original["key"]
        body = _whole_body(original)
        record = next((r for r in await self._store.list_tokens(tenant) if r.fingerprint == fingerprint and r.active),
                      None)
        if record is None:
            raise HttpError(409, f"token {log_id(fingerprint)} is no longer active: a delivery is redelivered only "
                                 "through a live token", "conflict")
        template = self._intake.catalog.get(record.template_id)
        if template is None:
            raise unknown_template(record.template_id, record)
        key = idempotency_key or f"redeliver-{uuid.uuid4()}"
        recorded_headers = [(name, value) for name, value in original["request"]["headers"]]
        headers = {name.lower(): value for name, value in recorded_headers if value != REDACTED}
        try:
            records = webhook_records(media_type_of(headers.get("content-type", "")), body, self._max_events)
        except TooManyEvents as e:
            raise too_many_events(e.limit, template.id) from None
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
            WebhookRoute.route, original["method"],
            [*recorded_headers, (REDELIVERY_HEADER, str(number)), (IDEMPOTENCY_HEADER, key)],
            [("Content-Type", "application/json")], exchange, reply, json.dumps(stored.body).encode(),
            time.monotonic() - started, f"redelivered by {by}")
        return Reply(200, {"redelivered": number, "n": kept.number if kept else None, "idempotency_key": key,
                           "replay": replay, **stored.body}, template.id)


def _whole_body(delivery: dict[str, Any]) -> bytes:
    """
    The body a delivery kept whole; 409 when it kept none or only its first bytes, 400 for a route
    whose bodies are not redelivered.
    """
    if delivery["route"] != WebhookRoute.route:
        raise bad_request(f"delivery {delivery['n']} came by the {delivery['route']} route: only webhook "
                          "deliveries are redelivered")
    try:
        return body_of(delivery)
    except ValueError as e:
        raise HttpError(409, f"{e}: there is nothing whole to redeliver", "conflict") from None
