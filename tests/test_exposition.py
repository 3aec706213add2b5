import math

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.exposition import (
    DUPLICATES,
    Family,
    counter,
    format_value,
    gauge,
    merge,
    render,
)


def sample_families() -> list[Family]:
    hist = Family("q_seconds", "histogram", "Query time")
    for le, n in (("0.1", 1), ("+Inf", 3)):
        hist.add(n, (("op", "SELECT"), ("le", le)), "_bucket")
    hist.add(0.75, (("op", "SELECT"),), "_sum")
    hist.add(3, (("op", "SELECT"),), "_count")
    return [
        gauge("g", 'help with "quotes" and \\ and\nnewline', 1.5, (("l", 'a"b\\c\nd'),)),
        counter("c_total", "a counter", 7),
        counter("legacy_counter", "a counter named without _total", 2),
        hist,
    ]


def test_text_format_round_trips_through_the_reference_parser() -> None:
    text = render(sample_families()).decode()
    parsed = {f.name: f for f in parse_text(text)}
    assert parsed["g"].samples[0].labels == {"l": 'a"b\\c\nd'}
    assert parsed["g"].documentation == 'help with "quotes" and \\ and\nnewline'
    assert parsed["c"].type == "counter" and parsed["c"].samples[0].value == 7
    assert [s.value for s in parsed["q_seconds"].samples] == [1, 3, 0.75, 3]


def test_openmetrics_is_valid_and_names_counters_without_total() -> None:
    text = render(sample_families(), openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE c counter\nc_total 7\n" in text
    assert "# TYPE legacy_counter unknown\nlegacy_counter 2\n" in text
    parsed = {f.name: f for f in parse_om(text)}
    assert parsed["q_seconds"].type == "histogram"


def test_values() -> None:
    assert [format_value(v) for v in (3, 3.0, 0.25, 1e20, math.inf, -math.inf)] == \
        ["3", "3", "0.25", "1e+20", "+Inf", "-Inf"]
    assert format_value(math.nan) == "NaN"


def test_merge_keeps_one_family_per_name() -> None:
    a = [gauge("up", "u", 1, (("target", "a"),))]
    b = [gauge("up", "u", 0, (("target", "b"),))]
    merged = merge([a, b])
    assert len(merged) == 1 and [s.value for s in merged[0].samples] == [1, 0]
    assert len(a[0].samples) == 1
    assert render(merged).decode().count("# TYPE up gauge") == 1


def test_a_duplicate_family_is_left_out_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = DUPLICATES.count
    families = [gauge("dup_x", "first", 1), gauge("dup_x", "second", 2)]
    with caplog.at_level("WARNING", logger="exporter.exposition"):
        for _ in range(3):
            assert render(families).decode().count("dup_x 1\n") == 1
    assert DUPLICATES.count == before + 3
    assert sum("left out" in r.getMessage() for r in caplog.records) == 1


def test_gzip_rendering_is_the_rendering_gzipped_whatever_its_size() -> None:
    """render_gzip hands the compressor a few thousand lines at a time: the result must be the
    same text, across many spills and in both formats."""
    import gzip

    from exporter.exposition import Family, render, render_gzip

    big = Family("big_bucket_family", "histogram", 'help with "quotes" and \\ and\nnewline')
    for i in range(10_000):
        labels = (("series", f"s{i % 97}"), ("odd", 'a"b\\c\nd'), ("le", str(i)))
        big.add(float(i), labels, "_bucket")
    counter = Family("requests_total", "counter", "Requests.")
    counter.add(3)
    for openmetrics in (False, True):
        expected = render([big, counter], openmetrics)
        assert gzip.decompress(render_gzip([big, counter], openmetrics)) == expected
    assert render_gzip([]) and gzip.decompress(render_gzip([])) == b""
