"""Set the base of every alert's runbook_url in one go: `make runbook-base URL=...`.

Prometheus rule files cannot share a variable, so the base is kept in one place,
alerts/runbook-base.txt, and written into each rule's `runbook_url` as `<base>#<alert, lower
case>` (the GitHub anchor of the alert's section in alerts/runbooks.md). Point it at where your
copy of alerts/runbooks.md is rendered (your repository's host, an internal wiki mirror).
tests/alerts/test_rules.py checks that every alert uses the base in that file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ALERTS = Path(__file__).resolve().parents[1] / "alerts"
BASE_FILE = ALERTS / "runbook-base.txt"
_URL = re.compile(r"^([ \t]*runbook_url:[ \t]*)\S+?#(\S+)[ \t]*$", re.MULTILINE)


def set_base(base: str, alerts: Path = ALERTS) -> int:
    """Rewrite every rule file under `alerts` and its runbook-base.txt; the number of URLs."""
    if not re.fullmatch(r"https?://\S+", base) or "#" in base:
        raise SystemExit(f"set_runbook_base: {base!r} is not an http(s) URL without a #fragment")
    (alerts / "runbook-base.txt").write_text(base + "\n")
    count = 0
    for path in sorted(alerts.glob("*.rules.yml")):
        text, n = _URL.subn(lambda m: f"{m.group(1)}{base}#{m.group(2)}", path.read_text())
        path.write_text(text)
        count += n
    return count


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: make runbook-base URL=https://host/path/alerts/runbooks.md")
    print(f"{set_base(sys.argv[1])} runbook URLs now start with {sys.argv[1]}")
