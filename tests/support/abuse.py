"""What every abuse test measures on the real sidecar process: its memory, a normal client's
view of it while the attack runs, and what it logged.

Abuse traffic stays on loopback and every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path


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


def log_lines(text: str, needle: str = "") -> int:
    return sum(1 for line in text.splitlines() if needle in line)
