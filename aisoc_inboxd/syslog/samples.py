"""
A syslog listener's sampled deliveries: its last C{deliveries.per_token} frames and its last as
many malformed ones, for the admin API and the status page ("what does this relay send?").

A frame costs one tuple in a bounded deque on the listener's hot path — no record, no parse, no
copy of a frame shorter than C{deliveries.body_bytes}; records are made only when read. The memory
they can hold is reserved in the L{DeliveryLog}'s C{max_bytes} up front, so the cap still holds.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

from aisoc_inboxd.deliveries import RECORD_OVERHEAD, Delivery, DeliveryLog

ROUTE = "syslog"


def samples_key(listener: str, malformed: bool = False) -> str:
    return f"syslog:{listener}" + (":malformed" if malformed else "")


class FrameSamples:
    def __init__(self, log: DeliveryLog, listener: str, tenant_id: str) -> None:
        settings = log.settings
        self.listener = listener
        self.tenant_id = tenant_id
        self._limit = settings.body_bytes if log.keeps_body(tenant_id) else 0
        self._frames: deque[tuple[int, float, str | None, bytes, int]] = deque(maxlen=settings.per_token)
        self._malformed: deque[tuple[int, float, str | None, bytes, int, str]] = deque(maxlen=settings.per_token)
        self._numbered = log.first_number - 1
        log.reserve(2 * settings.per_token * (RECORD_OVERHEAD + self._limit))
        log.samples[listener] = self

    def frames(self, frames: Sequence[bytes], received_at: float, peer: str | None) -> None:
        """
        Keep the last of C{frames} read at C{received_at} from C{peer} (None: a UDP batch of many).
        """
        limit = self._limit
        for frame in frames[-self._frames.maxlen:] if self._frames.maxlen else ():
            self._numbered += 1
            self._frames.append((self._numbered, received_at, peer, frame[:limit], len(frame)))

    def malformed(self, frame: bytes, received_at: float, peer: str | None, reason: str) -> None:
        if self._malformed.maxlen:
            self._numbered += 1
            self._malformed.append((self._numbered, received_at, peer, frame[:self._limit], len(frame), reason))

    def deliveries(self, malformed: bool) -> list[Delivery]:
        """
        The kept frames (or malformed frames) as deliveries, newest first.
        """
        kept = ([(*s, None) for s in self._frames] if not malformed else list(self._malformed))
        return [Delivery(key=samples_key(self.listener, malformed), number=number, tenant_id=self.tenant_id,
                         received_at=received_at, client=peer, route=ROUTE, method="frame", status=0,
                         outcome="malformed" if reason else "read", template=None, events=0, error=reason,
                         duration_ms=0.0, request_headers=[], response_headers=[], response_body="",
                         body=body if self._limit else None, body_size=size, ocsf=None, ocsf_error=None)
                for number, received_at, peer, body, size, reason in reversed(kept)]
