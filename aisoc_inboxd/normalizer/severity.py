"""
The severity words every template understands, so that no template has to copy them.

Vendors and loggers name severities with a small common vocabulary (C{"severity": "low"},
C{"log_level": "WARN"}, syslog's C{err}/C{crit}): each template that reads a severity
(C{severity_field}) maps these words, case-insensitively, to OCSF C{severity_id}. Its own
C{severity_map} is consulted first and wins for a word it lists; a C{"*"} key there ("every other
value", e.g. C{"*": 99}) makes the template's map the whole table, for formats whose standard says
what other words mean (CEF: anything but its five words is 99 Other).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

#: word (casefolded) -> OCSF severity_id: 0 Unknown, 1 Informational, 2 Low, 3 Medium, 4 High,
#: 5 Critical, 6 Fatal. Warnings rank with Medium and errors with High, as log levels usually do;
#: syslog's keywords (RFC 5424 §6.2.1) are included because log_level fields carry them.
COMMON_WORDS: Mapping[str, int] = MappingProxyType({
    "unknown": 0,
    "debug": 1, "trace": 1, "info": 1, "informational": 1, "information": 1, "notice": 1,
    "low": 2,
    "medium": 3, "moderate": 3, "warning": 3, "warn": 3,
    "high": 4, "error": 4, "err": 4,
    "critical": 5, "crit": 5, "alert": 5,
    "fatal": 6, "emergency": 6, "emerg": 6,
})


def fold_severity(value: Any) -> str:
    """
    The lookup key of a severity (or activity, or class) source value: text, case-insensitive
    (C{High} = C{high}).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).casefold()
