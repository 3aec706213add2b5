"""What every abuse test measures on the real sidecar process: its memory, a normal client's
view of it while the attack runs, and what it logged.

Abuse traffic stays on loopback and every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.e2e_app import fetch


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid`, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def timed_get(url: str, timeout: float = 10.0) -> tuple[int, float]:
    """(status, seconds) of one GET by a well-behaved client on a fresh connection."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.monotonic() - started


def metrics_text(proc: Any) -> str:
    """One scrape of the sidecar process's /metrics."""
    return fetch(f"{proc.web_url}/metrics")


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def log_lines(text: str, needle: str = "") -> int:
    return sum(1 for line in text.splitlines() if needle in line)
