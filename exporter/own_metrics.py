"""The sidecar's own metrics: build info and process metrics."""

from __future__ import annotations

import platform

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from exporter import __version__
from exporter.exposition import DUPLICATES, Family, counter, gauge

COMMIT = "unknown"


def from_client_metric(metric: Metric) -> Family:
    """A prometheus_client metric as a Family (counters regain `_total`, `_created` dropped)."""
    is_counter = metric.type == "counter"
    name = metric.name + "_total" if is_counter else metric.name
    fam = Family(name, metric.type if metric.type != "unknown" else "untyped",
                 metric.documentation)
    for s in metric.samples:
        if s.name.endswith("_created"):
            continue
        suffix = "" if is_counter else s.name[len(metric.name):]
        fam.add(s.value, tuple(s.labels.items()), suffix)
    return fam


class SelfCollector:
    def __init__(self) -> None:
        self._process = ProcessCollector(registry=CollectorRegistry())
        self._build = (
            gauge("redis_exporter_build_info",
                  "Build information, labelled as redis_exporter's (golang_version is empty: "
                  "this exporter is Python)",
                  1, (("build_date", ""), ("commit_sha", COMMIT), ("golang_version", ""),
                      ("version", __version__))),
            gauge("tradesense_exporter_build_info", "tradesense-exporter build information",
                  1, (("version", __version__), ("python_version", platform.python_version()))),
        )

    def collect(self) -> list[Family]:
        duplicates = counter(
            "tradesense_exporter_render_duplicate_families_total",
            "Metric families left out of /metrics because an earlier family had the same name.",
            DUPLICATES.count,
        )
        return [*self._build, duplicates,
                *(from_client_metric(m) for m in self._process.collect())]
