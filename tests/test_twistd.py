"""
Launching through the twistd plugin as operators do: listed, started, stopped, and refusing to start
with a clear message when something it needs is wrong.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.shared import PROJECT
from tests.support.ports import free_port

TWISTD = str(Path(sys.executable).with_name("twistd"))


def twistd(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TWISTD, *args], cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inboxd.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n" + text)
    return path


def test_plugin_is_listed() -> None:
    """twistd --help lists aisoc-inboxd, and its own --help documents --config."""
    assert "aisoc-inboxd" in twistd("--help").stdout
    own = twistd("aisoc-inboxd", "--help")
    assert "--config" in own.stdout and "embedded default" in own.stdout


def test_twistd_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """twistd -n aisoc-inboxd --config PATH binds its listeners, answers /healthz, and exits 0 on SIGTERM."""
    http, metrics = free_port(), free_port()
    config = write_config(tmp_path, f"http:\n  listen: ['tcp:{http}:interface=127.0.0.1']\n"
                                    f"metrics:\n  listen: ['tcp:{metrics}:interface=127.0.0.1']\n"
                                    "admin:\n  listen: []\nsyslog:\n  listeners: []\n")
    log = tmp_path / "twistd.log"
    process = subprocess.Popen([TWISTD, "-n", "--logfile", str(log), "--pidfile", "", "aisoc-inboxd",
                                "--config", str(config)], cwd=PROJECT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text() if log.exists() else "twistd exited"
            try:
                with socket.create_connection(("127.0.0.1", http), 0.5) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    reply = s.recv(4096)
                break
            except OSError:
                assert time.monotonic() < deadline, "the daemon never listened"
                time.sleep(0.2)
        assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    # twistd ends a clean SIGTERM shutdown by re-raising the signal (Twisted's convention)
    assert code in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "store ready at schema version" in text
    assert "Main loop terminated." in text


@pytest.mark.parametrize("config_text, message", [
    ("database:\n  dsn: 'postgresql://aisoc@127.0.0.1:{closed}/aisoc'\n",
     "cannot start: PostgreSQL is unreachable (host=127.0.0.1 port={closed} dbname=aisoc)"),
    ("http:\n  listne: []\n", "http.listne: unknown key"),
    ("templates:\n  directories: ['{bad_templates}']\n", "broken.yaml"),
])
def test_start_fails_fast_with_a_message(tmp_path: Path, config_text: str, message: str) -> None:
    """An unreachable PostgreSQL, a bad key or a bad template stops twistd at once, saying why."""
    closed = free_port()
    bad_templates = tmp_path / "templates"
    bad_templates.mkdir()
    (bad_templates / "broken.yaml").write_text("id: broken\nclass_uid: 123456\n")
    config = write_config(tmp_path, config_text.format(closed=closed, bad_templates=bad_templates))
    done = twistd("-n", "--pidfile", "", "aisoc-inboxd", "--config", str(config), timeout=30)
    assert done.returncode != 0
    assert message.format(closed=closed) in done.stdout + done.stderr


def test_production_sample_fails_fast_without_its_database() -> None:
    """twistd -n aisoc-inboxd --config etc/inboxd.yaml exits at once here: its PostgreSQL does not exist."""
    done = twistd("-n", "--pidfile", "", "aisoc-inboxd", "--config", "etc/inboxd.yaml", timeout=30)
    assert done.returncode != 0
    assert "cannot start: PostgreSQL is unreachable (host=db.internal port=5432 dbname=aisoc)" in done.stderr



_PLUGINS = """
import site, sys
sys.path.append(sys.argv[1])         # this venv's packages, without running their .pth files
site.addsitedir(sys.argv[2])         # the editable install under test, with its .pth
import aisoc_inboxd
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
print(aisoc_inboxd.__file__)
print(" ".join(sorted(p.tapname for p in getPlugins(IServiceMaker))))
"""


def build(source: Path, hook: str, into: Path) -> Path:
    """
    Run setuptools' PEP 517/660 C{hook} (build_wheel, build_editable) on C{source}: the wheel it made.
    """
    done = subprocess.run([sys.executable, "-c", f"import sys; from setuptools import build_meta; "
                                                 f"build_meta.{hook}(sys.argv[1])", str(into)],
                          cwd=source, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = into.glob("*.whl")
    return wheel


def test_a_plain_install_shows_the_plugin_to_twistd(tmp_path: Path) -> None:
    """`pip install -e .` without editable_mode=compat, and `pip install .`, both let twistd find the plugin:
    the editable install puts the checkout on sys.path (where ./twisted/plugins lives), the wheel carries
    twisted/plugins/aisoc_inboxd_plugin.py into site-packages. (Built from a copy: the checkout stays as it is.)"""
    import shutil
    import sysconfig
    import zipfile

    source = tmp_path / "source"
    for folder in ("aisoc_inboxd", "twisted", "templates"):
        shutil.copytree(PROJECT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "dropin.cache"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    with zipfile.ZipFile(build(source, "build_wheel", tmp_path / "wheel")) as wheel:
        assert "twisted/plugins/aisoc_inboxd_plugin.py" in wheel.namelist()
    with zipfile.ZipFile(build(source, "build_editable", tmp_path / "editable")) as wheel:
        wheel.extractall(tmp_path / "site")
    found = subprocess.run([sys.executable, "-I", "-S", "-c", _PLUGINS, sysconfig.get_paths()["purelib"],
                            str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr[-3000:]
    location, plugins = found.stdout.splitlines()[-2:]
    assert Path(location).is_relative_to(source)
    assert "aisoc-inboxd" in plugins.split()
