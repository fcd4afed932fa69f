"""
Recent deliveries: what each sender sent, what it got back and what it became, kept in memory for
the admin API, the CLI and the status page ("did the vendor call us, why did it get a 400?").

Every token keeps a ring of its last C{deliveries.per_token} requests (the token-less CEF route
one under the key C{cef}); all rings together are held to C{deliveries.max_bytes}, the oldest
record of any ring going first. A record is made after its reply was sent, so it never delays one.
It never holds a token, a signing secret or an authorization value: the route is recorded, not the
path (which carries the token), and every header that may carry a credential is redacted.
"""
from __future__ import annotations

import base64
import functools
import itertools
import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from aisoc_inboxd.config import DeliverySettings, per_process
from aisoc_inboxd.tokens import TOKEN_PREFIX

REDACTED = "<redacted>"
#: header names that carry credentials or their proofs (Authorization, Cookie, X-Hub-Signature-256,
#: X-Splunk-Token, X-Api-Key, …); matched anywhere in the lowercase name
_SECRET_HEADER = re.compile(r"auth|token|secret|signature|cookie|session|passw|credential|api-?key|x-.*-key$")
#: named like a secret but carries none, and the user wants to see it
_PLAIN_HEADERS = frozenset({"x-aisoc-idempotency-key"})
#: what a record costs beyond its variable parts (the object, its fields, its ring slot)
RECORD_OVERHEAD = 600


def redact_headers(headers: Iterable[tuple[str, str]], secret_names: Iterable[str] = ()) -> list[tuple[str, str]]:
    """
    C{headers} (name, value) with every value that may carry a credential replaced by
    L{REDACTED}: by its name, by being one of C{secret_names} (lowercase; the CEF route's
    shared-secret header) or by holding something shaped like an inbox token.
    """
    extra = frozenset(secret_names)
    redacted = []
    for name, value in headers:
        secret = _secret_name(name) or (bool(extra) and name.lower() in extra and name.lower() not in _PLAIN_HEADERS)
        redacted.append((name, REDACTED if secret or TOKEN_PREFIX in value else value))
    return redacted


def redacted_header_pairs(raw: Iterable[tuple[bytes, Sequence[bytes]]],
                          secret_names: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """
    L{redact_headers} of L{header_pairs} (the reference, which this must equal), in one pass over
    Twisted's raw headers: a name is decoded and judged once per process, a value is decoded only
    when its name is not a secret's. The token shape is looked for in the decoded text (latin-1 maps
    byte to character), not the bytes: C{bytes in bytes} first tries its operand as an integer and
    raises and clears a TypeError each time.
    """
    pairs = []
    for name, values in raw:
        text, secret = _header_name(name)
        if secret_names and not secret:
            lower = text.lower()
            secret = lower in secret_names and lower not in _PLAIN_HEADERS
        for value in values:
            kept = None if secret else value.decode("latin-1")
            pairs.append((text, REDACTED if kept is None or TOKEN_PREFIX in kept else kept))
    return pairs


@functools.lru_cache(maxsize=1024)
def _header_name(name: bytes) -> tuple[str, bool]:
    """
    A raw header name as text, and whether it may carry a credential (L{_secret_name}).
    """
    text = name.decode("latin-1")
    return text, _secret_name(text)


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    """
    Whether a header so named may carry a credential; decided once per name (every request
    repeats the same few).
    """
    lower = name.lower()
    return lower not in _PLAIN_HEADERS and bool(_SECRET_HEADER.search(lower))


class FirstEvent:
    """
    The first OCSF event a delivery's body became, as JSON text, or why there is none. Rendering it
    costs as much as normalizing the record again, so a record small enough to hold is kept and
    rendered the first time someone reads the delivery (the admin API, the CLI, the status page);
    most deliveries are never read. The template the record was published under is held with it,
    so a reload before the read does not change what is shown.
    """

    __slots__ = ("_render", "_result", "size")

    def __init__(self, render: Callable[[], tuple[str | None, str | None]], size: int) -> None:
        """
        @param render: makes C{(text, error)}; called at most once.
        @param size: the bytes counted for it against C{deliveries.max_bytes} (L{Delivery.size}).
        """
        self._render: Callable[[], tuple[str | None, str | None]] | None = render
        self._result: tuple[str | None, str | None] = (None, None)
        self.size = size

    @classmethod
    def rendered(cls, text: str | None, error: str | None) -> FirstEvent:
        event = cls(lambda: (text, error), len(text or "") + len(error or ""))
        event.result()
        return event

    def result(self) -> tuple[str | None, str | None]:
        if self._render is not None:
            self._result, self._render = self._render(), None
        return self._result


@dataclass
class Delivery:
    """
    One recorded request. C{number} counts the deliveries of its key from 1 (the C{n} of
    C{…/deliveries/{n}}); C{body} is the first C{deliveries.body_bytes} of the body as the
    sender meant it (gzip undone), C{None} when bodies are not kept or the request had none read.
    Never changed once made; not declared frozen because one is made per request, and a frozen
    dataclass sets each of its fields through C{object.__setattr__} (3x the cost).
    """

    key: str
    number: int
    tenant_id: str | None
    received_at: float
    client: str | None
    route: str
    method: str
    status: int
    outcome: str
    template: str | None
    events: int
    error: str | None
    duration_ms: float
    request_headers: list[tuple[str, str]]
    response_headers: list[tuple[str, str]]
    response_body: str
    body: bytes | None
    body_size: int
    #: the first OCSF event of the body (None: no body kept, or not a token route's delivery)
    first_event: FirstEvent | None = None
    #: its client left before the body was read, which was lost with the connection (whatever
    #: C{deliveries.keep_bodies} says)
    body_lost: bool = False

    @property
    def ocsf(self) -> str | None:
        return self.first_event.result()[0] if self.first_event is not None else None

    @property
    def ocsf_error(self) -> str | None:
        return self.first_event.result()[1] if self.first_event is not None else None

    @property
    def truncated(self) -> bool:
        return self.body is not None and len(self.body) < self.body_size

    def size(self) -> int:
        """
        The bytes this record holds (what C{deliveries.max_bytes} counts).
        """
        headers = sum([len(name) + len(value) for pairs in (self.request_headers, self.response_headers)
                       for name, value in pairs])
        return (RECORD_OVERHEAD + headers + len(self.response_body) + len(self.body or b"")
                + len(self.error or "") + (self.first_event.size if self.first_event is not None else 0))

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kept": self.body is not None, "lost": self.body_lost, "size": self.body_size,
                                "truncated": self.truncated}
        if self.body is not None:
            try:
                body.update(encoding="utf-8", text=self.body.decode("utf-8"))
            except UnicodeDecodeError:
                body.update(encoding="base64", text=base64.b64encode(self.body).decode("ascii"))
        return {
            "n": self.number, "key": self.key, "received_at": self.received_at, "client": self.client, "route": self.route,
            "method": self.method, "status": self.status, "outcome": self.outcome, "template": self.template,
            "events": self.events, "error": self.error, "duration_ms": self.duration_ms,
            "request": {"headers": [list(h) for h in self.request_headers], "body": body},
            "response": {"status": self.status, "headers": [list(h) for h in self.response_headers],
                         "body": self.response_body},
            "ocsf": json.loads(self.ocsf) if self.ocsf is not None else None,
            "ocsf_error": self.ocsf_error,
        }


@dataclass
class _Ring:
    tenant_id: str | None
    #: (arrival, delivery, its size) oldest first
    records: deque[tuple[int, Delivery, int]] = field(default_factory=deque)
    numbered: int = 0


#: what L{DeliveryLog.read} reads: a token's (or the CEF route's) deliveries, a syslog listener's
#: sampled frames, or its malformed ones
TOKENS, FRAMES, MALFORMED = "tokens", "frames", "malformed"
#: worker k numbers its deliveries from k × this + 1 (the daemon from 1), so a number names one
#: delivery among every process's
WORKER_NUMBERS = 1_000_000_000


class DeliveryLog:
    """
    The rings of every key in this process, bounded in count per key and in bytes overall.
    """

    def __init__(self, settings: DeliverySettings, worker: int = 0, processes: int = 1) -> None:
        """
        @param worker: the worker process's index (0: the daemon), which sets where numbers start.
        @param processes: how many processes (C{workers:}) share C{deliveries.max_bytes}: each keeps
            its share, so the whole daemon holds no more than the setting says.
        """
        self.settings = settings
        self.max_bytes = per_process(settings.max_bytes, processes)
        self.first_number = worker * WORKER_NUMBERS + 1
        self._rings: dict[str, _Ring] = {}
        #: (arrival, key) of every record, oldest first; entries whose record its ring already
        #: dropped are skipped when met, and compacted away when they outnumber the live ones
        self._arrivals: deque[tuple[int, str]] = deque()
        self._arrival = itertools.count()
        self._live = 0
        self.bytes = 0
        #: what the syslog listeners' samples may hold, kept free of token deliveries
        self.reserved = 0
        #: the sampled frames of each syslog listener, by name
        self.samples: dict[str, FrameSamples] = {}

    def keeps_body(self, tenant_id: str | None) -> bool:
        """
        Whether a delivery of C{tenant_id} may keep its body (C{deliveries.keep_bodies}, and not
        one of C{deliveries.without_bodies}).
        """
        return self.settings.keep_bodies and tenant_id not in self.settings.without_bodies

    def reserve(self, size: int) -> None:
        """
        Keep C{size} of C{max_bytes} for a syslog listener's samples.
        """
        self.reserved += size
        self._evict_to_cap()

    def next_number(self, key: str) -> int:
        ring = self._rings.get(key)
        return self.first_number if ring is None else ring.numbered + 1

    def add(self, delivery: Delivery) -> None:
        ring = self._rings.get(delivery.key)
        if ring is None:
            ring = self._rings[delivery.key] = _Ring(delivery.tenant_id)
        ring.tenant_id = delivery.tenant_id
        ring.numbered = delivery.number
        arrival = next(self._arrival)
        size = delivery.size()
        ring.records.append((arrival, delivery, size))
        self._arrivals.append((arrival, delivery.key))
        self._live += 1
        self.bytes += size
        while len(ring.records) > self.settings.per_token:
            self._drop_oldest(ring)
        self._evict_to_cap()
        if len(self._arrivals) > 2 * self._live + 64:
            self._arrivals = deque(sorted((a, key) for key, r in self._rings.items() for a, _, _ in r.records))

    def _evict_to_cap(self) -> None:
        while self.bytes + self.reserved > self.max_bytes and self._arrivals:
            self._evict_oldest()

    def _drop_oldest(self, ring: _Ring) -> None:
        _, dropped, size = ring.records.popleft()
        self._live -= 1
        self.bytes -= size
        if not ring.records:
            del self._rings[dropped.key]

    def _evict_oldest(self) -> None:
        arrival, key = self._arrivals.popleft()
        ring = self._rings.get(key)
        if ring is not None and ring.records and ring.records[0][0] == arrival:
            self._drop_oldest(ring)

    def count(self) -> int:
        return self._live

    def of(self, key: str, tenant_id: str | None) -> list[Delivery]:
        """
        The deliveries kept under C{key} for C{tenant_id}, newest first (none for another tenant's key).
        """
        ring = self._rings.get(key)
        if ring is None or ring.tenant_id != tenant_id:
            return []
        return [d for _, d, _ in reversed(ring.records)]

    def key_of(self, tenant_id: str, prefix: str) -> str | None:
        """
        The one key of C{tenant_id} that is or starts with C{prefix} (a fingerprint prefix as
        L{log_id<aisoc_inboxd.tokens.log_id>} prints it), else C{None}.
        """
        if prefix in self._rings:
            return prefix
        found = [key for key, ring in self._rings.items() if ring.tenant_id == tenant_id and key.startswith(prefix)]
        return found[0] if len(found) == 1 else None

    def read(self, kind: str, tenant_id: str, key_or_name: str) -> list[Delivery]:
        """
        The deliveries of C{kind} (L{TOKENS}: of a token's fingerprint or unique prefix, or the CEF
        route's key; L{FRAMES} or L{MALFORMED}: of the syslog listener so named) of C{tenant_id},
        newest first; none for another tenant's.
        """
        if kind == TOKENS:
            return self.of(self.key_of(tenant_id, key_or_name) or key_or_name, tenant_id)
        samples = self.samples.get(key_or_name)
        if samples is None or samples.tenant_id != tenant_id:
            return []
        return samples.deliveries(kind == MALFORMED)


def not_kept_because(body: Mapping[str, Any]) -> str:
    """
    Why a delivery's body (its C{request.body} in L{Delivery.as_dict}) was not kept.
    """
    if body.get("lost"):  # .get: a daemon from before it said so
        return "lost: its client left before it was read"
    return "not kept (deliveries.keep_bodies)"


def body_of(delivery: Mapping[str, Any]) -> bytes:
    """
    The body of a delivery as L{Delivery.as_dict} gives it; C{ValueError} saying why when it was
    not kept whole.
    """
    body = delivery["request"]["body"]
    if not body["kept"]:
        raise ValueError(f"the body of delivery {delivery['n']} was {not_kept_because(body)}")
    raw = base64.b64decode(body["text"]) if body["encoding"] == "base64" else body["text"].encode("utf-8")
    if body["truncated"]:
        raise ValueError(f"only the first {len(raw)} of the {body['size']} bytes of delivery {delivery['n']}'s "
                         "body were kept (deliveries.body_bytes)")
    return raw


def header_pairs(raw: Mapping[bytes, list[bytes]] | Iterable[tuple[bytes, list[bytes]]]) -> list[tuple[str, str]]:
    """
    (name, value) text pairs, one per value, of Twisted's raw headers.
    """
    items = raw.items() if isinstance(raw, Mapping) else raw
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, values in items for value in values]


# -- a syslog listener's samples ----------------------------------------------------------------
# Its last C{per_token} frames and, apart, its last malformed ones ("what does this relay send?").
# A frame costs one tuple in a bounded deque on the listener's hot path — no record, no parse, no
# copy of a frame shorter than C{body_bytes}; records are made only when read. The memory they can
# hold is reserved in the log's C{max_bytes} up front, so the cap still holds.

SAMPLES_ROUTE = "syslog"


def samples_key(listener: str, malformed: bool = False) -> str:
    return f"syslog:{listener}" + (":malformed" if malformed else "")


class FrameSamples:
    def __init__(self, log: DeliveryLog, listener: str, tenant_id: str) -> None:
        settings = log.settings
        self.listener = listener
        self.tenant_id = tenant_id
        self._limit = settings.body_bytes if log.keeps_body(tenant_id) else 0
        self._frames: deque[tuple[int, float, str | None, bytes, int]] = deque(maxlen=settings.per_token)
        self._malformed: deque[tuple[int, float, str | None, bytes, int, str]] = deque(maxlen=settings.per_token)
        self._numbered = log.first_number - 1
        log.reserve(2 * settings.per_token * (RECORD_OVERHEAD + self._limit))
        log.samples[listener] = self

    def frames(self, frames: Sequence[bytes], received_at: float, peer: str | None) -> None:
        """
        Keep the last of C{frames} read at C{received_at} from C{peer} (None: a UDP batch of many).
        """
        limit = self._limit
        for frame in frames[-self._frames.maxlen:] if self._frames.maxlen else ():
            self._numbered += 1
            self._frames.append((self._numbered, received_at, peer, frame[:limit], len(frame)))

    def malformed(self, frame: bytes, received_at: float, peer: str | None, reason: str) -> None:
        if self._malformed.maxlen:
            self._numbered += 1
            self._malformed.append((self._numbered, received_at, peer, frame[:self._limit], len(frame), reason))

    def deliveries(self, malformed: bool) -> list[Delivery]:
        """
        The kept frames (or malformed frames) as deliveries, newest first.
        """
        kept = ([(*s, None) for s in self._frames] if not malformed else list(self._malformed))
        return [Delivery(key=samples_key(self.listener, malformed), number=number, tenant_id=self.tenant_id,
                         received_at=received_at, client=peer, route=SAMPLES_ROUTE, method="frame", status=0,
                         outcome="malformed" if reason else "read", template=None, events=0, error=reason,
                         duration_ms=0.0, request_headers=[], response_headers=[], response_body="",
                         body=body if self._limit else None, body_size=size)
                for number, received_at, peer, body, size, reason in reversed(kept)]
