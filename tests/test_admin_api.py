"""
The admin API in memory (its real resource tree over an in-memory store): what it answers while the
token store does not.
"""
from __future__ import annotations

import pytest
import pytest_twisted

from aisoc_inboxd.tokens import fingerprint
from aisoc_inboxd.testing import FakeStore, MemoryInbox

STORE_DOWN = {"error": "token store unavailable"}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/admin/tenants/acme/tokens", None),
    ("POST", "/v1/admin/tenants/acme/tokens", {"template": "generic-json"}),
    ("GET", "/v1/admin/tenants/acme/tokens/stats", None),
    ("POST", "/v1/admin/tenants/acme/tokens/{fp}/rotate", {}),
    ("POST", "/v1/admin/tenants/acme/tokens/{fp}/revoke", None),
    ("POST", "/v1/admin/invalidate", {"fingerprint": "{fp}"}),
])
@pytest_twisted.ensureDeferred
async def test_every_admin_call_is_503_with_retry_after_while_the_store_is_down(
        method: str, path: str, body: dict[str, str] | None) -> None:
    """Mint, list, stats, rotate, revoke and invalidate answer 503 {"error": "token store unavailable"}
    with Retry-After when the store does not answer (not 500), counted as store_unavailable."""
    inbox = MemoryInbox(FakeStore())
    fp = fingerprint(await inbox.mint())
    inbox.store.down = True
    if body is not None:
        body = {k: v.format(fp=fp) for k, v in body.items()}
    status, reply, response = await inbox.call_admin(method, path.format(fp=fp), body)
    assert (status, reply) == (503, STORE_DOWN)
    assert response.headers.getRawHeaders("Retry-After") == ["5"]
    assert inbox.requests("admin", "none", "store_unavailable") == 1
    inbox.store.down = False
    assert (await inbox.call_admin(method, path.format(fp=fp), body))[0] in (200, 201)
