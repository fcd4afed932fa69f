"""
Why intake refuses records, in the domain's words: an outcome (the metric label, and the key each
transport maps to its own terms: web to an HTTP status in L{aisoc_inboxd.web.errors}, the Splunk
routes to a HEC code in L{aisoc_inboxd.web.hec}, syslog to a counted drop) and a message that names
the problem for the sender. Nothing was accepted when one is raised.
"""
from __future__ import annotations

from dataclasses import dataclass

from aisoc_inboxd.intake.ratelimit import retry_seconds
from aisoc_inboxd.store import TokenRecord

#: seconds a sender is asked to wait while the token store does not answer
STORE_RETRY_AFTER = 5
#: seconds a sender is asked to wait while the sink cannot make events durable
SINK_RETRY_AFTER = 5
#: seconds a sender is asked to wait while another instance handles the same idempotency key
CONFLICT_RETRY_AFTER = 1


@dataclass
class Refused(Exception):
    outcome: str
    message: str
    #: whole seconds after which a retry may succeed, when there is such a time
    retry_after: int | None = None
    #: the template label for metrics, when the records were bound before the refusal
    template: str | None = None
    #: the token the request presented, when it resolved before the refusal (push stats count it)
    token: TokenRecord | None = None

    def __str__(self) -> str:
        return self.message


def invalid_token() -> Refused:
    return Refused("invalid_token", "invalid token")


def unknown_template(template_id: str, token: TokenRecord | None = None) -> Refused:
    return Refused("unknown_template", f"unknown template: {template_id!r} is not an allowed template; restore it "
                                       "(its file in a templates directory, its id in templates.allowed) and reload "
                                       "the daemon, and this token works again; or revoke the token and mint one for "
                                       "an allowed template", template=template_id, token=token)


def bad_request(message: str, template: str | None = None) -> Refused:
    return Refused("bad_request", message, template=template)


def invalid_signature(message: str = "invalid signature", template: str | None = None) -> Refused:
    return Refused("invalid_signature", message, template=template)


def rate_limited(wait: float, template: str, token: TokenRecord | None) -> Refused:
    return Refused("rate_limited", "too many requests: the tenant's rate limit (AISOC_INBOX_RATE_LIMIT_PER_MIN) "
                                   "is reached; retry after the Retry-After seconds",
                   retry_seconds(wait), template, token)


def unknown_token_flood(wait: float) -> Refused:
    return Refused("unknown_token_flood", "too many unknown tokens from this address: its store lookups "
                                          "(token_cache.unknown_lookups_per_ip_per_sec) are spent; retry after "
                                          "the Retry-After seconds", retry_seconds(wait))


def idempotency_conflict(header: str) -> Refused:
    return Refused("conflict", f"a request with this {header} is still being processed; retry shortly",
                   CONFLICT_RETRY_AFTER)


def sink_unavailable(problem: str, template: str | None = None) -> Refused:
    return Refused("unavailable", f"events could not be made durable, retry later: {problem}", SINK_RETRY_AFTER,
                   template)


def store_unavailable() -> Refused:
    """
    The token store did not answer (a lookup of a token the cache does not hold, an idempotency
    claim): nothing was accepted; the details are in the log and on the status page, not here.
    """
    return Refused("store_unavailable", "token store unavailable", STORE_RETRY_AFTER)
