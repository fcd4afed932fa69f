"""
Where C{../shared} lives (the workspace's read-only corpus and OCSF validator), when it is there.
Tests that need it skip, saying why, on a clone outside the workspace.
"""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
SHARED = PROJECT.parent / "shared"
CORPUS = SHARED / "corpus"
FIXTURES = PROJECT / "tests" / "fixtures"


def require_shared(path: Path) -> Path:
    """
    C{path} under C{../shared}, or skip the test when the workspace's shared folder is absent.
    """
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared only exists inside the workspace)")
    return path
