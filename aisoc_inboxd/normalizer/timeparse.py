"""
Source timestamps → OCSF C{timestamp_t} (integer epoch milliseconds).

Vendors send ISO 8601 (with C{Z}, C{+00:00} or C{+0000} offsets, any fraction digits), RFC 1123
(C{Sun, 06 Nov 1994 08:49:37 GMT}), and epoch seconds, milliseconds, microseconds or nanoseconds, as
JSON numbers or numeric strings. Epoch units are told apart by magnitude, which is unambiguous for
any date between 1973 and 5138. A result outside that window is treated as unparseable, so a caller
never emits a timestamp the OCSF checker would reject. A template may name C{strptime} formats of its
own (C{time_formats}: C{%b %d %Y %H:%M:%S} for CEF), tried before the automatic forms.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Sequence

from aisoc_inboxd.normalizer.ocsf import TIMESTAMP_MAX_MS, TIMESTAMP_MIN_MS

_NUMERIC = re.compile(r"^[+-]?\d+(\.\d+)?$")
_ISO_START = re.compile(r"^\d{4}-?\d{2}-?\d{2}")
# Python reads at most 6 fraction digits; nanosecond precision is cut to microseconds first.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")

# upper bounds (exclusive) of epoch values per unit, and the divisor that turns them into ms
SECONDS_BELOW = 100_000_000_000
_MILLIS_BELOW = 100_000_000_000_000
_MICROS_BELOW = 100_000_000_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: an C{int} in C{range(*EPOCH_MS)} is read as epoch milliseconds and is plausible: L{to_epoch_ms}
#: returns it as it is (the generated template functions take it without the call)
EPOCH_MS = (max(SECONDS_BELOW, TIMESTAMP_MIN_MS), min(_MILLIS_BELOW, TIMESTAMP_MAX_MS))


def to_epoch_ms(value: Any, formats: Sequence[str] = ()) -> int | None:
    """
    C{value} as integer epoch milliseconds, or C{None} when it is not a plausible timestamp.

    Strings are tried against C{formats} (C{strptime}) first. Naive values (no offset) are UTC.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _plausible(_epoch_number_to_ms(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    for time_format in formats:
        try:
            moment = datetime.strptime(text, time_format)
        except ValueError:
            continue
        return plausible_ms(_as_utc(moment))
    if text.isdigit() and text.isascii():  # epoch digits, the common case: what _NUMERIC reads, without it
        return _plausible(_epoch_number_to_ms(int(text)))
    if text[4:5] != "-" and _NUMERIC.match(text):  # (a "-" after 4 characters: an ISO date, never a number)
        number: int | float = float(text) if "." in text else int(text)
        return _plausible(_epoch_number_to_ms(number))
    moment = _parse_iso(text) if _ISO_START.match(text) else _parse_rfc1123(text)
    if moment is None:
        return None
    return plausible_ms(_as_utc(moment))


def check_format(time_format: str) -> None:
    """
    C{ValueError} unless C{time_format} is a C{strptime} format that reads back what it writes.
    """
    if not isinstance(time_format, str) or "%" not in time_format:
        raise ValueError(f"{time_format!r} is not a strptime format (e.g. '%b %d %Y %H:%M:%S')")
    sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    try:
        datetime.strptime(sample.strftime(time_format), time_format)
    except ValueError as exc:
        raise ValueError(f"{time_format!r} is not a strptime format: {exc}") from exc


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _epoch_number_to_ms(number: int | float) -> int | None:
    if isinstance(number, float) and not math.isfinite(number):
        return None
    magnitude = abs(number)
    if magnitude < SECONDS_BELOW:
        scaled = number * 1000
    elif magnitude < _MILLIS_BELOW:
        scaled = number
    elif magnitude < _MICROS_BELOW:
        scaled = number / 1000 if isinstance(number, float) else number // 1000
    else:
        scaled = number / 1_000_000 if isinstance(number, float) else number // 1_000_000
    # floats: round, so 1732658400.123 s is ...123 ms and not ...122.99999 truncated
    return round(scaled) if isinstance(scaled, float) else scaled


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", text) if "." in text else text)
    except ValueError:
        return None


def _parse_rfc1123(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _datetime_to_ms(moment: datetime) -> int | None:
    try:
        delta = moment - EPOCH
    except OverflowError:
        return None
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def plausible_ms(moment: datetime) -> int | None:
    """
    An aware C{moment} as epoch milliseconds, or C{None} when it is not a plausible timestamp.
    """
    return _plausible(_datetime_to_ms(moment))


def _plausible(ms: int | None) -> int | None:
    return ms if ms is not None and TIMESTAMP_MIN_MS <= ms < TIMESTAMP_MAX_MS else None
