"""
http.trusted_proxies, in memory: behind a load balancer the per-client budget of unknown-token
lookups and the request log line go by the client the proxy forwarded (X-Forwarded-For), and only a
trusted proxy's header is believed. (StubTreq's requests come from 127.0.0.1.)
"""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.logger import capturedLogs

from aisoc_inboxd.config import ConfigError, HttpSettings, load_settings
from aisoc_inboxd.tokens import mint_token
from aisoc_inboxd.testing import FakeStore, MemoryInbox

BODY = b'{"title": "Impossible travel"}'


async def unknown_tokens(inbox: MemoryInbox, client: str, count: int) -> list[int]:
    """
    The statuses of C{count} requests with random tokens, forwarded for C{client}.
    """
    return [(await inbox.post(f"/v1/inbox/{mint_token()}", BODY, {"X-Forwarded-For": f"6.6.6.6, {client}"}))[0]
            for _ in range(count)]


@pytest_twisted.ensureDeferred
async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_lookup_budget() -> None:
    """With the load balancer's network in http.trusted_proxies, a client flooding unknown tokens spends
    only its own lookups (429 past them) while another client behind the same balancer still gets its
    401s; the log line names the forwarded client, not the balancer or an address the client wrote."""
    inbox = MemoryInbox(FakeStore(), http_settings=HttpSettings(trusted_proxies=["127.0.0.0/8"]),
                        unknown_lookups_per_sec=2)
    assert await unknown_tokens(inbox, "203.0.113.5", 3) == [401, 401, 429]
    with capturedLogs() as events:
        assert await unknown_tokens(inbox, "198.51.100.9", 2) == [401, 401]
    assert [e["client"] for e in events if "client" in e] == ["198.51.100.9", "198.51.100.9"]


@pytest_twisted.ensureDeferred
async def test_without_trusted_proxies_the_forwarded_header_is_ignored() -> None:
    """By default nobody's X-Forwarded-For is believed: every request counts against its peer's budget,
    whatever address it claims to come from."""
    inbox = MemoryInbox(FakeStore(), unknown_lookups_per_sec=2)
    assert await unknown_tokens(inbox, "203.0.113.5", 2) == [401, 401]
    with capturedLogs() as events:
        assert await unknown_tokens(inbox, "198.51.100.9", 1) == [429]
    assert [e["client"] for e in events if "client" in e] == ["127.0.0.1"]


def test_trusted_proxies_are_checked_at_start(tmp_path: pytest.TempPathFactory) -> None:
    """Each entry must be an address or a CIDR network; the error names the key."""
    config = tmp_path / "inboxd.yaml"  # type: ignore[operator]
    config.write_text("http:\n  trusted_proxies: [10.0.0.0/8, 'lb.example.com']\n")
    with pytest.raises(ConfigError, match=r"http\.trusted_proxies\[1\]: 'lb\.example\.com' is not an address"):
        load_settings(config, environ={})
    config.write_text("http:\n  trusted_proxies: [10.0.0.0/8, '2001:db8::1']\n")
    assert load_settings(config, environ={}).http.trusted_proxies == ["10.0.0.0/8", "2001:db8::1"]
