"""The status page as HTML: server-rendered, no inline script (`/status.js` updates it), no
external asset. Every string from outside (addresses, errors, service names, fingerprints) is
escaped."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Iterable
from html import escape

from exporter.status import fmt
from exporter.status.snapshot import SPARKLINE_ROWS
from exporter.status.sparkline import sparkline
from exporter.status.style import STYLE
from exporter.status.views import (
    AppView,
    ReceiverView,
    ServiceView,
    SlowQueryView,
    Status,
    TargetView,
)

REFRESH_SECONDS = 5
FINGERPRINT_SHOWN = 300
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (f"default-src 'none'; script-src 'self'; connect-src 'self'; style-src '{STYLE_HASH}'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DASH = '<span class="muted" title="not known yet">\u2013</span>'


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


@functools.lru_cache(maxsize=4096)
def _escaped(text: str) -> str:
    return escape(text, quote=True)


def e(text: str) -> str:
    """Escaped for HTML text and attribute values; short strings (labels, units, names,
    figures) repeat on every row and every view, so they are remembered."""
    return _escaped(text) if len(text) <= 128 else escape(text, quote=True)


def when(now: float, t: float) -> str:
    if t <= 0:
        return '<span class="muted">never</span>'
    stamp = fmt.iso(t)
    return f'<time datetime="{stamp}" title="{stamp}">{fmt.age(now, t)}</time>'


def shown(value: float | None, show: Callable[[float], str]) -> str:
    return DASH if value is None else e(show(value))


def cell(label: str, content: str, numeric: bool = False) -> str:
    cls = ' class="n"' if numeric else ""
    return f'<td data-label="{e(label)}"{cls}>{content}</td>'


def table(headers: Iterable[tuple[str, bool]], rows: list[str], caption: str) -> str:
    head = "".join(f'<th scope="col"{" class=n" if n else ""}>{e(h)}</th>'
                   for h, n in headers)
    return (f'<div class="wrap"><table class="cards"><caption class="muted">{e(caption)}'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table></div>")


def state_badge(state: str) -> str:
    mark = {"up": "▲", "down": "▼", "pushing": "▲", "stopped pushing": "▼"}.get(state, "•")
    cls = {"up": "up", "pushing": "up", "down": "down", "stopped pushing": "down"}.get(
        state, "muted")
    return f'<span class="state {cls}">{mark} {e(state)}</span>'


def _memory(t: TargetView) -> str:
    if t.memory_used_bytes is None:
        return DASH
    used = e(fmt.size(t.memory_used_bytes))
    if t.memory_max_bytes is None:
        return f'{used} <span class="muted">of no maxmemory</span>'
    share = t.memory_used_bytes / t.memory_max_bytes
    return (f"{used} of {e(fmt.size(t.memory_max_bytes))} ({e(fmt.percent(share))})"
            f'<br><meter min="0" max="1" value="{share:.3f}" '
            f'aria-label="memory used of maxmemory">{e(fmt.percent(share))}</meter>')


def target_row(t: TargetView, now: float) -> str:
    state = state_badge(t.state)
    if t.changed_at:
        state += f'<br><span class="muted">since {when(now, t.changed_at)}</span>'
    if t.error:
        state += f'<br><span class="err bad">{e(t.error)}</span>'
    for reason in t.degraded:
        state += f'<br><span class="err warn">{e(reason)}</span>'
    server = e(" ".join(x for x in (t.server, t.role) if x)) or DASH
    hit = shown(t.hit_ratio, fmt.percent) + sparkline(
        t.hit_ratio_trend, "hit ratio, last 10 min", fmt.percent)
    commands = shown(t.commands_per_second, fmt.per_second) + sparkline(
        t.commands_trend, "commands per second, last 10 min", fmt.per_second)
    scrape = when(now, t.last_scrape_at)
    if t.last_scrape_duration_seconds is not None and t.last_scrape_at:
        scrape += f" in {e(fmt.duration(t.last_scrape_duration_seconds))}"
    return "<tr>" + "".join((
        cell("Target", f'<span class="addr">{e(t.address)}</span>'),
        cell("State", state),
        cell("Server", server),
        cell("Uptime", shown(t.uptime_seconds, fmt.span), True),
        cell("Hit ratio", hit, True),
        cell("Memory", _memory(t), True),
        cell("Evictions", shown(t.evictions_per_second, fmt.per_second), True),
        cell("Commands", commands, True),
        cell("Clients", shown(t.connected_clients, fmt.count), True),
        cell("Last scrape", scrape),
    )) + "</tr>"


def _pool(a: AppView) -> str:
    out = []
    for p in a.pools:
        usage = f"{fmt.count(p.used)} used"
        if p.max:
            share = p.used / p.max
            usage = f"{fmt.count(p.used)} of {fmt.count(p.max)} used ({fmt.percent(share)})"
        line = f'<span class="addr">{e(p.name) or "(unnamed)"}</span> ' \
               f'<span class="muted">{e(p.system)}</span>: {e(usage)}'
        pending = f"{fmt.count(p.pending_requests)} waiting"
        line += f', <span class="{"bad" if p.pending_requests else ""}">{e(pending)}</span>'
        if p.timeouts_in_window:
            line += f', <span class="bad">{e(fmt.count(p.timeouts_in_window))} timeouts ' \
                    "in 5 min</span>"
        elif p.timeouts_in_window is not None:
            line += ", no timeouts in 5 min"
        out.append(f'<li class="pool">{line}</li>')
    return f'<ul class="reasons">{"".join(out)}</ul>' if out else DASH


def _caches(a: AppView) -> str:
    out = [f'<li><span class="addr">{e(c.name)}</span>: {shown(c.hit_ratio, fmt.percent)}'
           f'{" of " + e(fmt.per_second(c.lookups_per_second)) + " lookups" if c.lookups_per_second else ""}</li>'  # noqa: E501
           for c in a.caches]
    return f'<ul class="reasons">{"".join(out)}</ul>' if out else DASH


def app_row(a: AppView, now: float, lines: bool = True) -> str:
    push = when(now, a.last_push_at)
    if a.export_interval_seconds:
        push += f'<br><span class="muted">every {e(fmt.span(a.export_interval_seconds))}' \
                "</span>"
    queries = DASH
    if a.query_rate_per_second is not None or a.query_p99_seconds is not None:
        p99 = shown(a.query_p99_seconds, fmt.duration)
        if a.query_p99_above_largest_bucket:
            p99 = "over " + p99
        queries = f"{shown(a.query_rate_per_second, fmt.per_second)}, p99 {p99}"
        if lines:
            queries += sparkline(a.query_trend, "queries per second, last 5 min",
                                 fmt.per_second)
    requests = '<span class="muted">no HTTP metrics</span>'
    if a.sends_http:
        errors = shown(a.error_ratio, fmt.percent)
        if a.error_ratio:
            errors = f'<span class="bad">{errors}</span>'
        requests = f"{shown(a.request_rate_per_second, fmt.per_second)}, {errors} errors"
        if lines:
            requests += sparkline(a.request_trend, "requests per second, last 5 min",
                                  fmt.per_second)
    return "<tr>" + "".join((
        cell("Service", f'<span class="addr">{e(a.service)}</span>'),
        cell("Instance", f"<code>{e(a.instance)}</code>"),
        cell("State", state_badge(a.state)),
        cell("Last push", push),
        cell("Pools", _pool(a)),
        cell("Queries", queries, True),
        cell("Requests", requests, True),
        cell("Cache hit ratio", _caches(a)),
    )) + "</tr>"


def service_row(v: ServiceView) -> str:
    instances = f"{v.pushing} pushing"
    if v.stopped:
        instances += f', <span class="bad">{v.stopped} stopped</span>'
    pools = DASH
    if v.pool_max:
        pools = e(f"{fmt.count(v.pool_used)} of {fmt.count(v.pool_max)} used "
                  f"({fmt.percent(v.pool_used / v.pool_max)})")
    waiting = e(f"{fmt.count(v.pending_requests)} waiting")
    if v.pending_requests:
        waiting = f'<span class="bad">{waiting}</span>'
    timeouts = e(f"{fmt.count(v.timeouts_in_window)} timeouts")
    if v.timeouts_in_window:
        timeouts = f'<span class="bad">{timeouts}</span>'
    errors = shown(v.error_ratio, fmt.percent)
    if v.error_ratio:
        errors = f'<span class="bad">{errors}</span>'
    requests = DASH if v.request_rate_per_second is None else \
        f"{e(fmt.per_second(v.request_rate_per_second))}, {errors} errors"
    return "<tr>" + "".join((
        cell("Service", f'<span class="addr">{e(v.service)}</span>'),
        cell("Instances", instances),
        cell("Pools", f"{pools}, {waiting}, {timeouts} in 5 min"),
        cell("Queries", shown(v.query_rate_per_second, fmt.per_second), True),
        cell("Requests", requests, True),
    )) + "</tr>"


def slow_row(q: SlowQueryView, now: float) -> str:
    text = q.fingerprint
    cut = text if len(text) <= FINGERPRINT_SHOWN else text[:FINGERPRINT_SHOWN] + "…"
    return "<tr>" + "".join((
        cell("Fingerprint", f'<code class="fp" title="{e(text)}">{e(cut)}</code>'),
        cell("Service", f'<span class="addr">{e(q.service)}</span>'),
        cell("Calls", e(fmt.count(q.calls)), True),
        cell("Mean", e(fmt.duration(q.mean_seconds)), True),
        cell("Max", e(fmt.duration(q.max_seconds)), True),
        cell("Last seen", when(now, q.last_seen_at)),
    )) + "</tr>"


def receiver_section(r: ReceiverView, started: float, now: float) -> str:
    if r.accepting:
        state = '<span class="state up">▲ accepting</span>'
    else:
        state = '<span class="state down">▼ not accepting</span>'
    reasons = "".join(f'<li class="warn">{e(x)}</li>' for x in r.reasons)
    counts = "".join(f"<li>{e(c.what)}: {e(fmt.count(c.total))}</li>" for c in r.rejected)
    drops = "".join(f"<li>{e(c.what)}: {e(fmt.count(c.total))}</li>" for c in r.dropped)
    line = sparkline(r.trouble_trend, "rejections and drops per second, last 5 min",
                     fmt.per_second)
    trend = f'<p class="trend">Rejections and drops per second: {line}</p>' if line else ""
    return (
        f"<p>{state}</p>"
        + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")
        + f"<p>{e(fmt.count(r.requests))} pushes, {e(fmt.count(r.points_accepted))} data "
        f"points and {e(fmt.count(r.spans_accepted))} spans accepted since the sidecar "
        f"started {when(now, started)}; {e(plural(r.producers, 'producer'))} followed; "
        f"{e(fmt.count(r.series))} of {e(fmt.count(r.series_limit))} series, "
        f"{e(fmt.size(r.series_bytes))} of {e(fmt.size(r.series_bytes_limit))}.</p>"
        + "<h3>Rejected requests, by reason</h3>"
        + (f'<ul class="reasons">{counts}</ul>' if counts else "<p>none</p>")
        + "<h3>Dropped data points, by reason</h3>"
        + (f'<ul class="reasons">{drops}</ul>' if drops else "<p>none</p>")
        + trend
    )


def summary(s: Status) -> str:
    down = s.targets_down
    up = sum(1 for t in s.targets if t.state == "up")
    if not s.targets:
        redis = "No Redis target configured."
    elif down:
        names = ", ".join(f"{t.address} ({t.error or 'down'})" for t in down)
        redis = (f"The Redis target is DOWN: {names}." if len(s.targets) == 1 else
                 f"{len(down)} of {len(s.targets)} Redis targets DOWN: {names}.")
    else:
        redis = f"All {up} Redis targets up." if up != 1 else "The Redis target is up."
    pushing = sum(1 for a in s.apps if a.state == "pushing")
    stopped = len(s.apps) - pushing
    apps = f" {plural(pushing, 'app instance')} pushing" + (
        f", {stopped} stopped" if stopped else "")
    receiver = "; receiver accepting." if s.receiver.accepting else "; receiver NOT accepting."
    cls = "bad" if down or not s.receiver.accepting else "up"
    return f'<p id="summary" class="summary {cls}" role="status">{e(redis + apps + receiver)}</p>'


def render(s: Status) -> str:
    now = s.generated_at
    stamp = fmt.iso(now)
    title = (f"{len(s.targets_down)} down · " if s.targets_down else "") + \
        "tradesense-exporter status"
    targets = table(
        [("Target", False), ("State", False), ("Server", False), ("Uptime", True),
         ("Hit ratio", True), ("Memory", True), ("Evictions", True), ("Commands", True),
         ("Clients", True), ("Last scrape", False)],
        [target_row(t, now) for t in s.targets],
        "Hit ratio, evictions and commands over the last 5 min; lines: the last 10 min")
    apps = table(
        [("Service", False), ("Instance", False), ("State", False), ("Last push", False),
         ("Pools", False), ("Queries", True), ("Requests", True), ("Cache hit ratio", False)],
        [app_row(a, now, len(s.apps) <= SPARKLINE_ROWS) for a in s.apps],
        "Rates, p99 and ratios over the last 5 min")
    services = ""
    if any(v.pushing + v.stopped > 1 for v in s.services):
        services = table(
            [("Service", False), ("Instances", False), ("Pools, all instances", False),
             ("Queries", True), ("Requests", True)],
            [service_row(v) for v in s.services],
            "Each service's instances summed; rates over the last 5 min") + \
            '<h3 id="h-instances">Instances</h3>'
    slow = table(
        [("Fingerprint", False), ("Service", False), ("Calls", True), ("Mean", True),
         ("Max", True), ("Last seen", False)],
        [slow_row(q, now) for q in s.slow_queries],
        f"The {len(s.slow_queries)} with the most total time, of "
        f"{s.slow_query_fingerprints} held")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{STYLE}</style>
<script src="/status.js" defer></script></head>
<body data-refresh="{REFRESH_SECONDS}"><header><h1>tradesense-exporter status</h1>
{summary(s)}
<p class="muted"><span id="updated">Updated <time datetime="{stamp}" title="{stamp}">{stamp[11:19]}
UTC</time>.</span> Updates every {REFRESH_SECONDS} s.
<button id="pause" type="button" aria-pressed="false" hidden>Pause updates</button>
<span id="refresh-note" class="warn"></span></p>
<p class="muted">Version {e(s.version)}. <a href="/api/status">JSON</a> ·
<a href="/metrics">/metrics</a> · <a href="/api/slow-queries">/api/slow-queries</a> ·
<a href="/readyz">/readyz</a> · <a href="/healthz">/healthz</a></p></header>
<main id="content">
<section aria-labelledby="h-redis"><h2 id="h-redis">Redis targets</h2>
{targets if s.targets else "<p>No Redis target configured.</p>"}</section>
<section aria-labelledby="h-apps"><h2 id="h-apps">Apps pushing over OTLP</h2>
{services + apps if s.apps else "<p>No app has pushed metrics yet.</p>"}</section>
<section aria-labelledby="h-slow"><h2 id="h-slow">Slowest queries</h2>
{slow if s.slow_queries else "<p>No slow query recorded.</p>"}</section>
<section aria-labelledby="h-otlp"><h2 id="h-otlp">OTLP receiver</h2>
{receiver_section(s.receiver, s.started_at, now)}</section>
</main>
<footer>Figures come from the sidecar's own memory (no Prometheus needed): Redis as the last
scrape saw it, apps as they last pushed. Ages show the exact time (UTC) on hover.</footer>
</body></html>
"""
