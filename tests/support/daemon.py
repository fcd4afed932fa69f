"""
Running the real daemon in this process for end-to-end tests: real listeners on 127.0.0.1 port 0,
the real store and sink in a temporary state directory, and a treq client (verifying TLS when the
daemon listens with TLS).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import treq
from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.internet.task import deferLater
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import Settings, load_settings
from aisoc_inboxd.service import InboxDaemon
from aisoc_inboxd.tokens import TokenAdmin
from aisoc_inboxd.vendors import VendorGate
from aisoc_inboxd.wiring import build_daemon
from tests.support.tls import TlsFiles


@dataclass
class RunningDaemon:
    daemon: InboxDaemon
    settings: Settings
    base_url: str
    metrics_url: str
    admin_url: str
    http: Any
    reactor: Any

    @property
    def admin(self) -> TokenAdmin:
        catalog = self.daemon.intake.catalog
        return TokenAdmin(self.daemon.store, self.reactor, catalog.allowed, self.daemon.token_cache.invalidate)

    async def mint(self, tenant: str = "tenant-a", template: str = "generic-json",
                   signing_secret: bytes | None = None) -> str:
        return (await self.admin.mint(tenant, template, signing_secret=signing_secret)).token

    def events(self) -> list[dict[str, Any]]:
        path = Path(self.settings.state_dir) / self.settings.sink.file.directory / "events.ndjson"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None,
                   method: str = "POST") -> tuple[int, Any, Any]:
        """
        Send a request; return the status, the body parsed as JSON (or raw bytes), and the response.
        """
        response = await self.http.request(method, self.base_url + path, data=body,
                                           headers={k: [v] for k, v in (headers or {}).items()})
        content = await response.content()
        try:
            parsed: Any = json.loads(content)
        except ValueError:
            parsed = content
        return response.code, parsed, response

    @property
    def admin_key(self) -> str:
        return (Path(self.settings.state_dir) / self.settings.admin.api_key_file).read_text().strip()

    async def call_admin(self, method: str, path: str, body: dict[str, Any] | None = None,
                         key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": [f"Bearer {self.admin_key if key is None else key}"]}
        response = await treq.request(method, self.admin_url + path, headers=headers,
                                      data=json.dumps(body).encode() if body is not None else None)
        return response.code, json.loads(await response.content())

    async def metrics(self) -> str:
        response = await treq.get(self.metrics_url)
        return (await response.content()).decode()

    async def metric(self, name: str, **labels: str) -> float:
        """
        The sum of C{name}'s samples whose labels include C{labels} (0 when there is none yet).
        """
        text = await self.metrics()
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    async def stop(self) -> None:
        await self.daemon.stopService()


async def wait_for(condition: Callable[[], bool], reactor: Any, timeout: float = 30.0) -> None:
    """
    Poll C{condition} every 0.1 s until it holds; fail once C{timeout} seconds have passed.
    """
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await deferLater(reactor, 0.1)
    assert condition()


def daemon_settings(state_dir: Path, tls: TlsFiles | None = None, **sections: dict[str, Any]) -> Settings:
    base = load_settings(None, {})
    http = dataclasses.replace(base.http, listen=[tls.endpoint() if tls else "tcp:0:interface=127.0.0.1"],
                               **sections.pop("http", {}))
    local = ["tcp:0:interface=127.0.0.1"]
    sections.setdefault("syslog", dataclasses.replace(base.syslog, listeners=[]))  # opt in per test
    return dataclasses.replace(base, state_dir=str(state_dir), http=http,
                               metrics=dataclasses.replace(base.metrics, listen=local),
                               admin=dataclasses.replace(base.admin, listen=local), **sections)


def https_client(reactor: Any, tls: TlsFiles) -> HTTPClient:
    """
    A client that trusts only the test CA of C{tls}.
    """
    trust = ssl.Certificate.loadPEM(tls.ca_cert.read_bytes())
    return HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))


async def start_daemon(reactor: Any, settings: Settings, tls: TlsFiles | None = None,
                       vendors: VendorGate | None = None,
                       read_settings: Callable[[], Settings] | None = None) -> RunningDaemon:
    """
    @param read_settings: what a reload reads; without it, a reload finds the settings unchanged.
    """
    catalog = TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
    daemon = build_daemon(settings, catalog, reactor, vendors, read_settings=read_settings or (lambda: settings))
    daemon.startService()
    await daemon.started
    http_address = daemon.address("http")
    metrics_address = daemon.address("metrics")
    admin_address = daemon.address("admin")
    if tls:
        client = https_client(reactor, tls)
        base = f"https://127.0.0.1:{http_address.port}"
    else:
        client = HTTPClient(Agent(reactor))
        base = f"http://127.0.0.1:{http_address.port}"
    return RunningDaemon(daemon, settings, base, f"http://127.0.0.1:{metrics_address.port}/metrics",
                         f"http://127.0.0.1:{admin_address.port}", client, reactor)
