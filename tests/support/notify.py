"""
A stand-in for systemd's C{$NOTIFY_SOCKET}: what the daemon tells its service manager.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET, read all the time as systemd does."""

    def __init__(self, path: Path, log: Path | None = None, read: bool = True) -> None:
        self.path = path
        self.log = log
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except OSError:
                return  # closed

    def wait_for(self, state: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not any(state in m.split("\n") for m in list(self.messages)):
            assert time.monotonic() < deadline, (
                f"no {state} among {self.messages[-20:]}; daemon log:\n"
                + (self.log.read_text()[-4000:] if self.log and self.log.exists() else ""))
            time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()
