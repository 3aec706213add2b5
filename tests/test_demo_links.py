"""`make demo` links only Prometheus pages that the installed Prometheus serves (Debian's 2.42
has no React UI: /alerts and /graph are 404 there, the classic pages work)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import run_prometheus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.sh"
PAGES = ROOT / "scripts" / "prom_pages.sh"


def _prom_page(base: str, *paths: str) -> str:
    script = f'. "{PAGES}"; prom_page "$@"'
    done = subprocess.run(["bash", "-c", script, "prom_page", base, *paths],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def test_demo_links_are_pages_the_installed_prometheus_serves(tmp_path: Path) -> None:
    with run_prometheus(tmp_path, sidecar="127.0.0.1:1") as prom:
        for paths in (("/alerts", "/classic/alerts"), ("/graph", "/classic/graph"),
                      ("/targets", "/classic/targets")):
            url = _prom_page(prom.url, *paths)
            assert url.startswith(prom.url) and url[len(prom.url):] in paths
            page = httpx.get(url, timeout=10)
            assert page.status_code == 200, url
            assert "Prometheus" in page.text


def test_demo_prints_no_prometheus_page_without_checking_it() -> None:
    text = DEMO.read_text()
    hard_coded = re.findall(r"\$PROM_PORT(/[\w/-]*)", text)
    assert set(hard_coded) <= {"/-/ready"}, hard_coded
    assert 'prom_page "$prom" /alerts' in text
