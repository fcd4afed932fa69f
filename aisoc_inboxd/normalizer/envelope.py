"""
What a decoded body record becomes before any mapping: the vendor's envelope.

Some vendors wrap their events: AWS SNS puts the payload in C{Message} as a JSON I{string}, S3 and
CloudTrail deliveries carry a C{Records} list, and several vendors send control messages that must
be answered C{200} but are not events (GitHub's C{ping}, Logpush's destination test, SNS
subscription confirmations). The template declares these (C{decode_json}, C{records},
C{acknowledge_when}) and names where a delivery's natural idempotency key lives
(C{idempotency_key}); L{Envelope} is their compiled form and the functions here apply it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, NamedTuple

from aisoc_inboxd import fastjson
from aisoc_inboxd.normalizer.paths import MISSING, get_source
from aisoc_inboxd.normalizer.transforms import Reader

#: one acknowledge condition: every (source, allowed values) pair must hold
Condition = tuple[tuple[tuple[str, ...], frozenset[str]], ...]


class Unwrapped(NamedTuple):
    """
    One record to normalize; C{whole} when it is the body record itself (so its raw text stands).
    A tuple: one is made per event.
    """

    data: dict[str, Any]
    whole: bool


@dataclass(frozen=True)
class Envelope:
    decode_json: tuple[tuple[str, ...], ...] = ()
    records: tuple[str, ...] | None = None
    acknowledge_when: tuple[Condition, ...] = ()
    idempotency_key: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def unwraps_nothing(self) -> bool:
        """
        Whether L{unwrap} gives every record back whole, as it is (no C{decode_json}, no
        C{acknowledge_when}, no C{records}): the normalizer then skips it, one call less per event.
        """
        return not self.decode_json and not self.acknowledge_when and self.records is None


def decoded(envelope: Envelope, record: dict[str, Any]) -> dict[str, Any]:
    """
    C{record} with its C{decode_json} fields parsed (a copy; the original is left alone).

    A field that is not a string, or not JSON by L{fastjson}'s rules (too deep, a lone surrogate),
    stays the text it is: SNS sends plain-text messages too.
    """
    if not envelope.decode_json:
        return record
    result = dict(record)
    for path in envelope.decode_json:
        parent = _writable_parent(result, path)
        if parent is None:
            continue
        text = parent.get(path[-1])
        if not isinstance(text, str) or text.lstrip()[:1] not in ("{", "["):
            continue
        try:
            parent[path[-1]] = fastjson.loads(text)
        except ValueError:
            continue
    return result


def _writable_parent(record: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """
    The object holding the last key of C{path}, copying the objects on the way so the caller's
    record is not modified.
    """
    node = record
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            return None
        node[key] = child = dict(child)
        node = child
    return node


def acknowledges(envelope: Envelope, reader: Reader, record: dict[str, Any],
                 headers: Mapping[str, str]) -> bool:
    """
    Whether C{record} (already decoded) is a control message to answer without publishing.
    """
    conditions = envelope.acknowledge_when
    return bool(conditions) and any(_holds(condition, reader, record, headers) for condition in conditions)


def _holds(condition: Condition, reader: Reader, record: dict[str, Any], headers: Mapping[str, str]) -> bool:
    for source, allowed in condition:
        value = reader.read(record, source, headers)
        if value is MISSING or value is None or isinstance(value, (dict, list)):
            return False
        if scalar_text(value) not in allowed:
            return False
    return True


def scalar_text(value: Any) -> str:
    """
    The text a scalar compares as (YAML C{true} and JSON C{true} both read C{"true"}).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def unwrap(envelope: Envelope, reader: Reader, record: dict[str, Any],
           headers: Mapping[str, str]) -> list[Unwrapped]:
    """
    The records to normalize from one body record: none when it is acknowledged only, one per item
    when C{records} names a list, else the (decoded) record itself.

    A C{records} path that is absent or not a list leaves the record whole, so a sender that changed
    its shape (an EventBridge input transformer) still gets its events through.
    """
    data = decoded(envelope, record)
    if acknowledges(envelope, reader, data, headers):
        return []
    if envelope.records is None:
        return [Unwrapped(data, True)]
    items = get_source(data, envelope.records)
    if not isinstance(items, list):
        return [Unwrapped(data, True)]
    return [Unwrapped(item if isinstance(item, dict) else {"value": item}, False)
            for item in items if item is not None]


def idempotency_key(envelope: Envelope, reader: Reader, record: dict[str, Any],
                    headers: Mapping[str, str]) -> str | None:
    """
    The first present C{idempotency_key} candidate as text, or C{None}.
    """
    if not envelope.idempotency_key:
        return None
    data = decoded(envelope, record)
    for source in envelope.idempotency_key:
        value = reader.read(data, source, headers)
        if value is MISSING or value is None or isinstance(value, (dict, list)):
            continue
        text = scalar_text(value).strip()
        if text:
            return text
    return None
