"""
Errors an HTTP route answers with: a status, a JSON message naming the problem, and the metric
outcome it is counted under. Intake's refusals (L{Refused}) get their status from one table,
L{STATUS_BY_OUTCOME}; refusals only the web knows (a body too large, a media type, a route that is
off) are L{HttpError}s that carry their own.
"""
from __future__ import annotations

from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.store import TokenRecord

#: the HTTP status of each of intake's refusals, by outcome
STATUS_BY_OUTCOME = {
    "invalid_token": 401,
    "invalid_signature": 401,
    "unknown_template": 400,
    "bad_request": 400,
    "conflict": 409,
    "rate_limited": 429,
    "unknown_token_flood": 429,
    "unavailable": 503,
    "store_unavailable": 503,
}


class HttpError(Refused):
    """
    A refusal in HTTP's own terms: its status and headers are its own, not looked up by outcome.
    """

    def __init__(self, status: int, message: str, outcome: str, headers: dict[str, str] | None = None,
                 template: str | None = None, token: TokenRecord | None = None) -> None:
        super().__init__(outcome, message, template=template, token=token)
        self.status = status
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def http_status(refused: Refused) -> int:
    return refused.status if isinstance(refused, HttpError) else STATUS_BY_OUTCOME[refused.outcome]


def http_headers(refused: Refused) -> dict[str, str]:
    """
    The reply headers of a refusal: C{Retry-After} when it names a time, and an L{HttpError}'s own.
    """
    headers = {} if refused.retry_after is None else {"Retry-After": str(refused.retry_after)}
    if isinstance(refused, HttpError):
        headers.update(refused.headers)
    return headers


def too_large(limit: int) -> HttpError:
    return HttpError(413, f"body too large: the limit is {limit} bytes (AISOC_INBOX_MAX_BODY_BYTES)", "too_large")


def too_many_events(limit: int, template: str | None = None) -> HttpError:
    return HttpError(413, f"too many events: the limit is {limit} per request (http.max_events_per_request); "
                          f"send smaller batches", "too_many_events", template=template)


def unsupported_media(message: str, template: str | None = None) -> HttpError:
    return HttpError(415, message, "unsupported_media_type", template=template)
