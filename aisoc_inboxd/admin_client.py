"""
The CLI's way to a running daemon's admin API, for what only the daemon knows (its recent
deliveries are in its memory, not in the store): the first C{admin.listen} address, the key from
C{admin.api_key_file}, one blocking request at a time (a command, not a server).
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from aisoc_inboxd.config import Settings

#: interfaces that mean "every address": the client reaches them on the loopback
_ANY_INTERFACE = {"", "0.0.0.0", "::", "::0"}


class AdminUnreachable(Exception):
    """
    The admin API did not answer, or answered with an error; the message says which and why.
    """


def admin_url(endpoint: str) -> str:
    """
    The base URL of an admin listener's endpoint string (C{tcp:9109:interface=127.0.0.1},
    C{ssl:port=9109:…}); L{AdminUnreachable} for one an HTTP client cannot reach (C{unix:}).
    """
    kind, *parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", endpoint)]
    if kind not in ("tcp", "ssl", "tcp6"):
        raise AdminUnreachable(f"admin.listen {endpoint!r}: the CLI reaches only tcp: and ssl: listeners")
    options = dict(p.split("=", 1) for p in parts if "=" in p)
    port = options.get("port") or next((p for p in parts if "=" not in p), "")
    host = options.get("interface", "")
    host = "127.0.0.1" if host in _ANY_INTERFACE else host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if kind == 'ssl' else 'http'}://{host}:{port}"


class AdminClient:
    def __init__(self, base_url: str, key: str, timeout: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._key = key
        self._timeout = timeout

    @classmethod
    def of(cls, settings: Settings) -> AdminClient:
        if not settings.admin.listen:
            raise AdminUnreachable("admin.listen is empty: the daemon serves no admin API to ask")
        key_file = settings.state_path(settings.admin.api_key_file)
        try:
            key = key_file.read_text(encoding="ascii").strip()
        except OSError as e:
            raise AdminUnreachable(f"{key_file}: cannot read the admin API key: {e.strerror} "
                                   f"(has the daemon started with this config?)") from None
        return cls(admin_url(settings.admin.listen[0]), key)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """
        The JSON answer to C{method path}; L{AdminUnreachable} naming the admin API's own error.
        """
        request = urllib.request.Request(self._base + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self._key}"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise AdminUnreachable(f"admin API {e.code}: {_error_of(e.read())}") from None
        except (urllib.error.URLError, OSError) as e:
            raise AdminUnreachable(f"the admin API at {self._base} does not answer: "
                                   f"{getattr(e, 'reason', e)}") from None

    def deliveries(self, tenant: str, fingerprint: str) -> dict[str, Any]:
        path = f"/v1/admin/tenants/{quote(tenant, safe='')}/tokens/{quote(fingerprint, safe='')}/deliveries"
        return self.call("GET", path)  # type: ignore[no-any-return]


def _error_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error"))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
