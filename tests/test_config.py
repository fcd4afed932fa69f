"""
The YAML config, its environment overrides, and the errors that stop start-up.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from aisoc_inboxd.config import ConfigError, Settings, load_settings

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


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """AISOC_INBOX_* variables win over the file and are typed like YAML scalars."""
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


def test_systemd_state_directory_is_the_default_state_dir() -> None:
    """Under systemd, StateDirectory= (seen as $STATE_DIRECTORY) becomes the state directory."""
    assert load_settings(None, {"STATE_DIRECTORY": "/var/lib/aisoc-inboxd"}).state_dir == "/var/lib/aisoc-inboxd"


@pytest.mark.parametrize("text, message", [
    ("htp:\n  listen: []\n", "htp: unknown key"),
    ("http:\n  listne: ['tcp:1']\n", "http.listne: unknown key (expected one of: body_timeout, header_timeout, listen, "
                                   "max_body_bytes, max_header_bytes, rate_limit_per_min, timeout)"),
    ("http:\n  max_body_bytes: lots\n", "http.max_body_bytes: expected int, got str 'lots'"),
    ("http:\n  max_body_bytes: 0\n", "http.max_body_bytes: must be greater than 0"),
    ("http:\n  rate_limit_per_min: true\n", "http.rate_limit_per_min: expected int, got bool"),
    ("sink:\n  type: s3\n", "sink.type: must be one of file, kafka, got 's3'"),
    ("sink:\n  kafka:\n    config: [a]\n", "sink.kafka.config: expected a mapping"),
    ("http: [1, 2]\n", "http: expected a mapping of keys"),
    ("- a\n- b\n", "the config file must be a mapping"),
    ("http:\n  listen: [\n", "not valid YAML"),
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
