"""
Small value helpers the e-mail modules share: first of a list, de-duplication, and leaving absent
values out of a record.
"""
from __future__ import annotations

from typing import Any, Iterable


def first(items: list[str]) -> str | None:
    return items[0] if items else None


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """
    Absent values left out: no C{None}, no empty strings, lists or objects.
    """
    return {key: value for key, value in record.items() if value not in (None, "", [], {})}
