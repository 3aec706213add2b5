"""The text of Redis's INFO (and CLUSTER INFO) replies, parsed into sections of fields; and the
error code of an error reply.

`parse_info` is on every scrape's path: one `splitlines` and one `partition` per line, no regex.
"""

from __future__ import annotations

Fields = dict[str, str]
Info = dict[str, Fields]

STATUS_VALUES = {"ok": 1.0, "true": 1.0, "err": 0.0, "fail": 0.0, "false": 0.0}


def parse_info(text: str) -> Info:
    """Sections keyed by their lower-cased title (`# Keyspace` -> `keyspace`); fields before the
    first title (CLUSTER INFO has none) land in section `""`."""
    fields: Fields = {}
    sections: Info = {"": fields}
    for line in text.splitlines():
        if not line:
            continue
        if line[0] == "#":
            fields = {}
            sections[line[1:].strip().lower()] = fields
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return sections


def parse_pairs(value: str) -> Fields:
    """`keys=1,expires=0,avg_ttl=0` -> {"keys": "1", "expires": "0", "avg_ttl": "0"}."""
    out: Fields = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if sep:
            out[key] = val
    return out


def to_number(value: str) -> float | None:
    """A field's numeric value; `ok`/`err` style statuses become 1/0; anything else is None."""
    try:
        return float(value)
    except ValueError:
        return STATUS_VALUES.get(value)


def error_code(reply: BaseException) -> str:
    """`NOPERM`, `ERR`, `NOQUORUM`...: redis-py strips the codes it knows from the message and
    keeps them in `status_code`; other codes stay the message's first word."""
    code = getattr(reply, "status_code", None)
    if isinstance(code, str) and code:
        return code
    return str(reply).split(" ", 1)[0]
