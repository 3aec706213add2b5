"""Compare our exposition with redis_exporter's: every `redis_*` family of the reference must be
in ours with the same name, type and label names, save the corrections docs/metrics.md lists
under "Deviations from redis_exporter 1.45".

    problems = compare_to_reference(go_text, our_text, skip=SCRAPE_REDIS_SKIPS)
    assert not problems, "\n".join(problems)
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

# Families redis_exporter types gauge though their names end in _total: ours are counters.
TYPE_CORRECTIONS = {
    "redis_expired_time_cap_reached_total": ("gauge", "counter"),
    "redis_cluster_messages_sent_total": ("gauge", "counter"),
    "redis_cluster_messages_received_total": ("gauge", "counter"),
}
# Label names we drop: free text (the error message) does not belong in a label.
DROPPED_LABELS = {"redis_exporter_last_scrape_error": frozenset({"err"})}
# Label names we add: which server (redis, valkey, keydb, dragonfly) and its own version.
ADDED_LABELS = {"redis_instance_info": frozenset({"server_name", "server_version"})}
# Families we deliberately do not emit (Prometheus's exporter guidelines; key groups unused).
NOT_EMITTED = frozenset(
    {
        "redis_exporter_scrapes_total",
        "redis_exporter_scrape_duration_seconds",
        "redis_last_key_groups_scrape_duration_milliseconds",
    }
)
# redis_exporter zero-fills these for 16 dbs; ours have series only for dbs in the keyspace, so
# they are required only when the reference has a non-zero sample.
ZERO_FILLED = frozenset({"redis_db_keys", "redis_db_keys_expiring"})
# Families the collector (not scrape_redis) emits around each scrape.
COLLECTOR_FAMILIES = frozenset(
    {
        "redis_up",
        "redis_exporter_last_scrape_duration_seconds",
        "redis_exporter_last_scrape_error",
        "redis_exporter_last_scrape_connect_time_seconds",
        "redis_exporter_build_info",
        "redis_target_scrape_request_errors_total",
    }
)
SCRAPE_REDIS_SKIPS = COLLECTOR_FAMILIES
# redis_exporter's names that `promtool check metrics` complains about and that we keep so that
# dashboards and alerts work unchanged: the only complaints our output may draw.
COMPATIBILITY_NAMES = frozenset({
    "redis_aof_current_rewrite_duration_sec",
    "redis_aof_last_rewrite_duration_sec",
    "redis_rdb_current_bgsave_duration_sec",
    "redis_rdb_last_bgsave_duration_sec",
    "redis_dump_payload_sanitizations",
    "redis_io_threaded_reads_processed",
    "redis_io_threaded_writes_processed",
    "redis_total_error_replies",
    "redis_total_reads_processed",
    "redis_total_writes_processed",
    "redis_unexpected_error_replies",
    "redis_migrate_cached_sockets_total",
    "redis_storage_provider_read_hits",
    "redis_storage_provider_read_misses",
    "redis_server_threads_total",
    "redis_long_lock_waits_total",
})

_SUFFIXES = {
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "counter": ("_total", "_created"),
}


@dataclass
class FamilyShape:
    name: str
    type: str
    labels: set[str] = field(default_factory=set)
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    @property
    def has_nonzero(self) -> bool:
        return any(value != 0 for _, value in self.samples)


def parse_labels(block: str) -> dict[str, str]:
    """`a="1",b="x\\"y"` -> {"a": "1", "b": 'x"y'}."""
    labels: dict[str, str] = {}
    i, n = 0, len(block)
    while i < n:
        eq = block.index("=", i)
        name = block[i:eq].strip().lstrip(",").strip()
        j = block.index('"', eq) + 1
        value: list[str] = []
        while block[j] != '"':
            if block[j] == "\\":
                j += 1
                value.append({"n": "\n"}.get(block[j], block[j]))
            else:
                value.append(block[j])
            j += 1
        labels[name] = "".join(value)
        i = j + 1
        while i < n and block[i] in ", ":
            i += 1
    return labels


def parse_exposition(text: str) -> dict[str, FamilyShape]:
    """Families of a Prometheus text (or OpenMetrics) exposition, by the name TYPE gives."""
    families: dict[str, FamilyShape] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = FamilyShape(name, kind.strip())
        elif line and not line.startswith("#"):
            _add_sample(families, line)
    return families


def _add_sample(families: dict[str, FamilyShape], line: str) -> None:
    if "{" in line:
        name, _, rest = line.partition("{")
        block, _, value = rest.rpartition("}")
        labels = parse_labels(block)
    else:
        name, _, value = line.partition(" ")
        labels = {}
    family = families.get(name) or _owner(families, name)
    if family is None:
        family = families[name] = FamilyShape(name, "untyped")
    family.labels.update(labels)
    family.samples.append((labels, float(value.split()[0])))


def _owner(families: dict[str, FamilyShape], sample_name: str) -> FamilyShape | None:
    for family in families.values():
        for suffix in _SUFFIXES.get(family.type, ()):
            if sample_name == family.name + suffix:
                return family
    return None


def compare_to_reference(reference: str, ours: str, skip: Iterable[str] = ()) -> list[str]:
    """Differences that break compatibility; [] when every reference redis_* family is in
    `ours` with the expected name, type and label names. `skip` names families not expected."""
    expected, actual = parse_exposition(reference), parse_exposition(ours)
    skipped = NOT_EMITTED | frozenset(skip)
    problems = []
    for name, ref in sorted(expected.items()):
        if not name.startswith("redis_") or name in skipped:
            continue
        if name in ZERO_FILLED and not ref.has_nonzero:
            continue
        got = actual.get(name)
        if got is None:
            problems.append(f"{name}: missing ({ref.type}, labels {sorted(ref.labels)})")
            continue
        want_type = TYPE_CORRECTIONS.get(name, (ref.type, ref.type))[1]
        if got.type != want_type:
            problems.append(f"{name}: type {got.type}, expected {want_type}")
        want_labels = (ref.labels - DROPPED_LABELS.get(name, frozenset())) | ADDED_LABELS.get(
            name, frozenset())
        if got.labels != want_labels:
            problems.append(f"{name}: labels {sorted(got.labels)}, expected {sorted(want_labels)}")
    return problems


def quantile_problems(text: str) -> list[str]:
    """Summary quantile labels outside 0..1 (redis_exporter 1.45 writes percents)."""
    problems = []
    for family in parse_exposition(text).values():
        for labels, _ in family.samples:
            q = labels.get("quantile")
            if q is not None and not (0.0 <= float(q) <= 1.0 and math.isfinite(float(q))):
                problems.append(f"{family.name}: quantile {q}")
    return problems


def promtool_complaints(text: str) -> dict[str, str]:
    """`promtool check metrics` lint complaints about an exposition: metric name -> message."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=60)
    complaints = {}
    for line in (result.stdout + result.stderr).decode().splitlines():
        name, _, message = line.strip().partition(" ")
        if name:
            complaints[name] = message
    if result.returncode not in (0, 3):  # 3: lint problems only
        raise RuntimeError(f"promtool failed ({result.returncode}): {complaints}")
    return complaints
