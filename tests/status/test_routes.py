"""The page's routes in process, against the shared Redis (read only) and a closed port."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from exporter.app import build_sidecar
from exporter.cli import load_config
from exporter.status.page import CSP
from tests.support.net import free_port

SHARED = "redis://127.0.0.1:6379"

Check = Callable[[httpx.AsyncClient, Any], Awaitable[None]]


def run(argv: list[str], check: Check, serving: bool = True) -> None:
    config = load_config(argv, {})
    sidecar = build_sidecar(config)
    if serving:  # as server.run registers it before the listeners serve
        sidecar.connections.listener("otlp", config.server)

    async def main() -> None:
        transport = httpx.ASGITransport(app=sidecar.web_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            try:
                await check(client, sidecar)
            finally:
                await sidecar.close()

    asyncio.run(main())


def metric_names(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_healthz_readyz_and_api_status_name_the_target_that_is_down() -> None:
    closed = f"redis://127.0.0.1:{free_port()}"

    async def check(client: httpx.AsyncClient, sidecar: Any) -> None:
        await client.get("/metrics")
        health = (await client.get("/healthz")).json()
        assert health["status"] == "alive"
        assert health["targets_down"] == [closed]
        assert health["targets"][closed]["error"] == "connection refused"
        assert health["targets"][SHARED]["last_scrape"].endswith("Z")  # ISO 8601, UTC
        ready = await client.get("/readyz")
        assert ready.status_code == 200  # Redis down does not make the sidecar unready
        body = ready.json()
        assert body["receiver"]["accepting"] is True
        assert body["targets_down"][0]["target"] == closed
        status = (await client.get("/api/status")).json()
        states = {t["address"]: (t["state"], t["error"]) for t in status["targets"]}
        assert states == {closed: ("down", "connection refused"), SHARED: ("up", "")}
        assert status["targets"][0]["address"] == closed  # what is down comes first

    run([f"--redis.addr={SHARED}", f"--redis.addr={closed}"], check)


def test_readyz_is_503_when_the_receiver_is_not_serving() -> None:
    async def check(client: httpx.AsyncClient, sidecar: Any) -> None:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["receiver"]["reasons"] == ["the OTLP listener is not serving"]

    run(["--redis.addr="], check, serving=False)


def test_the_page_sends_a_strict_csp_and_scrapes_once_when_no_scrape_passed() -> None:
    async def check(client: httpx.AsyncClient, sidecar: Any) -> None:
        page = await client.get("/")
        assert page.headers["content-security-policy"] == CSP
        assert "default-src 'none'" in CSP and "script-src 'self';" in CSP
        assert "unsafe" not in CSP
        assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/status.js" defer>']
        assert "</script>" in page.text.split("<script", 1)[1][:40]  # no inline code
        script = await client.get("/status.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "▲ up" in page.text and SHARED in page.text
        await client.get("/")
        await client.get("/api/status")
        assert sidecar.redis.round_trips[SHARED] == 1  # the views shared one scrape

    run([f"--redis.addr={SHARED}"], check)


def test_the_page_adds_nothing_to_metrics() -> None:
    async def check(client: httpx.AsyncClient, sidecar: Any) -> None:
        before = metric_names((await client.get("/metrics")).text)
        for path in ("/", "/api/status", "/readyz", "/healthz"):
            assert (await client.get(path)).status_code == 200
        after = metric_names((await client.get("/metrics")).text)
        assert after == before

    run([f"--redis.addr={SHARED}"], check)


def test_a_recent_scrape_spares_the_page_its_own() -> None:
    async def check(client: httpx.AsyncClient, sidecar: Any) -> None:
        await client.get("/metrics")
        for _ in range(3):
            assert (await client.get("/")).status_code == 200
        assert sidecar.redis.round_trips[SHARED] == 1  # Prometheus's, none of the page's

    run([f"--redis.addr={SHARED}"], check)


def test_readyz_is_503_at_the_receivers_connection_limit() -> None:
    config = load_config(["--redis.addr="], {})
    sidecar = build_sidecar(config)
    listener = sidecar.connections.listener("otlp", config.server)
    listener.open = config.server.max_connections

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=sidecar.web_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            return await client.get("/readyz")

    ready = asyncio.run(main())
    assert ready.status_code == 503
    [reason] = ready.json()["receiver"]["reasons"]
    assert reason.startswith("at its connection limit")
