"""
Splunk HEC indexer acknowledgement: ack ids per (token, channel), and which of them are durable.

A HEC POST is answered only once its events are durable, so an ack id is issued already true: the
C{/services/collector/ack} query reports it true once and then forgets it, as Splunk does. What must
be bounded is what clients leave behind: channels per token (a new one past the bound is refused
until an idle one expires), unqueried acks per channel (the oldest is dropped, and then reads false,
so a client resends rather than waits forever), and idle channels, forgotten after a timeout on the
injected clock. The state is per process: behind a load balancer, acks need sticky sessions, as
with Splunk's own indexers.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable

from twisted.internet.interfaces import IReactorTime


class ChannelsFull(Exception):
    """
    The token holds as many channels as allowed, none idle long enough to expire.
    """


@dataclass
class _Channel:
    last_used: float
    next_id: int = 0
    #: issued and not yet reported, oldest first (ids only grow)
    unreported: dict[int, None] = field(default_factory=dict)


class AckChannels:
    def __init__(self, clock: IReactorTime, max_channels_per_token: int, max_acks_per_channel: int,
                 idle_timeout: float) -> None:
        self._clock = clock
        self._max_channels = max_channels_per_token
        self._max_acks = max_acks_per_channel
        self._idle_timeout = idle_timeout
        #: by (token fingerprint, channel), least recently used first
        self._channels: OrderedDict[tuple[str, str], _Channel] = OrderedDict()
        self._per_token: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def open(self, fingerprint: str, channel: str) -> None:
        """
        Make sure the channel exists before a request's events are published, so that a full token
        is refused before anything is accepted.

        @raise ChannelsFull: a new channel over the token's bound.
        """
        now = self._clock.seconds()
        self._expire(now)
        is_new = (fingerprint, channel) not in self._channels
        if is_new and self._per_token.get(fingerprint, 0) >= self._max_channels:
            raise ChannelsFull()
        self._channel(fingerprint, channel, now)

    def issue(self, fingerprint: str, channel: str) -> int:
        """
        The next ack id of this channel (0 for a new one), for events that are durable now. Never
        refused: the bound was checked by L{open}.
        """
        now = self._clock.seconds()
        self._expire(now)
        state = self._channel(fingerprint, channel, now)
        ack_id = state.next_id
        state.next_id += 1
        state.unreported[ack_id] = None
        if len(state.unreported) > self._max_acks:
            del state.unreported[next(iter(state.unreported))]
        return ack_id

    def query(self, fingerprint: str, channel: str, ack_ids: Iterable[int]) -> dict[int, bool]:
        """
        Each id: C{True} if it was issued on this channel and not reported since (it is forgotten
        now), else C{False}. An unknown channel reads all false and is not created.
        """
        now = self._clock.seconds()
        self._expire(now)
        key = (fingerprint, channel)
        state = self._channels.get(key)
        if state is None:
            return {ack_id: False for ack_id in ack_ids}
        self._touch(key, state, now)
        return {ack_id: state.unreported.pop(ack_id, False) is None for ack_id in ack_ids}

    def _channel(self, fingerprint: str, channel: str, now: float) -> _Channel:
        key = (fingerprint, channel)
        state = self._channels.get(key)
        if state is None:
            state = self._channels[key] = _Channel(now)
            self._per_token[fingerprint] = self._per_token.get(fingerprint, 0) + 1
        self._touch(key, state, now)
        return state

    def _touch(self, key: tuple[str, str], state: _Channel, now: float) -> None:
        state.last_used = now
        self._channels.move_to_end(key)

    def _expire(self, now: float) -> None:
        while self._channels:
            key, state = next(iter(self._channels.items()))
            if now - state.last_used < self._idle_timeout:
                return
            del self._channels[key]
            fingerprint = key[0]
            self._per_token[fingerprint] -= 1
            if not self._per_token[fingerprint]:
                del self._per_token[fingerprint]
