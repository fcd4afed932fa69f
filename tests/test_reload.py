"""
Reloads are all or nothing: with real files on disk, a reload whose any part cannot be used changes
nothing (and says so in one log line, to systemd, in a metric and on the status page), and the next
good reload applies every part. Most cases run the reload in this process on a task.Clock; one runs
a daemon with a real TLS listener, and one the daemon's side of a worker process.
"""
from __future__ import annotations

import json
import shutil
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import pytest
import pytest_twisted
from cryptography import x509
from twisted.internet import threads
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import Settings, load_settings
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.reload import Reloader, ReloadOutcome, Reloads, Replaceable
from aisoc_inboxd.tls import ReloadableTLS, split_tls_endpoint
from aisoc_inboxd.tokens import TokenAdmin
from tests.support.daemon import RunningDaemon, https_client, start_daemon
from tests.support.notify import NotifySocket
from tests.support.templates import detection_template
from tests.support.tls import TlsFiles, make_tls_files

OLD_SECRET = "old-cef-secret-3f1c"
NEW_SECRET = "new-cef-secret-9a7e"
NEW_CIDRS = ["127.0.0.1/32", "192.0.2.0/24"]
REJECTED = "reload rejected, the previous configuration keeps serving"


class Deployment:
    """
    The files a daemon reads: its config, a template directory and the TLS files of its HTTPS listener.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates = root / "templates"
        self.templates.mkdir()
        (self.templates / "acme-custom.yaml").write_text(detection_template("acme-custom"))
        self.tls = make_tls_files(root / "tls")
        self.config_path = root / "inboxd.yaml"
        self.config: dict[str, Any] = {
            "state_dir": str(root / "state"),
            "http": {"listen": [self.tls.endpoint()], "rate_limit_per_min": 60},
            "metrics": {"listen": ["tcp:0:interface=127.0.0.1"]},
            "admin": {"listen": ["tcp:0:interface=127.0.0.1"]},
            "syslog": {"listeners": [{"name": "tcp", "endpoint": "tcp:0:interface=127.0.0.1", "tenant": "acme"}]},
            "cef": {"tenant": "acme", "shared_secret_header": "X-CEF-Secret", "shared_secret": OLD_SECRET,
                    "allow_cidrs": ["127.0.0.0/8"]},
            "templates": {"directories": [str(self.templates)]},
        }
        self.write()

    def write(self) -> None:
        self.config_path.write_text(json.dumps(self.config))

    def settings(self) -> Settings:
        return load_settings(self.config_path, {})

    def install_pair(self, pair: TlsFiles) -> None:
        for source, target in ((pair.server_key, self.tls.server_key), (pair.server_cert, self.tls.server_cert)):
            target.unlink()
            shutil.copy(source, target)

    def good_change(self) -> TlsFiles:
        """
        A change of every reloadable part: a new template, a new certificate and key, a new CEF secret
        and allowlist, a higher rate limit. Returns the new TLS pair.
        """
        (self.templates / "acme-new.yaml").write_text(detection_template("acme-new"))
        pair = make_tls_files(self.root / "tls-new")
        self.install_pair(pair)
        self.config["cef"].update(shared_secret=NEW_SECRET, allow_cidrs=NEW_CIDRS)
        self.config["http"]["rate_limit_per_min"] = 120
        self.write()
        return pair


@dataclass(frozen=True)
class Mistake:
    """
    A part that cannot be used, put beside the good change: C{make} breaks it, C{mend} repairs it.
    """

    part: str
    make: Callable[[Deployment, TlsFiles], None]
    mend: Callable[[Deployment, TlsFiles], None]


def _bad_template(d: Deployment, _: TlsFiles) -> None:
    (d.templates / "broken.yaml").write_text("id: broken\nclass_uid: 999999\n")


def _mismatched_key(d: Deployment, _: TlsFiles) -> None:
    shutil.copy(make_tls_files(d.root / "tls-other").server_key, d.tls.server_key)


def _unreadable_certificate(d: Deployment, _: TlsFiles) -> None:
    d.tls.server_cert.unlink()
    d.tls.server_cert.symlink_to(d.root / "archive" / "cert7.pem")  # as certbot's live/ after a broken renewal


def _set(*path: str, value: Any) -> Callable[[Deployment, TlsFiles], None]:
    def change(d: Deployment, _: TlsFiles) -> None:
        node = d.config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        d.write()
    return change


ALLOWED = ["generic-json", "syslog", "cef-syslog", "acme-custom", "acme-new"]

MISTAKES = {
    "bad template": Mistake("templates", _bad_template, lambda d, _: (d.templates / "broken.yaml").unlink()),
    "mismatched key and certificate": Mistake("http certificate", _mismatched_key,
                                              lambda d, pair: d.install_pair(pair)),
    "unreadable certificate file": Mistake("http certificate", _unreadable_certificate,
                                           lambda d, pair: d.install_pair(pair)),
    "allowed list naming an unknown template": Mistake(
        "templates", _set("templates", "allowed", value=[*ALLOWED, "acme-nwe"]),
        _set("templates", "allowed", value=ALLOWED)),
    "cef.template not loaded": Mistake("config", _set("cef", "template", value="cef-sylsog"),
                                       _set("cef", "template", value="cef-syslog")),
    "a syslog listener's template not allowed": Mistake(
        "config", _set("templates", "allowed", value=["generic-json", "cef-syslog", "acme-new"]),
        _set("templates", "allowed", value=None)),
    "a bad CIDR in cef.allow_cidrs": Mistake("config", _set("cef", "allow_cidrs", value=["192.0.2.0/33"]),
                                             _set("cef", "allow_cidrs", value=NEW_CIDRS)),
    "a config file that is not YAML": Mistake(
        "config", lambda d, _: d.config_path.write_text("http: [unclosed\n"), lambda d, _: d.write()),
}


@dataclass
class Process:
    """
    The reloadable parts of one process, built from a deployment as the daemon builds them.
    """

    reloads: Reloads
    reloader: Reloader
    catalog: TemplateCatalog
    tls: ReloadableTLS
    cef: Replaceable[Any]
    limiter: RateLimiter
    metrics: Metrics

    @classmethod
    def of(cls, deployment: Deployment, in_thread: Callable[..., Deferred[Any]] = maybeDeferred,
           read_settings: Callable[[], Settings] | None = None) -> "Process":
        """
        @param in_thread: runs the loading; inline unless a test holds it.
        """
        settings = deployment.settings()
        catalog = TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
        split = split_tls_endpoint(settings.http.listen[0])
        assert split is not None
        tls = ReloadableTLS(split[1])
        cef = Replaceable(settings.cef)
        clock = Clock()
        clock.advance(1_700_000_000)
        limiter = RateLimiter(clock, settings.http.rate_limit_per_min)
        reloader = Reloader(settings, read_settings or deployment.settings, catalog, {"http": tls}, cef, limiter,
                            in_thread)
        metrics = Metrics()
        return cls(Reloads(reloader, clock, metrics.reloads, lambda: "listening on http 8443"), reloader, catalog,
                   tls, cef, limiter, metrics)

    def reload(self) -> ReloadOutcome:
        d = Deferred.fromCoroutine(self.reloads.reload())
        assert d.called, "the reload waited for something, though it loads inline here"
        return d.result

    def admitted_at_once(self) -> int:
        """
        How many requests a tenant new to the limiter gets before the first 429.
        """
        tenant, taken = str(uuid.uuid4()), 0
        while self.limiter.acquire(tenant) == 0:
            taken += 1
        return taken

    def in_force(self) -> dict[str, Any]:
        """
        What serves now: equal snapshots mean that no part changed (the good change changes every one).
        """
        return {"templates": self.catalog.ids(), "tls": self.tls.material, "cef": self.cef.value,
                "settings": self.reloader.settings, "rate": self.admitted_at_once(),
                "fingerprint": self.reloader.fingerprint()}

    def count(self, result: str) -> float:
        return self.metrics.registry.get_sample_value("aisoc_reload_total", {"result": result})


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    manager = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))
    yield manager
    manager.close()


def logged(events: Sequence[dict[str, Any]], at_least: LogLevel = LogLevel.info) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level", LogLevel.info) >= at_least]


def assert_rejected_quietly(events: Sequence[dict[str, Any]], part: str) -> str:
    """
    One error line names the part, with no traceback and no secret; nothing else is an error.
    """
    errors = [e for e in events if e.get("log_level") in (LogLevel.error, LogLevel.critical)]
    assert len(errors) == 1, logged(events)
    [line] = logged(errors)
    assert line.startswith(f"{REJECTED}: {part}: ") and "\n" not in line, line
    assert "log_failure" not in errors[0] and "Traceback" not in line
    assert not any(secret in text for text in logged(events, LogLevel.debug) for secret in (OLD_SECRET, NEW_SECRET))
    return line


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=list(MISTAKES))
def test_a_reload_with_one_bad_part_changes_nothing_and_the_next_good_one_applies_all(
        deployment: Deployment, notify: NotifySocket, mistake: Mistake) -> None:
    """Every reloadable part changes well on disk except one: the reload is rejected in one error line naming
    that part (no traceback, no secret), no part changes, systemd hears RELOADING=1 then READY=1 with the
    outcome, and the metric counts it. Once the part is mended, the next reload applies every part."""
    process = Process.of(deployment)
    before = process.in_force()
    assert before["rate"] == 60 and "acme-new" not in before["templates"]
    pair = deployment.good_change()
    mistake.make(deployment, pair)

    with capturedLogs() as events:
        outcome = process.reload()
    line = assert_rejected_quietly(events, mistake.part)
    assert process.in_force() == before
    assert not outcome.applied and line.endswith(outcome.rejection or "?")
    assert (process.count("rejected"), process.count("applied")) == (1, 0)
    notify.wait_for("READY=1")
    assert [m.split("\n")[0] for m in notify.messages] == ["RELOADING=1", "READY=1"]
    assert notify.messages[0].split("\n")[1].startswith("MONOTONIC_USEC=")
    assert f"STATUS=listening on http 8443; last reload rejected at 2023-11-14 22:13:20 UTC ({mistake.part}: " \
           in notify.messages[1]

    mistake.mend(deployment, pair)
    with capturedLogs() as events:
        assert process.reload() == ReloadOutcome(1_700_000_000)
    assert logged(events, LogLevel.warn) == []
    after = process.in_force()
    assert "acme-new" in after["templates"] and after["rate"] == 120
    assert process.cef.value.shared_secret == NEW_SECRET and process.cef.value.allow_cidrs == NEW_CIDRS
    assert after["tls"].digest != before["tls"].digest
    assert [part for part in before["fingerprint"] if before["fingerprint"][part] != after["fingerprint"][part]] == \
           ["templates", "cef", "http.rate_limit_per_min", "http certificate"]
    assert (process.count("rejected"), process.count("applied")) == (1, 1)
    notify.wait_for("STATUS=listening on http 8443; last reload applied at 2023-11-14 22:13:20 UTC")


def test_settings_a_reload_does_not_apply_are_named_and_left_alone(deployment: Deployment) -> None:
    """A new listener beside a new template: the template is applied, the listener is not, and the log says
    that it takes a restart."""
    process = Process.of(deployment)
    before = process.reloader.settings
    (deployment.templates / "acme-new.yaml").write_text(detection_template("acme-new"))
    deployment.config["http"]["listen"].append("tcp:0:interface=127.0.0.1")
    deployment.config["http"]["max_body_bytes"] = 1024
    deployment.write()
    with capturedLogs() as events:
        assert process.reload().applied
    assert "acme-new" in process.catalog.ids()
    assert process.reloader.settings.http == before.http
    assert logged(events, LogLevel.warn) == [
        "the config file also changes http.listen, http.max_body_bytes, which take effect only after a restart"]


def test_sighups_during_a_reload_make_one_more_reload(deployment: Deployment) -> None:
    """While a reload loads, further SIGHUPs queue one more reload after it, not one each."""
    loading: list[Deferred[Any]] = []

    def held(load: Callable[[], Any]) -> Deferred[Any]:
        loading.append(Deferred().addCallback(lambda _: load()))
        return loading[-1]

    process = Process.of(deployment, held)
    for _ in range(3):
        process.reloads.request()
    assert len(loading) == 1
    loading[0].callback(None)
    assert len(loading) == 2 and process.count("applied") == 1
    process.reloads.request()
    loading[1].callback(None)
    assert len(loading) == 3
    loading[2].callback(None)
    assert len(loading) == 3 and process.count("applied") == 3


def test_an_unexpected_error_rejects_the_reload_as_an_error_not_a_crash(deployment: Deployment) -> None:
    """A bug while loading (here: reading the settings raises) rejects the reload like any other cause, at
    level error with its traceback for the bug report, never critical; the next reload works."""
    calls: list[int] = []

    def flaky() -> Settings:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return deployment.settings()

    process = Process.of(deployment, read_settings=flaky)
    before = process.in_force()
    deployment.good_change()
    with capturedLogs() as events:
        outcome = process.reload()
    assert outcome.rejection == "unexpected error: RuntimeError"
    assert [e["log_level"] for e in events if "log_failure" in e] == [LogLevel.error]
    assert not any(e.get("log_level") == LogLevel.critical for e in events)
    assert process.in_force() == before
    assert process.reload().applied


# -- a running daemon: the certificate it serves ------------------------------------------------------

def served_certificate(port: int) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


async def cef_status(running: RunningDaemon, secret: str) -> int:
    line = b"CEF:0|Acme|FW|1.0|100|blocked|5|src=10.0.0.1"
    return (await running.post("/v1/inbox/cef", line, {"X-CEF-Secret": secret}))[0]


@pytest_twisted.async_yield_fixture
async def running(reactor: Any, deployment: Deployment) -> AsyncIterator[RunningDaemon]:
    daemon = await start_daemon(reactor, deployment.settings(), deployment.tls, read_settings=deployment.settings)
    yield daemon
    await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_a_daemon_keeps_serving_its_certificate_and_templates_through_a_rejected_reload(
        running: RunningDaemon, deployment: Deployment) -> None:
    """The issue's case on a live TLS port: a key that does not match its certificate beside a new template
    and CEF secret. The old certificate, templates and secret keep serving, nothing logs at critical; the
    next reload swaps them all, on the same port."""
    port = running.daemon.address("http").port
    old = certificate(deployment.tls.server_cert)
    assert await threads.deferToThread(served_certificate, port) == old
    pair = deployment.good_change()
    custom = await running.mint("acme", "acme-custom")
    # as the CLI mints it from the files, before the daemon reloaded them
    files = TokenAdmin(running.daemon.store, running.reactor, lambda template_id: True, lambda fingerprint: None)
    fresh = (await files.mint("acme", "acme-new")).token
    _mismatched_key(deployment, pair)

    with capturedLogs() as events:
        outcome = await running.daemon.reloads.reload()
    assert_rejected_quietly(events, "http certificate")
    assert outcome.rejection and outcome.rejection.startswith("http certificate: ")
    assert await threads.deferToThread(served_certificate, port) == old
    body = b'{"alert": {"id": "x1", "name": "n"}}'
    assert (await running.post(f"/v1/inbox/{custom}", body))[0] == 200
    assert (await running.post(f"/v1/inbox/{fresh}", body))[0] == 400
    assert await cef_status(running, OLD_SECRET) == 200 and await cef_status(running, NEW_SECRET) == 401

    deployment.install_pair(pair)
    assert (await running.daemon.reloads.reload()).applied
    assert running.daemon.address("http").port == port
    assert await threads.deferToThread(served_certificate, port) == certificate(pair.server_cert)
    running.http = https_client(running.reactor, pair)
    assert (await running.post(f"/v1/inbox/{fresh}", body))[0] == 200
    assert await cef_status(running, NEW_SECRET) == 200 and await cef_status(running, OLD_SECRET) == 401
    assert 'aisoc_reload_total{result="rejected"} 1.0' in await running.metrics()


def test_a_serving_catalog_lets_the_ocsf_schema_go() -> None:
    """A daemon process's templates (at start and at each reload) are loaded without keeping the OCSF
    schema they were compiled against (10 MiB a process, for good); they map events all the same, and
    what needs the schema later (validation) reads it again."""
    from aisoc_inboxd.normalizer import IngestContext, normalize_record, validate_event
    from aisoc_inboxd.normalizer.ocsf import ocsf_schema

    ocsf_schema()
    catalog = TemplateCatalog.load_to_serve([], None)
    assert ocsf_schema.cache_info().currsize == 0
    template = catalog.get("generic-json")
    assert template is not None
    [event] = normalize_record(template, {"id": "a1", "title": "disk full", "severity": "high"},
                               IngestContext(tenant_id="acme", route="webhook", received_at=1_700_000_000.0))
    assert event["finding_info"]["title"] == "disk full" and validate_event(event) == []


@pytest_twisted.ensureDeferred
async def test_a_token_whose_template_left_the_allowed_list_works_again_once_it_is_restored_and_reloaded(
        running: RunningDaemon, deployment: Deployment) -> None:
    """What the unknown-template refusal tells the sender: a template taken out of templates.allowed (and
    reloaded) refuses its token with 400; put back and reloaded, the same token is served again, with
    no re-mint."""
    token = await running.mint("acme", "acme-custom")
    body = b'{"alert": {"id": "x1", "name": "n"}}'
    assert (await running.post(f"/v1/inbox/{token}", body))[0] == 200
    _set("templates", "allowed", value=["generic-json", "syslog", "cef-syslog"])(deployment, deployment.tls)
    assert (await running.daemon.reloads.reload()).applied
    status, reply, _ = await running.post(f"/v1/inbox/{token}", body)
    assert status == 400 and reply["error"].startswith("unknown template: 'acme-custom' is not an allowed template; "
                                                       "restore it")
    _set("templates", "allowed", value=None)(deployment, deployment.tls)
    assert (await running.daemon.reloads.reload()).applied
    assert (await running.post(f"/v1/inbox/{token}", body))[0] == 200
