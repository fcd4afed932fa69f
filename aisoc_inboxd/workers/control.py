"""
The control channel between the daemon and one worker: AMP over a UNIX socketpair whose worker end
the worker inherits. The worker joins with the fingerprint of the configuration it loaded (the
daemon refuses one it does not serve), says when it serves, leases rate-limit tokens from the
daemon, which holds the one bucket per tenant, and asks it about HEC indexer acks, which it holds
for every process (L{aisoc_inboxd.hec_acks}); the daemon runs its reloads in two phases over it
(L{PrepareReload}, then L{CommitReload} or L{AbortReload}) and reads the worker's recent
deliveries (L{ReadDeliveries}). The worker sees the daemon die as the channel closing.
"""
from __future__ import annotations

import json
import socket
from typing import Any, Awaitable, Callable, Mapping, Sequence

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorSocket, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from aisoc_inboxd.deliveries import DeliveryLog
from aisoc_inboxd.hec_acks import AckChannels, ChannelsFull
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.reload import Loaded, Reloader, ReloadRejected

_log = Logger()

#: the file descriptor a worker finds its end of the control channel on
WORKER_FD = 3
#: seconds a worker waits for the daemon to answer a lease
LEASE_TIMEOUT = 10.0
#: seconds a worker waits for the daemon to answer about acks, before it answers the request 503
ACK_TIMEOUT = 5.0
#: seconds the daemon waits for a worker's recent deliveries before it shows those of the others
DELIVERIES_TIMEOUT = 5.0
#: ack ids asked in one L{QueryAcks}: each id is below L{_ACK_ID_LIMIT} (at most 19 digits and a
#: 2-byte length), so the list stays within AMP's 64 KiB value
_QUERY_IDS = 3000
#: no channel issues this many ids, so larger ones read false without asking
_ACK_ID_LIMIT = 2 ** 63


class Refused(Exception):
    """
    The other side refused a command; the message says why.
    """


class Join(amp.Command):
    """
    Worker to daemon, before it serves: the fingerprint (JSON) of the configuration it loaded
    (L{aisoc_inboxd.reload.fingerprint}); L{Refused} when it is not the one the daemon serves.
    """

    arguments = [(b"fingerprint", amp.Unicode())]
    errors = {Refused: b"REFUSED"}


class Ready(amp.Command):
    """
    Worker to daemon: every inherited socket is being served.
    """


class PrepareReload(amp.Command):
    """
    Daemon to worker: load the configuration again, without applying it, as reload C{generation};
    answer the fingerprint (JSON) of what was loaded, or L{Refused} with why it cannot be loaded.
    """

    arguments = [(b"generation", amp.Integer())]
    response = [(b"fingerprint", amp.Unicode())]
    errors = {Refused: b"REFUSED"}


class CommitReload(amp.Command):
    """
    Daemon to worker: apply reload C{generation}, which every process prepared.
    """

    arguments = [(b"generation", amp.Integer())]
    errors = {Refused: b"REFUSED"}


class AbortReload(amp.Command):
    """
    Daemon to worker: drop reload C{generation}; some process could not load it.
    """

    arguments = [(b"generation", amp.Integer())]
    requiresAnswer = False


class LeaseRate(amp.Command):
    """
    Worker to daemon: take up to C{want} requests from C{tenant}'s rate limit.
    """

    arguments = [(b"tenant", amp.Unicode()), (b"want", amp.Integer())]
    response = [(b"granted", amp.Integer()), (b"wait", amp.Float())]


class OpenAckChannel(amp.Command):
    """
    Worker to daemon: L{AckChannels.open} for a post on C{channel} of the token C{fingerprint}.
    """

    arguments = [(b"fingerprint", amp.Unicode()), (b"channel", amp.Unicode())]
    errors = {ChannelsFull: b"CHANNELS_FULL"}


class IssueAck(amp.Command):
    """
    Worker to daemon: L{AckChannels.issue}, once the post's events are durable.
    """

    arguments = [(b"fingerprint", amp.Unicode()), (b"channel", amp.Unicode())]
    response = [(b"ack_id", amp.Integer())]


class QueryAcks(amp.Command):
    """
    Worker to daemon: L{AckChannels.query}; the answer lists the ids that read true.
    """

    arguments = [(b"fingerprint", amp.Unicode()), (b"channel", amp.Unicode()),
                 (b"ack_ids", amp.ListOf(amp.Integer()))]
    response = [(b"acked", amp.ListOf(amp.Integer()))]


class LongText(amp.Argument):
    """
    Text of any length: AMP holds each value under 64 KiB, so this one is sent as a count of
    chunks under its name and the chunks under C{name.0}, C{name.1}, ….
    """

    CHUNK = amp.MAX_VALUE_LENGTH

    def toBox(self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any) -> None:
        value = objects[name.decode("ascii")].encode("utf-8")
        chunks = [value[start:start + self.CHUNK] for start in range(0, len(value), self.CHUNK)]
        strings[name] = str(len(chunks)).encode("ascii")
        for index, chunk in enumerate(chunks):
            strings[b"%s.%d" % (name, index)] = chunk

    def fromBox(self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any) -> None:
        count = int(strings.pop(name))
        objects[name.decode("ascii")] = b"".join(strings.pop(b"%s.%d" % (name, index))
                                                 for index in range(count)).decode("utf-8")


class ReadDeliveries(amp.Command):
    """
    Daemon to worker: L{DeliveryLog.read} of the worker's recent deliveries, as a JSON list.
    """

    arguments = [(b"kind", amp.Unicode()), (b"tenant", amp.Unicode()), (b"key", amp.Unicode())]
    response = [(b"deliveries", LongText())]


class DaemonSide(amp.AMP):
    """
    The daemon's end of one worker's channel.
    """

    def __init__(self, limiter: RateLimiter, acks: AckChannels, on_ready: Callable[[], None],
                 on_join: Callable[[Mapping[str, str]], Awaitable[None]], clock: IReactorTime) -> None:
        """
        @param on_join: checks a joining worker's fingerprint; raises L{Refused} to keep it from serving.
        """
        super().__init__()
        self._clock = clock
        self._limiter = limiter
        self._acks = acks
        self._on_ready = on_ready
        self._on_join = on_join

    @Join.responder
    async def join(self, fingerprint: str) -> dict[str, Any]:
        await self._on_join(json.loads(fingerprint))
        return {}

    def prepare_reload(self, generation: int) -> Deferred[dict[str, str]]:
        d = self.callRemote(PrepareReload, generation=generation)
        return d.addCallback(lambda reply: json.loads(reply["fingerprint"]))

    def commit_reload(self, generation: int) -> Deferred[Any]:
        return self.callRemote(CommitReload, generation=generation)

    def abort_reload(self, generation: int) -> None:
        self.callRemote(AbortReload, generation=generation)

    @Ready.responder
    def ready(self) -> dict[str, Any]:
        self._on_ready()
        return {}

    @LeaseRate.responder
    def lease(self, tenant: str, want: int) -> dict[str, Any]:
        granted, wait = self._limiter.lease(tenant, want)
        return {"granted": granted, "wait": wait}

    @OpenAckChannel.responder
    def open_ack_channel(self, fingerprint: str, channel: str) -> dict[str, Any]:
        self._acks.open(fingerprint, channel)
        return {}

    @IssueAck.responder
    def issue_ack(self, fingerprint: str, channel: str) -> dict[str, Any]:
        return {"ack_id": self._acks.issue(fingerprint, channel)}

    @QueryAcks.responder
    def query_acks(self, fingerprint: str, channel: str, ack_ids: list[int]) -> dict[str, Any]:
        return {"acked": [ack_id for ack_id, done in self._acks.query(fingerprint, channel, ack_ids).items() if done]}

    def read_deliveries(self, kind: str, tenant: str, key: str) -> Deferred[list[dict[str, Any]]]:
        """
        The worker's recent deliveries of C{kind} (L{DeliveryLog.read}), as dicts; fails after
        L{DELIVERIES_TIMEOUT}.
        """
        d = _ask(self, self._clock, DELIVERIES_TIMEOUT, ReadDeliveries, kind=kind, tenant=tenant, key=key)
        return d.addCallback(lambda reply: json.loads(reply["deliveries"]))


class WorkerSide(amp.AMP):
    """
    The worker's end: C{on_lost} runs when the daemon has gone (or closed the channel). Its
    L{reloader} (set once the worker is built) loads what the daemon's reloads prepare, and holds
    it until the daemon commits or aborts.
    """

    def __init__(self, on_lost: Callable[[], None], clock: IReactorTime) -> None:
        super().__init__()
        self._on_lost = on_lost
        self._clock = clock
        self.reloader: Reloader | None = None
        self._prepared: tuple[int, Loaded] | None = None
        #: this worker's recent deliveries, which the daemon reads
        self.deliveries: DeliveryLog | None = None

    def join(self, fingerprint: Mapping[str, str]) -> Deferred[Any]:
        return self.callRemote(Join, fingerprint=json.dumps(fingerprint))

    @PrepareReload.responder
    async def prepare_reload(self, generation: int) -> dict[str, Any]:
        assert self.reloader is not None
        try:
            loaded = await self.reloader.load()
        except ReloadRejected as e:
            raise Refused(str(e)) from None
        except Exception as e:
            _log.failure("loading reload {generation} failed unexpectedly (a bug)", generation=generation)
            raise Refused(f"unexpected error: {type(e).__name__}") from None
        self._prepared = (generation, loaded)
        return {"fingerprint": json.dumps(loaded.fingerprint())}

    @CommitReload.responder
    def commit_reload(self, generation: int) -> dict[str, Any]:
        assert self.reloader is not None
        if self._prepared is None or self._prepared[0] != generation:
            raise Refused(f"reload {generation} was not prepared here")
        loaded, self._prepared = self._prepared[1], None
        self.reloader.apply(loaded)
        return {}

    @AbortReload.responder
    def abort_reload(self, generation: int) -> dict[str, Any]:
        if self._prepared is not None and self._prepared[0] == generation:
            self._prepared = None
        return {}

    @ReadDeliveries.responder
    def read_deliveries(self, kind: str, tenant: str, key: str) -> dict[str, Any]:
        kept = self.deliveries.read(kind, tenant, key) if self.deliveries is not None else []
        return {"deliveries": json.dumps([d.as_dict() for d in kept])}

    def lease(self, tenant: str, want: int) -> Deferred[tuple[int, float]]:
        """
        Fails after L{LEASE_TIMEOUT}: a daemon that cannot answer that long is treated as gone, so
        requests do not hang on it (the worker's limiter then counts on its own).
        """
        d = _ask(self, self._clock, LEASE_TIMEOUT, LeaseRate, tenant=tenant, want=want)
        return d.addCallback(lambda reply: (reply["granted"], reply["wait"]))

    def open_ack_channel(self, fingerprint: str, channel: str) -> Deferred[None]:
        """
        The L{aisoc_inboxd.hec_acks.AckDaemon} of this worker: each answer fails after L{ACK_TIMEOUT}.
        """
        return self._ask_acks(OpenAckChannel, fingerprint=fingerprint, channel=channel).addCallback(lambda _: None)

    def issue_ack(self, fingerprint: str, channel: str) -> Deferred[int]:
        return self._ask_acks(IssueAck, fingerprint=fingerprint, channel=channel).addCallback(
            lambda reply: reply["ack_id"])

    def query_acks(self, fingerprint: str, channel: str, ack_ids: Sequence[int]) -> Deferred[set[int]]:
        """
        Asked in as many messages as the distinct ids need, at once.
        """
        distinct = sorted({ack_id for ack_id in ack_ids if ack_id < _ACK_ID_LIMIT})
        if not distinct:
            return succeed(set())
        asked = [self._ask_acks(QueryAcks, fingerprint=fingerprint, channel=channel,
                                ack_ids=distinct[start:start + _QUERY_IDS])
                 for start in range(0, len(distinct), _QUERY_IDS)]
        d = gatherResults(asked, consumeErrors=True)
        d.addErrback(lambda failure: failure.value.subFailure)  # the first failure, as itself
        return d.addCallback(lambda replies: {ack_id for reply in replies for ack_id in reply["acked"]})

    def _ask_acks(self, command: type[amp.Command], **arguments: Any) -> Deferred[dict[str, Any]]:
        return _ask(self, self._clock, ACK_TIMEOUT, command, **arguments)

    def ready(self) -> Deferred[Any]:
        return self.callRemote(Ready)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._on_lost()


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """
    The daemon's end and the worker's end, non-blocking, as the reactor needs an adopted socket.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


def adopt(reactor: IReactorSocket, fd: int, protocol: Protocol) -> None:
    """
    Run C{protocol} on the connected UNIX socket C{fd}; the reactor keeps a duplicate, so the
    caller closes C{fd}.
    """
    factory = Factory()
    factory.buildProtocol = lambda address: protocol  # type: ignore[method-assign]
    reactor.adoptStreamConnection(fd, socket.AF_UNIX, factory)


def _ask(side: amp.AMP, clock: IReactorTime, timeout: float, command: type[amp.Command],
         **arguments: Any) -> Deferred[dict[str, Any]]:
    """
    C{command} asked of the other end, failing after C{timeout} seconds: a process that does not
    answer is treated as gone rather than waited on.
    """
    return side.callRemote(command, **arguments).addTimeout(timeout, clock)
