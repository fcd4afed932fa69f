"""
AWS SNS over HTTPS: message signatures and subscription confirmations.

SNS signs every message with an RSA key whose certificate it publishes at C{SigningCertURL}
(SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over a canonical text of named fields. A
forged envelope could point that URL anywhere, so the certificate is fetched only from SNS's own
hosts over https (L{UrlPolicy}; tests inject one for a local server). A SubscriptionConfirmation is
never an event: it is logged with its topic and C{SubscribeURL} for the operator, and confirmed
here (a GET of that URL, on the same policy) when its topic is one the configuration trusts.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.intake.refusals import Refused

#: SNS hosts in every partition: sns.<region>.amazonaws.com and sns.<region>.amazonaws.com.cn
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# the fields each message type signs, in the order SNS puts them into the canonical text
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_CERT_CACHE_SIZE = 32


@dataclass(frozen=True)
class UrlPolicy:
    """
    Which URLs the daemon may fetch on an SNS message's say: C{scheme}://C{host}/… only.
    """

    scheme: str = "https"
    host: re.Pattern[str] = SNS_HOST

    def allows(self, url: Any) -> bool:
        if not isinstance(url, str):
            return False
        parts = urlsplit(url)
        return parts.scheme == self.scheme and bool(self.host.match(parts.hostname or ""))


@dataclass(frozen=True)
class SnsOptions:
    """
    What the configuration decides (C{vendors.sns}).
    """

    verify_signatures: bool = False
    auto_confirm_topics: frozenset[str] = field(default_factory=frozenset)


class InvalidSnsMessage(Refused):
    def __init__(self, problem: str) -> None:
        super().__init__("invalid_signature", f"invalid SNS message: {problem}")


class SnsGate:
    """
    Checks the SNS envelopes of one request before they are published.

    C{http} is a treq-like client (C{get(url)} → response with C{code} and C{content()}); every
    fetch is bounded by C{timeout} seconds on C{clock}.
    """

    _log = Logger()

    def __init__(self, options: SnsOptions, http: Any, clock: IReactorTime,
                 url_policy: UrlPolicy = UrlPolicy(), timeout: float = 10.0) -> None:
        self._options = options
        self._http = http
        self._clock = clock
        self._policy = url_policy
        self._timeout = timeout
        self._certificates: dict[str, rsa.RSAPublicKey] = {}

    async def screen(self, records: Sequence[Record]) -> None:
        """
        Verify (when configured) every envelope, then log and maybe confirm subscriptions; raise
        L{InvalidSnsMessage} (C{invalid_signature}) for a message that does not verify.
        """
        for record in records:
            message = record.data
            if self._options.verify_signatures:
                await self.verify(message)
            if message.get("Type") == "SubscriptionConfirmation":
                await self._subscription(message)

    async def verify(self, message: Mapping[str, Any]) -> None:
        kind = message.get("Type")
        if kind not in _SIGNED_FIELDS:
            raise InvalidSnsMessage(f"unknown Type {kind!r}")
        algorithm = _HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise InvalidSnsMessage(f"unsupported SignatureVersion {message.get('SignatureVersion')!r}")
        cert_url = message.get("SigningCertURL")
        if not self._policy.allows(cert_url):
            raise InvalidSnsMessage(f"SigningCertURL {cert_url!r} is not an SNS certificate URL")
        try:
            signature = _b64decode(message.get("Signature"))
        except ValueError:
            raise InvalidSnsMessage("Signature is not base64") from None
        key = await self._public_key(cert_url)
        try:
            key.verify(signature, canonical_text(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise InvalidSnsMessage("the signature does not match") from None

    async def _public_key(self, url: str) -> rsa.RSAPublicKey:
        key = self._certificates.get(url)
        if key is not None:
            return key
        try:
            pem = await self._fetch(url)
            public_key = x509.load_pem_x509_certificate(pem).public_key()
        except Exception as e:
            self._log.warn("cannot fetch the SNS signing certificate {url}: {error}", url=url, error=str(e))
            raise InvalidSnsMessage("the signing certificate could not be fetched") from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise InvalidSnsMessage("the signing certificate has no RSA key")
        if len(self._certificates) >= _CERT_CACHE_SIZE:
            self._certificates.pop(next(iter(self._certificates)))
        self._certificates[url] = public_key
        return public_key

    async def _subscription(self, message: Mapping[str, Any]) -> None:
        topic, url = message.get("TopicArn"), message.get("SubscribeURL")
        self._log.info("SNS subscription confirmation for topic {topic}; confirm it by visiting {url}",
                       topic=topic, url=url)
        if topic not in self._options.auto_confirm_topics:
            return
        if not self._policy.allows(url):
            self._log.warn("not confirming SNS topic {topic}: SubscribeURL {url} is not an SNS URL",
                           topic=topic, url=url)
            return
        try:
            await self._fetch(url)
        except Exception as e:
            self._log.warn("confirming SNS topic {topic} failed: {error}", topic=topic, error=str(e))
            return
        self._log.info("confirmed the SNS subscription to topic {topic}", topic=topic)

    async def _fetch(self, url: str) -> bytes:
        """
        GET C{url}: the body of a 200 answer, within the timeout.
        """
        async def get() -> bytes:
            response = await self._http.get(url)
            body: bytes = await response.content()
            if response.code != 200:
                raise ValueError(f"HTTP {response.code}")
            return body

        return await Deferred.fromCoroutine(get()).addTimeout(self._timeout, self._clock)


def canonical_text(message: Mapping[str, Any]) -> bytes:
    """
    The bytes SNS signs: C{name\\nvalue\\n} for each signed field present, in SNS's order.
    """
    lines = []
    for name in _SIGNED_FIELDS[message["Type"]]:
        value = message.get(name)
        if value is not None:
            lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def _b64decode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None
