#!/usr/bin/env bash
# make demo: a private Redis with traffic, the sidecar, the example app instrumented with
# exporter.instrument, and Prometheus with the shipped rules when it is installed.
# Everything runs from .venv and .demo/; Ctrl-C stops it all.
set -euo pipefail
set -m  # children in their own process groups: Ctrl-C reaches this script, which stops them in order
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
PY=$ROOT/.venv/bin/python
mkdir -p "$DEMO/logs"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick() { if port_free "$1"; then echo "$1"; else free_port; fi; }

REDIS_PORT=$(free_port)
WEB_PORT=$(pick 9121)
OTLP_PORT=$(pick 4318)
APP_PORT=$(pick 8000)
PROM_PORT=$(pick 9090)

pids=()
stopping=""
cleanup() {
  trap - INT TERM EXIT
  stopping=1
  echo
  echo "stopping..."
  # Newest first: the app flushes its telemetry to a sidecar that is still up.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped."
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start; see $DEMO/logs/$3.log" >&2
  exit 1
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory 256mb --maxmemory-policy allkeys-lru --dir "$DEMO" \
  --latency-monitor-threshold 5 --slowlog-log-slower-than 10000 \
  >"$DEMO/logs/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

"$ROOT/.venv/bin/tradesense-exporter" \
  --redis.addr="redis://127.0.0.1:$REDIS_PORT" \
  --web.listen-address="127.0.0.1:$WEB_PORT" \
  --otlp.listen-address="127.0.0.1:$OTLP_PORT" \
  >"$DEMO/logs/sidecar.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$WEB_PORT/healthz" sidecar sidecar

export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT"
export OTEL_SERVICE_NAME=tradesense-demo
export OTEL_METRIC_EXPORT_INTERVAL=5000
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DATABASE_URL="${DATABASE_URL:-sqlite:///$DEMO/tradesense.db}"
# The demo honours X-Inject-Error / X-Inject-Latency-Ms (off unless this is set), so a second
# traffic generator can burn the SLOs on demand (see the message below).
export TRADESENSE_FAULTS=1
"$PY" -m examples.tradesense_app --host 127.0.0.1 --port "$APP_PORT" \
  >"$DEMO/logs/app.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$APP_PORT/healthz" "example app" app

# One client in ten sends as "noisy", past the app's 100 requests a minute: some 429s. One
# request in 200 asks for the slow summary: 0.5% slower than 0.5 s, inside the 99% latency SLO.
"$PY" -m examples.tradesense_app.traffic --base-url "http://127.0.0.1:$APP_PORT" \
  --noisy-share 0.1 --slow-every 200 >"$DEMO/logs/traffic.log" 2>&1 &
pids+=($!)

prom_line="Prometheus: not installed (apt-get install prometheus), skipped"
if command -v prometheus >/dev/null 2>&1; then
  sed -e "s#127.0.0.1:9121#127.0.0.1:$WEB_PORT#; s#127.0.0.1:9090#127.0.0.1:$PROM_PORT#" \
      -e "s#\.\./\.\./alerts/#$ROOT/alerts/#" \
      deploy/prometheus/prometheus.local.yml >"$DEMO/prometheus.yml"
  prometheus --config.file="$DEMO/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$DEMO/logs/prometheus.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$PROM_PORT/-/ready" Prometheus prometheus
  # shellcheck source=scripts/prom_pages.sh
  . "$ROOT/scripts/prom_pages.sh"
  prom="http://127.0.0.1:$PROM_PORT"
  prom_line="Prometheus alerts:  $(prom_page "$prom" /alerts /classic/alerts)  (graph: $(prom_page "$prom" /graph /classic/graph), targets: $(prom_page "$prom" /targets /classic/targets))"
fi

cat <<MSG

tradesense-exporter demo is running (logs in .demo/logs/). Open:
  Status page:        http://127.0.0.1:$WEB_PORT/
  Sidecar metrics:    http://127.0.0.1:$WEB_PORT/metrics
  Slow queries:       http://127.0.0.1:$WEB_PORT/api/slow-queries
  Health, readiness:  http://127.0.0.1:$WEB_PORT/healthz   http://127.0.0.1:$WEB_PORT/readyz
  Example app:        http://127.0.0.1:$APP_PORT/trades   http://127.0.0.1:$APP_PORT/analytics/summary
  $prom_line
Redis (private, with traffic): redis://127.0.0.1:$REDIS_PORT
Pool, query, slow-query, HTTP and app-cache metrics appear within a minute.
Burn the SLOs on demand (errors on 20% of requests, 800 ms on every one), for ten minutes:
  $PY -m examples.tradesense_app.traffic --base-url http://127.0.0.1:$APP_PORT \\
      --rate 20 --duration 600 --error-rate 0.2 --latency-ms 800
Freeze the app's Redis for 30 s to see the memory layer take over (cache fallbacks, still 200s):
  redis-cli -p $REDIS_PORT client pause 30000 all
Press Ctrl-C to stop everything.
MSG

wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "a demo process exited; see .demo/logs/" >&2
