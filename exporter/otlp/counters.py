"""The receiver's own counters. They are updated on the event loop only, so need no lock."""

from __future__ import annotations

from exporter.exposition import Family, counter, gauge

SIGNALS = ("metrics", "traces")
REJECT_REASONS = (
    "malformed",
    "too_large",
    "unsupported_media_type",
    "overloaded",
    "method_not_allowed",
    "timeout",
)
DROP_REASONS = ("series_limit", "size_limit", "future_timestamp", "reserved_name", "unsupported")


class SelfMetrics:
    def __init__(self) -> None:
        self.requests = dict.fromkeys(SIGNALS, 0)
        self.rejected = {(s, r): 0 for s in SIGNALS for r in REJECT_REASONS}
        self.points_accepted = 0
        self.spans_accepted = 0
        self.points_dropped = dict.fromkeys(DROP_REASONS, 0)
        self.attributes_dropped = 0

    def families(
        self,
        series: int,
        series_bytes: int = 0,
        inflight: int = 0,
        producers: tuple[int, int] = (0, 0),
    ) -> list[Family]:
        """`producers`: how many the store follows, and how many it has forgotten after they
        missed their export intervals."""
        requests = counter(
            "tradesense_exporter_otlp_requests_total", "OTLP export requests received."
        )
        for signal, n in self.requests.items():
            requests.add(n, (("signal", signal),))
        rejected = counter(
            "tradesense_exporter_otlp_requests_rejected_total",
            "OTLP export requests rejected, by reason.",
        )
        for (signal, reason), n in self.rejected.items():
            rejected.add(n, (("signal", signal), ("reason", reason)))
        dropped = counter(
            "tradesense_exporter_otlp_data_points_dropped_total",
            "OTLP metric data points received but not kept, by reason.",
        )
        for reason, n in self.points_dropped.items():
            dropped.add(n, (("reason", reason),))
        return [
            requests,
            rejected,
            counter(
                "tradesense_exporter_otlp_data_points_accepted_total",
                "OTLP metric data points accepted.",
                self.points_accepted,
            ),
            counter(
                "tradesense_exporter_otlp_spans_accepted_total",
                "OTLP spans accepted.",
                self.spans_accepted,
            ),
            dropped,
            counter(
                "tradesense_exporter_otlp_attributes_dropped_total",
                "Attributes left out of labels: a key longer than the label name limit, or a "
                "resource attribute past the target_info cap.",
                self.attributes_dropped,
            ),
            gauge("tradesense_exporter_otlp_series", "Series held from OTLP metrics.", series),
            gauge(
                "tradesense_exporter_otlp_series_bytes",
                "Estimated size of the OTLP series in the /metrics body, against "
                "otlp.max_exposition_bytes.",
                series_bytes,
            ),
            gauge(
                "tradesense_exporter_otlp_producers",
                "Producers (service_name, service_instance_id) whose pushes the receiver follows.",
                producers[0],
            ),
            counter(
                "tradesense_exporter_otlp_producers_expired_total",
                "Producers forgotten with all their series after missing a few of their export "
                "intervals (learned from their pushes) or otlp.staleness.",
                producers[1],
            ),
            gauge(
                "tradesense_exporter_otlp_inflight_requests",
                "OTLP requests between their first body byte and their response.",
                inflight,
            ),
        ]
