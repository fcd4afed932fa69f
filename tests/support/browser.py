"""
Headless Chromium driven through chromedriver's W3C WebDriver protocol (Debian's chromium and
chromium-driver packages, installed by scripts/test-services), for tests that click what an
operator clicks. Blocking calls: run them in a thread (C{threads.deferToThread}).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port

#: the W3C key of an element reference
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Browser:
    """
    One chromedriver and one headless Chromium session with its own profile in C{profile}.
    """

    def __init__(self, profile: Path) -> None:
        driver, chromium = shutil.which("chromedriver"), shutil.which("chromium")
        if driver is None or chromium is None:
            pytest.fail("chromium and chromedriver are not installed: run scripts/test-services")
        port = free_port()
        self._driver = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                self._call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        options = {"binary": chromium, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}"]}
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self._session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def open(self, url: str) -> None:
        self._call("POST", f"{self._session}/url", {"url": url})

    def click(self, css: str) -> None:
        """
        Click the first element C{css} selects, as a person does (it must be shown).
        """
        element = self._call("POST", f"{self._session}/element", {"using": "css selector", "value": css})
        self._call("POST", f"{self._session}/element/{element[_ELEMENT]}/click", {})

    def page(self) -> str:
        """
        The DOM of the page now shown, serialized.
        """
        return str(self._call("GET", f"{self._session}/source"))

    def text(self) -> str:
        """
        The text the page shows (what a person reads: closed C{<details>} hide their content).
        """
        element = self._call("POST", f"{self._session}/element", {"using": "css selector", "value": "body"})
        return str(self._call("GET", f"{self._session}/element/{element[_ELEMENT]}/text"))

    def text_showing(self, expected: str, timeout: float = 30.0) -> str:
        """
        L{text} once it shows C{expected}: a click that posts a form may return before the next
        page is in; C{expected} missing after C{timeout} seconds fails with the text shown.
        """
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            try:
                shown = self.text()
            except urllib.error.HTTPError:  # no body yet: the next page is loading
                shown = ""
            if expected in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"the page did not show {expected!r} within {timeout} s:\n{shown}")

    def url(self) -> str:
        return str(self._call("GET", f"{self._session}/url"))

    def close(self) -> None:
        try:
            self._call("DELETE", self._session)
        finally:
            self._driver.terminate()
            self._driver.wait(30)
