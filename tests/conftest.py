"""
Shared pytest configuration: the real reactor for the few real-socket tests (pytest-twisted
provides no fixture for it) and the shared fixture modules under C{tests/support/}.
"""
from __future__ import annotations

from typing import Any

import pytest

pytest_plugins = ["tests.support.postgres", "tests.support.kafka"]


@pytest.fixture(scope="session")
def reactor() -> Any:
    """
    The global reactor pytest-twisted runs its greenlet on.
    """
    from twisted.internet import reactor as installed

    return installed
