"""
The shape every token route shares (C{/v1/inbox/{token}}, C{/v1/inbox/email/{token}}): resolve the
token, read the body, decode it into records the route's own way, publish, and answer
C{200 {"accepted": N, "template": "<id>"}} once the events are durable.
"""
from __future__ import annotations

from twisted.web.server import Request

from aisoc_inboxd.formats.json_body import BodyError, Record
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake import Intake
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.web.body import read_body
from aisoc_inboxd.web.errors import HttpError, bad_request
from aisoc_inboxd.web.routes import JsonRoute, Reply


class TokenRoute(JsonRoute):
    """
    Subclasses set C{route} and implement L{decode}.
    """

    def __init__(self, token: str, intake: Intake, metrics: Metrics, inflight: InFlight,
                 max_body_bytes: int) -> None:
        super().__init__(metrics, inflight)
        self._token = token
        self._intake = intake
        self._max_body_bytes = max_body_bytes

    def decode(self, request: Request, body: bytes) -> list[Record]:
        """
        The records in C{body} (already gzip-decoded); raise L{BodyError} or an L{HttpError} (415).
        """
        raise NotImplementedError

    async def handle(self, request: Request) -> Reply:
        received_at = self._intake.now()
        binding = await self._intake.authorize(self._token)
        template_id = binding.template.id
        try:
            records = self.decode(request, read_body(request, self._max_body_bytes))
        except BodyError as e:
            raise bad_request(f"bad body: {e}", template_id) from None
        except HttpError as e:
            e.template = e.template or template_id
            raise
        accepted = await self._intake.deliver(binding, self.route, records, received_at)
        return Reply(200, {"accepted": accepted, "template": template_id}, template_id)
