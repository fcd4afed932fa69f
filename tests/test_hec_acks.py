"""
HEC indexer acks: the daemon's registry (L{AckChannels}) on an injected clock, and the same
registry asked by worker processes (L{RemoteAcks}) over real control channels (AMP on UNIX
socketpairs), where an ack issued through any process reads true through any other, and a daemon
that does not answer is a clear refusal after a bounded time. The whole process tree is in
test_workers.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from aisoc_inboxd.config import HecSettings
from aisoc_inboxd.hec_acks import AckChannels, AcksUnavailable, ChannelsFull, LocalAcks, RemoteAcks
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.workers.control import ACK_TIMEOUT, DaemonSide, WorkerSide, adopt, socket_pair

FP = "fingerprint"
CHANNEL = "0aa1c6b4-8d3f-4a34-9f44-5a0d8c2f9e11"
OTHER_CHANNEL = "11111111-2222-3333-4444-555555555555"


# -- the daemon's registry ------------------------------------------------------------------------

def channels(clock: Clock, max_channels: int = 2, max_acks: int = 3, idle: float = 600) -> AckChannels:
    return AckChannels(clock, max_channels_per_token=max_channels, max_acks_per_channel=max_acks, idle_timeout=idle)


def test_ack_ids_count_per_channel_and_read_true_once() -> None:
    """Ids start at 0 per channel; a query reads issued ids true once, then false, and unknown ids false."""
    acks = channels(Clock())
    assert [acks.issue("fp", "c1"), acks.issue("fp", "c1"), acks.issue("fp", "c2")] == [0, 1, 0]
    assert acks.query("fp", "c1", [0, 1, 5]) == {0: True, 1: True, 5: False}
    assert acks.query("fp", "c1", [0, 1]) == {0: False, 1: False}
    assert acks.query("fp", "c2", [0]) == {0: True}


def test_ack_query_is_scoped_to_token_and_channel_and_creates_nothing() -> None:
    """Another token's or channel's ids read false, and querying an unknown channel does not open it."""
    acks = channels(Clock())
    acks.issue("fp-a", "c")
    assert acks.query("fp-b", "c", [0]) == {0: False}
    assert acks.query("fp-a", "other", [0]) == {0: False}
    assert len(acks) == 1


def test_channels_per_token_are_bounded_until_one_idles_out() -> None:
    """A token's third channel is refused while two are in use, and admitted once an idle one expires on the clock."""
    clock = Clock()
    acks = channels(clock, max_channels=2, idle=600)
    acks.open("fp", "c1")
    clock.advance(300)
    acks.open("fp", "c2")
    acks.open("other-token", "c3")
    with pytest.raises(ChannelsFull):
        acks.open("fp", "c3")
    acks.open("fp", "c1")  # an existing channel is always admitted
    clock.advance(599)
    with pytest.raises(ChannelsFull):
        acks.open("fp", "c3")
    clock.advance(1)  # every channel has now been idle for 600 s
    acks.open("fp", "c3")
    assert len(acks) == 1


def test_idle_channel_forgets_its_unqueried_acks() -> None:
    """An ack not queried before its channel idles out reads false afterwards (the client resends)."""
    clock = Clock()
    acks = channels(clock, idle=60)
    acks.issue("fp", "c")
    clock.advance(60)
    assert acks.query("fp", "c", [0]) == {0: False}
    assert acks.issue("fp", "c") == 0  # a fresh channel


def test_pending_acks_per_channel_drop_the_oldest() -> None:
    """Past the per-channel bound the oldest unqueried ack is dropped and reads false; the newer ones stay true."""
    acks = channels(Clock(), max_acks=3)
    for _ in range(5):
        acks.issue("fp", "c")
    assert acks.query("fp", "c", range(5)) == {0: False, 1: False, 2: True, 3: True, 4: True}


def test_an_id_asked_twice_in_one_query_reads_true() -> None:
    """Each id a query names is answered; one named twice is not reported false by its own second mention."""
    acks = channels(Clock())
    acks.issue("fp", "c")
    assert acks.query("fp", "c", [0, 0]) == {0: True}
    assert acks.query("fp", "c", [0]) == {0: False}


def test_the_registry_takes_its_bounds_from_the_hec_settings() -> None:
    """The hec: section's bounds: channels per token, acks per channel, idle timeout."""
    clock = Clock()
    acks = AckChannels.build(HecSettings(max_channels_per_token=1, max_acks_per_channel=1, channel_idle_timeout=5),
                             clock)
    acks.issue("fp", "c1")
    acks.issue("fp", "c1")
    with pytest.raises(ChannelsFull):
        acks.open("fp", "c2")
    assert acks.query("fp", "c1", [0, 1]) == {0: False, 1: True}
    clock.advance(5)
    acks.open("fp", "c2")


# -- asked by worker processes over their control channels ---------------------------------------

class CountingChannels(AckChannels):
    """
    The registry, counting the opens it is asked for.
    """

    opens = 0

    def open(self, fingerprint: str, channel: str) -> None:
        self.opens += 1
        super().open(fingerprint, channel)


class Daemon:
    """
    A daemon's ack registry on C{clock} (its own routes ask it through C{local}) and the real control
    channels of the workers it L{spawn}s, each asking it through a L{RemoteAcks}.
    """

    def __init__(self, reactor: Any, settings: HecSettings = HecSettings()) -> None:
        self.reactor = reactor
        self.settings = settings
        self.clock = Clock()
        self.channels = CountingChannels.build(settings, self.clock)
        self.local = LocalAcks(self.channels)
        self._links: list[tuple[DaemonSide, Deferred[None]]] = []

    def spawn(self) -> RemoteAcks:
        return RemoteAcks(self.clock, self.settings.channel_idle_timeout, self.connect())

    def connect(self) -> WorkerSide:
        """
        A new worker's end of a real control channel to this daemon.
        """
        lost: Deferred[None] = Deferred()
        ours, theirs = socket_pair()
        daemon_end = DaemonSide(RateLimiter(self.clock, 60), self.channels, lambda: None, _any_configuration,
                                self.clock)
        worker_end = WorkerSide(lambda: lost.callback(None), self.clock)
        adopt(self.reactor, ours.fileno(), daemon_end)
        adopt(self.reactor, theirs.fileno(), worker_end)
        ours.close()
        theirs.close()
        self._links.append((daemon_end, lost))
        return worker_end

    async def close(self) -> None:
        """
        Close every worker's channel from the daemon's end, once each worker has seen it closed.
        """
        for daemon_end, lost in self._links:
            if not lost.called:
                daemon_end.transport.loseConnection()
            await lost


async def _any_configuration(fingerprint: Any) -> None:
    pass


@pytest_twisted.async_yield_fixture
async def daemon(reactor: Any) -> AsyncIterator[Daemon]:
    started = Daemon(reactor)
    yield started
    await started.close()


@pytest_twisted.ensureDeferred
async def test_ids_are_unique_per_channel_across_processes_and_any_process_answers(daemon: Daemon) -> None:
    """The daemon hands out every id: posts through the daemon and two workers count 0, 1, 2, … on one
    channel, and a query through any process reads each true once, whoever issued it."""
    one, two = daemon.spawn(), daemon.spawn()
    issued = [await acks.issue(FP, CHANNEL) for acks in (daemon.local, one, two, one, daemon.local)]
    assert issued == [0, 1, 2, 3, 4]
    assert await two.query(FP, CHANNEL, [0, 1, 5]) == {0: True, 1: True, 5: False}
    assert await daemon.local.query(FP, CHANNEL, [1, 2, 3]) == {1: False, 2: True, 3: True}
    assert await one.query(FP, CHANNEL, [4, 0]) == {4: True, 0: False}
    assert await one.query(FP, "another-channel", [0]) == {0: False}


@pytest_twisted.ensureDeferred
async def test_a_replaced_worker_answers_what_the_old_one_issued(daemon: Daemon) -> None:
    """A worker that dies takes no ack with it: the state is the daemon's, so its replacement (or any
    other process) reads the dead worker's acks true."""
    dying = daemon.spawn()
    assert [await dying.issue(FP, CHANNEL) for _ in range(2)] == [0, 1]
    await daemon.close()
    replacement = daemon.spawn()
    assert await replacement.query(FP, CHANNEL, [0, 1]) == {0: True, 1: True}


@pytest_twisted.async_yield_fixture
async def one_channel_daemon(reactor: Any) -> AsyncIterator[Daemon]:
    started = Daemon(reactor, HecSettings(max_channels_per_token=1, channel_idle_timeout=600))
    yield started
    await started.close()


@pytest_twisted.ensureDeferred
async def test_the_channel_bound_is_one_for_all_processes(one_channel_daemon: Daemon) -> None:
    """A token's channels are counted once, in the daemon: the second channel is refused through every
    process (ChannelsFull crosses the control channel), the open one is admitted through any."""
    daemon = one_channel_daemon
    one, two = daemon.spawn(), daemon.spawn()
    await one.open(FP, "c1")
    for acks in (two, daemon.local, one):
        with pytest.raises(ChannelsFull):
            await acks.open(FP, "c2")
    await two.open(FP, "c1")
    await daemon.local.open(FP, "c1")


@pytest_twisted.ensureDeferred
async def test_a_worker_opens_a_channel_it_used_lately_without_asking(daemon: Daemon) -> None:
    """A channel the daemon opened or issued on for this worker less than half the idle timeout ago is
    still open there, so a post on it asks the daemon once (for its id), not twice."""
    worker = daemon.spawn()
    for _ in range(3):
        await worker.open(FP, CHANNEL)
        await worker.issue(FP, CHANNEL)
    assert daemon.channels.opens == 1
    daemon.clock.advance(daemon.settings.channel_idle_timeout / 2 - 1)
    await worker.open(FP, CHANNEL)  # the last issue was 299 s ago
    assert daemon.channels.opens == 1
    daemon.clock.advance(1)
    await worker.open(FP, CHANNEL)
    assert daemon.channels.opens == 2
    await worker.open(FP, "another-channel")
    assert daemon.channels.opens == 3


@pytest_twisted.ensureDeferred
async def test_a_large_query_is_asked_in_several_messages(daemon: Daemon) -> None:
    """AMP carries at most 64 KiB in a value: thousands of ids (and duplicates, and ids no channel could
    ever have issued) still get one answer each."""
    worker = daemon.spawn()
    for _ in range(3):
        await daemon.local.issue(FP, CHANNEL)
    ids = [2 ** 70, 2 ** 63 - 1, *range(20_000, 0, -1), 0, 2]
    answer = await worker.query(FP, CHANNEL, ids)
    assert list(answer) == [2 ** 70, 2 ** 63 - 1, *range(20_000, 0, -1), 0]
    assert {ack_id for ack_id, done in answer.items() if done} == {0, 1, 2}


def _unanswered(clock: Clock) -> WorkerSide:
    """
    A worker's end of a channel whose daemon reads nothing and answers nothing.
    """
    worker_end = WorkerSide(lambda: None, clock)
    worker_end.makeConnection(StringTransport())
    return worker_end


@pytest.mark.parametrize("ask", [lambda acks: acks.open(FP, CHANNEL), lambda acks: acks.issue(FP, CHANNEL),
                                 lambda acks: acks.query(FP, CHANNEL, [0])], ids=["open", "issue", "query"])
def test_a_daemon_that_does_not_answer_is_unavailable_after_the_timeout(ask: Callable[[RemoteAcks], Any]) -> None:
    clock = Clock()
    asked = Deferred.fromCoroutine(ask(RemoteAcks(clock, 600, _unanswered(clock))))
    clock.advance(ACK_TIMEOUT - 0.1)
    assert not asked.called
    clock.advance(0.1)
    failure = _failure_of(asked)
    assert failure.check(AcksUnavailable) and "TimeoutError" in str(failure.value)


def test_a_closed_control_channel_is_unavailable_at_once() -> None:
    """The daemon's end closing fails what was asked and anything asked after, without waiting."""
    clock = Clock()
    worker_end = _unanswered(clock)
    acks = RemoteAcks(clock, 600, worker_end)
    pending = Deferred.fromCoroutine(acks.issue(FP, CHANNEL))
    worker_end.connectionLost(Failure(ConnectionDone()))
    later = Deferred.fromCoroutine(acks.query(FP, CHANNEL, [0]))
    for asked in (pending, later):
        assert _failure_of(asked).check(AcksUnavailable)


def _failure_of(d: Deferred[Any]) -> Failure:
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures, "the ask has not failed"
    return failures[0]


# -- the HEC routes of a worker whose daemon does not answer -----------------------------------------

class WorkerRoutes:
    """
    A worker's HEC routes in memory, asking acks of the daemon over C{worker_end}.
    """

    def __init__(self, worker_end: WorkerSide, clock: Clock) -> None:
        self.inbox = MemoryInbox(FakeStore(), clock, acks=RemoteAcks(clock, 600, worker_end))
        self.http = self.inbox.http

    def post(self, path: str, token: str, body: bytes, channel: str = CHANNEL) -> Reply:
        headers = {"Authorization": [f"Splunk {token}"], "X-Splunk-Request-Channel": [channel]}
        return Reply(self.http.post("http://inbox" + path, data=body, headers=headers))


class Reply:
    """
    The status and body of a request sent, once they have come.
    """

    def __init__(self, response: Deferred[Any]) -> None:
        self.answer: tuple[int, bytes] | None = None
        self.done = response.addCallback(lambda got: Deferred.fromCoroutine(self._read(got)))

    async def _read(self, response: Any) -> None:
        self.answer = response.code, await response.content()


BUSY = (503, b'{"text":"Server is busy","code":9}')


@pytest_twisted.ensureDeferred
async def test_a_post_is_refused_after_the_timeout_and_nothing_is_published() -> None:
    """A worker whose daemon does not answer refuses the post before publishing (503 code 9, Splunk's
    "Server is busy", so the client retries), after L{ACK_TIMEOUT}, not never."""
    clock = Clock()
    routes = WorkerRoutes(_unanswered(clock), clock)
    token = (await routes.inbox.admin.mint("acme", "splunk-hec", hec_acks=True)).token
    posted = routes.post("/services/collector/event", token, b'{"event": "x"}')
    routes.http.flush()
    assert posted.answer is None
    clock.advance(ACK_TIMEOUT)
    routes.http.flush()
    assert posted.answer == BUSY
    assert routes.inbox.sink.events() == []
    assert routes.inbox.requests("hec", "splunk-hec", "ack_unavailable") == 1


@pytest_twisted.ensureDeferred
async def test_a_post_on_an_open_channel_is_durable_but_refused_without_an_ack_id(reactor: Any,
                                                                                   daemon: Daemon) -> None:
    """When the daemon goes between a post's open and its ack id, the events are durable already: the
    post is answered 503 code 9, so the client resends (a duplicate, never a loss); so is a query, and
    a post on a new channel, which publishes nothing."""
    routes = WorkerRoutes(daemon.connect(), daemon.clock)
    token = (await routes.inbox.admin.mint("acme", "splunk-hec", hec_acks=True)).token
    first = routes.post("/services/collector/event", token, b'{"event": "first"}')
    assert await answered(reactor, routes, first) == (200, b'{"text":"Success","code":0,"ackId":0}')
    await daemon.close()
    second = routes.post("/services/collector/event", token, b'{"event": "second"}')
    assert await answered(reactor, routes, second) == BUSY
    assert [e["message"] for e in routes.inbox.sink.events()] == ["first", "second"]
    query = routes.post("/services/collector/ack", token, b'{"acks": [0]}')
    assert await answered(reactor, routes, query) == BUSY
    elsewhere = routes.post("/services/collector/event", token, b'{"event": "third"}', OTHER_CHANNEL)
    assert await answered(reactor, routes, elsewhere) == BUSY
    assert len(routes.inbox.sink.events()) == 2
    assert routes.inbox.requests("hec", "splunk-hec", "ack_unavailable") == 3


async def answered(reactor: Any, routes: WorkerRoutes, reply: Reply) -> tuple[int, bytes]:
    """
    The reply's status and body once the route answered: the daemon's answers come over a real
    socket, so the in-memory client is pumped until they have.
    """
    while reply.answer is None:
        routes.http.flush()
        await deferLater(reactor, 0.001, lambda: None)
    await reply.done
    return reply.answer
