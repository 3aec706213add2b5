"""Debian's Chromium, headless, driven by Playwright for Python (its own browser downloads are
never used), and axe-core from npm, installed outside the source tree.

    with chromium(base_url) as tab:
        tab.load("/")                 # fails on a console error or a request off base_url
        tab.page.locator(...)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE_VERSION = "4.10.2"
AXE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tradesense" / \
    f"axe-core-{AXE_VERSION}"


@dataclass
class Tab:
    page: Any
    base_url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    last_bytes: int = 0

    def load(self, path: str = "/") -> Any:
        response = self.page.goto(self.base_url + path, wait_until="load")
        assert response is not None and response.status == 200, response
        self.last_bytes = len(response.body())
        return response

    def outside(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.base_url + "/")]


@contextmanager
def chromium(base_url: str, width: int = 1280, height: int = 900) -> Iterator[Tab]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/system-deps.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (the test extra has it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            tab = Tab(page, base_url)
            context.on("request", lambda request: tab.requests.append(request.url))
            page.on("console", lambda message: tab.console_errors.append(message.text)
                    if message.type == "error" else None)
            page.on("pageerror", lambda error: tab.page_errors.append(str(error)))
            yield tab
        finally:
            browser.close()


def axe_source() -> str:
    """axe-core's script, from npm into ~/.cache/tradesense (once); skips when npm cannot
    reach the registry."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: axe-core cannot be fetched")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR),
             f"axe-core@{AXE_VERSION}"], capture_output=True, text=True, timeout=180,
            check=False)
        if done.returncode != 0 or not script.exists():
            pytest.skip(f"npm could not install axe-core: {done.stderr[-500:]}")
    return script.read_text()


def axe_violations(tab: Tab) -> list[dict[str, Any]]:
    """axe-core's violations on the loaded page, injected through DevTools (the page's CSP
    forbids every script of its own, as it should)."""
    tab.page.evaluate(axe_source())
    result: dict[str, Any] = tab.page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})")
    return list(result["violations"])
