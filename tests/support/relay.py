"""
A syslog relay (syslog-ng, rsyslogd) a test runs in the foreground: it follows C{source}, a file the
test appends lines to, and forwards them to the daemon; L{Relay.stop} returns what it logged.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Relay:
    process: subprocess.Popen[bytes]
    source: Path
    log: Path

    def stop(self) -> str:
        """
        Stop the relay and return what it logged.
        """
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text(errors="replace")
