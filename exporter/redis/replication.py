"""The Replication section's structured fields: a master's `slaveN:` lines and a replica's view
of its master (plain fields such as connected_slaves go through `metric_table`).

    slave0:ip=127.0.0.1,port=6391,state=online,offset=14,lag=1
    master_host:127.0.0.1 / master_port:6390 / master_link_status:up / slave_repl_offset:14
"""

from __future__ import annotations

from exporter.exposition import Family, Sample
from exporter.redis.metric_table import FAMILIES
from exporter.redis.parse import Info, parse_pairs, to_number

SLAVE_OFFSET = FAMILIES["redis_connected_slave_offset_bytes"]
SLAVE_LAG = FAMILIES["redis_connected_slave_lag_seconds"]
LINK_UP = FAMILIES["redis_master_link_up"]
LAST_IO = FAMILIES["redis_master_last_io_seconds_ago"]
SYNC_IN_PROGRESS = FAMILIES["redis_master_sync_in_progress"]
SLAVE_REPL_OFFSET = FAMILIES["redis_slave_repl_offset"]
SLAVE_INFO = FAMILIES["redis_slave_info"]


def master_field(key: str) -> str | None:
    """`master_host` -> `host`; KeyDB's multi-master `master_1_host` -> `host` too."""
    if not key.startswith("master_"):
        return None
    rest = key[7:]
    if rest[:1].isdigit():
        digits, sep, rest = rest.partition("_")
        if not (sep and digits.isdigit()):
            return None
    return rest


def is_slave_line(key: str) -> bool:
    return key.startswith("slave") and key[5:].isdigit()


def replication_families(info: Info) -> list[Family]:
    section = info.get("replication")
    if not section:
        return []
    fams = {spec.name: spec.family() for spec in
            (SLAVE_OFFSET, SLAVE_LAG, LINK_UP, LAST_IO, SYNC_IN_PROGRESS, SLAVE_REPL_OFFSET)}
    master = {"link_status": LINK_UP, "last_io_seconds_ago": LAST_IO,
              "sync_in_progress": SYNC_IN_PROGRESS}
    host = port = ""
    for key, raw in section.items():
        field = master_field(key)
        if field == "host":
            host = raw
        elif field == "port":
            port = raw
        elif field == "link_status":
            fams[LINK_UP.name].add(1.0 if raw == "up" else 0.0, LINK_UP.labels_of(host, port))
        elif field in master or key == "slave_repl_offset":
            value = to_number(raw)
            if value is not None:
                spec = SLAVE_REPL_OFFSET if field is None else master[field]
                fams[spec.name].add(value, spec.labels_of(host, port))
        elif is_slave_line(key):
            _add_slave(fams, raw)
    out = [fam for fam in fams.values() if fam.samples]
    if section.get("role") == "slave":
        out.append(_slave_info(section.get("master_host", ""), section.get("master_port", ""),
                               section.get("slave_read_only", "")))
    return out


def _add_slave(fams: dict[str, Family], raw: str) -> None:
    slave = parse_pairs(raw)
    offset = to_number(slave.get("offset", ""))
    if offset is None:
        return
    labels = SLAVE_OFFSET.labels_of(slave.get("ip", ""), slave.get("port", ""),
                                    slave.get("state", ""))
    fams[SLAVE_OFFSET.name].samples.append(Sample("", labels, offset))
    lag = to_number(slave.get("lag", ""))
    if lag is not None:
        fams[SLAVE_LAG.name].samples.append(Sample("", labels, lag))


def _slave_info(host: str, port: str, read_only: str) -> Family:
    fam = SLAVE_INFO.family()
    fam.add(1.0, SLAVE_INFO.labels_of(host, port, read_only))
    return fam
