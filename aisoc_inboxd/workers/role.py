"""
What makes a process a worker: the parameter the daemon's builders (L{aisoc_inboxd.wiring}) take,
None in the daemon itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from twisted.internet.defer import Deferred

from aisoc_inboxd.config import ConfigError
from aisoc_inboxd.deliveries import DeliveryLog
from aisoc_inboxd.hec_acks import AckDaemon


@dataclass(frozen=True)
class WorkerRole:
    """
    What a worker process (L{aisoc_inboxd.workers}) does differently from the daemon: it serves the
    daemon's sockets instead of binding its own, leases its tenants' rate limits from the daemon and
    asks it about HEC indexer acks, keeps its sink files apart, snapshots its metrics for the
    daemon's /metrics, and leaves the metrics and admin listeners, IMAP polling and sweeps to the daemon.

    @ivar sockets: listener name → the inherited listening socket's file descriptor.
    @ivar lease: the daemon's L{RateLimiter.lease}, across the control channel.
    @ivar acks: the daemon's L{AckChannels}, across the control channel.
    @ivar deliveries: the worker's recent deliveries, which the daemon reads across the control channel.
    """

    index: int
    sockets: Mapping[str, int]
    lease: Callable[[str, int], Deferred[tuple[int, float]]]
    acks: AckDaemon
    deliveries: DeliveryLog

    def socket(self, name: str) -> int:
        try:
            return self.sockets[name]
        except KeyError:
            raise ConfigError(f"worker {self.index}: the daemon passed no socket for listener {name!r}; "
                              "the worker read a different config than the daemon") from None

    def directory(self, parent: Path) -> Path:
        return parent / f"worker-{self.index}"
