"""
What every token route does between the bytes and the pipeline: resolve the token, check that its
template is allowed, and publish decoded records under that tenant and template.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from twisted.internet.interfaces import IReactorTime

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.normalizer import Template
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.sinks import SinkUnavailable
from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.tokens import TokenResolver
from aisoc_inboxd.web.errors import invalid_token, unavailable, unknown_template


@dataclass(frozen=True)
class Binding:
    """
    A resolved token and the template it writes with: all a request is allowed to do.
    """

    token: TokenRecord
    template: Template


class Intake:
    def __init__(self, resolver: TokenResolver, catalog: TemplateCatalog, pipeline: Pipeline,
                 clock: IReactorTime) -> None:
        self._resolver = resolver
        self.catalog = catalog
        self._pipeline = pipeline
        self._clock = clock

    def now(self) -> float:
        return self._clock.seconds()

    def ready(self) -> bool:
        return self._pipeline.ready()

    async def authorize(self, token: str) -> Binding:
        """
        The binding of a presented token; 401 when it does not resolve, 400 when its template is no
        longer allowed.
        """
        record = await self._resolver.resolve(token)
        if record is None:
            raise invalid_token()
        template = self.catalog.get(record.template_id)
        if template is None:
            raise unknown_template(record.template_id)
        return Binding(record, template)

    async def deliver(self, binding: Binding, route: str, records: Sequence[Record],
                      received_at: float) -> int:
        """
        Publish and wait until durable; 503 when the sink cannot make them durable.
        """
        try:
            return await self._pipeline.publish(binding.template, binding.token.tenant_id, route,
                                                records, received_at)
        except SinkUnavailable as e:
            raise unavailable(f"events could not be made durable, retry later: {e}",
                              template=binding.template.id) from None
