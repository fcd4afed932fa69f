"""
C{GET /status} on the admin listener: one read-only HTML page for an operator at a browser —
listeners, the requests the HTTP channel refused before any route, what each syslog listener
received and lost, the last reload, the sink (where its events go) and its spool, the token store
(answering or down, lookups, unknown-token floods), event rates per template, every live token with
its push stats (each linking to its recent deliveries), and the last error replies. Rendered on the
server with L{twisted.web.template} (which escapes every value), inline CSS, no script and no
external asset; the admin key is asked for with an HTTP Basic challenge (any user name, the key as
the password) or taken as a Bearer token.

Its one change is redelivering a recent delivery: a form posted to C{/status}, refused unless
L{FormGuard} finds it came from this daemon's own page (the browser re-sends Basic credentials
with any site's forms), then answered with a redirect to the token's deliveries, the new one open.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence
from urllib.parse import parse_qs

from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.template import Tag, flattenString, tags

from aisoc_inboxd.activity import EventRates, RecentErrors
from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.metrics import SYSLOG_DROP_REASONS, TokenStoreMetrics, count
from aisoc_inboxd.reload import ReloadOutcome
from aisoc_inboxd.sinks import EventSink, IEventLog, IKafkaDestination, ISpooling
from aisoc_inboxd.store import PUSH_WINDOW, PushTotals, Store, StoreError, TokenRecord
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.tokens import TokenCache, log_id
from aisoc_inboxd.web.admin import carries_admin_key
from aisoc_inboxd.web.channel import REFUSALS
from aisoc_inboxd.web.delivery_desk import DeliveryDesk
from aisoc_inboxd.web.errors import http_status
from aisoc_inboxd.web.status_deliveries import CSS as DELIVERIES_CSS, deliveries_link, deliveries_section
from aisoc_inboxd.web.status_forms import TOKEN_FIELD, FormGuard

#: most token rows listed (the newest tokens); past it a note says so
MAX_TOKENS = 500

#: what the status page calls some drop reasons of C{aisoc_ingest_syslog_dropped_total}
_DROP_HEADINGS = {"malformed": "malformed CEF", "truncated": "cut short", "unavailable": "sink refused"}

#: the syslog table's columns: heading, sample and its C{reason} label (the collectors of L{SyslogMetrics});
#: the terms of the accounting (frames read = durable + in flight + dropped) come first
_SYSLOG_FRAMES = ("frames read", "aisoc_ingest_syslog_frames_total", None)
_SYSLOG_DURABLE = ("durable", "aisoc_ingest_syslog_durable_total", None)
_SYSLOG_IN_FLIGHT = ("in flight", "aisoc_ingest_syslog_in_flight", None)
_SYSLOG_DROPPED: tuple[tuple[str, str, str | None], ...] = tuple(
    (f"dropped: {_DROP_HEADINGS.get(reason, reason)}", "aisoc_ingest_syslog_dropped_total", reason)
    for reason in SYSLOG_DROP_REASONS)
_SYSLOG_OTHERS: tuple[tuple[str, str, str | None], ...] = (
    ("events durable", "aisoc_ingest_syslog_events_total", None),
    ("connections", "aisoc_ingest_syslog_connections_total", None),
    ("closed: idle", "aisoc_ingest_syslog_connections_closed_total", "idle"),
    ("closed: frame too large", "aisoc_ingest_syslog_connections_closed_total", "oversized"),
)

#: the sample of the HTTP channel's refusals (L{aisoc_inboxd.web.channel.REFUSALS}), by C{reason}
_HTTP_REFUSED = "aisoc_ingest_http_connections_closed_total"

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.6em 0 .4em; }
p.note { color: #666; margin: .2em 0; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: ui-monospace, monospace; }
.ok { color: #137333; font-weight: 600; }
.bad { color: #b3261e; font-weight: 600; }
form { margin: .4em 0; }
"""

_HEADERS = {
    b"Content-Type": b"text/html; charset=utf-8",
    b"Cache-Control": b"no-store",
    b"Content-Security-Policy": b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                b"frame-ancestors 'none'",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" with the page's
    # own forms, and FormGuard could not tell them from another site's
    b"Referrer-Policy": b"same-origin",
    b"X-Content-Type-Options": b"nosniff",
}


class ListenerView(Protocol):
    """
    What the page reads of a listener (L{aisoc_inboxd.listeners.Listener}).
    """

    name: str
    description: str
    port: IListeningPort | None


class DiskView(Protocol):
    """
    What the page reads of a sink directory's L{aisoc_inboxd.sinks.health.DiskHealth}.
    """

    since: float | None
    failed_writes: int

    def problem(self) -> str | None: ...


class SpoolView(Protocol):
    """
    What the page reads of an L{ISpooling} sink's spool.
    """

    bytes: int
    segments: int
    oldest_received_at: float | None
    disk: DiskView


@dataclass(frozen=True)
class TokenStoreView:
    """
    The token store as this instance sees it: whether it answers, what the cache holds, and how
    many lookups reached it or were refused.
    """

    health: StoreHealth
    metrics: TokenStoreMetrics
    cache: TokenCache


@dataclass(frozen=True)
class StatusSources:
    """
    What the page shows: the daemon's listeners (read at each request, so those added later are
    seen), its sink, the store holding push stats, this instance's recent activity, the metrics
    /metrics serves (every process's, with workers) for the syslog listeners' counters, how its last
    reload ended (None before the first) and the token store's health.
    """

    listeners: Callable[[], Sequence[ListenerView]]
    sink: EventSink
    store: Store
    rates: EventRates
    errors: RecentErrors
    clock: IReactorTime
    metrics: Collector
    last_reload: Callable[[], ReloadOutcome | None]
    tokens: TokenStoreView | None = None
    #: the recent deliveries, shown per token (C{?deliveries=FINGERPRINT})
    deliveries: DeliveryDesk | None = None


class StatusPage(Resource):
    isLeaf = True
    _log = Logger()

    def __init__(self, sources: StatusSources, api_key: bytes) -> None:
        super().__init__()
        self._sources = sources
        self._api_key = api_key
        self._guard = FormGuard(api_key, sources.clock)

    def render_GET(self, request: Request) -> object:
        if not carries_admin_key(request, self._api_key):
            return _challenge(request)
        return self._answer(request, self._page(request))

    def render_POST(self, request: Request) -> object:
        """
        A redeliver form: refused (403, nothing published) unless it came from this daemon's own page.
        """
        if not carries_admin_key(request, self._api_key):
            return _challenge(request)
        return self._answer(request, self._redeliver(request))

    def _answer(self, request: Request, page: Any) -> object:
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        d = Deferred.fromCoroutine(page)
        d.addCallbacks(self._send, self._failed, callbackArgs=(request, gone), errbackArgs=(request, gone))
        return NOT_DONE_YET

    async def _redeliver(self, request: Request) -> bytes:
        assert request.content is not None
        request.content.seek(0)
        fields = parse_qs(request.content.read().decode("utf-8", "replace"))
        tenant, fingerprint, number, token = (fields.get(name, [""])[0]
                                              for name in ("tenant", "fingerprint", "n", TOKEN_FIELD))
        desk = self._sources.deliveries
        refusal = self._guard.refusal(request, token)
        if refusal is not None:
            return await _message(request, 403, f"Refused: {refusal}. Nothing was redelivered.", None)
        back = deliveries_link(tenant, fingerprint)
        if desk is None or not number.isdigit():
            return await _message(request, 400, "Nothing to redeliver: recent deliveries are not kept, or the form "
                                                "names no delivery number.", back)
        try:
            reply = await desk.redeliver(tenant, fingerprint, int(number), None, "the status page")
        except Refused as e:
            return await _message(request, http_status(e), f"Delivery {number} was not redelivered: {e.message}", back)
        request.setResponseCode(303)
        request.setHeader(b"Location", deliveries_link(tenant, fingerprint, reply.body["n"]).encode("utf-8"))
        return b""

    async def _page(self, request: Request) -> bytes:
        s = self._sources
        now = s.clock.seconds()
        selected = request.args.get(b"tenant", [b""])[0].decode("utf-8", "replace")
        token = request.args.get(b"deliveries", [b""])[0].decode("utf-8", "replace").lower()
        try:
            # every tenant's tokens, for the selector and the page without a tenant; then the tenant's
            everyone = await s.store.status_tokens(now - PUSH_WINDOW, None, MAX_TOKENS + 1)
            tokens = await s.store.status_tokens(now - PUSH_WINDOW, selected, MAX_TOKENS + 1) if selected else everyone
            totals, stats_error = await s.store.all_push_totals(now - PUSH_WINDOW), None
        except StoreError as e:
            everyone, tokens, totals, stats_error = [], [], [], str(e)
        listing = await s.deliveries.listing(selected, token) if s.deliveries and token and selected else None
        opened = request.args.get(b"opened", [b""])[0]
        return await _document(
            _CSS + DELIVERIES_CSS,
            tags.p(f"Generated {_utc(now)}.", class_="note"),
            *(deliveries_section(listing, self._guard.token(), int(opened) if opened.isdigit() else None)
              if listing is not None else ()),
            tags.h2("Listeners"), _listeners(s.listeners()),
            tags.h2("HTTP requests refused before a route (since start, all processes)"), _http_refused(s.metrics),
            tags.h2("Syslog listeners (since start, all processes)"), _syslog(s.metrics),
            tags.h2("Last reload"), _last_reload(s.last_reload(), now),
            tags.h2("Sink"), _sink(s.sink, now),
            *((tags.h2("Token store (this instance)"), _token_store(s.tokens, now)) if s.tokens else ()),
            tags.h2("Event rates (this instance)"), _rates(s.rates.rates()),
            tags.h2("Tokens and their push stats (last 24 h, all instances)"),
            _tokens(everyone, tokens, totals, selected, stats_error, now),
            tags.h2("Recent errors (this instance)"), _errors(s.errors, now))

    def _send(self, body: bytes, request: Request, gone: list[Failure]) -> None:
        if gone or request.finished:
            return
        for name, value in _HEADERS.items():
            request.setHeader(name, value)
        request.write(body)
        request.finish()

    def _failed(self, failure: Failure, request: Request, gone: list[Failure]) -> None:
        self._log.failure("rendering the status page failed", failure=failure)
        if gone or request.finished:
            return
        request.setResponseCode(500)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.write(b"the status page could not be rendered; see the daemon's log\n")
        request.finish()


def _challenge(request: Request) -> bytes:
    request.setResponseCode(401)
    request.setHeader(b"WWW-Authenticate", b'Basic realm="aisoc-inboxd admin", charset="UTF-8"')
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    return (b"<!DOCTYPE html><title>401</title><p>The admin key is required: any user name, "
            b"the key from the admin key file as the password.</p>\n")


async def _message(request: Request, status: int, text: str, back: str | None) -> bytes:
    """
    A page of one message (why a form was refused), with a link back to the deliveries when given.
    """
    request.setResponseCode(status)
    return await _document(_CSS, tags.p(text, class_="bad"),
                           *((tags.p(tags.a("Back to the deliveries", href=back)),) if back else ()))


async def _document(css: str, *body: Any) -> bytes:
    """
    A page of the status page's: its head and heading, then C{body}.
    """
    page = tags.html(lang="en")(
        tags.head(tags.meta(charset="utf-8"), tags.title("aisoc-inboxd status"), tags.style(css)),
        tags.body(tags.h1("aisoc-inboxd status"), *body))
    return b"<!DOCTYPE html>\n" + await flattenString(None, page)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> Tag:
    return tags.table(tags.thead(tags.tr(*(tags.th(h) for h in head))), tags.tbody(*(tags.tr(*r) for r in rows)))


def _num(value: object) -> Tag:
    return tags.td(str(value), class_="num")


def _state(ok: bool, yes: str, no: str) -> Tag:
    return tags.td(yes if ok else no, class_="ok" if ok else "bad")


def _listeners(listeners: Sequence[ListenerView]) -> Tag:
    rows = ((tags.td(listener.name), tags.td(tags.code(listener.description)), tags.td(_address(listener.port)),
             _state(listener.port is not None, "bound", "not bound")) for listener in listeners)
    return _table(("name", "endpoint", "address", "state"), rows)


def _http_refused(metrics: Collector) -> Tag:
    """
    One row per way the HTTP channel refuses a request before any route reads it (slow head or
    body, oversized request line or head, malformed HTTP; the README's second Errors table): its
    status, its C{reason} label and how many connections were closed so, 0 where none was.
    """
    counts = dict.fromkeys(REFUSALS, 0.0)
    for family in metrics.collect():
        for sample in family.samples:
            if sample.name == _HTTP_REFUSED and sample.labels.get("reason") in counts:
                counts[sample.labels["reason"]] += sample.value
    return _table(("status", "reason", "connections closed"),
                  ((_num(status), tags.td(tags.code(reason)), _num(int(counts[reason])))
                   for reason, (status, _) in REFUSALS.items()))


def _syslog(metrics: Collector) -> Tag:
    """
    One row per syslog listener: the terms of its accounting (every frame read is durable, in flight
    or dropped by reason; "unaccounted" is what is none of those, and should be 0), then the events
    it made and the connections it took and closed.
    """
    terms = (_SYSLOG_FRAMES, _SYSLOG_DURABLE, _SYSLOG_IN_FLIGHT, *_SYSLOG_DROPPED)
    columns = (*terms, *_SYSLOG_OTHERS)
    wanted = {(name, reason) for _, name, reason in columns}
    counts: dict[str, dict[tuple[str, str | None], float]] = {}
    for family in metrics.collect():
        for sample in family.samples:
            key = (sample.name, sample.labels.get("reason"))
            if key in wanted and "listener" in sample.labels:
                counts.setdefault(sample.labels["listener"], {})[key] = sample.value
    if not counts:
        return tags.p("No syslog listener is configured.", class_="note")

    def row(listener: str, values: dict[tuple[str, str | None], float]) -> list[Tag]:
        numbers = [int(values.get((name, reason), 0)) for _, name, reason in columns]
        unaccounted = numbers[0] - sum(numbers[1:len(terms)])
        cells = [_num(n) for n in numbers]
        cells.insert(len(terms), tags.td(str(unaccounted), class_="num bad" if unaccounted else "num"))
        return [tags.td(listener), *cells]

    head = ("listener", *(heading for heading, _, _ in terms), "unaccounted",
            *(heading for heading, _, _ in _SYSLOG_OTHERS))
    return _table(head, (row(listener, values) for listener, values in counts.items()))


def _last_reload(outcome: ReloadOutcome | None, now: float) -> Tag:
    if outcome is None:
        return tags.p("No reload since the daemon started.", class_="note")
    rows = [(tags.th("time"), tags.td(f"{_utc(outcome.at)} ({_ago(now - outcome.at)} ago)")),
            (tags.th("result"), _state(outcome.applied, "applied", "rejected: the previous configuration keeps serving"))]
    if outcome.rejection is not None:
        rows.append((tags.th("reason"), tags.td(outcome.rejection)))
    return tags.table(tags.tbody(*(tags.tr(*r) for r in rows)))


def _address(port: IListeningPort | None) -> str:
    if port is None:
        return "—"
    address = port.getHost()
    host, number = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{number}" if host is not None and number is not None else str(address)


def _sink(sink: EventSink, now: float) -> Tag:
    problem = sink.not_ready()
    rows = [(tags.th("type"), tags.td(sink.name)),
            *_destination(sink),
            (tags.th("ready"), _state(problem is None, "ready", f"not ready: {problem}"))]
    if (log := IEventLog(sink, None)) is not None:
        rows += _disk("event log", log.disk, now)
    if (spooling := ISpooling(sink, None)) is not None:
        spool: SpoolView = spooling.spool
        oldest = spool.oldest_received_at
        rows += [(tags.th("spool bytes"), _num(spool.bytes)), (tags.th("spool segments"), _num(spool.segments)),
                 (tags.th("oldest spooled event"), tags.td("—" if oldest is None else _ago(now - oldest)))]
        rows += _disk("spool", spool.disk, now)
    return tags.table(tags.tbody(*(tags.tr(*r) for r in rows)))


def _destination(sink: EventSink) -> list[tuple[Tag, Tag]]:
    """
    Where the sink puts events: the event log's file, or Kafka's topic and bootstrap servers.
    """
    if (log := IEventLog(sink, None)) is not None:
        return [(tags.th("events file"), tags.td(tags.code(str(log.path.absolute()))))]
    if (kafka := IKafkaDestination(sink, None)) is not None:
        return [(tags.th("topic"), tags.td(tags.code(kafka.topic))),
                (tags.th("bootstrap servers"), tags.td(tags.code(kafka.bootstrap_servers or "—")))]
    return []


def _token_store(view: TokenStoreView, now: float) -> Tag:
    health = view.health
    state = (tags.td("answering", class_="ok") if health.up
             else tags.td(f"token store down for {_ago(now - health.since)}: uncached tokens get 503", class_="bad"))
    rows = [(tags.th("state"), state),
            (tags.th("last error"), tags.td(health.last_error or "—"))]
    if health.listening is not None:
        rows.append((tags.th("invalidation link (LISTEN)"),
                     _state(health.listening, "listening", "reconnecting: the cache is dropped once it is back")))
    errors = view.metrics.errors_by_reason()
    rows += [(tags.th("valid tokens cached"), _num(len(view.cache))),
             (tags.th("unknown tokens remembered"), _num(view.cache.unknown)),
             (tags.th("store lookups"), _num(count(view.metrics.lookups))),
             (tags.th("lookups refused: unknown-token flood (429)"), _num(count(view.metrics.lookups_refused))),
             (tags.th("store errors"), tags.td(", ".join(f"{reason} {n}" for reason, n in sorted(errors.items()))
                                               or "none"))]
    return tags.table(tags.tbody(*(tags.tr(*r) for r in rows)))


def _disk(what: str, disk: DiskView, now: float) -> list[tuple[Tag, Tag]]:
    problem, since = disk.problem(), disk.since
    state = f"{problem} (since {_utc(since)}, {_ago(now - since)} ago)" if problem and since else problem
    return [(tags.th(f"{what} disk"), _state(problem is None, "writable", state or "")),
            (tags.th(f"{what} writes failed"), _num(disk.failed_writes))]


def _rates(rates: dict[str, tuple[int, int]]) -> Tag:
    if not rates:
        return tags.p("No events published in the last hour.", class_="note")
    return _table(("template", "events, last minute", "events, last hour"),
                  ((tags.td(t), _num(minute), _num(hour)) for t, (minute, hour) in sorted(rates.items())))


def _tokens(everyone: list[TokenRecord], tokens: list[TokenRecord], totals: list[PushTotals], selected: str,
            error: str | None, now: float) -> Tag:
    """
    Every live token (of the tenant chosen, else of all), the never used ones too, and those retired
    within the window, with their label, state and push stats; latest request first, then the newest
    never used. At most L{MAX_TOKENS} (the newest), with a note when there are more.
    """
    if error is not None:
        return tags.p(f"Tokens and push stats are unavailable: {error}", class_="bad")
    tenants = sorted({t.tenant_id for t in [*everyone, *totals]} | ({selected} if selected else set()))
    form = tags.form(method="get", action="status")(
        tags.label("Tenant ", tags.select(name="tenant")(
            tags.option("all tenants", value="", **({"selected": "selected"} if not selected else {})),
            *(tags.option(t, value=t, **({"selected": "selected"} if t == selected else {})) for t in tenants))),
        " ", tags.button("Show", type="submit"))
    if not tokens:
        return tags.div(form, tags.p(f"No live token{f' of {selected}' if selected else ''}: mint one with "
                                     f"aisoc-inboxd token mint --tenant T --template ID.", class_="note"))
    activity = {t.fingerprint: t for t in totals}

    def latest_request_first(record: TokenRecord) -> tuple[bool, float]:
        seen = activity.get(record.fingerprint)
        return seen is None, -(seen.last_seen if seen else record.created_at)  # then the newest never used

    rows = (_token_row(record, activity.get(record.fingerprint), now)
            for record in sorted(tokens[:MAX_TOKENS], key=latest_request_first))
    table = _table(("token", "tenant", "template", "label", "state", "requests", "last seen", "error rate"), rows)
    if len(tokens) <= MAX_TOKENS:
        return tags.div(form, table)
    where = (f"of {selected} are listed: aisoc-inboxd token stats --tenant {selected} lists every one." if selected
             else "are listed: choose a tenant.")
    return tags.div(form, tags.p(f"Only the {MAX_TOKENS} newest tokens {where}", class_="note"), table)


def _token_row(record: TokenRecord, totals: PushTotals | None, now: float) -> tuple[Tag, ...]:
    requests, errors = (totals.requests, totals.errors) if totals else (0, 0)
    seen = f"{_utc(totals.last_seen)} ({_ago(now - totals.last_seen)} ago)" if totals else "never"
    link = tags.a(tags.code(log_id(record.fingerprint)), href=deliveries_link(record.tenant_id, record.fingerprint),
                  title="recent deliveries")
    return (tags.td(link), tags.td(record.tenant_id), tags.td(record.template_id),
            tags.td(record.label or "—"), tags.td(record.state), _num(requests), tags.td(seen),
            _num(f"{100 * errors / requests:.1f} %" if requests else "—"))


def _errors(errors: RecentErrors, now: float) -> Tag:
    entries = errors.entries()
    if not entries:
        return tags.p("No error replies since the daemon started.", class_="note")
    return _table(("time", "route", "status", "token", "message"),
                  ((tags.td(f"{_utc(e.at)} ({_ago(now - e.at)} ago)"), tags.td(e.route), _num(e.status),
                    tags.td(tags.code(e.token) if e.token else "—"), tags.td(e.message)) for e in entries))


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, width in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= width:
            return f"{seconds // width} {unit}"
    return f"{seconds} s"
