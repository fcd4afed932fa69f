"""
Recent activity of this daemon instance, kept in memory for the status page: events published per
template over the last minute and hour, and the last error replies. Bounded, and cheap enough to
feed on every publish and every reply.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.tokens import log_id

#: width of one rate slot in seconds; a minute is 12 slots, an hour 720
SLOT = 5.0
MINUTE = 60.0
HOUR = 3600.0
#: longest error message kept (messages name the problem, never the body or a token)
MESSAGE_LIMIT = 300


class EventRates:
    """
    Events made durable per template, in L{SLOT}-second slots over the last hour.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        #: template → [slot index, events] pairs, oldest first, none older than an hour
        self._slots: dict[str, deque[list[int]]] = {}

    def published(self, template_id: str, count: int) -> None:
        slot = int(self._clock.seconds() // SLOT)
        slots = self._slots.setdefault(template_id, deque())
        if slots and slots[-1][0] == slot:
            slots[-1][1] += count
        else:
            slots.append([slot, count])
        self._expire(slots, slot)

    def rates(self) -> dict[str, tuple[int, int]]:
        """
        Template → (events in the last minute, events in the last hour), for templates that had
        events in the last hour.
        """
        now = int(self._clock.seconds() // SLOT)
        minute = int(MINUTE // SLOT)
        result = {}
        for template_id, slots in list(self._slots.items()):
            self._expire(slots, now)
            if not slots:
                del self._slots[template_id]
                continue
            result[template_id] = (sum(n for s, n in slots if s > now - minute), sum(n for _, n in slots))
        return result

    @staticmethod
    def _expire(slots: deque[list[int]], now: int) -> None:
        while slots and slots[0][0] <= now - int(HOUR // SLOT):
            slots.popleft()


@dataclass(frozen=True)
class ErrorReply:
    """
    One error reply as the status page shows it: never a token or a body.

    @ivar token: the fingerprint prefix (L{log_id}) of the token the request presented, when it
        resolved.
    """

    at: float
    route: str
    status: int
    message: str
    token: str | None


class RecentErrors:
    """
    The last C{size} error replies (status 400 or more) of the routes it observes, newest first.
    """

    def __init__(self, clock: IReactorTime, size: int = 50) -> None:
        self._clock = clock
        self._entries: deque[ErrorReply] = deque(maxlen=size)

    def replied(self, route: str, token: TokenRecord | None, outcome: str, status: int,
                error: str | None = None) -> None:
        if status < 400:
            return
        message = str(error or outcome)[:MESSAGE_LIMIT]
        self._entries.appendleft(ErrorReply(self._clock.seconds(), route, status, message,
                                            log_id(token.fingerprint) if token else None))

    def entries(self) -> list[ErrorReply]:
        return list(self._entries)
