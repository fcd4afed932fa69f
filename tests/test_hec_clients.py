"""
Real HEC clients nobody here wrote, unmodified, against the real daemon: the PyPI logging handler
C{splunk_handler}, Splunk's own JavaScript library C{splunk-logging}, syslog-ng's C{http()}
destination posting CEF lines as envelope events (Debian 12's syslog-ng 3.38 has no
C{splunk-hec-event()} destination: it arrived in syslog-ng 4, so C{http()} with a C{format-json}
body is how 3.x feeds HEC), and the request sequence Splunk documents for Amazon Kinesis Data
Firehose. Every event sent arrives once, as valid OCSF.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue

from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon, wait_for
from tests.support.ocsf import assert_valid_ocsf
from tests.support.syslog_ng import hec_destination, start_syslog_ng

PROJECT = Path(__file__).resolve().parents[1]
#: where scripts/test-services installs npm's splunk-logging
NODE_MODULES = PROJECT / ".venv" / "hec-clients" / "node_modules"
NODE_CLIENT = PROJECT / "tests" / "support" / "splunk_logging_client.js"
CHANNEL = "3C4B8E2A-6F1D-4A7B-9C2E-0D5F8A1B2C3D"


@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state"))
    yield running
    await running.stop()


async def hec_token(inboxd: RunningDaemon, acks: bool = False) -> str:
    return (await inboxd.admin.mint("tenant-a", "splunk-hec", hec_acks=acks)).token


def port_of(inboxd: RunningDaemon) -> int:
    return int(inboxd.base_url.rsplit(":", 1)[1])


def assert_each_once(events: list[dict[str, Any]], messages: list[str]) -> None:
    for event in events:
        assert_valid_ocsf(event)
    assert sorted(e["message"] for e in events) == sorted(messages)


# -- PyPI: splunk_handler -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_splunk_handler_logging_batch_arrives_once_as_ocsf(inboxd: RunningDaemon) -> None:
    """Python's logging through splunk_handler's SplunkHandler (one concatenated batch on /services/collector/event) lands every record once, time and host from its envelopes."""
    from splunk_handler import SplunkHandler

    token = await hec_token(inboxd)
    handler = SplunkHandler(host="127.0.0.1", port=port_of(inboxd), token=token, index="main", protocol="http",
                            verify=False, flush_interval=3600, sourcetype="python", retry_count=0,
                            hostname="py-client")
    logger = logging.getLogger("test_hec_clients.splunk_handler")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        messages = [f"python log record {i}" for i in range(20)]
        for message in messages:
            logger.warning(message)
        await deferToThread(handler.force_flush)  # requests blocks: off the reactor thread
    finally:
        logger.removeHandler(handler)
        await deferToThread(handler.close)
    events = inboxd.events()
    assert_each_once(events, messages)
    assert {e["metadata"]["reporter"]["hostname"] for e in events} == {"py-client"}
    assert {e["metadata"]["log_name"] for e in events} == {"python"}
    assert all(abs(e["time"] - e["metadata"]["logged_time"]) < 600_000 for e in events)


# -- npm: splunk-logging (Splunk's JavaScript library) ---------------------------------------------

async def run_node_client(url: str, token: str, count: int) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "splunk-logging").is_dir():
        pytest.fail("node and npm's splunk-logging are needed: scripts/test-services installs them")
    out, err, code = await getProcessOutputAndValue(
        node, [str(NODE_CLIENT), url, token, str(count)],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    lines = out.decode().strip().splitlines()
    assert lines, err.decode()
    return code, json.loads(lines[0])


@pytest_twisted.ensureDeferred
async def test_splunk_logging_javascript_batch_arrives_once_as_ocsf(inboxd: RunningDaemon) -> None:
    """Splunk's splunk-logging library posts one batch to its default /services/collector/event/1.0, reads Success, and every event arrives once."""
    token = await hec_token(inboxd)
    code, reply = await run_node_client(inboxd.base_url, token, 12)
    assert (code, reply) == (0, {"status": 200, "body": {"text": "Success", "code": 0}})
    events = inboxd.events()
    assert_each_once(events, [f"splunk-logging event {i}" for i in range(12)])
    assert {(e["metadata"]["reporter"]["hostname"], e["metadata"]["log_name"], e["severity_id"])
            for e in events} == {("node-client", "nodejs", 3)}


@pytest_twisted.ensureDeferred
async def test_splunk_logging_reads_our_invalid_token_reply_as_splunks(inboxd: RunningDaemon) -> None:
    """splunk-logging turns our 403 reply into its own error with Splunk's text and code, as against Splunk."""
    code, reply = await run_node_client(inboxd.base_url, "aisoc_inbox_" + "b" * 52, 1)
    assert (code, reply) == (1, {"error": "Invalid token", "code": 4})
    assert inboxd.events() == []


# -- syslog-ng http(): CEF lines as HEC envelope events -------------------------------------------

def cef_lines(marker: str, count: int) -> dict[str, tuple[str, int]]:
    """
    C{count} CEF lines of five kinds, keyed by the C{cs1} value that tells them apart, with the OCSF
    class each must become; one kind sits behind a syslog header, two carry escaped backslashes.
    """
    kinds = [
        ("CEF:0|Acme|FW|2.1|deny|Connection denied|5|src=10.0.{i}.1 dst=10.1.0.{i} dpt=443 act=deny "
         "cs1={tag} cs1Label=Rule Name", 4001),
        ("CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.{i} suser=alice{i} cs1={tag}", 3002),
        ("<134>May  8 09:00:00 ids01 CEF:0|Snort|IDS|3|1:2000|ET TROJAN beacon detected|8|src=10.0.0.5 "
         "dst=10.9.0.{i} cs1={tag}", 2004),
        ("CEF:0|Acme|Proxy|1|get|Web request|1|src=10.0.0.{i} requestMethod=GET "
         r"request=https://example.com/a\\b?q\=1 cs1={tag}", 4002),
        ("CEF:0|Trend Micro|Deep Security Agent|20.0.1-876|4000000|Eicar_test_file|6|cn1=118 cn1Label=Host ID "
         r"dvchost=ws-{i} filePath=C:\\Users\\jdoe\\Downloads\\eicar.com act=Quarantine cs1={tag}", 2004),
    ]
    lines = {}
    for i in range(count):
        template, class_uid = kinds[i % len(kinds)]
        tag = f"{marker}-{i}"
        lines[tag] = (template.format(i=i % 250, tag=tag), class_uid)
    return lines


@pytest_twisted.ensureDeferred
async def test_syslog_ng_http_destination_posts_cef_lines_that_arrive_once_as_their_class(
        inboxd: RunningDaemon, reactor: Any, tmp_path: Path) -> None:
    """syslog-ng's http() destination, set up the way it feeds Splunk (Authorization: Splunk, format-json envelopes, batches), posts CEF lines to /services/collector/event: each arrives once as the OCSF class of its kind."""
    token = await hec_token(inboxd)
    relay = await deferToThread(start_syslog_ng, tmp_path / "syslog-ng",
                                hec_destination(inboxd.base_url + "/services/collector/event", token))
    try:
        marker = uuid.uuid4().hex
        lines = cef_lines(marker, 100)
        with relay.source.open("a") as source:
            source.write("\n".join(line for line, _ in lines.values()) + "\n")
        await wait_for(lambda: len(inboxd.events()) >= len(lines), reactor, timeout=60)
        await deferLater(reactor, 1.0)  # anything sent twice would have arrived by now
    finally:
        log = await deferToThread(relay.stop)
    events = inboxd.events()
    for event in events:
        assert_valid_ocsf(event)
    tags = [e["unmapped"]["cef"]["cs1"] for e in events]
    assert sorted(tags) == sorted(lines), log
    for event in events:
        assert event["class_uid"] == lines[event["unmapped"]["cef"]["cs1"]][1]
        assert (event["metadata"]["log_name"], event["metadata"]["log_source"]) == ("cef-syslog", "hec")
    proxy = next(e for e in events if e["class_uid"] == 4002)
    assert proxy["http_request"]["url"]["url_string"] == "https://example.com/a\\b?q=1"
    detections = [e for e in events if e["metadata"]["product"]["name"] == "Deep Security Agent"]
    assert {e["evidences"][0]["file"]["path"] for e in detections} == {"C:\\Users\\jdoe\\Downloads\\eicar.com"}


# -- Amazon Kinesis Data Firehose, as Splunk documents it ------------------------------------------

async def firehose_post(inboxd: RunningDaemon, path: str, token: str, body: bytes,
                        encoding: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": [f"Splunk {token}"], "X-Splunk-Request-Channel": [CHANNEL],
               "Content-Type": ["application/json"], "User-Agent": ["Amazon Kinesis Data Firehose Agent/1.0"]}
    if encoding:
        headers["Content-Encoding"] = [encoding]
    response = await inboxd.http.request("POST", inboxd.base_url + path, data=body, headers=headers)
    return response.code, json.loads(await response.content())


@pytest.mark.parametrize("path, gzipped", [("/services/collector/event", False), ("/services/collector/event", True),
                                           ("/services/collector/raw", False)])
@pytest_twisted.ensureDeferred
async def test_firehose_sequence_probe_channel_and_ack_polling(inboxd: RunningDaemon, path: str,
                                                               gzipped: bool) -> None:
    """Firehose's sequence: an empty probe answered 400 code 5, batches on a channel answered with ackIds, ack polling until true; each record arrives once."""
    token = await hec_token(inboxd, acks=True)
    assert await firehose_post(inboxd, path, token, b"") == (400, {"text": "No data", "code": 5})
    sent: list[str] = []
    ack_ids: list[int] = []
    for batch in range(3):
        records = [f"firehose batch {batch} record {i}" for i in range(4)]
        sent += records
        if path.endswith("/raw"):
            body = "\n".join(records).encode()
        else:
            body = "".join(json.dumps({"event": r, "time": 1_700_000_000 + batch, "sourcetype": "aws:firehose"})
                           for r in records).encode()
        status, reply = await firehose_post(inboxd, path, token, gzip.compress(body) if gzipped else body,
                                            "gzip" if gzipped else None)
        assert (status, reply["text"], reply["code"]) == (200, "Success", 0)
        ack_ids.append(reply["ackId"])
    assert ack_ids == [0, 1, 2]
    query = json.dumps({"acks": ack_ids}).encode()
    assert await firehose_post(inboxd, "/services/collector/ack", token, query) == (
        200, {"acks": {"0": True, "1": True, "2": True}})
    assert await firehose_post(inboxd, "/services/collector/ack", token, query) == (
        200, {"acks": {"0": False, "1": False, "2": False}})
    assert_each_once(inboxd.events(), sent)
