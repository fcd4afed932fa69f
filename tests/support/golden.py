"""
Outputs pinned to a fixture captured from an earlier tree: the comparison, named case by case, and
the capture that writes such a fixture when a test module is run as a script.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

__all__ = ["assert_as_captured", "print_capture"]


def assert_as_captured(got: dict[str, Any], fixture: Path) -> None:
    """
    C{got} has the fixture's cases and each is as captured; a failure names the case.
    """
    expected = json.loads(fixture.read_text())
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == expected[name], name


def print_capture(cases: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """
    Make the C{cases} on the real reactor and print them as the fixture's JSON.
    """
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    async def capture(reactor: object) -> None:
        json.dump(await cases(), sys.stdout, indent=1, sort_keys=True)
        print()
    react(lambda reactor: ensureDeferred(capture(reactor)))
