from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from exporter.exposition import Family, render
from exporter.otlp.store import SeriesStore
from exporter.otlp.translate import Bounds, apply_metrics
from tests.support.exported_metrics import APP_FAMILIES

from .sdk import metrics_request

BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
POOL = {"db.client.connection.pool.name": "main", "db.system.name": "postgresql"}


def _families(store: SeriesStore) -> dict[str, Family]:
    return {f.name: f for f in store.collect()}


def _label_names(fam: Family) -> set[str]:
    return {k for s in fam.all_samples() for k, _ in s.labels}


def _semconv(meter: Meter) -> None:
    duration = meter.create_histogram(
        "db.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=BUCKETS
    )
    duration.record(
        0.02,
        {
            "db.system.name": "postgresql",
            "db.operation.name": "SELECT",
            "db.collection.name": "trades",
            "error.type": "TimeoutError",
        },
    )
    count = meter.create_up_down_counter("db.client.connection.count", unit="{connection}")
    count.add(3, {**POOL, "db.client.connection.state": "idle"})
    count.add(2, {**POOL, "db.client.connection.state": "used"})

    def constant(value: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda _options: [Observation(value, POOL)]

    for name, value in [("max", 60), ("idle.max", 20), ("idle.min", 0)]:
        meter.create_observable_up_down_counter(
            f"db.client.connection.{name}",
            [constant(value)],
            unit="{connection}",
        )
    pending = meter.create_up_down_counter(
        "db.client.connection.pending_requests", unit="{request}"
    )
    pending.add(1, POOL)
    meter.create_counter("db.client.connection.timeouts", unit="{timeout}").add(4, POOL)
    for name in ("create_time", "wait_time", "use_time"):
        meter.create_histogram(f"db.client.connection.{name}", unit="s").record(0.2, POOL)
    request = {"http.request.method": "GET", "url.scheme": "http"}
    meter.create_histogram("http.server.request.duration", unit="s").record(
        0.03, {**request, "http.route": "/trades/{trade_id}", "http.response.status_code": 200})
    meter.create_up_down_counter("http.server.active_requests", unit="{request}").add(2, request)
    cache = {"cache.name": "trades", "cache.layer": "memory"}
    meter.create_counter("cache.gets", unit="{get}").add(5, {**cache, "cache.result": "hit"})
    for name, unit in [("puts", "{put}"), ("evictions", "{eviction}"),
                       ("invalidations", "{invalidation}")]:
        meter.create_counter(f"cache.{name}", unit=unit).add(1, cache)
    meter.create_counter("cache.errors", unit="{error}").add(
        1, {**cache, "error.type": "ConnectionError"})


def test_semantic_convention_instruments_get_the_contract_names() -> None:
    request, _ = metrics_request(_semconv)
    store = SeriesStore()
    outcome = apply_metrics(request, store)
    assert outcome.dropped == 0 and outcome.accepted == 18
    fams = _families(store)
    # Every application family but the sidecar's own slow-query counter.
    expected = {k: v for k, v in APP_FAMILIES.items() if k != "tradesense_slow_queries_total"}
    assert {name: f.type for name, f in fams.items()} == expected
    identity = {"service_name", "service_instance_id", "otel_scope_name", "otel_scope_version"}
    assert _label_names(fams["db_client_operation_duration_seconds"]) == identity | {
        "db_system_name",
        "db_operation_name",
        "db_collection_name",
        "error_type",
        "le",
    }
    assert _label_names(fams["http_server_request_duration_seconds"]) == identity | {
        "http_request_method", "url_scheme", "http_route", "http_response_status_code", "le"}
    assert _label_names(fams["cache_gets_total"]) == identity | {
        "cache_name", "cache_layer", "cache_result"}
    assert _label_names(fams["db_client_connection_count"]) == identity | {
        "db_client_connection_state",
        "db_client_connection_pool_name",
        "db_system_name",
    }
    text = render(fams.values()).decode()
    assert 'le="0.05"} 1\n' in text and 'le="0.01"} 0\n' in text
    assert "db_client_connection_max{" in text and "} 60\n" in text


def test_scope_labels_can_be_turned_off() -> None:
    request, _ = metrics_request(_semconv)
    store = SeriesStore()
    apply_metrics(request, store, scope_labels=False)
    fam = _families(store)["db_client_connection_count"]
    assert _label_names(fam) == {
        "service_name",
        "service_instance_id",
        "db_client_connection_state",
        "db_client_connection_pool_name",
        "db_system_name",
    }


def test_delta_counters_and_histograms_accumulate_into_cumulative() -> None:
    counters: dict[str, Counter] = {}
    histograms: dict[str, Histogram] = {}

    def record(meter: Meter) -> None:
        counters["c"] = meter.create_counter("jobs", unit="{job}")
        histograms["h"] = meter.create_histogram(
            "wait", unit="ms", explicit_bucket_boundaries_advisory=[10, 100]
        )

    _, collect = metrics_request(record, delta=True)
    store = SeriesStore()
    counters["c"].add(2)
    histograms["h"].record(5)
    apply_metrics(collect(), store)
    counters["c"].add(3)
    histograms["h"].record(50)
    histograms["h"].record(500)
    apply_metrics(collect(), store)
    fams = _families(store)
    (total,) = fams["jobs_total"].all_samples()
    assert total.value == 5
    buckets = {
        dict(s.labels).get("le"): s.value
        for s in fams["wait_milliseconds"].all_samples()
        if s.suffix == "_bucket"
    }
    assert buckets == {"10": 1, "100": 2, "+Inf": 3}


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(*metrics: pb.Metric, resource: Resource | None = None) -> ExportMetricsServiceRequest:
    res = resource or Resource(
        attributes=[_kv("service.name", "svc"), _kv("service.instance.id", "i1")]
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            pb.ResourceMetrics(
                resource=res,
                scope_metrics=[
                    pb.ScopeMetrics(scope=InstrumentationScope(name="s"), metrics=list(metrics))
                ],
            )
        ]
    )


def _sum(
    name: str, temporality: pb.AggregationTemporality.ValueType, monotonic: bool, *values: float
) -> pb.Metric:
    points = [
        pb.NumberDataPoint(as_double=v, attributes=[_kv("n", str(i))]) for i, v in enumerate(values)
    ]
    return pb.Metric(
        name=name,
        sum=pb.Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=monotonic),
    )


def test_sum_types_by_temporality_and_monotonicity() -> None:
    store = SeriesStore()
    outcome = apply_metrics(
        _request(
            _sum("a", pb.AGGREGATION_TEMPORALITY_CUMULATIVE, True, 1),
            _sum("b", pb.AGGREGATION_TEMPORALITY_CUMULATIVE, False, -2),
            _sum("c", pb.AGGREGATION_TEMPORALITY_DELTA, False, 1, 2),
            _sum("d", pb.AGGREGATION_TEMPORALITY_UNSPECIFIED, True, 1, 2, 3),
        ),
        store,
    )
    assert (outcome.accepted, outcome.unsupported, outcome.series_limit) == (2, 5, 0)
    fams = _families(store)
    assert (fams["a_total"].type, fams["b"].type) == ("counter", "gauge")
    assert "c" not in fams and "d" not in fams and "d_total" not in fams


def test_series_limit_is_counted() -> None:
    store = SeriesStore(max_series_per_metric=2)
    outcome = apply_metrics(
        _request(_sum("a", pb.AGGREGATION_TEMPORALITY_CUMULATIVE, True, 1, 2, 3, 4)), store
    )
    assert (outcome.accepted, outcome.series_limit) == (2, 2)
    assert "2 past a series limit" in outcome.message()


def test_producers_without_instance_id_get_a_derived_one() -> None:
    res = Resource(
        attributes=[
            _kv("service.name", "web"),
            _kv("host.name", "h1"),
            _kv("process.pid", "42"),
            _kv("service.namespace", "shop"),
        ]
    )
    store = SeriesStore()
    apply_metrics(
        _request(_sum("a", pb.AGGREGATION_TEMPORALITY_CUMULATIVE, True, 1), resource=res), store
    )
    fams = _families(store)
    (info,) = fams["target_info"].all_samples()
    assert dict(info.labels) == {
        "service_name": "shop/web",
        "service_instance_id": "h1:42",
        "host_name": "h1",
        "process_pid": "42",
        "service_namespace": "shop",
    }
    (point,) = fams["a_total"].all_samples()
    assert dict(point.labels)["service_instance_id"] == "h1:42"


def test_two_producers_keep_distinct_series() -> None:
    store = SeriesStore()
    for instance, value in (("w1", 1.0), ("w2", 2.0)):
        res = Resource(
            attributes=[_kv("service.name", "web"), _kv("service.instance.id", instance)]
        )
        apply_metrics(
            _request(_sum("a", pb.AGGREGATION_TEMPORALITY_CUMULATIVE, True, value), resource=res),
            store,
        )
    values = {
        dict(s.labels)["service_instance_id"]: s.value
        for s in _families(store)["a_total"].all_samples()
    }
    assert values == {"w1": 1.0, "w2": 2.0}
    assert len(_families(store)["target_info"].all_samples()) == 2


def test_attributes_clashing_with_reserved_labels_are_renamed() -> None:
    point = pb.HistogramDataPoint(
        attributes=[_kv("le", "x"), _kv("service.name", "evil"), _kv("otel.scope.name", "y")],
        count=1,
        bucket_counts=[1, 0],
        explicit_bounds=[1.0],
        sum=0.5,
    )
    metric = pb.Metric(
        name="h",
        histogram=pb.Histogram(
            data_points=[point], aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        ),
    )
    store = SeriesStore()
    apply_metrics(_request(metric), store)
    (count,) = [s for s in _families(store)["h"].all_samples() if s.suffix == "_count"]
    labels = dict(count.labels)
    assert labels["exported_le"] == "x"
    assert labels["exported_service_name"] == "evil"
    assert labels["exported_otel_scope_name"] == "y"
    assert labels["service_name"] == "svc"


def test_invalid_histograms_are_dropped_and_negative_ones_lose_their_sum() -> None:
    def hist(**kw: object) -> pb.HistogramDataPoint:
        return pb.HistogramDataPoint(attributes=[_kv("k", str(kw.pop("k")))], **kw)  # type: ignore[arg-type]

    points = [
        hist(k=1, count=2, bucket_counts=[1, 0], explicit_bounds=[1.0], sum=1),  # counts != count
        hist(k=2, count=1, bucket_counts=[1], explicit_bounds=[1.0], sum=1),  # too few buckets
        hist(k=3, count=1, bucket_counts=[1, 0], explicit_bounds=[float("nan")], sum=1),
        hist(k=4, count=1, bucket_counts=[1, 0], explicit_bounds=[0.0], sum=-1, min=-1),
        hist(k=5, count=7, sum=3.5),  # no buckets at all: only +Inf
    ]
    metric = pb.Metric(
        name="h",
        histogram=pb.Histogram(
            data_points=points, aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        ),
    )
    store = SeriesStore()
    outcome = apply_metrics(_request(metric), store)
    assert (outcome.accepted, outcome.unsupported) == (2, 3)
    samples = _families(store)["h"].all_samples()
    by_k = {(dict(s.labels)["k"], s.suffix, dict(s.labels).get("le")): s.value for s in samples}
    assert ("4", "_sum", None) not in by_k
    assert by_k[("5", "_bucket", "+Inf")] == 7 and by_k[("5", "_sum", None)] == 3.5


def test_gauges_marked_unknown_are_untyped_and_summaries_pass_through() -> None:
    gauge = pb.Metric(
        name="legacy",
        gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_int=3)]),
        metadata=[_kv("prometheus.type", "unknown")],
    )
    summary = pb.Metric(
        name="rpc",
        unit="s",
        summary=pb.Summary(
            data_points=[
                pb.SummaryDataPoint(
                    count=4,
                    sum=2.0,
                    quantile_values=[
                        pb.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.9),
                        pb.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.4),
                    ],
                )
            ]
        ),
    )
    store = SeriesStore()
    apply_metrics(_request(gauge, summary), store)
    fams = _families(store)
    assert fams["legacy"].type == "untyped"
    assert fams["rpc_seconds"].type == "summary"
    quantiles = [dict(s.labels)["quantile"]
                 for s in fams["rpc_seconds"].all_samples() if not s.suffix]
    assert quantiles == ["0.5", "0.99"]


def test_no_recorded_value_ends_a_series() -> None:
    store = SeriesStore()
    apply_metrics(_request(_sum("a", pb.AGGREGATION_TEMPORALITY_CUMULATIVE, False, 1)), store)
    point = pb.NumberDataPoint(as_double=0, attributes=[_kv("n", "0")], flags=1)
    metric = pb.Metric(
        name="a",
        sum=pb.Sum(
            data_points=[point],
            is_monotonic=False,
            aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE,
        ),
    )
    apply_metrics(_request(metric), store)
    assert "a" not in _families(store)


def test_observable_callbacks_from_the_sdk_are_gauges() -> None:
    def record(meter: Meter) -> None:
        def cb(_options: CallbackOptions) -> list[Observation]:
            return [Observation(0.75, {"core": "0"})]

        meter.create_observable_gauge("system.cpu.utilization", [cb], unit="1")

    request, _ = metrics_request(record)
    store = SeriesStore()
    apply_metrics(request, store)
    (sample,) = _families(store)["system_cpu_utilization_ratio"].all_samples()
    assert sample.value == 0.75


def test_pushed_metrics_cannot_shadow_the_sidecars_own() -> None:
    store = SeriesStore()
    cumulative = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    outcome = apply_metrics(
        _request(
            _sum("target.info", cumulative, False, 1),
            _sum("tradesense.exporter.otlp.series", cumulative, False, 1),
            _sum("tradesense.slow.queries", cumulative, True, 1),
            _sum("process.resident_memory.bytes", cumulative, False, 1),
            _sum("redis.up", cumulative, False, 1),
            _sum("python.gc.objects.collected", cumulative, True, 1),
            _sum("redis_exporter.build.info", cumulative, False, 1),
            _sum("app.redis.calls", cumulative, True, 1),
        ),
        store,
    )
    assert (outcome.reserved_name, outcome.unsupported, outcome.accepted) == (7, 0, 1)
    fams = _families(store)
    assert set(fams) == {"target_info", "app_redis_calls_total"}
    assert [s.value for s in fams["target_info"].all_samples()] == [1]


def _point(t: int, value: float) -> pb.Metric:
    return pb.Metric(
        name="orders",
        sum=pb.Sum(
            data_points=[pb.NumberDataPoint(as_double=value, time_unix_nano=t)],
            aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE,
            is_monotonic=True,
        ),
    )


def test_a_point_from_the_future_is_refused_and_later_points_apply() -> None:
    store = SeriesStore()
    now = 1_700_000_000 * 10**9
    bounds = Bounds(latest_ns=now + 300 * 10**9)
    ten_years = 10 * 365 * 86400 * 10**9
    outcome = apply_metrics(_request(_point(now + ten_years, 99)), store, bounds=bounds)
    assert (outcome.future_timestamp, outcome.accepted) == (1, 0)
    assert "orders_total" not in _families(store)
    apply_metrics(_request(_point(now, 5)), store, bounds=bounds)
    outcome = apply_metrics(_request(_point(now + 10**9, 6)), store, bounds=bounds)
    assert outcome.accepted == 1
    assert [s.value for s in _families(store)["orders_total"].all_samples()] == [6]


def test_long_attribute_keys_are_dropped_and_counted() -> None:
    store = SeriesStore()
    point = pb.NumberDataPoint(as_double=1, attributes=[_kv("k" * 129, "v"), _kv("short", "s")])
    metric = pb.Metric(name="g", gauge=pb.Gauge(data_points=[point]))
    outcome = apply_metrics(_request(metric), store)
    assert (outcome.accepted, outcome.attributes_dropped) == (1, 1)
    (sample,) = _families(store)["g"].all_samples()
    assert {k for k, _ in sample.labels} == {
        "service_name",
        "service_instance_id",
        "otel_scope_name",
        "short",
    }


def test_resource_attributes_in_target_info_are_capped() -> None:
    store = SeriesStore()
    resource = Resource(
        attributes=[_kv("service.name", "svc"), _kv("service.instance.id", "i1")]
        + [_kv(f"attr.{i:04}", "v" * 5000) for i in range(2000)]
        + [_kv("x" * 200, "long key")]
    )
    cumulative = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    outcome = apply_metrics(_request(_sum("a", cumulative, True, 1), resource=resource), store)
    (info,) = _families(store)["target_info"].all_samples()
    assert len(info.labels) == 64
    assert max(len(v) for _, v in info.labels) == 1024
    assert outcome.attributes_dropped == 1 + (2002 - 64)
