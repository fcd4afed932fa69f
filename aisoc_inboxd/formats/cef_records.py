"""
A parsed CEF event as the record the C{cef-syslog} template maps.

The template stays declarative; what needs code is done here, once, for every CEF intake (the
C{/v1/inbox/cef} route, the HEC routes and the syslog listeners), which read CEF through
L{read_cef} (one line) or L{split_cef_lines} (a batch, told apart from what is not CEF):

  - B{flattening}: the header fields under their CEF full names (C{cef.deviceVendor},
    C{cef.deviceProduct}, C{cef.deviceVersion}, C{cef.deviceEventClassId}, C{cef.name},
    C{cef.severity} as sent, C{cef.version}) beside the extension keys as sent (C{cef.src},
    C{cef.cs1}, C{cef.cs1Label} …), so whatever the template does not map lands in
    C{unmapped.cef.*} with each custom field's label beside it, never as a key. An extension key
    that repeats a header name (no CEF dictionary key does) cannot replace the header field.
    Empty header fields are left out: they carry no value. A port whose side has neither an
    address nor a host name (C{dpt} without C{dst}/C{dhost}) cannot make a valid OCSF endpoint, so
    it is moved out of C{cef} into C{unpaired} (C{unmapped.unpaired.dpt}), still kept; so is a
    MAC address (C{smac}, C{dmac}), and in the network kinds, where C{duser} is the destination's
    owner, a C{duser}.
  - B{users}: a logon's C{user.name} is C{duser} when there is one, else C{suser}; with both, C{suser}
    is the initiator, moved from C{cef} to C{initiator.suser} (→ C{actor.user.name}), since a
    declarative C{field_map} cannot make one source's target depend on another source's presence.
  - B{times}: C{rt}, else C{end}, else the syslog header's stamp → C{time} (epoch ms) and
    C{original_time} (the text as sent); C{start}/C{end} → C{start_time}/C{end_time}. CEF writes
    them as epoch milliseconds or C{MMM dd [yyyy ]HH:mm:ss[.SSS][ zzz]} (the year, when absent, is
    the one closest to the receive time, as for syslog stamps); ISO 8601 is read too.
  - B{kind}: the event's class family from its name, signature id, category and the keys it
    carries (L{event_kind}); the template's C{classes} maps each kind to an OCSF class. Anti-virus
    detections are findings (a malware word, or L{_AV_SIGNATURE_IDS}), even when they name a file.
  - B{file}: in the kinds that carry a file (findings and file events), C{fname}, C{filePath},
    C{fsize} and C{fileHash} (and Deep Security's C{TrendMicroDsFile*} hashes) are moved from
    C{cef} into one C{file} object — name (C{fname}, else the last part of C{filePath}), path,
    size and hashes by algorithm (C{fileHash} told by its length) — which the template maps whole.
  - B{syslog}: the header of the syslog frame that carried the event (or of a syslog prefix on a
    posted line): host, app, facility, severity — the template's fallbacks for device and time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import UTC, tzinfo
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from aisoc_inboxd.formats.cef import CefError, CefEvent, parse_cef_line
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.normalizer.timeparse import EPOCH_MS, to_epoch_ms
from aisoc_inboxd.formats.syslog import StructuredData, SyslogMessage, bsd_timestamp, parse_syslog

#: the kinds L{event_kind} returns, in the order they are tried; C{classes} in cef-syslog.yaml maps them
KINDS = ("authentication", "dns", "http", "file", "api", "finding", "network", "other")

_AUTHENTICATION = re.compile(
    r"log(?:ged)? ?(?:in|on|off|out)|sign(?:ed)?[ -]?(?:in|on|out)|authenticat|\bauth\b|password|credential|kerberos|\bmfa\b")
_DNS = re.compile(r"\bdns\b|name ?resolution")
_HTTP = re.compile(r"\bhttps?\b|\bweb\b|proxy|\burl\b|\bwaf\b")
_FILE = re.compile(r"\bfiles?\b")
_API = re.compile(r"\bapi\b|audit")
_FINDING = re.compile(
    r"alert|attack|malware|virus|trojan|worm|ransom|intrusion|exploit|threat|\bid[ps]\b|detect|"
    r"signature|suspicious|vulnerab|phish|botnet|injection|brute|anomal|infected|backdoor")
#: words of anti-virus detections (names, signature ids, categories): checked before the file kind,
#: since "Infected file deleted" is a detection about a file, not file activity
_MALWARE = re.compile(
    r"malware|malicious|virus|trojan|\bworms?\b|ransom|spyware|grayware|adware|riskware|infected|eicar|"
    r"quarantin|backdoor|rootkit|keylogger|hacktool|coinminer|cryptominer|security risk|\bpu[ap]\b|^av:")
#: vendors whose AV detections are named only by the malware (Deep Security's "Eicar_test_file") and
#: a numeric signature id: (vendor, product, signature ids), vendor and product as lowercase prefixes
_AV_SIGNATURE_IDS = (
    ("trend micro", "deep security", range(4_000_000, 4_000_100)),  # Deep Security Anti-Malware events
)
#: the CEF keys of a file's hashes, with their algorithm (None: told by the hex digest's length)
_HASH_KEYS = {"fileHash": None, "TrendMicroDsFileMD5": "md5", "TrendMicroDsFileSHA1": "sha1",
              "TrendMicroDsFileSHA256": "sha256"}
_HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_HEX = re.compile(r"[0-9a-fA-F]+")
_PATH_SEPARATOR = re.compile(r"[\\/]")
_FILE_KINDS = frozenset({"finding", "file"})
#: the record's names of the CEF header fields after the version (C{cef.deviceVendor} …)
HEADER_NAMES = ("deviceVendor", "deviceProduct", "deviceVersion", "deviceEventClassId", "name", "severity")
#: every name a header field can have in C{cef}, the version's too
HEADER_KEYS = frozenset(("version", *HEADER_NAMES))


#: an endpoint's detail keys and the keys that identify it (OCSF: an address or a host name)
_SOURCE_SIDE = (("spt", "smac"), ("src", "shost"))
_ENDPOINT_SIDES = (_SOURCE_SIDE, (("dpt", "dmac"), ("dst", "dhost")))
#: the same in the kinds whose template maps duser to dst_endpoint.owner.name
_OWNED_ENDPOINT_SIDES = (_SOURCE_SIDE, (("dpt", "dmac", "duser"), ("dst", "dhost")))
_OWNED_KINDS = frozenset({"network", "dns", "http"})


#: a CEF header as L{carried_cef_record} reads it: version, device vendor, product and version,
#: signature id, name, severity as sent (the one-pass reader has it from its match, no L{CefEvent})
CefHeader = tuple[int, str, str, str, str, str, str]


def event_kind(header: CefHeader, ext: dict[str, str], has_host: bool = False) -> str:
    """
    The class family of an event (its L{CefHeader} and extension): a keyword in its name, signature id or C{cat} picks the family,
    but only when the event carries what that OCSF class requires (a login needs a user and a
    service or destination, HTTP a request, a file event a file, a user and a device, an API call a
    user and a source); a network event needs a source or destination; else C{other}.

    @param has_host: the syslog header named the sending host (a device for file events).
    """
    _, vendor, product, _, class_id, name, _ = header
    words = _keywords(name, class_id, ext.get("cat", ""))
    endpoint = "src" in ext or "dst" in ext or "shost" in ext or "dhost" in ext
    user = "suser" in ext or "duser" in ext
    if words.authentication and user and (product or "dst" in ext or "dhost" in ext):
        return "authentication"
    if words.dns and endpoint:
        return "dns"
    if ("request" in ext or "requestMethod" in ext) and (words.http or "requestMethod" in ext):
        return "http"
    if words.malware or _av_signature(vendor, product, class_id):
        return "finding"
    if (words.file and ("fname" in ext or "filePath" in ext) and "suser" in ext
            and ("dvchost" in ext or "dvc" in ext or has_host)):
        return "file"
    if words.api and "suser" in ext and "src" in ext and name:
        return "api"
    if words.finding:
        return "finding"
    if endpoint:
        return "network"
    return "other"


class Keywords(NamedTuple):
    """
    Which families' words an event's name, signature id and category hold (L{_keywords}).
    """

    authentication: bool
    dns: bool
    http: bool
    file: bool
    api: bool
    finding: bool
    malware: bool


@lru_cache(maxsize=4096)
def _keywords(name: str, class_id: str, category: str) -> Keywords:
    """
    The family words in an event's name, signature id and category. Remembered: a source sends few
    distinct names and signatures, so the regexes run once per combination rather than per event.
    """
    text = " ".join((name, class_id, category)).lower()
    return Keywords(*(pattern.search(text) is not None for pattern in (_AUTHENTICATION, _DNS, _HTTP, _FILE, _API,
                                                                        _FINDING)),
                    _MALWARE.search(" ".join((class_id, name, category)).lower()) is not None)


@lru_cache(maxsize=4096)
def _av_signature(vendor: str, product: str, class_id: str) -> bool:
    """
    Whether an event's signature id is one that one of L{_AV_SIGNATURE_IDS}'s products uses for
    its anti-malware events: with a malware word (L{Keywords.malware}), what makes an event an
    anti-virus detection (C{Trojan.Gen}, C{Infected file deleted}, C{AV:File quarantined}, C{EICAR}).
    Remembered per vendor, product and signature id (a source sends few).
    """
    class_id = class_id.strip()
    if not class_id.isdigit():
        return False
    vendor, product = vendor.lower(), product.lower()
    return any(vendor.startswith(v) and product.startswith(p) and int(class_id) in ids
               for v, p, ids in _AV_SIGNATURE_IDS)


def file_object(cef: dict[str, Any]) -> dict[str, Any] | None:
    """
    The file C{cef} names, its keys moved out of C{cef}: C{name} (C{fname}, else the last part of
    C{filePath}), C{path}, C{size} and one key per hash algorithm (C{md5}, C{sha1}, C{sha256},
    C{sha512}); C{None}, and C{cef} untouched, when there is no file name.
    """
    path = cef.get("filePath", "")
    name = cef.get("fname") or _PATH_SEPARATOR.split(path)[-1]
    if not name.strip():
        return None
    cef.pop("fname", None)
    found: dict[str, Any] = {"name": name}
    if path:
        found["path"] = cef.pop("filePath")
    if cef.get("fsize", "").strip().isdigit():
        found["size"] = cef.pop("fsize")
    for key, algorithm in _HASH_KEYS.items():
        digest = cef.get(key, "").strip()
        algorithm = algorithm or _HASH_BY_LENGTH.get(len(digest))
        if algorithm is not None and _HEX.fullmatch(digest) and algorithm not in found:
            found[algorithm] = digest
            del cef[key]
    return found


def cef_time(text: str, now: float, local_tz: tzinfo = UTC) -> int | None:
    """
    Epoch milliseconds of a CEF time value (C{rt}, C{start}, C{end}), or None when unreadable;
    numbers are told apart by magnitude (some senders write epoch seconds).
    """
    # a BSD stamp starts with a month name: epoch digits (the common case) skip that reading, and
    # epoch ms (what CEF writes) is its own value (to_epoch_ms gives it back)
    if text.isdigit():
        if text.isascii() and EPOCH_MS[0] <= (millis := int(text)) < EPOCH_MS[1]:
            return millis
        return to_epoch_ms(text, ())
    millis = bsd_timestamp(text, now, local_tz)
    return millis if millis is not None else to_epoch_ms(text, ())


def cef_record(event: CefEvent, raw: str, now: float, syslog: SyslogMessage | None = None,
               local_tz: tzinfo = UTC) -> Record:
    """
    The record for C{event}; C{raw} (the line or frame as received) becomes the event's C{raw_data}.

    @param syslog: the header of the frame that carried C{event}; when None and the line had a
        prefix before C{CEF:}, the prefix is read as a syslog header.
    @param now: the receive time, epoch seconds (the year of stamps without one).
    """
    if syslog is None and event.prefix:
        syslog = parse_syslog(event.prefix, now, local_tz)
    header = (event.version, event.device_vendor, event.device_product, event.device_version,
              event.device_event_class_id, event.name, event.severity_raw)
    if syslog is None:
        return carried_cef_record(header, event.extensions, raw, now, local_tz)
    return carried_cef_record(header, event.extensions, raw, now, local_tz, syslog_fields(syslog),
                              bool(syslog.hostname), lambda: syslog.timestamp, syslog.timestamp_text)


def carried_cef_record(header: CefHeader, ext: dict[str, str], raw: str, now: float, local_tz: tzinfo = UTC,
                       syslog: dict[str, Any] | None = None, has_host: bool = False,
                       stamp: Callable[[], int | None] | None = None, stamp_text: str | None = None) -> Record:
    """
    L{cef_record} given the event's header and extension rather than a L{CefEvent}, and what it
    needs of the carrying syslog header rather than the header itself, so that the one-pass frame
    reader (L{aisoc_inboxd.formats.syslog_cef}) builds neither.

    @param syslog: the header's L{syslog_fields}, or None when no syslog header carried the event.
    @param has_host: the header named the sending host.
    @param stamp: gives the header's stamp, epoch ms (the fallback for C{time}; called only when
        neither C{rt} nor C{end} gives the time), and C{stamp_text} is the stamp as sent.
    """
    version, *fields, severity = header
    cef: dict[str, Any] = {"version": version}
    for key, value in zip(HEADER_NAMES, (*fields, severity.strip())):
        if value:
            cef[key] = value
    if cef.keys().isdisjoint(ext):
        cef.update(ext)
    else:  # an extension key that repeats a header name cannot replace the header field
        for key, value in ext.items():
            cef.setdefault(key, value)
    kind = event_kind(header, ext, has_host)
    data: dict[str, Any] = {"kind": kind, "cef": cef}
    carry(data, cef, ext, now, local_tz, syslog, stamp, stamp_text)
    return Record(data, raw)


def carry(data: dict[str, Any], cef: dict[str, Any], ext: Mapping[str, str], now: float, local_tz: tzinfo,
          syslog: dict[str, Any] | None, stamp: Callable[[], int | None] | None, stamp_text: str | None) -> None:
    """
    What L{carried_cef_record} adds to C{data} (which holds the C{kind}) beside C{cef}: the unpaired
    keys, the initiator and the file moved out of C{cef}, the times read from C{ext}, the syslog
    header's fields. The fused path (L{aisoc_inboxd.formats.cef_events}) gives C{ext} as C{cef}.
    """
    kind = data["kind"]
    unpaired = {}
    for details, (address, host) in _OWNED_ENDPOINT_SIDES if kind in _OWNED_KINDS else _ENDPOINT_SIDES:
        if address not in ext and host not in ext:
            for key in details:
                if key in cef:
                    unpaired[key] = cef.pop(key)
    if unpaired:
        data["unpaired"] = unpaired
    if kind == "authentication" and "duser" in cef and "suser" in cef:
        data["initiator"] = {"suser": cef.pop("suser")}
    if kind in _FILE_KINDS and (file := file_object(cef)) is not None:
        data["file"] = file
    for key in ("rt", "end"):
        if key in ext and (millis := cef_time(ext[key], now, local_tz)) is not None:
            data["time"], data["original_time"] = millis, ext[key]
            break
    else:
        if stamp is not None and (millis := stamp()) is not None:
            data["time"], data["original_time"] = millis, stamp_text
    for key, target in (("start", "start_time"), ("end", "end_time")):
        if key in ext and (millis := cef_time(ext[key], now, local_tz)) is not None:
            data[target] = millis
    if syslog is not None:
        data["syslog"] = syslog


def read_cef(line: str, now: float, raw: str | None = None, hec: Mapping[str, Any] | None = None,
             syslog: SyslogMessage | None = None, local_tz: tzinfo = UTC) -> Record:
    """
    A CEF line as the record every CEF intake gives the CEF template (L{cef_record}).

    @param raw: what was received, the event's C{raw_data} (the line itself unless given).
    @param hec: the HEC envelope's metadata (C{host}, C{source}, …), kept under C{hec}.
    @param syslog: the header of the syslog frame whose message the line is.
    @raise CefError: the line is not CEF.
    """
    record = cef_record(parse_cef_line(line), line if raw is None else raw, now, syslog, local_tz)
    if hec:
        record.data["hec"] = dict(hec)
    return record


@dataclass(frozen=True)
class Split:
    """
    Records told apart by the template that maps them: CEF records (the CEF template) and the rest
    (the intake's own template); C{malformed} counts what was dropped as broken CEF.
    """

    cef: tuple[Record, ...] = ()
    rest: tuple[Record, ...] = ()
    malformed: int = 0
    #: what is wrong with each malformed frame, in order, where the reader says (syslog frames)
    problems: tuple[str, ...] = ()

    def batches(self, template_id: str, cef_template_id: str) -> list[tuple[str, tuple[Record, ...]]]:
        """
        Each non-empty part with the template that maps it: the CEF records first, then the rest.
        """
        return [(t, records) for t, records in ((cef_template_id, self.cef), (template_id, self.rest)) if records]


def split_cef_lines(lines: Iterable[str], now: float, other: Callable[[str], Record] | None = None,
                    hec: Mapping[str, Any] | None = None) -> Split:
    """
    Lines (see L{aisoc_inboxd.formats.cef.cef_lines}) as CEF records; a line that is not CEF becomes
    C{other(line)} in C{rest} when C{other} is given (HEC raw: a text event), else it is dropped and
    counted malformed (the CEF route).
    """
    cef: list[Record] = []
    rest: list[Record] = []
    malformed = 0
    for line in lines:
        try:
            cef.append(read_cef(line, now, hec=hec))
        except CefError:
            if other is None:
                malformed += 1
            else:
                rest.append(other(line))
    return Split(tuple(cef), tuple(rest), malformed)


def syslog_fields(message: SyslogMessage) -> dict[str, Any]:
    """
    The header fields of a syslog frame that were present, for templates' C{syslog.*} sources.
    """
    return header_fields(message.facility, message.severity, message.hostname, message.app_name, message.procid,
                         message.msgid, message.timestamp_text, message.format, message.structured_data)


def header_fields(facility: int | None, severity: int | None, hostname: str | None, app_name: str | None,
                  procid: str | None, msgid: str | None, timestamp: str | None, format: str,
                  structured_data: StructuredData) -> dict[str, Any]:
    """
    L{syslog_fields} from the header's fields one by one (the one-pass reader has no L{SyslogMessage}).
    """
    fields: dict[str, Any] = {}  # (straight ifs: one frame each, a loop over pairs costs twice as much)
    if facility is not None:
        fields["facility"] = facility
    if severity is not None:
        fields["severity"] = severity
    if hostname is not None:
        fields["hostname"] = hostname
    if app_name is not None:
        fields["app_name"] = app_name
    if procid is not None:
        fields["procid"] = procid
    if msgid is not None:
        fields["msgid"] = msgid
    if timestamp is not None:
        fields["timestamp"] = timestamp
    fields["format"] = format
    if structured_data:
        fields["structured_data"] = structured_data
    return fields
