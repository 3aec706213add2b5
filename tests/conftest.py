"""Unit tests run first, then the end-to-end ones (`-m e2e`: they start processes of their own,
such as a sidecar, Prometheus, promtool, amtool, gunicorn, a browser or the Go exporter, or wait
on real time). A private redis-server starts in milliseconds: unit tests may use one.
`make unit-fast` runs only the unit tests, against the shared Redis and PostgreSQL, and leaves
out the fuzzing (`-m slow`) too."""

from __future__ import annotations

from pathlib import Path

import pytest

_E2E_DIRECTORIES = ("e2e", "abuse")
_TESTS = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts processes of its own or waits on real time")
    config.addinivalue_line("markers", "slow: thousands of generated examples (fuzzing)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = item.path.relative_to(_TESTS) if item.path.is_relative_to(_TESTS) else None
        if relative is not None and relative.parts[0] in _E2E_DIRECTORIES:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
