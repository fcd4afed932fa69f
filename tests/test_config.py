"""
The YAML config, its environment overrides, and the errors that stop start-up.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import ConfigError, Settings, load_settings, per_process

PROJECT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inboxd.yaml"
    path.write_text(text)
    return path


def test_no_file_is_the_embedded_default() -> None:
    """With no config file the daemon runs on SQLite, the NDJSON log and 127.0.0.1 listeners."""
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.database.dsn is None
    assert settings.sink.type == "file"
    assert settings.http.listen == ["tcp:8080:interface=127.0.0.1"]
    assert settings.http.max_body_bytes == 10 * 1024 * 1024
    assert settings.http.rate_limit_per_min == 600


def test_shipped_samples_load() -> None:
    """Both sample configs load; the embedded one spells out exactly the defaults."""
    production = load_settings(PROJECT / "etc" / "inboxd.yaml", {})
    assert production.sink.type == "kafka"
    assert production.sink.kafka.config["bootstrap.servers"].startswith("kafka-1")
    assert production.http.listen[0].startswith("ssl:8443:")
    assert load_settings(PROJECT / "etc" / "embedded.yaml", {}) == Settings()


def test_the_production_sample_allows_every_template_it_binds() -> None:
    """The production sample's templates.allowed names loaded templates only and covers the templates its
    CEF route and syslog listeners use, so the daemon starts (and reloads) on it."""
    production = load_settings(PROJECT / "etc" / "inboxd.yaml", {})
    catalog = TemplateCatalog.load([], production.templates.allowed)  # its own directory is the operator's
    catalog.check_in_use(production)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """AISOC_INBOX_* variables win over the file; a number is read as the key's type needs."""
    path = write(tmp_path, "http:\n  max_body_bytes: 100\n")
    settings = load_settings(path, {
        "AISOC_INBOX_MAX_BODY_BYTES": "2048",
        "AISOC_INBOX_RATE_LIMIT_PER_MIN": "30",
        "AISOC_INBOX_DATABASE_DSN": "postgresql://x@127.0.0.1/db",
        "AISOC_INBOX_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    })
    assert settings.http.max_body_bytes == 2048
    assert settings.http.rate_limit_per_min == 30
    assert settings.database.dsn == "postgresql://x@127.0.0.1/db"
    assert settings.sink.kafka.config == {"bootstrap.servers": "127.0.0.1:9092"}


def test_environment_sets_every_listen_address() -> None:
    """AISOC_INBOX_{HTTP,METRICS,ADMIN}_LISTEN each give one endpoint; AISOC_INBOX_SYSLOG_LISTENERS is YAML
    (a list of listener mappings, [] for none), so a second daemon can run beside the first unchanged."""
    settings = load_settings(None, {
        "AISOC_INBOX_HTTP_LISTEN": "tcp:18080:interface=127.0.0.1",
        "AISOC_INBOX_METRICS_LISTEN": "tcp:19108:interface=127.0.0.1",
        "AISOC_INBOX_ADMIN_LISTEN": "tcp:19109:interface=127.0.0.1",
        "AISOC_INBOX_SYSLOG_LISTENERS": '[{name: tcp, endpoint: "tcp:15514:interface=127.0.0.1", tenant: default},'
                                        ' {name: udp, udp_port: 15514, tenant: default}]',
    })
    assert settings.http.listen == ["tcp:18080:interface=127.0.0.1"]
    assert settings.metrics.listen == ["tcp:19108:interface=127.0.0.1"]
    assert settings.admin.listen == ["tcp:19109:interface=127.0.0.1"]
    assert [(s.name, s.endpoint, s.udp_port, s.tenant) for s in settings.syslog.listeners] == [
        ("tcp", "tcp:15514:interface=127.0.0.1", None, "default"), ("udp", None, 15514, "default")]
    assert load_settings(None, {"AISOC_INBOX_SYSLOG_LISTENERS": "[]"}).syslog.listeners == []
    with pytest.raises(ConfigError, match=r"^AISOC_INBOX_SYSLOG_LISTENERS: not valid YAML: "):
        load_settings(None, {"AISOC_INBOX_SYSLOG_LISTENERS": "[{name: tcp"})
    with pytest.raises(ConfigError, match=r"syslog.listeners\[0\]: expected a mapping of keys"):
        load_settings(None, {"AISOC_INBOX_SYSLOG_LISTENERS": "tcp:5514"})


def test_systemd_state_directory_is_the_default_state_dir() -> None:
    """Under systemd, StateDirectory= (seen as $STATE_DIRECTORY) becomes the state directory."""
    assert load_settings(None, {"STATE_DIRECTORY": "/var/lib/aisoc-inboxd"}).state_dir == "/var/lib/aisoc-inboxd"


@pytest.mark.parametrize("text, message", [
    ("htp:\n  listen: []\n", "htp: unknown key"),
    ("http:\n  listne: ['tcp:1']\n", "http.listne: unknown key (expected one of: body_timeout, header_timeout, listen, "
                                   "max_body_bytes, max_events_per_request, max_header_bytes, rate_limit_per_min, "
                                   "timeout, trusted_proxies)"),
    ("http:\n  max_body_bytes: lots\n", "http.max_body_bytes: expected int, got str 'lots'"),
    ("http:\n  max_body_bytes: 0\n", "http.max_body_bytes: must be greater than 0"),
    ("http:\n  rate_limit_per_min: true\n", "http.rate_limit_per_min: expected int, got bool"),
    ("sink:\n  type: s3\n", "sink.type: must be one of file, kafka, got 's3'"),
    ("sink:\n  kafka:\n    config: [a]\n", "sink.kafka.config: expected a mapping"),
    ("http: [1, 2]\n", "http: expected a mapping of keys"),
    ("- a\n- b\n", "the config file must be a mapping"),
    ("http:\n  listen: [\n", "not valid YAML"),
    ("cef:\n  tenant: 'a b/c'\n", "cef.tenant: invalid tenant id 'a b/c': a tenant id is 1 to 64 characters"),
    ("syslog:\n  listeners:\n    - {name: tcp, endpoint: 'tcp:601', tenant: -acme}\n",
     "syslog.listeners[0].tenant: invalid tenant id '-acme': a tenant id is 1 to 64 characters"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    """A wrong key or value stops start-up with a message naming the file, the key and the problem."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(path, {})
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_bad_environment_value_names_the_key() -> None:
    """A bad override is reported under the key it overrides."""
    with pytest.raises(ConfigError, match=r"http.max_body_bytes: expected int, got str 'ten'"):
        load_settings(None, {"AISOC_INBOX_MAX_BODY_BYTES": "ten"})


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """A config path that does not exist is an error, not a silent fall back to defaults."""
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(tmp_path / "absent.yaml", {})


def test_store_timeouts_and_unknown_token_limits_are_read_and_checked(tmp_path: Path) -> None:
    """The database timeouts and the unknown-token limits load from the file; zero is refused by name."""
    path = write(tmp_path, "database:\n  call_timeout: 1.5\n  statement_timeout: 4\n  keepalives_idle: 30\n"
                           "token_cache:\n  negative_max_size: 500\n  unknown_lookups_per_ip_per_sec: 2.5\n")
    settings = load_settings(path, {})
    assert (settings.database.call_timeout, settings.database.statement_timeout, settings.database.keepalives_idle) \
        == (1.5, 4.0, 30)
    assert (settings.token_cache.negative_max_size, settings.token_cache.unknown_lookups_per_ip_per_sec) == (500, 2.5)
    for key in ("database:\n  call_timeout: 0\n", "token_cache:\n  unknown_lookups_per_ip_per_sec: 0\n"):
        with pytest.raises(ConfigError, match="must be greater than 0"):
            load_settings(write(tmp_path, key), {})


def test_an_all_digit_secret_from_the_environment_stays_a_string(tmp_path: Path) -> None:
    """AISOC_INBOX_CEF_SHARED_SECRET=0012345678 is that string, not a number nor an error."""
    path = write(tmp_path, "cef:\n  shared_secret_header: X-AiSOC-CEF-Secret\n")
    settings = load_settings(path, {"AISOC_INBOX_CEF_SHARED_SECRET": "0012345678",
                                    "AISOC_INBOX_KAFKA_TOPIC": "2024"})
    assert settings.cef.shared_secret == "0012345678"
    assert settings.sink.kafka.topic == "2024"


SECRET = "hunter2-Sw0rdfish"


@pytest.mark.parametrize("text", [
    "cef:\n  shared_secret_header: X-S\n  shared_secret: 74891250\n",
    f"sink:\n  kafka:\n    config:\n      sasl.password: [{SECRET}, second]\n",
    f"sink:\n  kafka:\n    config:\n      sasl.password: {{value: {SECRET}}}\n",
    f"sink:\n  kafka:\n    config:\n      sasl.username: u\n      sasl.password: \"{SECRET}\n",
    f"sink:\n  kafka:\n    config:\n      sasl.password: {SECRET}: x\n",
    f"sink:\n  kafka:\n    config:\n      sasl.password: *{SECRET}\n",
    f"sink:\n  kafka:\n    config:\n      sasl.password: !{SECRET} x\n",
    f"sink:\n  kafka:\n    config:\n      ssl.key.password: \"a\\{SECRET}\"\n",
    f"database:\n  dsn: [postgresql://aisoc:{SECRET}@db.internal/aisoc]\n",
])
def test_config_errors_never_print_a_secret(tmp_path: Path, text: str) -> None:
    """A bad secret-named key (a number, a list, a mapping, broken YAML on its line) is reported by
    key and line, never with its value."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(path, {})
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert SECRET not in message and "74891250" not in message and "Sw0rd" not in message
    assert re.search(r"not valid YAML: line \d+, column \d+: |(shared_secret|password|dsn): expected", message)


def test_templates_the_config_names_must_be_loaded_and_allowed(tmp_path: Path) -> None:
    """A syslog listener or the CEF route naming a template that templates.allowed leaves out (or that
    no directory has) is refused by key; the check is the catalog's, so a reload can make it too."""
    settings = load_settings(write(tmp_path, "templates:\n  allowed: [generic-json, syslog]\n"), {})
    catalog = TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
    with pytest.raises(ConfigError, match=r"^syslog.listeners\[0\].cef_template: template 'cef-syslog' is not "
                                          r"in templates.allowed$"):
        catalog.check_in_use(settings)
    renamed = load_settings(write(tmp_path, "cef:\n  tenant: acme\n  template: cef-syslgo\n"), {})
    with pytest.raises(ConfigError, match=r"^cef.template: no template 'cef-syslgo' is loaded$"):
        TemplateCatalog.load([], None).check_in_use(renamed)


def test_a_daemon_wide_bound_is_shared_out_between_its_processes() -> None:
    """workers: N gives each process 1/N of a bound on events in memory, never less than one."""
    assert per_process(10_000, 1) == 10_000
    assert per_process(10_000, 2) == 5_000
    assert per_process(10_000, 3) == 3_333
    assert per_process(1, 4) == 1
