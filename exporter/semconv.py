"""Names, units and attribute keys: the OpenTelemetry database and HTTP semantic conventions,
and the app-cache instruments (no convention exists: Micrometer's shape, OTel attribute names).
The app side records them and the sidecar reads them: standard library only."""

from __future__ import annotations

OPERATION_DURATION = "db.client.operation.duration"
CONNECTION_COUNT = "db.client.connection.count"
CONNECTION_MAX = "db.client.connection.max"
CONNECTION_IDLE_MAX = "db.client.connection.idle.max"
CONNECTION_IDLE_MIN = "db.client.connection.idle.min"
CONNECTION_PENDING_REQUESTS = "db.client.connection.pending_requests"
CONNECTION_TIMEOUTS = "db.client.connection.timeouts"
CONNECTION_CREATE_TIME = "db.client.connection.create_time"
CONNECTION_WAIT_TIME = "db.client.connection.wait_time"
CONNECTION_USE_TIME = "db.client.connection.use_time"

DB_SYSTEM_NAME = "db.system.name"
DB_OPERATION_NAME = "db.operation.name"
DB_COLLECTION_NAME = "db.collection.name"
DB_QUERY_FINGERPRINT = "db.query.fingerprint"
DB_QUERY_TEXT = "db.query.text"
POOL_NAME = "db.client.connection.pool.name"
CONNECTION_STATE = "db.client.connection.state"
ERROR_TYPE = "error.type"
SLOW_QUERY = "tradesense.slow_query"

STATE_IDLE = "idle"
STATE_USED = "used"
OTHER = "_other"
OTHER_ERROR = "_OTHER"

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

_DB_SYSTEMS = {
    "postgresql": "postgresql",
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "mssql": "microsoft.sql_server",
    "oracle": "oracle.db",
}


def db_system_name(dialect_name: str, is_mariadb: bool = False) -> str:
    """The `db.system.name` of a SQLAlchemy dialect name."""
    if is_mariadb:
        return "mariadb"
    return _DB_SYSTEMS.get(dialect_name, "other_sql")


HTTP_SERVER_DURATION = "http.server.request.duration"
HTTP_SERVER_ACTIVE_REQUESTS = "http.server.active_requests"
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_SCHEME = "url.scheme"
HTTP_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
HTTP_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)

CACHE_GETS = "cache.gets"
CACHE_PUTS = "cache.puts"
CACHE_EVICTIONS = "cache.evictions"
CACHE_INVALIDATIONS = "cache.invalidations"
CACHE_ERRORS = "cache.errors"
CACHE_NAME = "cache.name"
CACHE_LAYER = "cache.layer"
CACHE_RESULT = "cache.result"
HIT = "hit"
MISS = "miss"


def http_method(method: str) -> str:
    """`http.request.method`: a known method as sent, anything else `_OTHER`."""
    return method if method in HTTP_METHODS else OTHER_ERROR
