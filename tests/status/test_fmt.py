from __future__ import annotations

import pytest

from exporter.status import fmt


@pytest.mark.parametrize(("value", "text"), [
    (0.0004, "0.4 ms"), (0.01234, "12.3 ms"), (0.9996, "1,000 ms"), (1.2345, "1.23 s"),
])
def test_durations_are_rounded_with_their_unit(value: float, text: str) -> None:
    assert fmt.duration(value) == text


def test_sizes_rates_ratios_and_spans() -> None:
    assert fmt.size(100) == "100 B"
    assert fmt.size(1377216) == "1.31 MiB"
    assert fmt.size(256 * 1024**2) == "256 MiB"
    assert fmt.per_second(0.05234) == "0.0523 /s"
    assert fmt.per_second(98.136) == "98.1 /s"
    assert fmt.percent(0.962) == "96.2 %"
    assert fmt.percent(1.0) == "100 %"
    assert fmt.percent(0.9996) == "> 99.9 %"
    assert fmt.span(59.6) == "1 min"
    assert fmt.span(3725) == "1 h 2 min"
    assert fmt.span(2 * 86400 + 7200) == "2 d 2 h"


def test_times_are_iso_8601_utc_and_ages() -> None:
    assert fmt.iso(0.5) == "1970-01-01T00:00:00Z"
    assert fmt.iso_or_none(0.0) is None
    assert fmt.age(100.0, 88.0) == "12 s ago"
    assert fmt.age(100.0, 0.0) == "never"


def test_json_numbers_keep_six_significant_digits() -> None:
    assert fmt.rounded(0.0017057260000115093) == 0.00170573
    assert fmt.rounded(float("nan")) is None
    assert fmt.rounded(0.0) == 0.0
