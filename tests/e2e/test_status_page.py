"""The status page in a real browser (Debian's Chromium, headless, driven by Playwright) while
the example app runs traffic against a private redis-server: what a person sees when Redis
goes down and comes back, the app's pool row, a slow fingerprint appearing; no request leaves
the sidecar, no console error, the page's weight; axe-core finds no serious violation; hostile
strings pushed over OTLP or configured as a target stay text in the DOM."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.status import hostile_producer
from tests.status.browser import Tab, axe_violations, chromium
from tests.support.e2e_app import ROOT, app_env, poll, serving
from tests.support.net import free_port
from tests.support.redis_servers import RedisServer, start_redis
from tests.support.sidecar import SidecarProcess, run_sidecar

pytestmark = pytest.mark.timeout(300)
SERVICE = "status-e2e"
MAX_PAGE_BYTES = 150_000


@contextmanager
def app_with_traffic(sidecar: SidecarProcess, redis: RedisServer, workdir: Path
                     ) -> Iterator[str]:
    """The example app exporting to `sidecar` every half second, and the traffic generator
    asking for the slow summary once in 20 requests."""
    port = free_port()
    env = app_env(sidecar.otlp_url, SERVICE, DATABASE_URL=f"sqlite:///{workdir / 'app.db'}",
                  REDIS_URL=f"{redis.url}/0")
    base_url = f"http://127.0.0.1:{port}"
    argv = ["-m", "examples.tradesense_app", "--port", str(port), "--log-level", "warning"]
    with (workdir / "app.log").open("wb") as log, serving(argv, env, f"{base_url}/healthz", log):
        traffic = subprocess.Popen(
            [sys.executable, "-m", "examples.tradesense_app.traffic", "--base-url", base_url,
             "--rate", "15", "--slow-every", "20", "--report-every", "0"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield base_url
        finally:
            traffic.terminate()
            traffic.wait(20)


def scraped(tab: Tab) -> None:
    """Prometheus's scrape, then a reload of the page, as a person would."""
    httpx.get(tab.base_url + "/metrics", timeout=10)
    tab.load("/")


def state_of(tab: Tab, address: str) -> str:
    row = tab.page.locator("tr", has=tab.page.locator(".addr", has_text=address))
    text: str = row.locator('td[data-label="State"]').inner_text()
    return text


def test_a_person_sees_redis_go_down_and_come_back(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        with run_sidecar([f"--redis.addr={redis.url}"]) as sidecar, \
                app_with_traffic(sidecar, redis, tmp_path), chromium(sidecar.web_url) as tab:
            check_the_page(tab, redis)
    finally:
        redis.stop()


def check_the_page(tab: Tab, redis: RedisServer) -> None:
    page = tab.page

    def up() -> bool:
        scraped(tab)
        return state_of(tab, redis.url).startswith("▲ up")
    poll(up, "the target shown up", timeout=30, interval=0.5)

    def pool_row() -> str | None:
        scraped(tab)
        row = page.locator("tr", has=page.locator(".addr", has_text=SERVICE))
        if not row.count():
            return None
        pools: str = row.locator('td[data-label="Pools"]').inner_text()
        return pools if "sqlite" in pools and "redis" in pools else None
    pools = poll(pool_row, "the app's pool row", timeout=40, interval=0.5)
    assert "of 60 used" in pools and "waiting" in pools, pools  # pool of 20 + 40 overflow

    def slow() -> str | None:
        scraped(tab)
        cells = page.locator("code.fp").all_inner_texts()
        return next((c for c in cells if "tradesense_sleep" in c), None)
    poll(slow, "a slow fingerprint on the page", timeout=40, interval=0.5)
    assert "WHERE user_id = ?" in page.locator("code.fp").first.inner_text()

    script = len(httpx.get(tab.base_url + "/status.js", timeout=10).content)
    weight = tab.last_bytes + script
    print(f"\nstatus page: {tab.last_bytes} bytes of HTML + {script} bytes of script "
          f"(uncompressed); {len(tab.requests)} requests so far, all to the sidecar")
    assert weight < MAX_PAGE_BYTES

    updated = page.locator("#updated time").get_attribute("datetime")
    page.wait_for_function(  # it updates itself in place, without a navigation
        "was => document.querySelector('#updated time').getAttribute('datetime') !== was",
        arg=updated, timeout=15_000)
    page.locator("#pause").click()
    assert page.locator("#pause").get_attribute("aria-pressed") == "true"
    page.locator("#pause").click()

    redis.stop()

    def down() -> str | None:
        scraped(tab)
        text = state_of(tab, redis.url)
        return text if text.startswith("▼ down") else None
    text = poll(down, "the target shown down", timeout=30, interval=0.5)
    assert "connection refused" in text, text
    assert "DOWN" in page.locator(".summary").inner_text()

    redis.restart()
    poll(up, "the target shown up again", timeout=30, interval=0.5)

    for width, height in ((1280, 900), (390, 844)):  # a laptop, then a phone (rows as cards)
        page.set_viewport_size({"width": width, "height": height})
        violations = axe_violations(tab)
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, (width, json.dumps(serious, indent=1)[:4000])
        print(f"axe-core at {width} px: {[(v['id'], v['impact']) for v in violations]}")
    assert tab.outside() == [], tab.outside()
    assert tab.console_errors == [] and tab.page_errors == [], tab.console_errors
    assert set(tab.requests) <= {tab.base_url + p for p in ("/", "/status.js", "/favicon.ico")}


def test_hostile_strings_stay_text_in_the_dom(tmp_path: Path) -> None:
    target = (f"unix://{tmp_path}/<script>window.__pwned = 8</script>"
              '"><img src=x onerror=window.__pwned=7>.sock')  # no such socket: a target down
    with run_sidecar([f"--redis.addr={target}"]) as sidecar:
        env = app_env(sidecar.otlp_url, "ignored")
        subprocess.run([sys.executable, hostile_producer.__file__], env=env, cwd=ROOT,
                       check=True, timeout=60)

        def pushed() -> dict[str, object] | None:
            status: dict[str, object] = httpx.get(f"{sidecar.web_url}/api/status").json()
            return status if status["apps"] and status["slow_queries"] else None
        status = poll(pushed, "the hostile producer's push")
        slow_queries = status["slow_queries"]
        assert isinstance(slow_queries, list)
        [slow] = slow_queries
        with chromium(sidecar.web_url) as tab:
            tab.load("/")
            page = tab.page
            scripts = page.evaluate("[...document.scripts].map(s => s.outerHTML)")
            assert scripts == ['<script src="/status.js" defer=""></script>']  # the page's own
            assert page.evaluate("document.querySelectorAll('img, [onerror]').length") == 0
            assert page.evaluate("window.__pwned") is None
            texts = set(page.locator(".addr, code").all_text_contents())
            for expected in (hostile_producer.SERVICE, hostile_producer.INSTANCE,
                             hostile_producer.POOL, hostile_producer.CACHE, target,
                             slow["fingerprint"]):
                assert expected in texts, (expected, texts)
            assert "<script" in slow["fingerprint"].replace(" ", "")
            assert tab.console_errors == [] and tab.page_errors == []
