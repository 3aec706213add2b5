import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from exporter.otlp.naming import (
    COUNTER,
    GAUGE,
    OTHER,
    attribute_labels,
    bound_text,
    label_name,
    metric_name,
    value_text,
)


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # The semantic-convention instruments the instrumentation sends.
        ("db.client.operation.duration", "s", OTHER, "db_client_operation_duration_seconds"),
        ("db.client.connection.count", "{connection}", OTHER, "db_client_connection_count"),
        ("db.client.connection.max", "{connection}", OTHER, "db_client_connection_max"),
        ("db.client.connection.idle.max", "{connection}", OTHER, "db_client_connection_idle_max"),
        ("db.client.connection.idle.min", "{connection}", OTHER, "db_client_connection_idle_min"),
        (
            "db.client.connection.pending_requests",
            "{request}",
            OTHER,
            "db_client_connection_pending_requests",
        ),
        (
            "db.client.connection.timeouts",
            "{timeout}",
            COUNTER,
            "db_client_connection_timeouts_total",
        ),
        (
            "db.client.connection.create_time",
            "s",
            OTHER,
            "db_client_connection_create_time_seconds",
        ),
        ("db.client.connection.wait_time", "s", OTHER, "db_client_connection_wait_time_seconds"),
        ("db.client.connection.use_time", "s", OTHER, "db_client_connection_use_time_seconds"),
        # Units.
        ("http.server.duration", "ms", OTHER, "http_server_duration_milliseconds"),
        ("process.memory.usage", "By", OTHER, "process_memory_usage_bytes"),
        ("network.io", "By/s", OTHER, "network_io_bytes_per_second"),
        ("requests", "1/s", COUNTER, "requests_per_second_total"),
        ("packets", "{packet}/s", OTHER, "packets_per_second"),
        ("cpu.utilization", "1", GAUGE, "cpu_utilization_ratio"),
        ("cpu.count", "1", OTHER, "cpu_count"),
        ("things", "1", COUNTER, "things_total"),
        ("temperature", "Cel", GAUGE, "temperature_celsius"),
        ("odd", "furlongs", GAUGE, "odd_furlongs"),
        ("no.unit", "", GAUGE, "no_unit"),
        # The name already holds the unit, or the counter suffix.
        ("request.duration.seconds", "s", OTHER, "request_duration_seconds"),
        ("requests.total", "", COUNTER, "requests_total"),
        ("cpu.time", "s", COUNTER, "cpu_time_seconds_total"),
        ("cpu.time.total", "s", COUNTER, "cpu_time_seconds_total"),
        ("ratio.thing", "1", GAUGE, "ratio_thing"),
        # Invalid characters, runs of them, colons, leading digits.
        ("a..b--c  d", "", GAUGE, "a_b_c_d"),
        ("rec:rule", "", GAUGE, "rec_rule"),
        ("2xx.responses", "", GAUGE, "_2xx_responses"),
        ("...", "", GAUGE, ""),
    ],
)
def test_metric_names_follow_the_compatibility_specification(
    name: str, unit: str, kind: str, expected: str
) -> None:
    assert metric_name(name, unit, kind) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("db.system.name", "db_system_name"),
        ("http.response.status_code", "http_response_status_code"),
        ("a..b", "a_b"),
        ("a__b", "a_b"),
        ("2fa", "key_2fa"),
        ("_private", "key_private"),
        ("__name__", "key_name_"),
        ("ünïcode", "key_n_code"),
        ("", ""),
    ],
)
def test_label_names_are_sanitized(key: str, expected: str) -> None:
    assert label_name(key) == expected


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def test_colliding_attributes_join_values_in_key_order() -> None:
    attrs = [
        _kv("a_b", string_value="3"),
        _kv("a.b", string_value="2"),
        _kv("a-b", string_value="1"),
    ]
    assert attribute_labels(attrs) == {"a_b": "1;2;3"}


def test_attributes_without_collision_keep_their_values() -> None:
    attrs = [_kv("db.system.name", string_value="postgresql"), _kv("", string_value="x")]
    assert attribute_labels(attrs) == {"db_system_name": "postgresql"}


def test_long_values_are_cut() -> None:
    attrs = [_kv("k", string_value="x" * 5000)]
    assert len(attribute_labels(attrs)["k"]) == 1024


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (AnyValue(string_value="idle"), "idle"),
        (AnyValue(bool_value=True), "true"),
        (AnyValue(bool_value=False), "false"),
        (AnyValue(int_value=-42), "-42"),
        (AnyValue(double_value=0.25), "0.25"),
        (AnyValue(double_value=float("inf")), "+Inf"),
        (AnyValue(bytes_value=b"\x00\x01"), '"AAE="'),
        (
            AnyValue(
                array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="a")])
            ),
            '[1,"a"]',
        ),
        (
            AnyValue(
                kvlist_value=KeyValueList(
                    values=[KeyValue(key="k", value=AnyValue(bool_value=True))]
                )
            ),
            '{"k":true}',
        ),
        (AnyValue(), ""),
    ],
)
def test_attribute_values_become_text(value: AnyValue, text: str) -> None:
    assert value_text(value) == text


@pytest.mark.parametrize(
    ("bound", "text"),
    [
        (1.0, "1"),
        (0.005, "0.005"),
        (10.0, "10"),
        (1e-05, "1e-05"),
        (float("inf"), "+Inf"),
        (-2.0, "-2"),
    ],
)
def test_bounds_print_like_prometheus_clients(bound: float, text: str) -> None:
    assert bound_text(bound) == text
