"""The OTLP/HTTP receiver: app metrics pushed by the instrumentation become Prometheus series,
slow database spans feed the slow-query store."""

from exporter.otlp.receiver import otlp_app
from exporter.otlp.state import OtlpLimits, OtlpState, SlowQueryLimits

__all__ = ["OtlpLimits", "OtlpState", "SlowQueryLimits", "otlp_app"]
