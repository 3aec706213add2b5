import math

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from exporter.otlp import exphist
from exporter.otlp.store import SeriesStore
from exporter.otlp.translate import apply_metrics

from .sdk import metrics_request


def test_scale_zero_buckets_are_powers_of_two() -> None:
    # index 0 at scale 0 holds (1, 2]; index -1 holds (0.5, 1].
    hist = exphist.from_point(0, 0.0, 0, (-1, [3, 5]), (0, []), 64)
    assert exphist.classic_buckets(hist) == [(1.0, 3), (2.0, 5)]


def test_finer_scales_fold_exactly_into_powers_of_two() -> None:
    # scale 2: four buckets per power of two; indexes 0..3 are (1, 2], 4 is (2, 2**1.25].
    hist = exphist.from_point(2, 0.0, 0, (0, [1, 1, 1, 1, 7]), (0, []), 64)
    assert exphist.classic_buckets(hist) == [(2.0, 4), (4.0, 7)]


def test_negative_scales_keep_their_coarser_power_of_two_bounds() -> None:
    # scale -1: index 1 holds (4, 16].
    hist = exphist.from_point(-1, 0.0, 0, (1, [2]), (0, []), 64)
    assert exphist.classic_buckets(hist) == [(16.0, 2)]


def test_zero_and_negative_buckets() -> None:
    # negative index 0 at scale 0: values in [-2, -1); upper bound -1.
    hist = exphist.from_point(0, 0.0, 4, (0, [1]), (0, [2]), 64)
    assert exphist.classic_buckets(hist) == [(-1.0, 2), (0.0, 4), (2.0, 1)]


def test_a_wide_range_is_downscaled_to_the_bucket_limit() -> None:
    hist = exphist.from_point(0, 0.0, 0, (-100, [1] + [0] * 198 + [1]), (0, []), 10)
    assert hist.scale < 0
    assert len(exphist.classic_buckets(hist)) <= 10
    assert sum(n for _, n in exphist.classic_buckets(hist)) == 2


def test_bounds_past_float_range_count_only_in_inf() -> None:
    hist = exphist.from_point(0, 0.0, 0, (5000, [3]), (0, []), 64)
    assert exphist.classic_buckets(hist) == []


def test_delta_merge_aligns_scales() -> None:
    a = exphist.from_point(0, 0.0, 0, (0, [1]), (0, []), 64)
    b = exphist.from_point(-1, 0.0, 1, (0, [2]), (0, []), 64)
    exphist.merge(a, b, 64)
    assert a.scale == -1
    assert exphist.classic_buckets(a) == [(0.0, 1), (4.0, 3)]


def _bucket_lines(values: list[float], max_size: int) -> tuple[list[tuple[float, float]], float]:
    def record(meter: Meter) -> None:
        h = meter.create_histogram("latency", unit="s")
        for v in values:
            h.record(v)

    view = View(
        instrument_name="latency",
        aggregation=ExponentialBucketHistogramAggregation(max_size=max_size),
    )
    request, _ = metrics_request(record, views=[view])
    store = SeriesStore()
    apply_metrics(request, store)
    (fam,) = [f for f in store.collect() if f.name == "latency_seconds"]
    assert fam.type == "histogram"
    samples = fam.all_samples()
    buckets = [(float(dict(s.labels)["le"]), s.value) for s in samples if s.suffix == "_bucket"]
    (count,) = [s.value for s in samples if s.suffix == "_count"]
    return buckets, count


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(min_value=1e-9, max_value=1e9),
            st.sampled_from([0.0, 0.5, 1.0, 2.0, 1024.0]),
        ),
        min_size=1,
        max_size=60,
    ),
    max_size=st.sampled_from([2, 4, 20, 160]),
)
def test_sdk_exponential_histograms_convert_without_error(
    values: list[float], max_size: int
) -> None:
    buckets, count = _bucket_lines(values, max_size)
    assert count == len(values)
    assert buckets[-1] == (math.inf, len(values))
    for le, cumulative in buckets:
        assert cumulative == sum(1 for v in values if v <= le), le


def test_empty_buckets_inside_the_range_are_shown() -> None:
    hist = exphist.from_point(0, 0.0, 0, (0, [1]), (0, []), 64)
    exphist.merge(hist, exphist.from_point(0, 0.0, 0, (3, [1]), (0, []), 64), 64)
    assert exphist.classic_buckets(hist) == [(2.0, 1), (4.0, 0), (8.0, 0), (16.0, 1)]


def test_indexes_past_the_float_range_keep_the_range_small() -> None:
    hist = exphist.from_point(0, 0.0, 0, (-(2**31), [1]), (0, []), 64)
    exphist.merge(hist, exphist.from_point(0, 0.0, 0, (2**31 - 2, [1]), (0, []), 64), 64)
    assert len(exphist.classic_buckets(hist)) <= 64
    assert sum(n for _, n in exphist.classic_buckets(hist)) == 1  # the other is past +Inf
