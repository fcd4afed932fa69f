"""
The OCSF check every emitted event passes: our own (built on ocsf-json-schema) always, and the
workspace's reference validator (../shared/ocsf/validate) too when ../shared is present.
"""
from __future__ import annotations

import functools
import runpy
from typing import Any

from aisoc_inboxd.normalizer import validate_event
from tests.support.shared import SHARED

REFERENCE = SHARED / "ocsf" / "validate"


@functools.lru_cache(maxsize=1)
def reference_validator() -> Any | None:
    if not REFERENCE.exists():
        return None
    return runpy.run_path(str(REFERENCE))["Validator"]()


def assert_valid_ocsf(event: dict[str, Any]) -> None:
    errors = validate_event(event)
    assert errors == [], errors
    reference = reference_validator()
    if reference is not None:
        result = reference.validate(event)
        assert result.valid, result.errors
