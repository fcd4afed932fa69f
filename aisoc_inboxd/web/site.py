"""
The HTTP site: a body limit enforced while the body is read, the request-head limits and deadlines
of L{InboxChannel}, and an access log without tokens.

A declared C{Content-Length} over the limit is answered 413 before any body is read; a chunked body
that grows past it is answered 413 the moment it does, and the rest of the connection's bytes are
dropped rather than buffered.
"""
from __future__ import annotations

import re
from typing import IO, Callable
from urllib.parse import quote, unquote_to_bytes

from twisted.logger import Logger
from twisted.web.http import _getContentFile
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import provider

from aisoc_inboxd.config import HttpSettings
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.web.channel import ChannelLimits, InboxChannel, OnRefused
from aisoc_inboxd.web.errors import too_large
from aisoc_inboxd.web.tree import route_of

#: a token in a URL path is logged as its shape only
_TOKEN_IN_PATH = re.compile(rb"aisoc_inbox_[A-Za-z0-9]+")

OnTooLarge = Callable[[bytes], None]


class _Discard:
    """
    Stands in for the content file of a refused request; bytes written to it are dropped.
    """

    def write(self, data: bytes) -> None:
        pass

    def seek(self, offset: int, whence: int = 0) -> None:
        pass

    def read(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


@provider()
class InboxRequest(Request):
    """
    Declares it provides nothing as a class (as without the declaration: what a class provides is
    not inherited), so that twisted.web's C{INonQueuedRequestFactory.providedBy} per request finds
    a declaration of its own, not C{Request}'s, whose reading raises and clears an AttributeError.
    """

    #: body bytes read from the wire so far
    received_bytes = 0
    #: set when a route wrote this request's log line, so the site does not log it twice
    route_logged = False

    def gotLength(self, length: int | None) -> None:
        self._refused = False
        if length is not None and length > self.channel.site.max_body_bytes:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self.received_bytes += len(data)
        if self.received_bytes > self.channel.site.max_body_bytes:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if getattr(self, "_refused", False):
            return
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        """
        Answer 413 and close: the request never reaches a resource, and its remaining body is never
        stored.
        """
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" for a body we refuse
        if self.content is not None:
            self.content.close()
        self.content = _Discard()  # type: ignore[assignment]
        site: InboxSite = self.channel.site
        self.channel.reply_and_close(413, too_large(site.max_body_bytes).message)
        site.on_too_large(getattr(self.channel, "_path", b"") or b"")


class InboxSite(Site):
    """
    @param max_body_bytes: the largest body read from the wire (and, after gzip, decoded).
    @param on_too_large: told the request path of each body refused for size (for metrics).
    @param limits: the request head's size limit and the head's and body's deadlines.
    @param on_refused: told the reason of each request the channel refuses (for metrics).
    """

    protocol = InboxChannel
    requestFactory = InboxRequest
    _log = Logger()

    def __init__(self, resource: Resource, max_body_bytes: int, on_too_large: OnTooLarge,
                 timeout: int = 60, reactor: object = None, *, limits: ChannelLimits, on_refused: OnRefused) -> None:
        super().__init__(resource, timeout=timeout, reactor=reactor)
        # routes parse their own bodies (webhook payload=, relay multipart); twisted.web must not
        # parse forms itself, which costs CPU and answers a bad multipart body with a bare 400. Each
        # request reads this from its site (set here, not as Site's keyword, which twisted[tls]>=24.7
        # may not take), so the request class needs no __init__ of its own
        self._parsePOSTFormSubmission = False
        self.max_body_bytes = max_body_bytes
        self.on_too_large = on_too_large
        self.limits = limits
        self.on_refused = on_refused

    def getContentFile(self, length: int | None) -> IO[bytes]:
        """
        The file a request's body is read into: twisted.web's own choice (in memory below 100 kB,
        else a temporary file). twisted.web's C{Request.gotLength} asks its site for this method
        and, when a site has none, falls back to the same choice through an C{AttributeError}
        raised and caught on every request.
        """
        return _getContentFile(length)  # type: ignore[no-any-return]

    def log(self, request: Request) -> None:
        """
        One structured line per request the routes did not log themselves (404s, health checks),
        with any token in the path replaced by its shape.
        """
        if getattr(request, "route_logged", False):
            return
        self._log.info(
            "{client} {method} {path} {status} {size}",
            client=request.getClientAddress().host if request.getClientAddress() else "-",
            method=request.method.decode("latin-1"), path=redact_path(request.uri),
            status=request.code, size=request.sentLength)


def inbox_site(resource: Resource, http: HttpSettings, metrics: Metrics, reactor: object) -> InboxSite:
    """
    The HTTP listener's site over C{resource}: the limits and deadlines of C{http}, bodies refused
    for size counted under the route their path names, and the channel's refusals counted.
    """
    return InboxSite(resource, max_body_bytes=http.max_body_bytes,
                     on_too_large=lambda path: metrics.request(route_of(path), None, "too_large"),
                     timeout=http.timeout, reactor=reactor, limits=channel_limits(http),
                     on_refused=metrics.http_refusal)


def channel_limits(http: HttpSettings) -> ChannelLimits:
    """
    The request head's size limit and the head's and body's deadlines, which every HTTP listener
    (inbox and admin) applies.
    """
    return ChannelLimits(http.header_timeout, http.body_timeout, http.max_header_bytes)


def redact_path(path: bytes) -> str:
    """
    C{path} for the log: decoded as the routes decode it (so C{aisoc%5Finbox_…} is a token too),
    every token replaced by its shape, then percent-encoded again so no control character or
    line break reaches the log line.
    """
    redacted = _TOKEN_IN_PATH.sub(b"aisoc_inbox_<redacted>", unquote_to_bytes(path))
    return quote(redacted, safe="/?&=:;@+,$!*'()[]<>")
