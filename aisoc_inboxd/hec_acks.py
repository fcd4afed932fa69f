"""
Splunk HEC indexer acknowledgement: ack ids per (token, channel), and which of them are durable.

A HEC POST is answered only once its events are durable, so an ack id is issued already true: the
C{/services/collector/ack} query reports it true once and then forgets it, as Splunk does. What must
be bounded is what clients leave behind: channels per token (a new one past the bound is refused
until an idle one expires), unqueried acks per channel (the oldest is dropped, and then reads false,
so a client resends rather than waits forever), and idle channels, forgotten after a timeout on the
injected clock.

With C{workers: N} a client's connections land on any process, so the one L{AckChannels} lives in
the daemon: its own routes use it through L{LocalAcks}, each worker asks it over the control channel
through L{RemoteAcks}. An id is unique per channel because only the daemon hands them out, and any
process answers a query about it. The state lives as long as the daemon (a worker that restarts loses
nothing); behind a load balancer across several hosts, acks need sticky sessions, as with Splunk's
own indexers.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Self, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from aisoc_inboxd.config import HecSettings

T = TypeVar("T")


class ChannelsFull(Exception):
    """
    The token holds as many channels as allowed, none idle long enough to expire.
    """


class AcksUnavailable(Exception):
    """
    The daemon, which holds every process's acks, did not answer a worker (in time, or at all).
    """


@dataclass
class _Channel:
    last_used: float
    next_id: int = 0
    #: issued and not yet reported, oldest first (ids only grow)
    unreported: dict[int, None] = field(default_factory=dict)


class AckChannels:
    """
    The registry of every channel's acks; one per daemon.
    """

    @classmethod
    def build(cls, settings: HecSettings, clock: IReactorTime) -> Self:
        return cls(clock, settings.max_channels_per_token, settings.max_acks_per_channel,
                   settings.channel_idle_timeout)

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
        now, so an id asked twice in one query reads true twice), else C{False}. An unknown channel
        reads all false and is not created.
        """
        now = self._clock.seconds()
        self._expire(now)
        key = (fingerprint, channel)
        state = self._channels.get(key)
        if state is None:
            return {ack_id: False for ack_id in ack_ids}
        self._touch(key, state, now)
        ack_ids = list(ack_ids)
        acked = {ack_id for ack_id in ack_ids if state.unreported.pop(ack_id, False) is None}
        return {ack_id: ack_id in acked for ack_id in ack_ids}

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


class Acks(Protocol):
    """
    What the HEC routes ask about acks, in any process: L{AckChannels}'s questions, answered later.
    A worker's may fail with L{AcksUnavailable}.
    """

    async def open(self, fingerprint: str, channel: str) -> None:
        """
        L{AckChannels.open}.
        """

    async def issue(self, fingerprint: str, channel: str) -> int:
        """
        L{AckChannels.issue}.
        """

    async def query(self, fingerprint: str, channel: str, ack_ids: Sequence[int]) -> dict[int, bool]:
        """
        L{AckChannels.query}.
        """


class LocalAcks:
    """
    The daemon's own routes: its L{AckChannels}, answered without suspending.
    """

    def __init__(self, channels: AckChannels) -> None:
        self._channels = channels

    async def open(self, fingerprint: str, channel: str) -> None:
        self._channels.open(fingerprint, channel)

    async def issue(self, fingerprint: str, channel: str) -> int:
        return self._channels.issue(fingerprint, channel)

    async def query(self, fingerprint: str, channel: str, ack_ids: Sequence[int]) -> dict[int, bool]:
        return self._channels.query(fingerprint, channel, ack_ids)


class AckDaemon(Protocol):
    """
    The daemon's L{AckChannels}, asked across a worker's control channel; each answer fails after a
    bounded time if the daemon does not give it.
    """

    def open_ack_channel(self, fingerprint: str, channel: str) -> Deferred[None]:
        """
        L{AckChannels.open}: fails with L{ChannelsFull} as it does.
        """

    def issue_ack(self, fingerprint: str, channel: str) -> Deferred[int]:
        """
        L{AckChannels.issue}.
        """

    def query_acks(self, fingerprint: str, channel: str, ack_ids: Sequence[int]) -> Deferred[set[int]]:
        """
        L{AckChannels.query}, answered with the ids that read true.
        """


class RemoteAcks:
    """
    A worker's routes: the daemon's L{AckChannels}, asked over the control channel. Whatever keeps
    the daemon from answering (a timeout, the channel closing, an error on its side) is
    L{AcksUnavailable}: the request is refused, never left hanging.

    A post asks once, for its ack id, and a query once: a channel that the daemon opened or issued
    an id on for this worker less than half the idle timeout ago is still open there (nothing
    expires it sooner), so opening it again costs no round trip.
    """

    def __init__(self, clock: IReactorTime, idle_timeout: float, daemon: AckDaemon) -> None:
        self._clock = clock
        self._fresh_for = idle_timeout / 2
        self._daemon = daemon
        #: (token fingerprint, channel) → when this worker last asked the daemon to open or issue on
        #: it, oldest first: the daemon has touched the channel since
        self._open: OrderedDict[tuple[str, str], float] = OrderedDict()

    async def open(self, fingerprint: str, channel: str) -> None:
        now = self._clock.seconds()
        self._forget(now)
        asked_at = self._open.get((fingerprint, channel))
        if asked_at is not None and now - asked_at < self._fresh_for:
            return
        await self._answer(self._daemon.open_ack_channel(fingerprint, channel))
        self._opened(fingerprint, channel, now)

    async def issue(self, fingerprint: str, channel: str) -> int:
        now = self._clock.seconds()
        ack_id = await self._answer(self._daemon.issue_ack(fingerprint, channel))
        self._opened(fingerprint, channel, now)
        return ack_id

    async def query(self, fingerprint: str, channel: str, ack_ids: Sequence[int]) -> dict[int, bool]:
        acked = await self._answer(self._daemon.query_acks(fingerprint, channel, ack_ids))
        return {ack_id: ack_id in acked for ack_id in ack_ids}

    def _opened(self, fingerprint: str, channel: str, asked_at: float) -> None:
        key = (fingerprint, channel)
        self._open.pop(key, None)
        self._open[key] = asked_at
        self._forget(self._clock.seconds())

    def _forget(self, now: float) -> None:
        while self._open:
            asked_at = next(iter(self._open.values()))
            if now - asked_at < self._fresh_for:
                return
            self._open.popitem(last=False)

    @staticmethod
    async def _answer(asked: Deferred[T]) -> T:
        try:
            return await asked
        except ChannelsFull:
            raise
        except Exception as e:  # a timeout, the channel closed, an error on the daemon's side
            raise AcksUnavailable(f"the daemon did not answer: {type(e).__name__}") from e
