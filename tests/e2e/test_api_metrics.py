"""The example app in its own process (uvicorn), exporting real OTLP/HTTP to a sidecar process,
under the traffic generator's load; what the sidecar serves on /metrics is checked against what
the generator counted.

- per-route series carry route templates only, and 1,000 distinct unknown paths add no route;
- the app's cache hit ratio (cache_gets_total) is the one the generator saw in X-Cache;
- with the app's Redis stopped, the app keeps answering 200 from memory (and the database), and
  cache_errors_total rises.

Each app has a redis-server of its own; exports every 500 ms keep the whole file to seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.e2e_app import ROOT, Metrics, app_env, poll, scrape, serving
from tests.support.net import free_port
from tests.support.redis_servers import RedisServer, start_redis
from tests.support.sidecar import SidecarProcess, run_sidecar

DURATION_COUNT = "http_server_request_duration_seconds_count"
GETS = "cache_gets_total"
ERRORS = "cache_errors_total"
TEMPLATES = {"/trades", "/trades/{trade_id}", "/analytics/summary", "/healthz"}

pytestmark = pytest.mark.timeout(180)


@dataclass
class App:
    proc: subprocess.Popen[bytes]
    base_url: str
    service: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_app(sidecar: SidecarProcess, redis: RedisServer, workdir: Path, service: str,
            **env: str) -> Iterator[App]:
    """`python -m examples.tradesense_app` exporting to `sidecar`, faults enabled."""
    port = free_port()
    environment = app_env(sidecar.otlp_url, service,
                          DATABASE_URL=f"sqlite:///{workdir / 'app.db'}",
                          REDIS_URL=f"{redis.url}/0", TRADESENSE_FAULTS="1",
                          SLOW_QUERY_THRESHOLD="5", **env)
    log_path = workdir / "app.log"
    base_url = f"http://127.0.0.1:{port}"
    argv = ["-m", "examples.tradesense_app", "--port", str(port), "--log-level", "warning"]
    with log_path.open("wb") as log, serving(argv, environment, f"{base_url}/healthz",
                                             log) as proc:
        yield App(proc, base_url, service, log_path)


def generate(app: App, *args: str) -> dict[str, Any]:
    """Run the traffic generator to its end; its final JSON counts."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.tradesense_app.traffic", "--base-url", app.base_url,
         "--report-every", "0", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stats: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return stats


def requests_by_route(metrics: Metrics, service: str) -> Counter[str]:
    """"METHOD route status" -> requests, as the sidecar serves them (route None: unmatched)."""
    found: Counter[str] = Counter()
    for sample in metrics.find(DURATION_COUNT, service_name=service):
        labels = sample.labels
        found[f"{labels['http_request_method']} {labels.get('http_route')} "
              f"{labels['http_response_status_code']}"] += int(sample.value)
    return found


def expected_by_route(stats: dict[str, Any]) -> Counter[str]:
    return Counter({f"{route} {status}": n for route, by_status in stats["by_route"].items()
                    for status, n in by_status.items()})


def cache_gets(metrics: Metrics, service: str, result: str, **labels: str) -> float:
    return sum(s.value for s in metrics.find(GETS, service_name=service, cache_result=result,
                                             **labels))


def routes(metrics: Metrics, service: str) -> set[str | None]:
    return {s.labels.get("http_route") for s in metrics.find(DURATION_COUNT, service_name=service)}


def _diagnose(app: App, sidecar: SidecarProcess) -> str:
    return f"\n--- app log:\n{app.log()[-3000:]}\n--- sidecar log:\n{sidecar.logs()[-2000:]}"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    with run_sidecar(["--redis.addr="]) as process:
        yield process


@pytest.fixture(scope="module")
def app(sidecar: SidecarProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    workdir = tmp_path_factory.mktemp("e2e-api")
    redis = start_redis(workdir / "redis")
    try:
        with run_app(sidecar, redis, workdir, "e2e-api") as running:
            yield running
    finally:
        redis.stop()


@dataclass
class Traffic:
    warmup: dict[str, Any]  # the generator's counts of a first, warming run
    measured: dict[str, Any]  # and of the run measured
    hits_before: float  # the app's cache hits and misses on the sidecar between the two
    misses_before: float

    @property
    def requests(self) -> int:
        return int(self.warmup["requests"] + self.measured["requests"])


@pytest.fixture(scope="module")
def traffic(app: App, sidecar: SidecarProcess) -> Traffic:
    """The generator's mix at 40 a second (writes and single-trade reads included) for four
    seconds to warm the caches, then the same again measured (the same seed: the same traders
    come back), each run awaited until the sidecar shows every one of its requests."""
    expected: Counter[str] = Counter()

    def run(*args: str) -> tuple[dict[str, Any], Metrics]:
        stats = generate(app, "--rate", "40", "--slow-every", "0", "--write-share", "0.02",
                         *args)
        assert stats["errors"] == 0 and stats["rate_limited"] == 0, stats
        expected.update(expected_by_route(stats))

        def all_there() -> Metrics:
            metrics = scrape(sidecar.web_url)
            seen = requests_by_route(metrics, app.service)
            seen = Counter({k: n for k, n in seen.items() if not k.startswith("GET /healthz ")})
            assert seen == expected, f"sidecar {dict(seen)} vs generator {dict(expected)}"
            return metrics

        try:
            metrics = poll(all_there, "every generated request on the sidecar", timeout=30,
                           interval=0.25)
        except AssertionError as error:
            raise AssertionError(f"{error}{_diagnose(app, sidecar)}") from None
        return stats, metrics

    warmup, warm = run("--duration", "4", "--seed", "3")
    measured, _ = run("--duration", "4", "--seed", "3")
    return Traffic(warmup, measured, cache_gets(warm, app.service, "hit"),
                   cache_gets(warm, app.service, "miss"))


# --------------------------------------------------------------------------- the tests
def test_per_route_series_carry_templates_only(
    app: App, sidecar: SidecarProcess, traffic: Traffic
) -> None:
    metrics = scrape(sidecar.web_url)
    assert routes(metrics, app.service) <= TEMPLATES
    seen = requests_by_route(metrics, app.service)
    for route in ("GET /trades 200", "GET /trades/{trade_id} 200",
                  "GET /analytics/summary 200", "POST /trades 201"):
        assert seen[route] > 0, (route, dict(seen))
    assert sum(n for k, n in seen.items() if not k.startswith("GET /healthz ")) == \
        traffic.requests
    sample = metrics.find(DURATION_COUNT, service_name=app.service, http_route="/trades")[0]
    assert sample.labels["url_scheme"] == "http"
    assert sample.labels["otel_scope_name"] == "exporter.instrument"
    assert sample.labels["service_instance_id"]


def test_a_thousand_unknown_paths_add_no_route_series(
    app: App, sidecar: SidecarProcess, traffic: Traffic
) -> None:
    before = scrape(sidecar.web_url)
    routes_before = routes(before, app.service)
    unmatched_before = requests_by_route(before, app.service)["GET None 404"]
    run = uuid.uuid4().hex[:8]
    shapes = ("/{i}-{run}", "/trades/{i}/{run}", "/analytics/{run}/{i}", "/api/v{i}/{run}")
    with httpx.Client(base_url=app.base_url, timeout=30) as client:
        statuses = Counter(
            client.get(shapes[i % len(shapes)].format(i=i, run=run)).status_code
            for i in range(1000))
    assert statuses == {404: 1000}

    def counted() -> Metrics | None:
        metrics = scrape(sidecar.web_url)
        unmatched = requests_by_route(metrics, app.service)["GET None 404"]
        return metrics if unmatched == unmatched_before + 1000 else None

    after = poll(counted, "the 1,000 unmatched requests on the sidecar", timeout=30,
                 interval=0.25)
    routes_after = routes(after, app.service)
    assert routes_after == routes_before | {None}
    assert {r for r in routes_after if r is not None} <= TEMPLATES
    assert run not in after.text


def test_the_apps_hit_ratio_is_the_one_the_generator_counted(
    app: App, sidecar: SidecarProcess, traffic: Traffic
) -> None:
    """Over the measured run: the increase of cache_gets_total against the X-Cache headers."""
    metrics = scrape(sidecar.web_url)
    hits = cache_gets(metrics, app.service, "hit") - traffic.hits_before
    misses = cache_gets(metrics, app.service, "miss") - traffic.misses_before
    measured = hits / (hits + misses)
    counted = traffic.measured
    print(f"\nhit ratio over the measured run: sidecar {measured:.4f} ({hits:g} hits, "
          f"{misses:g} misses), generator {counted['hit_rate']:.4f} ({counted['cache_hit']} "
          f"hits, {counted['cache_miss']} misses); warm-up run: generator "
          f"{traffic.warmup['hit_rate']:.4f}")
    assert abs(measured - counted["hit_rate"]) <= 0.02
    assert (hits, misses) == (counted["cache_hit"], counted["cache_miss"])
    assert measured > traffic.warmup["hit_rate"]  # the caches were warm
    hits = cache_gets(metrics, app.service, "hit")
    by_layer = {layer: cache_gets(metrics, app.service, "hit", cache_layer=layer)
                for layer in ("memory", "redis")}
    assert by_layer["memory"] > 0 and sum(by_layer.values()) == hits
    for cache in ("trades", "analytics"):
        assert cache_gets(metrics, app.service, "miss", cache_name=cache,
                          cache_layer="redis") > 0
    invalidated = metrics.find("cache_invalidations_total", service_name=app.service)
    assert {s.labels["cache_layer"] for s in invalidated if s.value > 0} == {"memory", "redis"}
    assert sum(s.value for s in metrics.find(ERRORS, service_name=app.service)) == 0


def test_with_redis_stopped_the_app_answers_from_memory(
    sidecar: SidecarProcess, tmp_path: Path
) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        with run_app(sidecar, redis, tmp_path, "e2e-api-fallback",
                     TRADESENSE_MEMORY_TTL="600") as app, \
             httpx.Client(base_url=app.base_url, timeout=30) as client:
            hot = [("/trades", {"user_id": u}) for u in range(1, 11)] + [
                ("/analytics/summary", {"user_id": u}) for u in range(1, 11)]
            for path, params in hot:
                assert client.get(path, params=params).headers["X-Cache"] == "miss"
            redis.stop()

            answers = [client.get(path, params=params) for path, params in hot]
            assert [(a.status_code, a.headers["X-Cache"], a.headers["X-Cache-Layer"])
                    for a in answers] == [(200, "hit", "memory")] * len(hot)
            cold = [client.get("/trades", params={"user_id": 20, "limit": n})
                    for n in range(1, 6)]
            assert [(c.status_code, c.headers["X-Cache-Layer"]) for c in cold] == [
                (200, "db")] * 5
            # and the generator's mix, writes included, for two seconds: nothing fails
            stats = generate(app, "--rate", "30", "--duration", "2", "--slow-every", "0")
            assert stats["requests"] > 0 and stats["errors"] == 0, stats
            assert set(stats["status"]) <= {"200", "201"}, stats

            def errors_counted() -> float | None:
                metrics = scrape(sidecar.web_url)
                failed = metrics.find(ERRORS, service_name=app.service, cache_layer="redis",
                                      error_type="ConnectionError")
                total = sum(s.value for s in failed)
                http = requests_by_route(metrics, app.service)
                answered = sum(n for k, n in http.items() if not k.startswith("GET /healthz "))
                expected_http = 2 * len(hot) + len(cold) + stats["requests"]
                return total if total >= len(cold) and answered == expected_http else None

            errors = poll(errors_counted, "cache errors on the sidecar", timeout=30,
                          interval=0.25)
            metrics = scrape(sidecar.web_url)
            memory_hits = cache_gets(metrics, app.service, "hit", cache_layer="memory")
            print(f"\nRedis stopped: {len(answers) + len(cold) + stats['requests']} requests "
                  f"answered, cache_errors_total {errors:g}, memory hits {memory_hits:g}, "
                  f"generator hit rate {stats['hit_rate']}")
            assert memory_hits == len(hot) + stats["cache_hit"]
            assert cache_gets(metrics, app.service, "hit", cache_layer="redis") == 0
            assert metrics.find(f"{DURATION_COUNT}", service_name=app.service,
                                http_response_status_code="500") == []
            log = app.log()
            assert log.count("failing open") == 1, log[-3000:]
    finally:
        redis.stop()
