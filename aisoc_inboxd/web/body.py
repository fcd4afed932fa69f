"""
Reading a request body: the Content-Encoding (gzip, bounded, also when undeclared), and the Content-Type gate.
"""
from __future__ import annotations

import zlib

from twisted.web.server import Request

from aisoc_inboxd.web.errors import HttpError, too_large, unsupported_media

#: an HTML form's body (GitHub's form-encoded deliveries)
FORM = "application/x-www-form-urlencoded"
#: media types that can carry JSON; anything else on a JSON route is 415 (a missing type is fine)
JSON_CARRIERS = frozenset({
    "application/json", "application/x-ndjson", "application/ndjson", "application/jsonlines",
    "application/x-json-stream", "text/json", "text/plain", "application/octet-stream", FORM,
})


def media_type_of(content_type: str) -> str:
    """
    A Content-Type value without parameters, lowercase.
    """
    return content_type.split(";", 1)[0].strip().lower()


def media_type(request: Request) -> str:
    """
    The Content-Type without parameters, lowercase; empty when the header is missing.
    """
    return media_type_of((request.getHeader(b"content-type") or b"").decode("latin-1"))


def require_json_carrier(request: Request) -> str:
    kind = media_type(request)
    if kind and kind not in JSON_CARRIERS and not kind.endswith("+json"):
        raise unsupported_media(f"unsupported Content-Type {kind!r}: send application/json or application/x-ndjson")
    return kind


def client_left(request: Request) -> bool:
    """
    Whether C{request}'s client closed its connection before the reply: twisted.web then closed the
    body with it and dropped the channel (C{Request.connectionLost}), so neither can be read and no
    reply written. Read off the request, where a C{notifyFinish} Deferred would be made per request;
    only before the reply, as finishing a request deletes its channel too.
    """
    return request.channel is None


def raw_body(request: Request) -> bytes:
    """
    The body exactly as received on the wire (what signatures cover).
    """
    assert request.content is not None
    request.content.seek(0)
    return request.content.read()


#: the first two bytes of every gzip member (RFC 1952); no JSON, NDJSON, CEF or MIME text starts so
GZIP_MAGIC = b"\x1f\x8b"


def decode_content(request: Request, raw: bytes, limit: int) -> bytes:
    """
    The body as the sender meant it: gzip undone, with the decoded size held to C{limit} too, so a
    small compressed bomb is refused instead of filling memory. A gzip body whose sender (or a proxy
    on the way) left out C{Content-Encoding} is known by its magic bytes and inflated the same way.
    """
    encoding = (request.getHeader(b"content-encoding") or b"").strip().lower()
    if encoding in (b"", b"identity"):
        return gunzip(raw, limit) if raw.startswith(GZIP_MAGIC) else raw
    if encoding not in (b"gzip", b"x-gzip"):
        raise HttpError(415, f"unsupported Content-Encoding {encoding.decode('latin-1')!r}: send gzip or nothing",
                        "unsupported_media_type")
    return gunzip(raw, limit)


def gunzip(data: bytes, limit: int) -> bytes:
    """
    Decompress gzip (several members allowed) without ever producing more than C{limit} bytes.
    """
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(data, limit + 1 - size)
        except zlib.error as e:
            raise HttpError(400, f"malformed gzip body: {e}", "bad_request") from None
        size += len(chunk)
        out.append(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise too_large(limit)
        if not inflater.eof:
            raise HttpError(400, "malformed gzip body: truncated", "bad_request")
        data = inflater.unused_data
    return b"".join(out)
