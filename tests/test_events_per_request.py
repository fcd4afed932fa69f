"""
C{http.max_events_per_request}: a body that carries more events than that is refused with 413 on
every route that takes batches, before any record is built or normalized, and nothing of it is
published (a HEC batch too: no prefix is accepted). In memory (the real resource tree over fakes,
through StubTreq; see L{aisoc_inboxd.testing}).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import pytest
import pytest_twisted
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.fastjson import CHARS_PER_COUNTED_ITEM, array_holds_more_than, loads
from aisoc_inboxd.config import CefSettings, ConfigError, HttpSettings, load_settings
from aisoc_inboxd.formats.json_body import TooManyEvents, decode_json_records
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from tests.test_batch_fast_paths import values
from tests.test_webhook_e2e import outcome_count

LIMIT = 5
CEF_LINE = b"CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice"
MESSAGE = (f"too many events: the limit is {LIMIT} per request (http.max_events_per_request); "
           f"send smaller batches")


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox(FakeStore(), http_settings=HttpSettings(max_events_per_request=LIMIT),
                       cef=CefSettings(tenant="acme"))


def array(n: int) -> bytes:
    return json.dumps([{"n": i} for i in range(n)]).encode()


def ndjson(n: int) -> bytes:
    return b"".join(json.dumps({"n": i}).encode() + b"\n\n" for i in range(n))


def form(n: int) -> bytes:
    return b"payload=" + quote(array(n).decode()).encode()


WEBHOOK_BODIES = [(array, {}), (ndjson, {}), (form, {"Content-Type": "application/x-www-form-urlencoded"})]


@pytest.mark.parametrize(("body", "headers"), WEBHOOK_BODIES, ids=["array", "ndjson", "form"])
@pytest_twisted.ensureDeferred
async def test_webhook_over_the_limit_is_413_naming_it(inbox: MemoryInbox, body: Callable[[int], bytes],
                                                       headers: dict[str, str]) -> None:
    """LIMIT events are accepted; LIMIT + 1 are 413 naming the limit and its key, nothing published."""
    token = await inbox.mint()
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", body(LIMIT), headers)
    assert (status, reply["accepted"]) == (200, LIMIT)
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", body(LIMIT + 1), headers)
    assert (status, reply) == (413, {"error": MESSAGE})
    assert len(inbox.events()) == LIMIT
    assert outcome_count(inbox.metrics_text(), "webhook", "generic-json", "too_many_events") == 1


def hec_envelopes(n: int) -> bytes:
    return b"".join(json.dumps({"event": f"e{i}"}).encode() for i in range(n))


def hec_array(n: int) -> bytes:
    return json.dumps([{"event": f"e{i}"} for i in range(n)]).encode()


def hec_lines(n: int) -> bytes:
    return b"\n".join([CEF_LINE, *(f"line {i}".encode() for i in range(n - 1))]) + b"\n"


@pytest.mark.parametrize(("path", "body"), [
    ("/services/collector/event", hec_envelopes), ("/services/collector/event", hec_array),
    ("/services/collector/raw", hec_lines)], ids=["envelopes", "array", "raw"])
@pytest_twisted.ensureDeferred
async def test_hec_over_the_limit_is_413_and_publishes_no_prefix(inbox: MemoryInbox, path: str,
                                                                 body: Callable[[int], bytes]) -> None:
    """On HEC too: LIMIT events are Success, LIMIT + 1 are refused whole (413, the daemon's body as
    for HEC's other 413), not the envelopes before the limit accepted as for a bad envelope."""
    token = await inbox.mint(template="splunk-hec")
    headers = {"Authorization": f"Splunk {token}"}
    status, content, _ = await inbox.send(path, body(LIMIT), headers)
    assert (status, json.loads(content)) == (200, {"text": "Success", "code": 0})
    status, content, _ = await inbox.send(path, body(LIMIT + 1), headers)
    assert (status, json.loads(content)) == (413, {"error": MESSAGE})
    assert len(inbox.events()) == LIMIT
    assert outcome_count(inbox.metrics_text(), "hec", "splunk-hec", "too_many_events") == 1


@pytest_twisted.ensureDeferred
async def test_cef_route_counts_every_line_malformed_ones_too(inbox: MemoryInbox) -> None:
    """The CEF route's limit counts lines as sent (malformed ones included): LIMIT + 1 lines are 413."""
    lines = [CEF_LINE] * (LIMIT - 1) + [b"not cef"]
    status, reply, _ = await inbox.post("/v1/inbox/cef", b"\n".join(lines))
    assert (status, reply) == (200, {"accepted": LIMIT - 1, "malformed": 1, "template": "cef-syslog"})
    status, reply, _ = await inbox.post("/v1/inbox/cef", b"\n".join(lines + [CEF_LINE]))
    assert (status, reply) == (413, {"error": MESSAGE})
    assert len(inbox.events()) == LIMIT - 1
    assert outcome_count(inbox.metrics_text(), "cef", "cef-syslog", "too_many_events") == 1


def test_a_huge_array_is_refused_before_its_records_are_built() -> None:
    """The 10 MiB C{[{},{},…]} body of ~3.5 million events is refused by counting the decoded array,
    before a record is built for any item (each costs a serialisation, then a normalisation)."""
    body = b"[" + b",".join([b"{}"] * (10 * 1024 * 1024 // 3)) + b"]"
    with pytest.raises(TooManyEvents) as refused:
        decode_json_records(body, HttpSettings().max_events_per_request)
    assert refused.value.limit == 10_000


def test_the_default_is_ten_thousand_and_zero_is_refused(tmp_path: Path) -> None:
    """The default fits any vendor's batching (Splunk forwarders and Fluent Bit send far fewer per
    request); the key must be positive."""
    assert HttpSettings().max_events_per_request == 10_000
    config = tmp_path / "inboxd.yaml"
    config.write_text("http:\n  max_events_per_request: 0\n")
    with pytest.raises(ConfigError, match="http.max_events_per_request"):
        load_settings(config, {})


# -- refused on the count: one event past the limit is read, the rest is not ----------------------

def email_array(n: int) -> bytes:
    return json.dumps([{"from": "ops@x.example", "subject": f"alert {i}", "text": "t"} for i in range(n)]).encode()


@pytest_twisted.ensureDeferred
async def test_email_route_over_the_limit_is_413(inbox: MemoryInbox) -> None:
    """The e-mail route's JSON array of e-mails is held to the limit too (it once took any number:
    a 10 MiB C{[{},{},…]} was millions of e-mail records)."""
    token = await inbox.mint(template="email-forwarded")
    status, reply, _ = await inbox.post(f"/v1/inbox/email/{token}", email_array(LIMIT))
    assert (status, reply["accepted"]) == (200, LIMIT)
    status, reply, _ = await inbox.post(f"/v1/inbox/email/{token}", email_array(LIMIT + 1))
    assert (status, reply) == (413, {"error": MESSAGE})
    assert len(inbox.events()) == LIMIT
    assert outcome_count(inbox.metrics_text(), "email", "email-forwarded", "too_many_events") == 1


def malformed_after(body: bytes) -> bytes:
    """C{body} (an array) with a malformed item after its last: invalid JSON as a whole, and longer
    than L{array_holds_more_than} reads for the limit (a body within that is as cheap to read whole)."""
    assert body.endswith(b"]")
    return body[:-1] + b", {not json" + b" " * CHARS_PER_COUNTED_ITEM * (LIMIT + 1) + b"]"


def short_emails(n: int) -> bytes:
    return json.dumps([{"text": f"e{i}"} for i in range(n)]).encode()


@pytest.mark.parametrize(("path", "body", "template"), [
    ("/v1/inbox/{token}", array, "generic-json"),
    ("/v1/inbox/email/{token}", short_emails, "email-forwarded"),
    ("/services/collector/event", hec_array, "splunk-hec"),
], ids=["webhook", "email", "hec"])
@pytest_twisted.ensureDeferred
async def test_an_array_past_the_limit_is_refused_without_reading_the_rest(
        inbox: MemoryInbox, path: str, body: Callable[[int], bytes], template: str) -> None:
    """An array whose first LIMIT + 1 items are JSON is refused for its count whatever follows, as
    NDJSON always was: the items past the limit are not read (a 10 MiB C{[{},{},…]} is refused at
    the cost of ten thousand items, not of building millions); within the limit the same malformed
    item is a 400 naming it."""
    token = await inbox.mint(template=template)
    headers = {"Authorization": f"Splunk {token}"}
    status, content, _ = await inbox.send(path.format(token=token), malformed_after(body(LIMIT + 1)), headers)
    assert (status, json.loads(content)) == (413, {"error": MESSAGE})
    status, content, _ = await inbox.send(path.format(token=token), malformed_after(body(LIMIT - 1)), headers)
    assert status == 400 and "413" not in content.decode()
    assert inbox.events() == []


@settings(max_examples=800, deadline=None)
@given(st.lists(values, max_size=8), st.integers(0, 6), st.sampled_from(["", " ", "\n", "garbage", ",{"]),
       st.sampled_from([", ", ",", " ,\n "]))
@example([{'ee"': None, 'ee""': None}, {"ee": None, "": 1.0000000000000002e+16}, 1.0000000000000002e+16], 2, "",
         ", ")  # the last number cut short by the window's end
def test_counting_an_array_agrees_with_reading_it_whole(items: list[object], limit: int, tail: str,
                                                         comma: str) -> None:
    """L{array_holds_more_than} (the first C{limit + 1} items read) says what reading the whole
    array and counting its items says, whatever follows the array, when those items are within the
    characters it reads; else it leaves the array to be read whole."""
    texts = [json.dumps(item, ensure_ascii=False) for item in items]
    window = CHARS_PER_COUNTED_ITEM * (limit + 1)
    text = "[" + comma.join(texts) + "]" + tail + " " * window
    following = comma if len(items) > limit + 1 else "]"  # what must show the last item read ended
    within = len("[" + comma.join(texts[:limit + 1])) + len(following) - len(following.lstrip()) + 1 <= window
    assert array_holds_more_than(text, 0, limit) == (len(items) > limit and within)


@pytest.mark.parametrize("item", ["NaN", "1e999", "9" * 25, '"\\ud800"', "[" * 64 + "]" * 64, '{"a":}', "01"])
def test_counting_holds_the_items_read_to_the_json_rules(item: str) -> None:
    """An item the rules refuse (too deep with the array's level, a lone surrogate) or that is not
    JSON, among those read, leaves the body to be read whole (which names the error); one the rules
    take (NaN, a long integer) counts."""
    text = "[" + ",".join(["{}", item, "{}", "{}"]) + "]" + " " * CHARS_PER_COUNTED_ITEM * 3
    try:
        loads(text)
    except json.JSONDecodeError:
        assert not array_holds_more_than(text, 0, 2)
    else:
        assert array_holds_more_than(text, 0, 2)
