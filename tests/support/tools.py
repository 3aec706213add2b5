"""Locating the command-line tools the tests run, failing (never skipping) when one is missing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

DEBIAN_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        pytest.fail(f"{name} not found on PATH: install the Debian package {package} "
                    f"(apt-get install {package}, or `make test` as root)", pytrace=False)
    return path


def run_tool(name: str, args: Sequence[str], cwd: Path | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool(name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
