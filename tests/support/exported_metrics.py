"""The metric names the sidecar serves, with their types, for checking dashboards and rules.

Redis families come from the Go redis_exporter 1.45's real output kept in
tests/redis/data/redis_exporter-1.45/*.prom, copied from the shared reference (the sidecar
serves the same `redis_*` names), with
the documented corrections: every `_total` family is a counter, and the Go exporter's own scrape
counter and scrape-duration summary are not served. The sidecar's own and the application's
families are listed here as the design and issues 2, 3 and 7 name them.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO / "tests" / "redis" / "data" / "redis_exporter-1.45"

_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)

# The Go exporter's self-metrics that the sidecar replaces with the ones in SIDECAR_FAMILIES.
_GO_EXPORTER_ONLY = re.compile(r"^redis_exporter_")

SIDECAR_FAMILIES: dict[str, str] = {
    "redis_up": "gauge",
    "redis_exporter_last_scrape_duration_seconds": "gauge",
    "redis_exporter_last_scrape_error": "gauge",
    "redis_exporter_build_info": "gauge",
    "tradesense_exporter_build_info": "gauge",
    "tradesense_exporter_otlp_requests_total": "counter",
    "tradesense_exporter_otlp_requests_rejected_total": "counter",
    "tradesense_exporter_otlp_data_points_accepted_total": "counter",
    "tradesense_exporter_otlp_spans_accepted_total": "counter",
    "tradesense_exporter_otlp_data_points_dropped_total": "counter",
    "tradesense_exporter_otlp_series": "gauge",
    "tradesense_exporter_slow_query_fingerprints": "gauge",
}

APP_FAMILIES: dict[str, str] = {
    "db_client_operation_duration_seconds": "histogram",
    "db_client_connection_count": "gauge",
    "db_client_connection_max": "gauge",
    "db_client_connection_idle_max": "gauge",
    "db_client_connection_idle_min": "gauge",
    "db_client_connection_pending_requests": "gauge",
    "db_client_connection_timeouts_total": "counter",
    "db_client_connection_create_time_seconds": "histogram",
    "db_client_connection_wait_time_seconds": "histogram",
    "db_client_connection_use_time_seconds": "histogram",
    "tradesense_slow_queries_total": "counter",
    "target_info": "gauge",
    "http_server_request_duration_seconds": "histogram",
    "http_server_active_requests": "gauge",
    "cache_gets_total": "counter",
    "cache_puts_total": "counter",
    "cache_evictions_total": "counter",
    "cache_invalidations_total": "counter",
    "cache_errors_total": "counter",
}

# Series Prometheus itself attaches to every scrape.
PROMETHEUS_SYNTHETIC: dict[str, str] = {
    "up": "gauge",
    "scrape_duration_seconds": "gauge",
    "scrape_samples_scraped": "gauge",
    "scrape_samples_post_metric_relabeling": "gauge",
    "scrape_series_added": "gauge",
}

_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def reference_families(directory: Path = REFERENCE_DIR) -> dict[str, str]:
    """`redis_*` family name -> type, from the Go exporter's output, corrected."""
    files = sorted(directory.glob("*.prom"))
    if not files:
        raise FileNotFoundError(f"no redis_exporter reference output in {directory}")
    families: dict[str, str] = {}
    for path in files:
        for name, kind in _TYPE_LINE.findall(path.read_text(encoding="utf-8")):
            if not name.startswith("redis_") or _GO_EXPORTER_ONLY.match(name):
                continue
            families[name] = "counter" if name.endswith("_total") else kind
    return families


def exported_families() -> dict[str, str]:
    return {**reference_families(), **SIDECAR_FAMILIES, **APP_FAMILIES}


def series_names(families: dict[str, str]) -> dict[str, str]:
    """Series name -> family type: histograms and summaries expanded into their series."""
    out: dict[str, str] = {}
    for name, kind in families.items():
        for suffix in _SUFFIXES.get(kind, ("",)):
            out[name + suffix] = kind
    return out


def allowed_series() -> dict[str, str]:
    """Every series name a query against the sidecar's scrape may use, with its family type."""
    return {**series_names(exported_families()), **PROMETHEUS_SYNTHETIC}


def is_counter_like(series: str, kind: str) -> bool:
    """Whether rate()/increase() makes sense on the series."""
    if kind == "counter":
        return True
    return kind in ("histogram", "summary") and series.endswith(("_bucket", "_sum", "_count"))
