"""A Sentinel target: its INFO Sentinel section, then per watched master SENTINEL CKQUORUM,
SENTINEL SENTINELS and SENTINEL SLAVES.

    sentinel_masters:1
    master0:name=mymaster,status=ok,address=127.0.0.1:6390,slaves=1,sentinels=1

The masters' names and addresses come from those INFO lines (they list the same masters as
SENTINEL MASTERS), so the per-master commands go out in the scrape's second round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.exposition import Family
from exporter.redis.metric_table import FAMILIES
from exporter.redis.parse import Info, error_code, parse_pairs, to_number

PLAIN = {
    "sentinel_masters": FAMILIES["redis_sentinel_masters"],
    "sentinel_tilt": FAMILIES["redis_sentinel_tilt"],
    "sentinel_running_scripts": FAMILIES["redis_sentinel_running_scripts"],
    "sentinel_scripts_queue_length": FAMILIES["redis_sentinel_scripts_queue_length"],
    "sentinel_simulate_failure_flags": FAMILIES["redis_sentinel_simulate_failure_flags"],
}
MASTER_STATUS = FAMILIES["redis_sentinel_master_status"]
MASTER_SLAVES = FAMILIES["redis_sentinel_master_slaves"]
MASTER_SENTINELS = FAMILIES["redis_sentinel_master_sentinels"]
CKQUORUM = FAMILIES["redis_sentinel_master_ckquorum_status"]
OK_SENTINELS = FAMILIES["redis_sentinel_master_ok_sentinels"]
OK_SLAVES = FAMILIES["redis_sentinel_master_ok_slaves"]

# CKQUORUM replies "OK ..." or fails with "NOQUORUM ..." (or "ERR No such master ...").
CKQUORUM_CODES = frozenset({"OK", "NOQUORUM"})
COMMANDS_PER_MASTER = 3


def watched_masters(info: Info) -> list[tuple[str, str]]:
    """(name, address) of each master listed in the Sentinel section."""
    out = []
    for key, raw in info.get("sentinel", {}).items():
        if key.startswith("master") and key[6:].isdigit():
            master = parse_pairs(raw)
            if "name" in master:
                out.append((master["name"], master.get("address", "")))
    return out


def sentinel_info_families(info: Info) -> list[Family]:
    section = info.get("sentinel")
    if not section:
        return []
    out: list[Family] = []
    for field, spec in PLAIN.items():
        value = to_number(section.get(field, ""))
        if value is not None:
            fam = spec.family()
            fam.add(value)
            out.append(fam)
    status, slaves, sentinels = (MASTER_STATUS.family(), MASTER_SLAVES.family(),
                                 MASTER_SENTINELS.family())
    for key, raw in section.items():
        if not (key.startswith("master") and key[6:].isdigit()):
            continue
        master = parse_pairs(raw)
        n_slaves, n_sentinels = (to_number(master.get("slaves", "")),
                                 to_number(master.get("sentinels", "")))
        if n_slaves is None or n_sentinels is None:
            continue
        name, address, state = master.get("name", ""), master.get("address", ""), \
            master.get("status", "")
        status.add(1.0 if state == "ok" else 0.0, MASTER_STATUS.labels_of(name, address, state))
        labels = MASTER_SLAVES.labels_of(name, address)
        slaves.add(n_slaves, labels)
        sentinels.add(n_sentinels, labels)
    out += [fam for fam in (status, slaves, sentinels) if fam.samples]
    return out


def sentinel_commands(masters: Sequence[tuple[str, str]]) -> list[tuple[str, ...]]:
    commands: list[tuple[str, ...]] = []
    for name, _ in masters:
        commands += [("SENTINEL", "CKQUORUM", name), ("SENTINEL", "SENTINELS", name),
                     ("SENTINEL", "SLAVES", name)]
    return commands


def sentinel_detail_families(masters: Sequence[tuple[str, str]],
                             replies: Sequence[Any]) -> list[Family]:
    """`replies` answer `sentinel_commands(masters)`, in order."""
    ckquorum, ok_sentinels, ok_slaves = (CKQUORUM.family(), OK_SENTINELS.family(),
                                         OK_SLAVES.family())
    for i, (name, address) in enumerate(masters):
        quorum, sentinels, slaves = replies[i * COMMANDS_PER_MASTER:(i + 1) * COMMANDS_PER_MASTER]
        ckquorum.add(0.0 if isinstance(quorum, Exception) else 1.0,
                     CKQUORUM.labels_of(name, ckquorum_code(quorum)))
        labels = OK_SENTINELS.labels_of(name, address)
        if isinstance(sentinels, list):
            ok_sentinels.add(1.0 + count_ok(sentinels), labels)  # this sentinel counts too
        if isinstance(slaves, list):
            ok_slaves.add(float(count_ok(slaves)), labels)
    return [fam for fam in (ckquorum, ok_sentinels, ok_slaves) if fam.samples]


def ckquorum_code(reply: Any) -> str:
    """The reply's code, from a closed set: the message itself is free text."""
    code = error_code(reply) if isinstance(reply, BaseException) else str(reply).split(" ", 1)[0]
    return code if code in CKQUORUM_CODES else "ERR"


def count_ok(instances: list[Any]) -> int:
    """Instances whose flags show neither s_down nor o_down."""
    ok = 0
    for instance in instances:
        flags = _field(instance, "flags")
        if flags is not None and "s_down" not in flags and "o_down" not in flags:
            ok += 1
    return ok


def _field(instance: Any, name: str) -> str | None:
    if isinstance(instance, list):  # name, value, name, value... (the connection is RESP2)
        for i in range(0, len(instance) - 1, 2):
            if instance[i] == name:
                value = instance[i + 1]
                return value if isinstance(value, str) else None
    return None
