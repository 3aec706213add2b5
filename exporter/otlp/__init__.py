"""The OTLP/HTTP receiver: app metrics pushed by the instrumentation become Prometheus series,
slow database spans feed the slow-query store."""

from exporter.otlp.receiver import otlp_app
from exporter.otlp.state import OtlpState

__all__ = ["OtlpState", "otlp_app"]
