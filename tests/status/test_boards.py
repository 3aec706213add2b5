"""The boards read the families the sidecar already builds; the snapshot turns them into
rates, ratios and p99 over the window."""

from __future__ import annotations

import math

from exporter.exposition import Family, counter, gauge
from exporter.otlp.state import Peeked
from exporter.redis.collector import TargetStatus
from exporter.status import snapshot
from exporter.status.app_board import AppBoard, ProducerSeen
from exporter.status.redis_board import RedisBoard


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def redis_families(up: int, hits: float, misses: float, commands: float,
                   target: str = "") -> list[Family]:
    labels = (("target", target),) if target else ()
    info = Family("redis_instance_info", "gauge", "")
    info.add(1, (*labels, ("role", "master"), ("redis_version", "7.0.15"),
                 ("server_name", "valkey"), ("server_version", "8.0.1")))
    return [
        gauge("redis_up", "", up, labels),
        counter("redis_keyspace_hits_total", "", hits, labels),
        counter("redis_keyspace_misses_total", "", misses, labels),
        counter("redis_commands_processed_total", "", commands, labels),
        gauge("redis_memory_used_bytes", "", 1024.0, labels),
        gauge("redis_memory_max_bytes", "", 0.0, labels),
        info,
    ]


def test_redis_board_splits_by_target_label_and_computes_the_window() -> None:
    clock = Clock()
    board = RedisBoard(clock)
    a, b = "redis://a:6379", "redis://b:6379"
    for step, (hits, misses) in enumerate([(0, 0), (90, 10), (180, 20)]):
        clock.t += 5 * bool(step)
        board.observe([*redis_families(1, hits, misses, 500.0 * step, a),
                       *redis_families(0, 0, 0, 0, b)], [a, b], True)
    readings = {r.address: r for r in board.readings()}
    view = snapshot.target_view(a, TargetStatus(True, "", clock.t, 0.002), readings[a], clock.t)
    assert (view.state, view.role, view.server) == ("up", "master", "Valkey 8.0.1")
    assert view.hit_ratio == 0.9
    assert view.commands_per_second == 100.0
    assert view.memory_max_bytes is None  # maxmemory 0: no limit
    assert view.hit_ratio_trend == [0.9, 0.9]
    down = snapshot.target_view(b, TargetStatus(False, "connection refused", clock.t, 0.001),
                                readings[b], clock.t)
    assert (down.state, down.error, down.hit_ratio) == ("down", "connection refused", None)


def test_a_target_going_down_records_when() -> None:
    clock = Clock()
    board = RedisBoard(clock)
    address = "redis://a:6379"
    board.observe(redis_families(1, 1, 1, 1), [address], False)
    clock.t += 7
    board.observe(redis_families(0, 0, 0, 0), [address], False)
    [reading] = board.readings()
    assert (reading.up, reading.changed) == (False, clock.t)
    assert reading.info["role"] == "master"  # what it was stays known while it is down


def test_a_target_down_when_first_seen_is_down_since_then() -> None:
    clock = Clock()
    board = RedisBoard(clock)
    board.observe(redis_families(0, 0, 0, 0), ["redis://a:6379"], False)
    first = clock.t
    clock.t += 5
    board.observe(redis_families(0, 0, 0, 0), ["redis://a:6379"], False)
    [reading] = board.readings()
    assert (reading.up, reading.changed) == (False, first)


def app_series(service: str, queries: list[int], requests: float, errors: float,
               hits: float, misses: float) -> list[Peeked]:
    """What the OTLP store holds for one producer, as the board reads it."""
    who = (("service_name", service), ("service_instance_id", "i-1"))
    pool = (("db_client_connection_pool_name", "main"), ("db_system_name", "postgresql"), *who)
    return [
        ("db_client_connection_count", (*pool, ("db_client_connection_state", "used")), 7,
         (), ()),
        ("db_client_connection_count", (*pool, ("db_client_connection_state", "idle")), 3,
         (), ()),
        ("db_client_connection_max", pool, 20, (), ()),
        ("db_client_operation_duration_seconds", who, sum(queries), ("0.01", "0.1", "1"),
         tuple(queries)),
        ("http_server_request_duration_seconds", (*who, ("http_response_status_code", "200")),
         requests - errors, (), ()),
        ("http_server_request_duration_seconds", (*who, ("http_response_status_code", "503")),
         errors, (), ()),
        ("cache_gets_total", (*who, ("cache_name", "trades"), ("cache_result", "hit")), hits,
         (), ()),
        ("cache_gets_total", (*who, ("cache_name", "trades"), ("cache_result", "miss")), misses,
         (), ()),
    ]


def test_app_board_gives_pool_usage_rates_p99_and_cache_ratio() -> None:
    clock = Clock()
    board = AppBoard(clock)
    seen = [ProducerSeen("api", "i-1", clock.t, 5.0)]
    board.observe(app_series("api", [0, 0, 0, 0], 0, 0, 0, 0), seen)
    clock.t += 30
    board.observe(app_series("api", [90, 9, 1, 0], 300, 3, 80, 20), seen)
    [reading] = board.readings()
    view = snapshot.app_view(reading, clock.t)
    [pool] = view.pools
    assert (pool.used, pool.idle, pool.max, pool.system) == (7, 3, 20, "postgresql")
    assert view.query_rate_per_second == 100 / 30
    assert view.query_p99_seconds is not None and math.isclose(view.query_p99_seconds, 0.1)
    assert view.request_rate_per_second == 10.0
    assert view.error_ratio == 0.01
    [cache] = view.caches
    assert cache.hit_ratio == 0.8


def test_a_producer_that_stops_pushing_is_shown_so_then_forgotten() -> None:
    clock = Clock()
    board = AppBoard(clock)
    board.observe(app_series("api", [1, 0, 0, 0], 1, 0, 1, 0),
                  [ProducerSeen("api", "i-1", clock.t, None)])
    clock.t += 60
    board.observe([], [])
    [reading] = board.readings()
    assert snapshot.app_view(reading, clock.t).state == "stopped pushing"
    clock.t += 601
    board.observe([], [])
    assert board.readings() == []


def test_quantile_as_prometheus_computes_it() -> None:
    buckets = ((0.1, 50.0), (1.0, 100.0), (math.inf, 100.0))
    assert snapshot.quantile(0.5, buckets) == (0.1, False)
    assert snapshot.quantile(0.75, buckets) == (0.55, False)
    assert snapshot.quantile(0.99, ((1.0, 1.0), (math.inf, 100.0))) == (1.0, True)
    assert snapshot.quantile(0.99, ()) == (None, False)


def test_the_board_reads_what_the_real_sdk_pushed() -> None:
    from opentelemetry.metrics import Meter

    from exporter.otlp.state import OtlpState
    from exporter.status.app_board import FAMILIES
    from tests.otlp.sdk import metrics_request

    def record(meter: Meter) -> None:
        attrs = {"db.client.connection.pool.name": "main", "db.system.name": "sqlite"}
        meter.create_up_down_counter("db.client.connection.count").add(
            4, {**attrs, "db.client.connection.state": "used"})
        histogram = meter.create_histogram("db.client.operation.duration", unit="s")
        for seconds in (0.001, 0.002, 0.3):
            histogram.record(seconds, {"db.operation.name": "SELECT"})

    request, _ = metrics_request(record, {"service.name": "api", "service.instance.id": "w1"})
    otlp = OtlpState()
    otlp.apply_metrics(request)
    series, producers = otlp.status_view(FAMILIES)
    board = AppBoard()
    board.observe(series, [ProducerSeen(*p) for p in producers])
    [reading] = board.readings()
    assert (reading.service, reading.instance) == ("api", "w1")
    assert reading.pools["main"].used == 4
    assert reading.latest is not None and reading.latest[1] == 3  # queries counted
    assert reading.buckets[-1] == (math.inf, 3.0)


def test_views_read_while_a_worker_thread_samples() -> None:
    import threading

    from opentelemetry.metrics import Meter

    from exporter.otlp.state import OtlpState
    from exporter.status.app_board import FAMILIES
    from tests.otlp.sdk import metrics_request

    def record(meter: Meter) -> None:
        meter.create_counter("cache.gets").add(1, {"cache.name": "c", "cache.result": "hit"})

    otlp = OtlpState()
    for i in range(50):
        request, _ = metrics_request(record, {"service.name": "api", "service.instance.id": str(i)})
        otlp.apply_metrics(request)
    clock = Clock()
    board = AppBoard(clock)
    failures: list[BaseException] = []
    stop = threading.Event()

    def sample() -> None:
        try:
            while not stop.is_set():
                clock.t += 5  # every sample adds a point to every ring
                series, producers = otlp.status_view(FAMILIES)
                board.observe(series, [ProducerSeen(*p) for p in producers])
        except BaseException as exc:  # pragma: no cover - what the test looks for
            failures.append(exc)

    worker = threading.Thread(target=sample)
    worker.start()
    try:
        for _ in range(300):
            board.views(lambda reading: snapshot.app_view(reading, clock.t))
    finally:
        stop.set()
        worker.join()
    assert failures == []
