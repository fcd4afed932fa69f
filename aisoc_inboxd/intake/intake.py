"""
What every token route does between the bytes and the pipeline: resolve the token, check that its
template is allowed, and publish decoded records under that tenant and template.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from twisted.internet.interfaces import IReactorTime

from aisoc_inboxd.intake import signatures
from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.formats.cef_records import Split
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.intake.idempotency import Idempotency
from aisoc_inboxd.normalizer import Template
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.intake.ratelimit import Admission
from aisoc_inboxd.intake.refusals import (
    invalid_signature, invalid_token, rate_limited, sink_unavailable, store_unavailable, unknown_template,
    unknown_token_flood)
from aisoc_inboxd.sinks import SinkUnavailable
from aisoc_inboxd.store import StoreError, TokenRecord
from aisoc_inboxd.tokens import LookupBudgetSpent, TokenResolver


@dataclass(frozen=True)
class Binding:
    """
    Where records go: a tenant and the template that maps them — all a request is allowed to do.
    Token routes get theirs from the resolved token; token-less intakes (syslog listeners, the CEF
    route) from config, through L{Intake.bind}.
    """

    tenant_id: str
    template: Template
    token: TokenRecord | None = None


class Intake:
    def __init__(self, resolver: TokenResolver, catalog: TemplateCatalog, pipeline: Pipeline,
                 limiter: Admission, idempotency: Idempotency, clock: IReactorTime) -> None:
        self._resolver = resolver
        self.catalog = catalog
        self._pipeline = pipeline
        self._limiter = limiter
        self.idempotency = idempotency
        self._clock = clock

    def now(self) -> float:
        return self._clock.seconds()

    def not_ready(self) -> str | None:
        """
        Why the pipeline cannot make events durable now, or None when it can.
        """
        return self._pipeline.not_ready()

    async def authorize(self, token: str, client: str | None = None) -> Binding:
        """
        The binding of a presented token, after taking one request from its tenant's rate limit.
        Refused when it does not resolve (C{invalid_token}), when its template is no longer allowed
        (C{unknown_template}), over the limit (C{rate_limited}), when C{client} (the request's
        address) spent its lookups of unknown tokens (C{unknown_token_flood}), or when the token is
        not cached and the store does not answer (C{store_unavailable}).
        """
        try:
            record = await self._resolver.resolve(token, client)
        except StoreError:
            raise store_unavailable() from None
        except LookupBudgetSpent as e:
            raise unknown_token_flood(e.wait) from None
        if record is None:
            raise invalid_token()
        template = self.catalog.get(record.template_id)
        if template is None:
            raise unknown_template(record.template_id, record)
        binding = Binding(record.tenant_id, template, record)
        await self.admit(binding)
        return binding

    async def admit(self, binding: Binding) -> None:
        """
        Take one request from the binding's tenant's rate limit, whether the tenant came from a
        token or from config (the token-less CEF route), so no route escapes it; C{rate_limited} over
        the limit. In a worker process the limiter may wait for a lease from the daemon.
        """
        wait = await self._limiter.take(binding.tenant_id)
        if wait:
            raise rate_limited(wait, binding.template.id, binding.token)

    def bind(self, tenant_id: str, template_id: str) -> Binding:
        """
        A binding fixed by config (no token); refused (C{unknown_template}) when the template is not
        loaded or allowed.
        """
        template = self.catalog.get(template_id)
        if template is None:
            raise unknown_template(template_id)
        return Binding(tenant_id, template)

    @staticmethod
    def verify_signature(binding: Binding, raw_body: bytes, get_header: signatures.GetHeader) -> None:
        """
        Refused (C{invalid_signature}) unless the body carries a valid signature, when the token was
        minted with a secret.
        """
        secret = binding.token.signing_secret if binding.token else None
        if secret is None:
            return
        if not signatures.verify(secret, raw_body, signatures.presented_signatures(get_header)):
            raise invalid_signature(template=binding.template.id)

    async def deliver(self, binding: Binding, route: str, records: Sequence[Record],
                      received_at: float, headers: Mapping[str, str] | None = None) -> int:
        """
        Publish and wait until durable; refused (C{unavailable}) when the sink cannot make them
        durable. C{headers} (lowercase names) feed the template's C{header:} sources.

        Once published, C{records} are events in the sink: this frame lets them go before the wait
        (Kafka's acknowledgement), so that a caller that lets them go too (a syslog listener) holds
        no decoded records for its events in flight, only their JSON.
        """
        try:
            published = self._pipeline.publish(binding.template, binding.tenant_id, route, records, received_at,
                                               headers)
            del records
            return await published
        except SinkUnavailable as e:
            raise sink_unavailable(str(e), binding.template.id) from None

    async def deliver_split(self, binding: Binding, cef_template_id: str, route: str, split: Split,
                            received_at: float, headers: Mapping[str, str] | None = None) -> int:
        """
        Deliver each part of C{split} under the template that maps it: the rest under the binding's,
        the CEF records under C{cef_template_id} (same tenant and token); the events made durable.
        Refused (C{unknown_template}) when there are CEF records and that template is not loaded.
        """
        published = 0
        for template_id, records in split.batches(binding.template.id, cef_template_id):
            part = binding
            if template_id != binding.template.id:
                part = replace(binding, template=self.bind(binding.tenant_id, template_id).template)
            published += await self.deliver(part, route, records, received_at, headers)
        return published
