"""
A real IMAP server for the poller tests: Debian's C{dovecot-imapd}, started in the foreground with a
private configuration and mail directory, IMAPS only on a free 127.0.0.1 port, with a certificate
from L{tests.support.tls} and one test user. No system service is involved.

Dovecot refuses to run mail processes as root, so the mail directory belongs to the unprivileged
C{dovecot} user and lives in a directory that user can reach. When the binary is missing the tests
skip, unless C{CI} (or C{AISOC_TEST_IMAP_REQUIRED=1}) says they must run.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from imapclient import IMAPClient

from tests.support.tls import TlsFiles, make_tls_files
from tests.support.ports import free_port

DOVECOT = "/usr/sbin/dovecot"
USER = "alerts@example.test"
PASSWORD = "imap-test-password"
START_TIMEOUT = 20.0

__all__ = ["Dovecot", "dovecot"]


@dataclass(frozen=True)
class Dovecot:
    host: str
    port: int
    username: str
    password: str
    tls: TlsFiles

    def client(self) -> IMAPClient:
        """
        A logged-in client (trusting the test CA) with INBOX selected; the caller logs out.
        """
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        client = IMAPClient(self.host, port=self.port, ssl=True, ssl_context=context, timeout=10)
        client.login(self.username, self.password)
        client.select_folder("INBOX")
        return client

    def append(self, *messages: bytes) -> None:
        client = self.client()
        try:
            for message in messages:
                client.append("INBOX", message)
        finally:
            client.logout()

    def seen(self) -> dict[int, bool]:
        """
        Every message's uid and whether it carries \\Seen.
        """
        client = self.client()
        try:
            flags = client.get_flags(client.search(["ALL"]))
        finally:
            client.logout()
        return {uid: b"\\Seen" in found for uid, found in flags.items()}


def _config(root: Path, port: int, tls: TlsFiles, owner: pwd.struct_passwd) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = aisoc-test-{port}
listen = 127.0.0.1
protocols = imap
log_path = {root}/dovecot.log
ssl = required
ssl_cert = <{tls.server_cert}
ssl_key = <{tls.server_key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
first_valid_uid = {owner.pw_uid}
last_valid_uid = {owner.pw_uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """
    A running dovecot with one user (and an empty INBOX), stopped and removed afterwards.
    """
    if not os.path.exists(DOVECOT):
        reason = f"{DOVECOT} is missing: apt-get install dovecot-imapd (scripts/test-services does)"
        if os.environ.get("CI") or os.environ.get("AISOC_TEST_IMAP_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    owner = pwd.getpwnam("dovecot")
    root = Path(tempfile.mkdtemp(prefix="aisoc-dovecot-"))
    root.chmod(0o755)
    tls = make_tls_files(tmp_path / "imap-tls")
    port = free_port()
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (root / "mail").mkdir()
    os.chown(root / "mail", owner.pw_uid, owner.pw_gid)
    config = root / "dovecot.conf"
    config.write_text(_config(root, port, tls, owner))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                stderr = process.stderr.read().decode() if process.poll() is not None and process.stderr else ""
                pytest.fail(f"dovecot did not start on 127.0.0.1:{port}: {stderr}{log}")
            time.sleep(0.1)
        yield Dovecot("127.0.0.1", port, USER, PASSWORD, tls)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(root, ignore_errors=True)
