"""
Shared pytest configuration: the real reactor for the few real-socket tests (pytest-twisted
provides no fixture for it) and the shared fixture modules under C{tests/support/}.
"""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

pytest_plugins = ["tests.support.postgres", "tests.support.kafka"]


@pytest.fixture(scope="session")
def reactor() -> Any:
    """
    The global reactor pytest-twisted runs its greenlet on.
    """
    from twisted.internet import reactor as installed

    return installed


# Hypothesis' per-example deadline is a timed assertion: on a loaded 2-core machine a trivial example
# has been seen past its 200 ms, failing a test whose property held. Speed is the benchmarks' job.
settings.register_profile("inboxd", deadline=None)
settings.load_profile("inboxd")
