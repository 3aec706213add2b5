"""The Commandstats, Errorstats and Latencystats sections: per-command and per-error counters,
and per-command latency summaries.

    cmdstat_get:calls=300,usec=189,usec_per_call=0.63,rejected_calls=0,failed_calls=0
    errorstat_WRONGTYPE:count=1
    latency_percentiles_usec_get:p50=1.003,p99=4.015,p99.9=8.031
"""

from __future__ import annotations

from exporter.exposition import Family, Sample
from exporter.redis.metric_table import FAMILIES
from exporter.redis.parse import Info, parse_pairs

COMMANDS = FAMILIES["redis_commands_total"]
DURATION = FAMILIES["redis_commands_duration_seconds_total"]
REJECTED = FAMILIES["redis_commands_rejected_calls_total"]
FAILED = FAMILIES["redis_commands_failed_calls_total"]
LATENCY = FAMILIES["redis_latency_percentiles_usec"]
ERRORS = FAMILIES["redis_errors_total"]

CMD_PREFIX = "cmdstat_"
ERR_PREFIX = "errorstat_"
LATENCY_PREFIX = "latency_percentiles_usec_"
_, QUANTILE = LATENCY.labels

# ("quantile", "0.999") per Redis percentile name ("p99.9"); filled on first sight, bounded.
_quantile_pairs: dict[str, tuple[str, str]] = {}
_QUANTILE_CACHE_MAX = 64


def quantile_pair(percentile: str) -> tuple[str, str] | None:
    """`p99.9` -> ("quantile", "0.999"): Redis reports percentiles, Prometheus quantiles 0..1."""
    pair = _quantile_pairs.get(percentile)
    if pair is not None or not percentile.startswith("p"):
        return pair
    try:
        q = round(float(percentile[1:]) / 100.0, 12)
    except ValueError:
        return None
    if not 0.0 <= q <= 1.0:
        return None
    pair = (QUANTILE, repr(q) if 0.0 < q < 1.0 else str(int(q)))
    if len(_quantile_pairs) < _QUANTILE_CACHE_MAX:
        _quantile_pairs[percentile] = pair
    return pair


def command_families(info: Info) -> list[Family]:
    """Families of commandstats and latencystats; the latency summary takes its count and sum
    (microseconds) from commandstats, as redis_exporter does."""
    section = info.get("commandstats")
    if not section:
        return []
    calls_fam, usec_fam = COMMANDS.family(), DURATION.family()
    rejected_fam, failed_fam = REJECTED.family(), FAILED.family()
    calls_add, usec_add = calls_fam.samples.append, usec_fam.samples.append
    rejected_add, failed_add = rejected_fam.samples.append, failed_fam.samples.append
    totals: dict[str, tuple[tuple[tuple[str, str], ...], float, float]] = {}
    for key, raw in section.items():
        if not key.startswith(CMD_PREFIX):
            continue
        stats = command_stats(raw)
        if stats is None:
            continue
        cmd = key[len(CMD_PREFIX):]
        labels = COMMANDS.labels_of(cmd)
        calls, usec, rejected, failed = stats
        totals[cmd] = (labels, calls, usec)
        calls_add(Sample("", labels, calls))
        usec_add(Sample("", labels, usec / 1e6))
        if rejected is not None and failed is not None:
            rejected_add(Sample("", labels, rejected))
            failed_add(Sample("", labels, failed))
    out = [fam for fam in (calls_fam, usec_fam, rejected_fam, failed_fam) if fam.samples]
    latency = latency_family(info, totals)
    if latency.samples:
        out.append(latency)
    return out


def command_stats(raw: str) -> tuple[float, float, float | None, float | None] | None:
    """(calls, usec, rejected_calls, failed_calls) of `calls=1,usec=10,usec_per_call=10.00,
    rejected_calls=0,failed_calls=0`; the last two are None before Redis 6.2."""
    parts = raw.replace("=", ",").split(",")
    try:
        if parts[0] == "calls" and parts[2] == "usec":
            calls, usec = float(parts[1]), float(parts[3])
            if len(parts) >= 10 and parts[6] == "rejected_calls" and parts[8] == "failed_calls":
                return calls, usec, float(parts[7]), float(parts[9])
            return calls, usec, None, None
    except (IndexError, ValueError):
        pass
    stats = parse_pairs(raw)  # an unexpected layout: look the fields up by name
    try:
        calls, usec = float(stats["calls"]), float(stats["usec"])
        if "rejected_calls" in stats and "failed_calls" in stats:
            return calls, usec, float(stats["rejected_calls"]), float(stats["failed_calls"])
        return calls, usec, None, None
    except (KeyError, ValueError):
        return None


def latency_family(info: Info,
                   totals: dict[str, tuple[tuple[tuple[str, str], ...], float, float]]) -> Family:
    fam = LATENCY.family()
    add, extend = fam.samples.append, fam.samples.extend
    pairs = _quantile_pairs
    for key, raw in info.get("latencystats", {}).items():
        total = totals.get(key[len(LATENCY_PREFIX):]) if key.startswith(LATENCY_PREFIX) else None
        if total is None:
            continue
        cmd_label, calls, usec = total
        cmd_pair = cmd_label[0]
        parts = raw.replace("=", ",").split(",")
        quantiles: list[Sample] | None
        try:
            quantiles = [Sample("", (cmd_pair, pairs[name]), float(value))
                         for name, value in zip(parts[::2], parts[1::2], strict=True)]
        except (KeyError, ValueError):
            quantiles = _quantiles_slowly(cmd_pair, parts)
            if quantiles is None:
                continue
        extend(quantiles)
        add(Sample("_sum", cmd_label, usec))
        add(Sample("_count", cmd_label, calls))
    return fam


def _quantiles_slowly(cmd_pair: tuple[str, str], parts: list[str]) -> list[Sample] | None:
    """Percentiles not seen before (latency-tracking-info-percentiles), or a malformed line."""
    if len(parts) % 2:
        return None
    quantiles = []
    for name, value in zip(parts[::2], parts[1::2], strict=True):
        pair = quantile_pair(name)
        try:
            number = float(value)
        except ValueError:
            return None
        if pair is None:
            return None
        quantiles.append(Sample("", (cmd_pair, pair), number))
    return quantiles


def error_families(info: Info) -> list[Family]:
    section = info.get("errorstats")
    if not section:
        return []
    fam = ERRORS.family()
    for key, raw in section.items():
        if not key.startswith(ERR_PREFIX):
            continue
        _, _, count = raw.partition("=")
        try:
            fam.samples.append(Sample("", ERRORS.labels_of(key[len(ERR_PREFIX):]), float(count)))
        except ValueError:
            continue
    return [fam] if fam.samples else []
