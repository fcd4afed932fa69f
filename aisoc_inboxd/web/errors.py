"""
Errors an HTTP route answers with: a status, a JSON message naming the problem, and the metric
outcome it is counted under.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from aisoc_inboxd.store import TokenRecord


@dataclass
class HttpError(Exception):
    status: int
    message: str
    outcome: str
    headers: dict[str, str] = field(default_factory=dict)
    #: the template label for metrics, when the token resolved before the error
    template: str | None = None
    #: the token the request presented, when it resolved before the error (push stats count it)
    token: TokenRecord | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def invalid_token() -> HttpError:
    return HttpError(401, "invalid token", "invalid_token")


def unknown_template(template_id: str, token: TokenRecord | None = None) -> HttpError:
    return HttpError(400, f"unknown template: {template_id!r} is not an allowed template; revoke and re-mint the token",
                     "unknown_template", template=template_id, token=token)


def bad_request(message: str, template: str | None = None) -> HttpError:
    return HttpError(400, message, "bad_request", template=template)


def too_large(limit: int) -> HttpError:
    return HttpError(413, f"body too large: the limit is {limit} bytes (AISOC_INBOX_MAX_BODY_BYTES)", "too_large")


def too_many_events(limit: int, template: str | None = None) -> HttpError:
    return HttpError(413, f"too many events: the limit is {limit} per request (http.max_events_per_request); "
                          f"send smaller batches", "too_many_events", template=template)


def unsupported_media(message: str, template: str | None = None) -> HttpError:
    return HttpError(415, message, "unsupported_media_type", template=template)


def unavailable(message: str, template: str | None = None, retry_after: int = 5) -> HttpError:
    return HttpError(503, message, "unavailable", {"Retry-After": str(retry_after)}, template=template)


#: seconds a sender is asked to wait while the token store does not answer
STORE_RETRY_AFTER = 5


def store_unavailable() -> HttpError:
    """
    The token store did not answer (a lookup of a token the cache does not hold, an idempotency
    claim): nothing was accepted; the details are in the log and on the status page, not here.
    """
    return HttpError(503, "token store unavailable", "store_unavailable",
                     {"Retry-After": str(STORE_RETRY_AFTER)})
