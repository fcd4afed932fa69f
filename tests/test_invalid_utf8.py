"""
Bytes that are not UTF-8 are refused on every route that reads text as JSON or HEC lines, naming
where they are, never replaced with U+FFFD: the JSON webhook, its form-encoded variant (the bytes
as sent or percent-encoded in C{payload=}), the HEC event and raw endpoints. In memory (the real
resource tree over fakes, through StubTreq; see L{aisoc_inboxd.testing}).
"""
from __future__ import annotations

import json

import pytest
import pytest_twisted

from aisoc_inboxd.testing import FakeStore, MemoryInbox
from tests.test_webhook_e2e import outcome_count

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox(FakeStore())


@pytest.mark.parametrize(("body", "headers", "error"), [
    (b'{"a": "caf\xe9"}', {}, "bad body: body is not valid UTF-8 (byte 10)"),
    (b'payload={"a":"caf\xe9"}', FORM, "bad body: body is not valid UTF-8 (byte 17)"),
    (b"payload=%7B%22a%22%3A%22caf%E9%22%7D", FORM,
     "bad body: the payload= field (percent-decoded) is not valid UTF-8 (byte 9)"),
], ids=["json", "form-as-sent", "form-percent-encoded"])
@pytest_twisted.ensureDeferred
async def test_webhook_bodies_that_are_not_utf8_are_400_naming_the_byte(
        inbox: MemoryInbox, body: bytes, headers: dict[str, str], error: str) -> None:
    """A Latin-1 'é' in a JSON or a form body, sent as it is or percent-encoded, is 400 naming the
    offset of the bad byte, and nothing is published (it was published with U+FFFD in its place)."""
    token = await inbox.mint()
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", body, headers)
    assert (status, reply) == (400, {"error": error})
    assert inbox.events() == []
    assert outcome_count(inbox.metrics_text(), "webhook", "generic-json", "bad_request") == 1


@pytest_twisted.ensureDeferred
async def test_form_body_in_utf8_is_still_read(inbox: MemoryInbox) -> None:
    """GitHub's form deliveries keep working: percent-encoded UTF-8 ('é' as %C3%A9) and '+' for space."""
    token = await inbox.mint()
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", b"payload=%7B%22a%22%3A%22caf%C3%A9+ok%22%7D", FORM)
    assert (status, reply["accepted"]) == (200, 1)
    assert "café ok" in inbox.events()[0]["raw_data"]


async def hec(inbox: MemoryInbox, path: str, body: bytes) -> tuple[int, object]:
    token = await inbox.mint(template="splunk-hec")
    status, content, _ = await inbox.send(path, body, {"Authorization": f"Splunk {token}"})
    return status, json.loads(content)


@pytest_twisted.ensureDeferred
async def test_hec_raw_line_that_is_not_utf8_refuses_the_request_naming_its_event(inbox: MemoryInbox) -> None:
    """A raw body whose third event's line holds a Latin-1 byte is Splunk's code 6 numbering that
    event (blank lines are no events), and no line of it is published."""
    status, reply = await hec(inbox, "/services/collector/raw", b"first\n\nsecond\r\nthird caf\xe9\nfourth\n")
    assert (status, reply) == (400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 2})
    assert inbox.events() == []


@pytest.mark.parametrize(("body", "number"), [
    (b'{"event": "a"}{"event": "caf\xe9"}{"event": "c"}', 1),
    (b'{"event": "a"}\n\xff\n{"event": "c"}', 1),
    (b'[{"event": "a"}, {"event": "caf\xe9"}]', 0),
], ids=["in-an-envelope", "between-envelopes", "in-an-array"])
@pytest_twisted.ensureDeferred
async def test_hec_envelope_that_is_not_utf8_is_invalid_data_format(inbox: MemoryInbox, body: bytes,
                                                                     number: int) -> None:
    """On the event endpoint the envelope holding the first bad byte is code 6 by its number, and the
    envelopes before it are published, as for any bad envelope."""
    status, reply = await hec(inbox, "/services/collector/event", body)
    assert (status, reply) == (400, {"text": "Invalid data format", "code": 6, "invalid-event-number": number})
    assert [e["message"] for e in inbox.events()] == ["a"] * number
