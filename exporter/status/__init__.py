"""The status page for the person on call (`/`, `/api/status`, `/readyz`, `/healthz`).

What it shows comes from the sidecar's own state: the Redis families as they pass through
`/metrics` and `/scrape` (or, when none passed recently, one rate-limited scrape of its own),
the OTLP store (sampled at most every 5 s, when the page or `/api/status` is requested),
the slow-query store and the receiver's counters. History for rates and sparklines lives in
bounded in-process ring buffers that feed this page only, never `/metrics`.
"""
