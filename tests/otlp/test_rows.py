"""A row writes exactly the lines its samples render as, in both formats."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.exposition import Family, Row, label_text, render
from exporter.otlp.rows import HistogramRow, NumberRow, SummaryRow

NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
VALUES = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ['a"b', "back\\slash", "new\nline", "", "<script>"])
LABELS = st.dictionaries(NAMES, VALUES, max_size=4).map(lambda d: tuple(sorted(d.items())))
NUMBERS = st.floats(allow_nan=True) | st.integers(-(2**60), 2**60)
COUNTS = st.integers(0, 2**40)


def _row(kind: str, labels: tuple[tuple[str, str], ...], data: st.DataObject) -> Row:
    label = label_text(labels)
    if kind == "number":
        return NumberRow(labels, label, data.draw(NUMBERS))
    if kind == "histogram":
        counts = data.draw(st.lists(COUNTS, max_size=5))
        les = [str(i / 10) for i in range(len(counts))]
        sum_ = data.draw(st.none() | st.floats(allow_nan=False))
        return HistogramRow(labels, label, les, counts, sum(counts) + data.draw(COUNTS), sum_)
    quantiles = [(q, data.draw(NUMBERS)) for q in data.draw(
        st.lists(st.sampled_from(["0", "0.5", "0.99", "1"]), max_size=4, unique=True))]
    return SummaryRow(labels, label, quantiles, data.draw(COUNTS), data.draw(NUMBERS))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["number", "histogram", "summary"]),
       type_=st.sampled_from(["counter", "gauge", "untyped"]),
       labels=LABELS, data=st.data())
def test_a_row_renders_as_its_samples(kind: str, type_: str,
                                      labels: tuple[tuple[str, str], ...],
                                      data: st.DataObject) -> None:
    rows = [_row(kind, labels, data) for _ in range(data.draw(st.integers(1, 3)))]
    family_type = {"number": type_, "histogram": "histogram", "summary": "summary"}[kind]
    name = "x_total" if family_type == "counter" else "x"
    written = Family(name, family_type, "help", rows=rows)
    sampled = Family(name, family_type, "help", [s for row in rows for s in row.samples()])
    for openmetrics in (False, True):
        assert render([written], openmetrics) == render([sampled], openmetrics)


def test_samples_come_before_rows_and_both_are_listed() -> None:
    row = NumberRow((("a", "1"),), 'a="1"', 2.0)
    fam = Family("g", "gauge", "help", rows=[row])
    fam.add(1.0)
    assert render([fam]) == b'# HELP g help\n# TYPE g gauge\ng 1\ng{a="1"} 2\n'
    assert [s.value for s in fam.all_samples()] == [1.0, 2.0]
