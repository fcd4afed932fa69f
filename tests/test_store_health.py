"""
The token store's health as the daemon learns it from its own calls, on a fake clock: what an outage
logs and what the metrics say.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from aisoc_inboxd.metrics import TokenStoreMetrics
from aisoc_inboxd.store import StoreError
from aisoc_inboxd.store.health import StoreHealth

DOWN = StoreError("PostgreSQL at db:5432/inbox as aisoc: connection refused", "connection")


def test_an_outage_of_twenty_minutes_is_a_few_log_lines() -> None:
    """800 failed calls over twenty minutes log the store down once, a reminder every five
    minutes with how many calls failed, and one line when it answers again; errors that are not an
    outage (a bad statement) neither mark it down nor log."""
    clock = Clock()
    metrics = TokenStoreMetrics(CollectorRegistry())
    health = StoreHealth(clock, metrics)
    with capturedLogs() as events:
        health.failed(StoreError("PostgreSQL at db:5432/inbox as aisoc: syntax error"))
        assert health.up
        for _ in range(800):
            health.failed(DOWN)
            clock.advance(1.5)
        health.answered()
        health.answered()
    lines = [formatEvent(e) for e in events]
    assert lines == [
        f"token store unavailable (connection): {DOWN}; uncached tokens get 503 until it answers",
        *[f"token store still unavailable after {s} s ({s * 2 // 3 + 1} calls failed); latest: {DOWN}"
          for s in (300, 600, 900)],
        "token store answers again after 1200.0 s (800 calls failed)"]
    assert health.up and metrics.up._value.get() == 1
    assert metrics.errors_by_reason() == {"connection": 800, "error": 1}
