"""
HMAC-SHA256 request signatures: C{hex(HMAC-SHA256(secret, raw body))} as sent by vendors.

The signature covers the body exactly as received on the wire, before any gzip decoding. Accepted
headers: C{X-Signature} and C{X-Hub-Signature-256} (GitHub), each optionally prefixed C{sha256=},
and PagerDuty's C{X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]}, which carries several signatures
while a secret is being rotated. Comparison is constant-time.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Callable, Iterable

GetHeader = Callable[[str], "list[str]"]

_PLAIN_HEADERS = ("X-Signature", "X-Hub-Signature-256")
_PAGERDUTY_HEADER = "X-PagerDuty-Signature"


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def presented_signatures(get_header: GetHeader) -> list[str]:
    """
    Every signature the request carries, lowercase hex without prefixes.
    """
    found: list[str] = []
    for name in _PLAIN_HEADERS:
        for value in get_header(name):
            value = value.strip()
            found.append(value[len("sha256="):] if value.lower().startswith("sha256=") else value)
    for value in get_header(_PAGERDUTY_HEADER):
        for part in value.split(","):
            scheme, _, digest = part.strip().partition("=")
            if scheme == "v1":
                found.append(digest)
    return [s.lower() for s in found]


def verify(secret: bytes, body: bytes, signatures: Iterable[str]) -> bool:
    """
    Whether any presented signature matches; every candidate is compared, in constant time.
    """
    expected = sign(secret, body).encode("ascii")
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return matched
