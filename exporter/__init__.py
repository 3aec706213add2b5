"""tradesense-exporter: Redis, connection-pool and query metrics for Prometheus."""

__version__ = "0.1.0"
