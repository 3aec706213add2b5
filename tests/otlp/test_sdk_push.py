"""The real OpenTelemetry SDK, in other processes, pushing OTLP/HTTP to the receiver served by a
real uvicorn on a loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn

from exporter.exposition import Family, render
from exporter.limits import OtlpLimits
from exporter.otlp import OtlpState, otlp_app

pytestmark = pytest.mark.e2e

PRODUCER = Path(__file__).with_name("producer.py")
SECRETS = ("alice@example.com", "hunter2-Secret!", "4111111111111111", "5500000000000004")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    def __init__(self, state: OtlpState) -> None:
        self.state = state
        self.port = _free_port()
        config = uvicorn.Config(
            otlp_app(state), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def producer(self, worker: int, seconds: float, **env: str) -> subprocess.Popen[str]:
        environ = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "OTEL_SERVICE_NAME": "tradesense-api",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            **env,
        }
        return subprocess.Popen(
            [sys.executable, str(PRODUCER), str(worker), str(seconds)],
            env=environ,
            stdout=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    state = OtlpState(OtlpLimits(staleness_seconds=getattr(request, "param", 300.0)))
    with Receiver(state) as r:
        yield r


def _families(state: OtlpState) -> dict[str, Family]:
    return {f.name: f for f in state.collect()}


def _by_instance(fam: Family, suffix: str = "", **match: str) -> dict[str, float]:
    return {
        dict(s.labels)["service_instance_id"]: s.value
        for s in fam.all_samples()
        if s.suffix == suffix and match.items() <= dict(s.labels).items()
    }


def _wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _instances(state: OtlpState) -> set[str]:
    fam = _families(state).get("db_client_connection_max")
    return set(_by_instance(fam)) if fam else set()


@pytest.mark.parametrize("receiver", [2.0], indirect=True)
def test_two_producers_keep_distinct_series_which_go_stale_when_they_stop(
    receiver: Receiver,
) -> None:
    state = receiver.state
    plain = receiver.producer(1, 1.5)
    gzipped = receiver.producer(2, 1.5, OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    _wait_for(lambda: len(_instances(state)) == 2)
    fams = _families(state)
    assert sorted(_by_instance(fams["db_client_connection_max"]).values()) == [61, 62]
    used = _by_instance(fams["db_client_connection_count"], db_client_connection_state="used")
    assert sorted(used.values()) == [1, 2]
    assert fams["db_client_connection_timeouts_total"].type == "counter"
    assert fams["db_client_operation_duration_seconds"].type == "histogram"
    assert fams["db_client_connection_wait_time_seconds"].type == "histogram"
    names = {dict(s.labels)["service_name"] for s in fams["target_info"].all_samples()}
    assert names == {"tradesense-api"}

    rounds = {}
    for proc in (plain, gzipped):
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        rounds[proc] = int(out)
    fams = _families(state)
    # Final cumulative values, after the SDK's flush on shutdown.
    timeouts = _by_instance(fams["db_client_connection_timeouts_total"])
    assert sorted(timeouts.values()) == sorted(rounds.values())
    count = _by_instance(fams["db_client_operation_duration_seconds"], "_count")
    assert sorted(count.values()) == sorted(6 * r for r in rounds.values())
    le_50ms = _by_instance(fams["db_client_operation_duration_seconds"], "_bucket", le="0.05")
    assert sorted(le_50ms.values()) == sorted(4 * r for r in rounds.values())

    text = render(state.collect()).decode()
    slow = json.dumps([e.as_json() for e in state.slow_queries.top(50)])
    for secret in SECRETS:
        assert secret not in text and secret not in slow
    entries = {e.fingerprint: e for e in state.slow_queries.top(50)}
    select = entries[
        "SELECT * FROM accounts WHERE email = ? AND password = ? AND card_number IN (?)"
    ]
    assert select.calls == 2 and select.max_seconds == pytest.approx(0.9)
    assert entries["UPDATE trades SET note = ? WHERE id = ?"].calls == 2
    assert (
        'tradesense_slow_queries_total{service_name="tradesense-api",'
        'db_operation_name="SELECT",db_collection_name="accounts"} 2' in text
    )

    stopped = time.monotonic()
    assert len(_instances(state)) == 2, "still there right after the producers stop"
    _wait_for(lambda: not _instances(state), timeout=10)
    assert time.monotonic() - stopped > 1.0
    assert "target_info" not in _families(state)


def test_delta_temporality_and_exponential_histograms_from_the_sdk(receiver: Receiver) -> None:
    proc = receiver.producer(
        1,
        1.0,
        OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta",
        OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION="base2_exponential_bucket_histogram",
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    rounds = int(out)
    fams = _families(receiver.state)
    (timeouts,) = _by_instance(fams["db_client_connection_timeouts_total"]).values()
    assert timeouts == rounds, "delta points accumulate into the cumulative counter"
    duration = fams["db_client_operation_duration_seconds"]
    assert duration.type == "histogram"
    buckets = {dict(s.labels)["le"]: s.value
               for s in duration.all_samples() if s.suffix == "_bucket"}
    # DURATIONS = 0.0004 0.003 0.02 0.02 0.7 3.0, in power-of-two buckets.
    assert buckets["0.00048828125"] == rounds  # 2**-11
    assert buckets["0.0009765625"] == rounds  # 2**-10, empty: every bucket in the range shows
    assert buckets["0.00390625"] == 2 * rounds  # 2**-8
    assert buckets["0.03125"] == 4 * rounds  # 2**-5
    assert buckets["1"] == 5 * rounds
    assert buckets["4"] == buckets["+Inf"] == 6 * rounds
    (total,) = _by_instance(duration, "_sum").values()
    assert total == pytest.approx(3.7434 * rounds)


def test_bodies_past_the_cap_are_refused_over_real_http() -> None:
    import http.client

    with Receiver(OtlpState(OtlpLimits(max_body_bytes=1 << 20))) as receiver:
        for body in (b"x" * (2 << 20), iter([b"y" * 65536] * 64)):
            conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
            conn.request(
                "POST",
                "/v1/metrics",
                body,
                {"Content-Type": "application/x-protobuf"},
                encode_chunked=not isinstance(body, bytes),
            )
            response = conn.getresponse()
            assert response.status == 413
            assert b"larger than the configured limit" in response.read()
            conn.close()
        text = render(receiver.state.collect()).decode()
        assert 'rejected_total{signal="metrics",reason="too_large"} 2\n' in text
