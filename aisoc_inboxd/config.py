"""
The daemon's settings: one YAML file, C{AISOC_INBOX_*} environment overrides, validated at start.

Every setting has a default that makes the embedded default work with no file at all (SQLite and an
NDJSON log in the state directory, listeners on 127.0.0.1). The settings are frozen dataclasses
parsed once and passed down; no other module reads files or the environment for configuration.
A wrong key or value raises L{ConfigError} naming the key (as a dotted path) and what is wrong,
never the value of a key named like a secret (L{is_secret_key}).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from aisoc_inboxd.tenants import InvalidTenant, check_tenant_id


class ConfigError(Exception):
    """
    The configuration cannot be used; the message names the key and what is wrong with it.
    """


@dataclass(frozen=True)
class HttpSettings:
    #: Twisted endpoint strings, e.g. C{tcp:8080:interface=127.0.0.1} or C{ssl:8443:privateKey=…:certKey=…}
    listen: list[str] = field(default_factory=lambda: ["tcp:8080:interface=127.0.0.1"])
    #: a request body larger than this is refused with 413 (after gzip decoding too)
    max_body_bytes: int = 10 * 1024 * 1024
    #: a request carrying more events than this (array items, NDJSON or raw lines, HEC envelopes,
    #: CEF lines) is refused with 413 before any is normalized
    max_events_per_request: int = 10_000
    #: requests per minute per tenant before 429
    rate_limit_per_min: int = 600
    #: seconds an idle HTTP connection is kept open
    timeout: int = 60
    #: seconds from a request's first byte to the end of its head (request line and headers); 408 past it
    header_timeout: float = 20.0
    #: seconds from the end of a request's head to the end of its body; 408 past it
    body_timeout: float = 60.0
    #: the largest request line, and the largest head (request line and headers); 414 / 431 past it
    max_header_bytes: int = 16384
    #: proxies (load balancers; CIDRs) whose C{X-Forwarded-For} names the client, for the per-client
    #: unknown-token budget and the request log; nobody else's is believed
    trusted_proxies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_networks("trusted_proxies", self.trusted_proxies)


def _check_networks(key: str, cidrs: list[str]) -> None:
    for index, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{key}[{index}]: {cidr!r} is not an address or CIDR network") from None


@dataclass(frozen=True)
class MetricsSettings:
    #: endpoint strings for the Prometheus C{/metrics} listener; empty disables it
    listen: list[str] = field(default_factory=lambda: ["tcp:9108:interface=127.0.0.1"])


@dataclass(frozen=True)
class AdminSettings:
    #: endpoint strings for the admin API (token mint/rotate/revoke/list, invalidate); keep it private
    listen: list[str] = field(default_factory=lambda: ["tcp:9109:interface=127.0.0.1"])
    #: file holding the admin API key (C{Authorization: Bearer <key>}); created on first start
    api_key_file: str = "admin.key"


@dataclass(frozen=True)
class DatabaseSettings:
    """
    The token store. The timeouts bound every database call, so an unreachable or silent PostgreSQL
    costs a request a 503 after C{call_timeout}, never a hang; the libpq ones apply unless the DSN
    sets the same key itself.
    """

    #: PostgreSQL DSN (C{postgresql://user@host/db}); unset means SQLite in the state directory
    dsn: str | None = None
    #: seconds a request waits for one database call (token lookup, idempotency claim) before 503
    call_timeout: float = 3.0
    #: seconds libpq waits for a connection to open (libpq's C{connect_timeout}; at least 2)
    connect_timeout: int = 5
    #: seconds PostgreSQL lets one statement run before cancelling it (schema migrations exempt)
    statement_timeout: float = 10.0
    #: TCP keepalives: seconds of silence before probing, seconds between probes, probes unanswered
    #: before the connection counts as dead
    keepalives_idle: int = 10
    keepalives_interval: int = 5
    keepalives_count: int = 3
    #: seconds sent data may stay unacknowledged before the connection counts as dead
    tcp_user_timeout: float = 10.0
    #: seconds the LISTEN connection (token invalidations) may be quiet before it is checked with a
    #: query, which must answer within C{connect_timeout}; a dead link is reopened and the cache dropped
    listen_check_interval: float = 10.0


@dataclass(frozen=True)
class FileSinkSettings:
    #: directory of the NDJSON event log; relative paths are under the state directory
    directory: str = "events"
    #: the live file is rotated past this size
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    topic: str = "ocsf-events"
    #: librdkafka settings passed through as they are (bootstrap.servers, security.protocol, sasl.*, ssl.*)
    config: dict[str, str] = field(default_factory=dict)
    #: outage spool directory; relative paths are under the state directory
    spool_directory: str = "spool"
    spool_max_bytes: int = 1024 * 1024 * 1024
    #: seconds a shutdown waits for Kafka to acknowledge what is in flight before spooling the rest
    flush_timeout: float = 10.0


@dataclass(frozen=True)
class SinkSettings:
    #: C{file} (embedded default) or C{kafka} (production)
    type: str = "file"
    file: FileSinkSettings = field(default_factory=FileSinkSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)


@dataclass(frozen=True)
class TokenCacheSettings:
    #: seconds a resolved token is trusted before the store is asked again (the spec's 60 s)
    ttl: float = 60.0
    #: valid tokens cached (least recently used dropped past it)
    max_size: int = 10_000
    #: seconds an unknown token is remembered as unknown, so repeats of it spare the store
    negative_ttl: float = 5.0
    #: unknown tokens remembered, apart from the valid ones (oldest dropped past it): a flood of
    #: random tokens never pushes a valid token out
    negative_max_size: int = 10_000
    #: store lookups per second each client address may spend on tokens the cache does not know
    #: (a lookup that finds a valid token is given back); past it, 429 without asking the store
    unknown_lookups_per_ip_per_sec: float = 20.0


@dataclass(frozen=True)
class ImapSettings:
    """
    The IMAP mailbox poller; the connectors themselves live in the store (C{aisoc-inboxd imap add}).
    """

    #: extra CA certificates (PEM) trusted for IMAPS servers with a private CA; unset: the system's
    ca_file: str | None = None
    #: seconds an IMAP socket operation may take before the connection counts as dropped
    timeout: float = 30.0
    #: seconds between re-reading the connector list, so added or removed connectors take effect
    refresh_interval: float = 60.0
    #: ceiling of the retry backoff after auth, TLS or connection failures (seconds)
    max_backoff: float = 600.0
    #: a larger message is not downloaded: its event carries the headers and a truncation mark
    max_message_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True)
class HecSettings:
    """
    The Splunk HEC routes (C{/v1/inbox/hec}, C{/services/collector/…}).
    """

    #: accept the token as C{?token=} (Splunk's allowQueryStringAuth); off: URLs end up in proxies' logs
    allow_query_string_token: bool = False
    #: indexer-acknowledgement channels one token may hold (in all processes together); a new one past
    #: this is 503 until one idles out
    max_channels_per_token: int = 1000
    #: acks a channel keeps until they are queried; past this the oldest is dropped (and then reads false)
    max_acks_per_channel: int = 10000
    #: seconds after which an unused channel and its unqueried acks are forgotten
    channel_idle_timeout: float = 600.0


@dataclass(frozen=True)
class CefSettings:
    """
    C{POST /v1/inbox/cef}: token-less, so the tenant and template come from here.
    """

    #: the tenant every posted CEF line belongs to; unset disables the route (404)
    tenant: str | None = None
    template: str = "cef-syslog"
    #: when set, a request must carry this header with C{shared_secret} as its value (else 401)
    shared_secret_header: str | None = None
    #: the shared secret (better: C{AISOC_INBOX_CEF_SHARED_SECRET}); never logged
    shared_secret: str | None = None
    #: client networks (CIDRs) allowed to post; empty allows any client
    allow_cidrs: list[str] = field(default_factory=list)
    #: proxies (CIDRs) whose C{X-Forwarded-For} names the client; nobody else's is believed
    trusted_proxies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tenant is not None:
            _check_tenant(self.tenant)
        if (self.shared_secret_header is None) != (self.shared_secret is None):
            raise ConfigError("shared_secret: shared_secret_header and shared_secret go together")
        for key in ("allow_cidrs", "trusted_proxies"):
            _check_networks(key, getattr(self, key))


@dataclass(frozen=True)
class SyslogListenerSettings:
    """
    One syslog listener: a stream endpoint (TCP, TLS) or a UDP port, bound to one tenant.
    """

    #: names the listener in metrics and logs
    name: str = ""
    #: a stream endpoint string: C{tcp:601:interface=…}, C{ssl:6514:privateKey=…:certKey=…}, C{systemd:…}
    endpoint: str | None = None
    #: a UDP port instead of C{endpoint} (Twisted has no datagram endpoint strings)
    udp_port: int | None = None
    udp_interface: str = "127.0.0.1"
    tenant: str = ""
    #: the template of frames that are not CEF
    template: str = "syslog"
    #: the template of frames whose message is CEF
    cef_template: str = "cef-syslog"
    #: a longer frame is dropped and counted (the connection stays open)
    max_frame_bytes: int = 64 * 1024
    #: with an C{ssl:} endpoint: require a client certificate issued by this CA (PEM) — mutual TLS
    client_ca_file: str | None = None
    verify_client: bool = False
    #: the zone of RFC 3164 stamps, which carry none (an IANA name such as C{Europe/Berlin})
    timezone: str = "UTC"
    #: seconds a TCP/TLS connection may send nothing before it is closed, 0 for never; unset takes
    #: C{syslog.idle_timeout}
    idle_timeout: float | None = None
    #: with C{udp_port}: the socket's receive buffer (C{SO_RCVBUF}) in bytes, 0 for the kernel's
    #: default; unset takes C{syslog.udp_receive_buffer_bytes}
    receive_buffer_bytes: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name: every syslog listener needs a name")
        if (self.endpoint is None) == (self.udp_port is None):
            raise ConfigError("endpoint: give either endpoint (TCP/TLS) or udp_port")
        if not self.tenant:
            raise ConfigError("tenant: every syslog listener needs a tenant")
        _check_tenant(self.tenant)
        if self.max_frame_bytes <= 0:
            raise ConfigError(f"max_frame_bytes: must be greater than 0, got {self.max_frame_bytes}")
        if self.udp_port is not None and not 0 <= self.udp_port <= 65535:
            raise ConfigError(f"udp_port: {self.udp_port} is not a port")
        if self.receive_buffer_bytes is not None:
            if self.udp_port is None:
                raise ConfigError("receive_buffer_bytes: only a udp_port listener has a receive buffer to size")
            _check_receive_buffer("receive_buffer_bytes", self.receive_buffer_bytes)
        if self.verify_client and (self.client_ca_file is None or not (self.endpoint or "").startswith("ssl:")):
            raise ConfigError("verify_client: needs an ssl: endpoint and client_ca_file")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timezone: unknown time zone {self.timezone!r}") from None
        _check_idle_timeout(self.idle_timeout)


@dataclass(frozen=True)
class SyslogSettings:
    #: the embedded default listens on 127.0.0.1:5514 (TCP and UDP) for the tenant C{default}
    listeners: list[SyslogListenerSettings] = field(default_factory=lambda: [
        SyslogListenerSettings(name="tcp", endpoint="tcp:5514:interface=127.0.0.1", tenant="default"),
        SyslogListenerSettings(name="udp", udp_port=5514, tenant="default"),
    ])
    #: events of one listener between its sockets and the sink; past it TCP stops reading, UDP drops
    max_in_flight_events: int = 10_000
    #: seconds a TCP/TLS connection may send nothing before it is closed (0: never); a listener's
    #: own C{idle_timeout} overrides it
    idle_timeout: float = 300.0
    #: the receive buffer (C{SO_RCVBUF}) of every UDP listener that sets none, in bytes; 0 leaves the
    #: kernel's default (C{net.core.rmem_default}). The kernel caps it at C{net.core.rmem_max}.
    udp_receive_buffer_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        _check_idle_timeout(self.idle_timeout)
        _check_receive_buffer("udp_receive_buffer_bytes", self.udp_receive_buffer_bytes)

    def idle_timeout_of(self, listener: SyslogListenerSettings) -> float | None:
        """
        The idle timeout of C{listener}'s connections in seconds, or None for never.
        """
        seconds = self.idle_timeout if listener.idle_timeout is None else listener.idle_timeout
        return seconds or None

    def receive_buffer_of(self, listener: SyslogListenerSettings) -> int:
        """
        The C{SO_RCVBUF} to ask for on C{listener}'s UDP socket in bytes, 0 for the kernel's default.
        """
        own = listener.receive_buffer_bytes
        return self.udp_receive_buffer_bytes if own is None else own


#: the most C{SO_RCVBUF} takes: the kernel reads it as a C int and doubles it
MAX_RECEIVE_BUFFER = 2**30


def _check_receive_buffer(key: str, size: int) -> None:
    if not 0 <= size <= MAX_RECEIVE_BUFFER:
        raise ConfigError(f"{key}: must be 0 (the kernel's default) or a number of bytes up to "
                          f"{MAX_RECEIVE_BUFFER}, got {size}")


def _check_idle_timeout(seconds: float | None) -> None:
    if seconds is not None and seconds < 0:
        raise ConfigError(f"idle_timeout: must be 0 (never) or more seconds, got {seconds}")


def _check_tenant(tenant: str) -> None:
    try:
        check_tenant_id(tenant)
    except InvalidTenant as e:
        raise ConfigError(f"tenant: {e}") from None


@dataclass(frozen=True)
class TemplateSettings:
    #: extra template directories, loaded after the bundled ones (a same id overrides)
    directories: list[str] = field(default_factory=list)
    #: template ids tokens may use (the spec's ALLOWED_TEMPLATE_IDS); unset allows every loaded one
    allowed: list[str] | None = None


@dataclass(frozen=True)
class SnsSettings:
    #: templates whose deliveries are AWS SNS envelopes (signatures, subscription confirmations)
    templates: list[str] = field(default_factory=lambda: ["aws-sns"])
    #: refuse (401) SNS messages whose SignatureVersion 1/2 signature does not verify
    verify_signatures: bool = False
    #: topic ARNs whose SubscriptionConfirmation the daemon confirms itself (a GET of SubscribeURL)
    auto_confirm_topics: list[str] = field(default_factory=list)
    #: seconds to wait for AWS when fetching a signing certificate or confirming
    timeout: float = 10.0


@dataclass(frozen=True)
class VendorSettings:
    sns: SnsSettings = field(default_factory=SnsSettings)


@dataclass(frozen=True)
class DeliverySettings:
    """
    Recent deliveries (C{/v1/admin/tenants/{tenant}/tokens/{fingerprint}/deliveries}): per token,
    the last requests, their replies and the first OCSF event each became, kept in memory.
    """

    #: deliveries kept per token (and for the token-less CEF route); 0 keeps none
    per_token: int = 50
    #: all kept deliveries together stay under this many bytes; past it the oldest of any token go
    max_bytes: int = 32 * 1024 * 1024
    #: the first bytes of each body (gzip undone) that are kept
    body_bytes: int = 4096
    #: off: keep only the metadata (status, outcome, headers), never a body or its OCSF event
    keep_bodies: bool = True
    #: tenants whose bodies are never kept, whatever C{keep_bodies} says
    without_bodies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key in ("per_token", "body_bytes"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be 0 or more, got {getattr(self, key)}")


@dataclass(frozen=True)
class Settings:
    #: where SQLite, the event log, the spool and the secret key live by default
    state_dir: str = "state"
    #: Fernet key that encrypts signing secrets at rest; created on first start if missing
    secret_key_file: str = "secret.key"
    #: processes serving the HTTP and syslog listeners: the daemon itself plus workers - 1 worker
    #: processes sharing its sockets (see the README's "Several cores")
    workers: int = 1
    http: HttpSettings = field(default_factory=HttpSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    sink: SinkSettings = field(default_factory=SinkSettings)
    token_cache: TokenCacheSettings = field(default_factory=TokenCacheSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    hec: HecSettings = field(default_factory=HecSettings)
    cef: CefSettings = field(default_factory=CefSettings)
    syslog: SyslogSettings = field(default_factory=SyslogSettings)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    vendors: VendorSettings = field(default_factory=VendorSettings)
    deliveries: DeliverySettings = field(default_factory=DeliverySettings)

    def state_path(self, relative: str) -> Path:
        """
        C{relative} resolved against the state directory (absolute paths are kept).
        """
        return Path(self.state_dir) / relative


#: environment variable → dotted key it overrides
ENVIRONMENT_OVERRIDES: dict[str, str] = {
    "AISOC_INBOX_STATE_DIR": "state_dir",
    "AISOC_INBOX_WORKERS": "workers",
    "AISOC_INBOX_HTTP_LISTEN": "http.listen",
    "AISOC_INBOX_METRICS_LISTEN": "metrics.listen",
    "AISOC_INBOX_ADMIN_LISTEN": "admin.listen",
    "AISOC_INBOX_SYSLOG_LISTENERS": "syslog.listeners",
    "AISOC_INBOX_MAX_BODY_BYTES": "http.max_body_bytes",
    "AISOC_INBOX_MAX_EVENTS_PER_REQUEST": "http.max_events_per_request",
    "AISOC_INBOX_RATE_LIMIT_PER_MIN": "http.rate_limit_per_min",
    "AISOC_INBOX_DATABASE_DSN": "database.dsn",
    "AISOC_INBOX_SINK": "sink.type",
    "AISOC_INBOX_KAFKA_TOPIC": "sink.kafka.topic",
    "AISOC_INBOX_KAFKA_BOOTSTRAP_SERVERS": "sink.kafka.config.bootstrap.servers",
    "AISOC_INBOX_CEF_SHARED_SECRET": "cef.shared_secret",
}

#: keys whose variable is read as YAML: a list of mappings cannot be one string
_YAML_OVERRIDES = frozenset({"syslog.listeners"})

_CHOICES: dict[str, tuple[str, ...]] = {"sink.type": ("file", "kafka")}
_POSITIVE = {"workers", "http.max_body_bytes", "http.rate_limit_per_min", "http.timeout", "http.header_timeout",
             "http.body_timeout", "http.max_header_bytes", "http.max_events_per_request",
             "sink.file.max_bytes", "sink.kafka.spool_max_bytes", "token_cache.max_size",
             "token_cache.negative_max_size", "token_cache.unknown_lookups_per_ip_per_sec",
             "database.call_timeout", "database.connect_timeout", "database.statement_timeout",
             "database.keepalives_idle", "database.keepalives_interval", "database.keepalives_count",
             "database.tcp_user_timeout", "database.listen_check_interval",
             "vendors.sns.timeout", "imap.timeout", "imap.refresh_interval", "imap.max_backoff",
             "imap.max_message_bytes", "hec.max_channels_per_token", "hec.max_acks_per_channel",
             "hec.channel_idle_timeout", "syslog.max_in_flight_events", "deliveries.max_bytes"}


def per_process(bound: int, processes: int) -> int:
    """
    One process's share of a bound the daemon keeps over all its C{processes} (C{workers:}): with
    each process holding its own events, splitting the bound keeps the memory of N processes what
    one process would use.
    """
    return max(1, bound // processes)


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """
    Read C{path} (or nothing, for the embedded default), apply the environment overrides and validate.
    """
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config file must be a mapping of keys, not {type(raw).__name__}")
    environ = os.environ if environ is None else environ
    default_state = environ.get("STATE_DIRECTORY")  # set by systemd's StateDirectory=
    if default_state and "state_dir" not in raw:
        raw["state_dir"] = default_state.split(":")[0]
    for variable, key in ENVIRONMENT_OVERRIDES.items():
        if variable in environ:
            value: Any = environ[variable]
            if key in _YAML_OVERRIDES:
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError as e:
                    raise ConfigError(f"{variable}: not valid YAML: {_yaml_problem(e)}") from None
            _set_dotted(raw, key, value, variable)
    prefix = f"{path}: " if path is not None else ""
    try:
        return _build(Settings, raw, "")
    except ConfigError as e:
        raise ConfigError(prefix + str(e)) from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """
    Where the YAML breaks and what breaks it, without quoting the file: the line may hold a
    password. PyYAML's own message shows the line and quotes the text it choked on (an alias or
    tag name, a character); only its token names (C{'<stream end>'}) and escapes (C{'\\t'}) stay.
    """
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "unreadable"
    problem = re.sub(r"'(?!<[^']*>'|\\.')[^']*'", "…", problem)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
        context += f" that begins on line {context_mark.line + 1}"
    return where + problem + (f" ({context})" if context else "")


def _set_dotted(raw: dict[str, Any], key: str, value: Any, variable: str) -> None:
    # the Kafka bootstrap key has dots of its own: everything after "config." is one key
    head, _, tail = key.partition(".config.")
    parts = head.split(".") + ([tail] if tail else [])
    if tail:
        parts.insert(len(parts) - 1, "config")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{variable} overrides {key}, but {part} is not a mapping in the file")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'top level'}: expected a mapping of keys, got {_kind(raw, where)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = _join(where, str(unknown[0]))
        raise ConfigError(f"{key}: unknown key (expected one of: {', '.join(sorted(fields))})")
    values = {name: _coerce(hints[name], raw[name], _join(where, name)) for name in raw}
    try:
        return cls(**values)
    except ConfigError as e:  # a dataclass's own check names the key within it
        raise ConfigError(_join(where, str(e))) from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_kind(value, key)}")
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_kind(value, key)}")
        return {str(k): _scalar_text(v, f"{key}.{k}") for k, v in value.items()}
    return _check_scalar(hint, value, key)


def _check_scalar(hint: type, value: Any, key: str) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint is int and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {_kind(value, key)}")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {value}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key}: must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    return value


def _scalar_text(value: Any, key: str) -> str:
    """
    librdkafka takes every setting as a string; YAML may have parsed C{acks: all} or C{linger.ms: 5}.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{key}: expected a string or number, got {_kind(value, key)}")


#: a key whose value is a credential or key material (or may hold one, as a DSN): never printed
_SECRET_KEY = re.compile(r"pass|secret|token|key|credential|oauthbearer|jaas|dsn", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """
    Whether the dotted config C{key} names a secret (C{sasl.password}, C{cef.shared_secret},
    C{ssl.key.pem}, C{database.dsn}, …). Errors name such a key but never show its value.
    """
    return bool(_SECRET_KEY.search(key))


def redact_secrets(text: str, values: Mapping[str, Any]) -> str:
    """
    C{text} (a library's error message, say) with the value of every secret-named key in
    C{values} replaced by C{<redacted>}.
    """
    for key, value in values.items():
        if is_secret_key(key) and isinstance(value, str) and value:
            text = text.replace(value, "<redacted>")
    return text


def _kind(value: Any, key: str) -> str:
    if value is None:
        return "nothing"
    if is_secret_key(key):
        return type(value).__name__  # never the value, not even a wrong one
    return f"{type(value).__name__} {value!r}"[:80]


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
