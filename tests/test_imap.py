"""
The IMAP mailbox poller against a real dovecot (IMAPS on 127.0.0.1, messages APPENDed over IMAP):
events once, \\Seen only after durability, max_messages, polls cut short re-read, bad passwords
reported and retried, the daemon wiring and the imap CLI.
"""
from __future__ import annotations

import json
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import pytest_twisted
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock, deferLater

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import ImapSettings
from aisoc_inboxd.imap import ImapPoller
from aisoc_inboxd.intake.idempotency import Idempotency
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.sinks import SinkRecord, SinkUnavailable
from aisoc_inboxd.sinks.file import FileSink
from aisoc_inboxd.store import ImapConnectorRecord
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.store.sqlite import SqliteStore
from aisoc_inboxd.tokens import LookupBudget, TokenCache, TokenResolver
from tests.support.daemon import daemon_settings, start_daemon
from tests.support.dovecot import *  # noqa: F401,F403  (the dovecot fixture)
from tests.support.dovecot import Dovecot
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import PROJECT

WAIT_LIMIT = 200  # rounds of 0.1 s when waiting for the real reactor's scheduled poll


def alert(number: int, vendor: str = "CrowdStrike") -> bytes:
    message = EmailMessage()
    message["From"] = "Falcon <falcon@crowdstrike.example>"
    message["To"] = "soc-alerts@example.test"
    message["Subject"] = f"[{vendor}] Detection {number}: suspicious PowerShell"
    message["Message-ID"] = f"<alert-{number}@crowdstrike.example>"
    message["Date"] = "Mon, 03 Mar 2025 07:15:02 +0000"
    message.set_content(f"Severity: High\nHost: ws-{number}\nhttps://falcon.example/detections/{number}\n")
    return message.as_bytes()


class Sink(FileSink):
    """
    The real file sink, which can be made to fail from its Nth write on, or to hold its Nth write.
    """

    def __init__(self, directory: Path, reactor: Any) -> None:
        super().__init__(directory, reactor, registry=CollectorRegistry())
        self.writes = 0
        self.fail_from: int | None = None
        self.hold_at: int | None = None
        self.held: Deferred[None] = Deferred()
        self.release: Deferred[None] = Deferred()

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        self.writes += 1
        if self.fail_from is not None and self.writes >= self.fail_from:
            return fail(SinkUnavailable("test: the sink is failing"))
        if self.writes == self.hold_at:
            self.held.callback(None)
            return self.release.addCallback(lambda _: super(Sink, self).write(records))
        return super().write(records)

    def events(self) -> list[dict[str, Any]]:
        path = self.path
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Rig:
    """
    A poller on a fake clock (polls run when the test says so) over a real SQLite store, the real
    intake, pipeline and file sink, and the real reactor's threads.
    """

    #: the tenants' rate limit (requests a minute): each message takes one
    rate_limit_per_min = 600

    def __init__(self, tmp: Path, reactor: Any, dovecot: Dovecot) -> None:
        self.reactor = reactor
        self.dovecot = dovecot
        self.clock = Clock()
        self.clock.advance(1_741_000_000)  # received times are realistic epoch seconds
        self.metrics = Metrics()
        self.store = SqliteStore(str(tmp / "store.sqlite3"), SecretBox(Fernet.generate_key()), reactor)
        self.sink = Sink(tmp / "events", reactor)
        self.catalog = TemplateCatalog.load([], None)
        self.settings = ImapSettings(ca_file=str(dovecot.tls.ca_cert), timeout=10)
        self.poller = self.new_poller()

    def new_poller(self) -> ImapPoller:
        resolver = TokenResolver(self.store, TokenCache(self.clock), LookupBudget(self.clock, 20.0),
                                 self.metrics.token_store)
        intake = Intake(resolver, self.catalog, Pipeline(self.sink, self.metrics),
                        RateLimiter(self.clock, self.rate_limit_per_min), Idempotency(self.store, self.clock),
                        self.clock)
        return ImapPoller(self.store, intake, self.metrics, self.settings, self.reactor, self.clock)

    def connector(self, uid: str = "00000000000000a1", password: str | None = None,
                  max_messages: int = 50) -> ImapConnectorRecord:
        d = self.dovecot
        return ImapConnectorRecord(uid=uid, tenant_id="tenant-a", host=d.host, port=d.port, username=d.username,
                                   password=password or d.password, max_messages=max_messages,
                                   poll_interval=300.0, created_at=1.0)

    async def start(self, *connectors: ImapConnectorRecord) -> None:
        for connector in connectors:
            await self.store.insert_imap_connector(connector)
        self.poller.startService()
        await self.poller.refresh()

    def counted(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest_twisted.async_yield_fixture
async def rig(tmp_path: Path, reactor: Any, dovecot: Dovecot) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path, reactor, dovecot)
    rig.store.startService()
    rig.sink.startService()
    await rig.store.upgrade()
    yield rig
    if rig.poller.running:
        await rig.poller.stopService()
    await maybeDeferred(rig.sink.stopService)
    await maybeDeferred(rig.store.stopService)


def message_ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["evidences"][0]["email"]["message_uid"] for e in events]


@pytest_twisted.ensureDeferred
async def test_messages_become_valid_events_once_and_are_marked_seen(rig: Rig) -> None:
    """Each unseen message becomes one valid OCSF event with the subject's vendor, then carries \\Seen; a second poll finds nothing."""
    rig.dovecot.append(alert(1), alert(2), alert(3, vendor="Tenable"))
    connector = rig.connector()
    await rig.start(connector)
    result = await rig.poller.poll(connector.uid)
    assert (result.delivered, result.outcome) == (3, "ok")
    events = rig.sink.events()
    assert message_ids(events) == [f"<alert-{n}@crowdstrike.example>" for n in (1, 2, 3)]
    for event in events:
        assert_valid_ocsf(event)
        assert event["metadata"]["tenant_uid"] == "tenant-a"
        assert event["metadata"]["log_source"] == "imap"
        assert event["severity_id"] == 4
    assert [e["metadata"]["product"]["vendor_name"] for e in events] == ["CrowdStrike", "CrowdStrike", "Tenable"]
    assert events[0]["finding_info"]["title"] == "[CrowdStrike] Detection 1: suspicious PowerShell"
    assert set(rig.dovecot.seen().values()) == {True}
    again = await rig.poller.poll(connector.uid)
    assert (again.delivered, again.outcome) == (0, "ok")
    assert len(rig.sink.events()) == 3
    assert rig.counted("aisoc_ingest_imap_messages_total", connector=connector.uid) == 3


@pytest_twisted.ensureDeferred
async def test_max_messages_caps_each_poll(rig: Rig) -> None:
    """With max_messages 2, five messages take three polls (2, 2, 1), oldest first, each once."""
    rig.dovecot.append(*(alert(n) for n in range(1, 6)))
    connector = rig.connector(max_messages=2)
    await rig.start(connector)
    assert (await rig.poller.poll(connector.uid)).delivered == 2
    assert sorted(rig.dovecot.seen().values()) == [False, False, False, True, True]
    delivered = [(await rig.poller.poll(connector.uid)).delivered for _ in range(2)]
    assert delivered == [2, 1]
    assert message_ids(rig.sink.events()) == [f"<alert-{n}@crowdstrike.example>" for n in range(1, 6)]
    assert set(rig.dovecot.seen().values()) == {True}


@pytest_twisted.ensureDeferred
async def test_a_sink_failure_mid_poll_leaves_the_rest_unseen_and_the_next_poll_reads_it(rig: Rig) -> None:
    """When the sink fails at the third message, two are durable and seen, three stay unseen and arrive on the next poll: none lost, none twice."""
    rig.dovecot.append(*(alert(n) for n in range(1, 6)))
    connector = rig.connector()
    await rig.start(connector)
    rig.sink.fail_from = 3
    result = await rig.poller.poll(connector.uid)
    assert (result.delivered, result.outcome) == (2, "error")
    assert sorted(rig.dovecot.seen().values()) == [False, False, False, True, True]
    rig.sink.fail_from = None
    assert (await rig.poller.poll(connector.uid)).delivered == 3
    assert message_ids(rig.sink.events()) == [f"<alert-{n}@crowdstrike.example>" for n in range(1, 6)]
    assert set(rig.dovecot.seen().values()) == {True}


@pytest_twisted.ensureDeferred
async def test_each_message_takes_one_request_from_the_tenants_rate_limit(rig: Rig) -> None:
    """With a limit of 2 a minute, a poll delivers two of five messages and stops (rate_limited, the rest unseen); a minute later two more arrive, and the rest waits."""
    rig.rate_limit_per_min = 2
    rig.poller = rig.new_poller()
    rig.dovecot.append(*(alert(n) for n in range(1, 6)))
    connector = rig.connector()
    await rig.start(connector)
    result = await rig.poller.poll(connector.uid)
    assert (result.delivered, result.outcome) == (2, "rate_limited")
    assert sorted(rig.dovecot.seen().values()) == [False, False, False, True, True]
    assert rig.counted("aisoc_ingest_imap_polls_total", connector=connector.uid, outcome="rate_limited") == 1
    rig.clock.advance(60)  # the worker's scheduled poll runs (two requests again), then this one
    assert (await rig.poller.poll(connector.uid)).outcome == "rate_limited"
    assert message_ids(rig.sink.events()) == [f"<alert-{n}@crowdstrike.example>" for n in range(1, 5)]
    assert sorted(rig.dovecot.seen().values()) == [False, True, True, True, True]


@pytest_twisted.ensureDeferred
async def test_stopping_mid_poll_finishes_the_message_in_hand_and_a_restart_reads_the_rest(rig: Rig) -> None:
    """Stopping the poller while the second event is being written lets that message finish (durable, then seen); a new poller reads the other three."""
    rig.dovecot.append(*(alert(n) for n in range(1, 6)))
    connector = rig.connector()
    await rig.start(connector)
    rig.sink.hold_at = 2
    polling = rig.poller.poll(connector.uid)
    await rig.sink.held
    stopping = rig.poller.stopService()
    rig.sink.release.callback(None)
    result = await polling
    await stopping
    assert result.delivered == 2
    assert sorted(rig.dovecot.seen().values()) == [False, False, False, True, True]
    rig.poller = rig.new_poller()
    await rig.start()
    assert (await rig.poller.poll(connector.uid)).delivered == 3
    assert message_ids(rig.sink.events()) == [f"<alert-{n}@crowdstrike.example>" for n in range(1, 6)]


@pytest_twisted.ensureDeferred
async def test_a_wrong_password_is_counted_and_retried_with_backoff_without_stopping_others(rig: Rig) -> None:
    """A connector with a wrong password fails its polls as auth_failed and backs off, while another connector keeps delivering."""
    rig.dovecot.append(alert(1))
    bad = rig.connector(uid="00000000000000b0", password="not-the-password")
    good = rig.connector(uid="00000000000000c0")
    await rig.start(bad, good)
    rig.clock.advance(0)  # the first scheduled polls of both workers
    failed = await rig.poller.poll(bad.uid)
    assert (failed.delivered, failed.outcome) == (0, "auth_failed")
    assert rig.counted("aisoc_ingest_imap_polls_total", connector=bad.uid, outcome="auth_failed") >= 1
    await rig.poller.poll(good.uid)
    assert message_ids(rig.sink.events()) == ["<alert-1@crowdstrike.example>"]
    now = rig.clock.seconds()
    pending = sorted(call.getTime() - now for call in rig.clock.getDelayedCalls())
    assert 5.0 in pending  # the bad connector's first backoff
    assert good.poll_interval in pending  # the good one polls again on its interval
    rig.clock.advance(5.0)  # the retry runs, fails again, and backs off longer
    assert (await rig.poller.poll(bad.uid)).outcome == "auth_failed"
    pending = sorted(call.getTime() - rig.clock.seconds() for call in rig.clock.getDelayedCalls())
    assert 10.0 in pending
    assert rig.poller.running


@pytest_twisted.ensureDeferred
async def test_refresh_starts_added_and_stops_removed_connectors(rig: Rig) -> None:
    """Re-reading the store starts a worker for a connector added later and stops one that was removed."""
    first, second = rig.connector(uid="00000000000000d1"), rig.connector(uid="00000000000000d2")
    await rig.start(first)
    assert list(rig.poller.workers) == [first.uid]
    await rig.store.insert_imap_connector(second)
    await rig.store.remove_imap_connector("tenant-a", first.uid)
    await rig.poller.refresh()
    assert list(rig.poller.workers) == [second.uid]


@pytest_twisted.ensureDeferred
async def test_the_daemon_polls_its_connectors_through_the_pipeline(reactor: Any, tmp_path: Path,
                                                                   dovecot: Dovecot) -> None:
    """The real daemon starts the poller after the store upgrade; a connector in its store is polled at once and its mail lands in the event log."""
    dovecot.append(alert(7))
    settings = daemon_settings(tmp_path / "state")
    settings = type(settings)(**{**settings.__dict__, "imap": ImapSettings(ca_file=str(dovecot.tls.ca_cert))})
    running = await start_daemon(reactor, settings)
    try:
        await running.daemon.store.insert_imap_connector(ImapConnectorRecord(
            uid="00000000000000e1", tenant_id="tenant-z", host=dovecot.host, port=dovecot.port,
            username=dovecot.username, password=dovecot.password, created_at=1.0))
        await running.daemon.getServiceNamed("imap-poller").refresh()
        for _ in range(WAIT_LIMIT):
            if running.events() and all(dovecot.seen().values()):
                break
            await deferLater(reactor, 0.1)
        [event] = running.events()
        assert_valid_ocsf(event)
        assert event["metadata"]["tenant_uid"] == "tenant-z"
        assert event["metadata"]["product"]["vendor_name"] == "CrowdStrike"
        assert dovecot.seen() == {1: True}
        assert 'aisoc_ingest_imap_messages_total{connector="00000000000000e1"} 1.0' in await running.metrics()
    finally:
        await running.stop()


def cli(state: Path, config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), *args], cwd=PROJECT,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_imap_cli_add_list_test_remove(tmp_path: Path, dovecot: Dovecot) -> None:
    """imap add stores a connector (password from stdin, never printed), list shows it, test logs in, a bad password fails test, remove forgets it."""
    state = tmp_path / "state"
    config = tmp_path / "inboxd.yaml"
    config.write_text(f"state_dir: {state}\nimap:\n  ca_file: {dovecot.tls.ca_cert}\n")
    common = ["--tenant", "acme", "--host", dovecot.host, "--port", str(dovecot.port), "--username", dovecot.username]
    added = cli(state, config, "imap", "add", *common, "--password-file", "-", "--max-messages", "7", "--json",
                stdin=dovecot.password + "\n")
    assert added.returncode == 0, added.stderr
    row = json.loads(added.stdout)
    assert (row["tenant"], row["max_messages"], row["mailbox"], row["use_ssl"]) == ("acme", 7, "INBOX", True)
    assert dovecot.password not in added.stdout + added.stderr
    listed = cli(state, config, "imap", "list", "--tenant", "acme", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)] == [row["id"]]
    assert dovecot.password not in listed.stdout
    tested = cli(state, config, "imap", "test", "--tenant", "acme", row["id"][:6])
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "OK: logged in" in tested.stdout
    wrong = cli(state, config, "imap", "add", *common, "--password-file", "-", "--json", stdin="wrong\n")
    bad_id = json.loads(wrong.stdout)["id"]
    failed = cli(state, config, "imap", "test", "--tenant", "acme", bad_id)
    assert failed.returncode == 1
    assert "FAILED (auth_failed)" in failed.stdout
    assert cli(state, config, "imap", "remove", "--tenant", "acme", row["id"]).returncode == 0
    assert [r["id"] for r in json.loads(cli(state, config, "imap", "list", "--tenant", "acme", "--json").stdout)] \
        == [bad_id]
    assert cli(state, config, "imap", "list", "--tenant", "other", "--json").stdout.strip() == "[]"
