import pytest

from exporter.exposition import Family, render
from exporter.otlp import exphist
from exporter.otlp.store import SeriesStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _values(families: list[Family], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        s.labels + ((("suffix", s.suffix),) if s.suffix else ()): s.value
        for f in families
        if f.name == name
        for s in f.all_samples()
    }


A = (("service_instance_id", "a"),)
B = (("service_instance_id", "b"),)


def test_series_go_stale_after_the_configured_time() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=30, clock=clock)
    fam = store.family("g", "gauge", "")
    assert fam is not None
    store.tick()
    store.put_number(fam, A, 1, 0, False)
    store.put_number(fam, B, 2, 0, False)
    clock.now += 20
    store.tick()
    store.put_number(fam, B, 3, 0, False)
    clock.now += 15
    assert _values(store.collect(), "g") == {B: 3}
    assert store.series_count == 1
    clock.now += 31
    assert store.collect() == []
    assert store.series_count == 0 and not store.families


def test_the_series_limit_holds_and_frees_up_as_series_go_stale() -> None:
    clock = Clock()
    store = SeriesStore(max_series_per_metric=3, staleness_seconds=10, clock=clock)
    fam = store.family("g", "gauge", "")
    assert fam is not None
    store.tick()
    kept = [store.put_number(fam, (("i", str(i)),), i, 0, False) for i in range(10)]
    assert kept == [True] * 3 + [False] * 7
    assert store.put_number(fam, (("i", "0"),), 5, 0, False), "existing series still update"
    clock.now += 11
    store.tick()
    assert store.put_number(fam, (("i", "new"),), 1, 0, False)
    assert len(fam.series) == 1


def test_the_total_series_and_metric_limits_hold() -> None:
    store = SeriesStore(max_series_total=4, max_metrics=2)
    f1 = store.family("a", "gauge", "")
    assert f1 is not None
    assert [store.put_number(f1, (("i", str(i)),), 1, 0, False) for i in range(3)] == [True] * 3
    f2 = store.family("b", "gauge", "")
    assert f2 is not None
    assert [store.put_number(f2, (("i", str(i)),), 1, 0, False) for i in range(3)] == [
        True,
        False,
        False,
    ]
    assert store.family("c", "gauge", "") is None
    assert store.series_count == 4


def test_a_name_keeps_its_first_type() -> None:
    store = SeriesStore()
    assert store.family("x", "counter", "") is not None
    assert store.family("x", "gauge", "") is None


def test_delta_sums_accumulate_and_retries_are_not_counted_twice() -> None:
    store = SeriesStore()
    fam = store.family("c_total", "counter", "")
    assert fam is not None
    store.put_number(fam, A, 5, 100, True)
    store.put_number(fam, A, 3, 200, True)
    store.put_number(fam, A, 3, 200, True)  # the same batch, retried
    store.put_number(fam, A, 9, 150, True)  # an older batch arriving late
    assert _values(store.collect(), "c_total") == {A: 8}


def test_cumulative_points_replace_and_ignore_older_points() -> None:
    store = SeriesStore()
    fam = store.family("c_total", "counter", "")
    assert fam is not None
    store.put_number(fam, A, 5, 100, False)
    store.put_number(fam, A, 7, 200, False)
    store.put_number(fam, A, 6, 150, False)
    assert _values(store.collect(), "c_total") == {A: 7}


def test_delta_histograms_accumulate() -> None:
    store = SeriesStore()
    fam = store.family("h", "histogram", "")
    les = store.bucket_labels((0.1, 1.0))
    assert fam is not None and les == ("0.1", "1")
    store.put_histogram(fam, A, les, [1, 2, 0], 3, 1.5, 100, True)
    store.put_histogram(fam, A, les, [0, 1, 4], 5, 20.0, 200, True)
    assert _values(store.collect(), "h") == {
        (*A, ("le", "0.1"), ("suffix", "_bucket")): 1,
        (*A, ("le", "1"), ("suffix", "_bucket")): 4,
        (*A, ("le", "+Inf"), ("suffix", "_bucket")): 8,
        (*A, ("suffix", "_sum")): 21.5,
        (*A, ("suffix", "_count")): 8,
    }


def test_delta_histogram_with_new_bounds_starts_over() -> None:
    store = SeriesStore()
    fam = store.family("h", "histogram", "")
    assert fam is not None
    store.put_histogram(fam, A, ("1",), [1, 1], 2, None, 100, True)
    store.put_histogram(fam, A, ("2",), [3, 0], 3, None, 200, True)
    assert _values(store.collect(), "h")[(*A, ("suffix", "_count"))] == 3


def test_invalid_bounds_are_refused() -> None:
    store = SeriesStore()
    assert store.bucket_labels((1.0, 1.0)) is None
    assert store.bucket_labels((2.0, 1.0)) is None
    assert store.bucket_labels((1.0, float("nan"))) is None
    assert store.bucket_labels((1.0, float("inf"))) is None
    assert store.bucket_labels(()) == ()


def test_delta_exponential_histograms_accumulate_as_classic_buckets() -> None:
    store = SeriesStore()
    fam = store.family("e", "exphistogram", "")
    assert fam is not None
    first = exphist.from_point(1, 0.0, 0, (0, [2, 1]), (0, []), 64)  # (1, 2**0.5], (.., 2]
    second = exphist.from_point(0, 0.0, 0, (1, [4]), (0, []), 64)  # (2, 4]
    store.put_exp_histogram(fam, A, first, 3, 4.0, 100, True)
    store.put_exp_histogram(fam, A, second, 4, 12.0, 200, True)
    (out,) = store.collect()
    assert out.type == "histogram"
    assert _values([out], "e") == {
        (*A, ("le", "2"), ("suffix", "_bucket")): 3,
        (*A, ("le", "4"), ("suffix", "_bucket")): 7,
        (*A, ("le", "+Inf"), ("suffix", "_bucket")): 7,
        (*A, ("suffix", "_sum")): 16.0,
        (*A, ("suffix", "_count")): 7,
    }


def test_no_recorded_value_removes_the_series() -> None:
    store = SeriesStore()
    fam = store.family("g", "gauge", "")
    assert fam is not None
    store.put_number(fam, A, 1, 0, False)
    store.remove(fam, A)
    store.remove(fam, A)
    assert store.series_count == 0
    assert store.collect() == []


def test_summaries_render_quantiles() -> None:
    store = SeriesStore()
    fam = store.family("s", "summary", "help")
    assert fam is not None
    store.put_summary(fam, A, [("0.5", 1.0), ("0.99", 3.0)], 10, 12.5, 0)
    text = render(store.collect()).decode()
    assert 's{service_instance_id="a",quantile="0.99"} 3\n' in text
    assert 's_count{service_instance_id="a"} 10\n' in text


def test_a_family_being_filled_survives_the_prune_that_makes_room_for_it() -> None:
    clock = Clock()
    store = SeriesStore(max_series_total=1, staleness_seconds=10, clock=clock)
    old = store.family("old", "gauge", "")
    assert old is not None
    store.put_number(old, A, 1, 0, False)
    clock.now += 11
    store.now = clock.now  # within one batch: no tick, so no prune yet
    new = store.family("new", "gauge", "")
    assert new is not None
    assert store.put_number(new, A, 2, 0, False)
    assert store.families["new"] is new
    assert _values(store.collect(), "new") == {A: 2}
    assert list(store.families) == ["new"]


def test_a_flood_at_the_limit_prunes_once_per_batch_not_once_per_point() -> None:
    clock = Clock()
    store = SeriesStore(max_series_per_metric=3, staleness_seconds=10, clock=clock)
    fam = store.family("g", "gauge", "")
    assert fam is not None
    prunes = 0
    prune = store.prune

    def counting_prune(drop_empty: bool = True) -> None:
        nonlocal prunes
        prunes += 1
        prune(drop_empty)

    store.prune = counting_prune  # type: ignore[method-assign]
    clock.now += 1
    store.tick()
    kept = [store.put_number(fam, (("i", str(i)),), i, 0, False) for i in range(1000)]
    assert kept.count(True) == 3
    assert prunes <= 1


def test_the_byte_budget_refuses_new_series_and_growing_histograms() -> None:
    store = SeriesStore(max_bytes=2000)
    fam = store.family("g", "gauge", "")
    hist = store.family("h", "histogram", "")
    assert fam is not None and hist is not None
    store.tick()
    big = (("v", "x" * 400),)
    kept = [store.put_number(fam, (*big, ("i", str(i))), i, 0, False) for i in range(10)]
    assert kept.count(True) == 4 and store.refusal == "size_limit"
    assert store.bytes <= 2000
    rendered = len(render(store.collect()))
    assert rendered <= store.bytes
    store.remove(fam, (*big, ("i", "0")))
    les = store.bucket_labels(tuple(float(b) for b in range(1, 40)))
    assert les is not None
    assert not store.put_histogram(hist, (("i", "1"),), les, [0] * 40, 0, None, 0, False)
    assert store.put_histogram(hist, (("i", "1"),), (), [], 0, None, 0, False)
    assert not store.put_histogram(hist, (("i", "1"),), les, [0] * 40, 0, None, 0, False)
    assert store.bytes <= 2000


P = ("api", "a")  # (service name, instance id)
Q = ("api", "b")


def _push(store: SeriesStore, clock: Clock, at: float, producer: tuple[str, str],
          *names: str) -> None:
    """One push of `producer` at `at` (seconds after the start), updating the gauges `names`
    and its target_info, as translate.apply_metrics does."""
    clock.now = 1000.0 + at
    store.tick()
    store.pushed_by(producer)
    labels = (("service_instance_id", producer[1]),)
    for name in ("target_info", *names):
        fam = store.family(name, "gauge", "")
        assert fam is not None
        store.put_number(fam, labels, 1, 0, False)


def _held(store: SeriesStore, clock: Clock, at: float) -> set[tuple[str, str]]:
    """(metric, instance) of every series `/metrics` shows at `at`."""
    clock.now = 1000.0 + at
    return {(f.name, dict(s.labels)["service_instance_id"])
            for f in store.collect() for s in f.all_samples()}


def test_a_producer_that_dies_goes_after_three_of_its_intervals_not_the_staleness() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=300, clock=clock)
    for at in (0, 9, 20, 30, 39.5, 50, 60):  # every 10 s, with a second of jitter
        _push(store, clock, at, P, "g", "h")
    for at in range(0, 120, 10):  # a neighbour that stays
        _push(store, clock, at, Q, "g")
    # The longest of its gaps (11 s), three times, plus a second of grace: 34 s after 60.
    assert ("g", "a") in _held(store, clock, 93.9)
    assert ("h", "a") in _held(store, clock, 93.9)
    assert store.producers_expired == 0 and len(store.producers) == 2
    held = _held(store, clock, 94.1)
    assert held == {("target_info", "b"), ("g", "b")}
    assert store.producers_expired == 1 and list(store.producers) == [Q]
    assert store.series_count == 2


def test_a_producer_pushing_every_minute_goes_after_about_three_minutes() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=600, clock=clock)
    for n in range(5):
        _push(store, clock, 60 * n, P, "g")
    assert ("g", "a") in _held(store, clock, 240 + 180)
    assert _held(store, clock, 240 + 181.5) == set()
    assert store.producers_expired == 1


def test_the_floor_the_staleness_bound_and_producers_seen_once() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=20, clock=clock)
    for n in range(20):  # every half second: never sooner than 3 s after its last push
        _push(store, clock, n / 2, P, "g")
    last = 19 / 2
    _push(store, clock, 0, Q, "g")  # seen once: the staleness period
    clock.now = 1000.0
    assert _held(store, clock, last + 2.9) == {("g", "a"), ("target_info", "a"),
                                                ("g", "b"), ("target_info", "b")}
    assert _held(store, clock, last + 3.1) == {("g", "b"), ("target_info", "b")}
    assert ("g", "b") in _held(store, clock, 19.9)
    assert _held(store, clock, 20.1) == set()
    assert store.producers_expired == 2
    slow = SeriesStore(staleness_seconds=20, clock=clock)
    for n in range(4):  # every 60 s, past the staleness period: the staleness period rules
        _push(slow, clock, 60 * n, P, "g")
        assert _held(slow, clock, 60 * n + 19.9) == {("g", "a"), ("target_info", "a")}
        assert _held(slow, clock, 60 * n + 20.1) == set()


def test_a_slow_producer_with_jitter_never_flaps() -> None:
    import random

    rng = random.Random(9)
    clock = Clock()
    store = SeriesStore(staleness_seconds=300, clock=clock)
    at = 0.0
    for _ in range(300):  # every 10 s, from 7 to 13 s apart; sometimes its export in parts
        for part in range(rng.choice((1, 1, 1, 12))):
            _push(store, clock, at + part * 0.01, P, "g")
        gap = rng.uniform(7, 13)
        for step in range(1, int(gap)):  # a scrape every second in between
            assert _held(store, clock, at + step) == {("g", "a"), ("target_info", "a")}
        at += gap
    assert store.producers_expired == 0
    interval = store.producers[P].interval
    assert interval is not None and interval < 13.01


def test_a_series_missing_from_later_pushes_of_a_live_producer_ages_by_staleness() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=60, clock=clock)
    _push(store, clock, 0, P, "g", "cell")  # a histogram cell seen once, say
    for at in range(10, 100, 10):
        _push(store, clock, at, P, "g")
        if at < 60:
            assert ("cell", "a") in _held(store, clock, at + 5)
    assert _held(store, clock, 95) == {("g", "a"), ("target_info", "a")}
    assert store.producers_expired == 0


def test_a_producer_that_ends_cleanly_goes_at_once_and_is_not_counted_as_expired() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=300, clock=clock)
    for at in range(0, 50, 10):
        _push(store, clock, at, P, "g", "quiet")  # `quiet`: no point in its last export
        _push(store, clock, at, Q, "g")
    clock.now += 1
    store.tick()
    store.ended(P)
    fam = store.family("g", "gauge", "")
    info = store.family("target_info", "gauge", "")
    assert fam is not None and info is not None
    store.remove(fam, (("service_instance_id", "a"),))
    store.remove(info, (("service_instance_id", "a"),))
    assert _held(store, clock, 41.5) == {("g", "b"), ("target_info", "b")}
    assert store.producers_expired == 0 and list(store.producers) == [Q]
    _push(store, clock, 50, P, "g")  # the same identity again: a new producer
    assert ("g", "a") in _held(store, clock, 51)


def test_an_ending_producers_counts_stay_until_it_would_have_been_taken_for_dead() -> None:
    """A recycled worker's last word: its gauges end at once, its counters and histograms keep
    their final values for three of its intervals and a second (a scraper every 15 s sees the
    last count of a worker exporting every 10 s), then go; it is not counted as expired."""
    clock = Clock()
    store = SeriesStore(staleness_seconds=300, clock=clock)
    labels = (("service_instance_id", "a"),)
    for at in range(0, 50, 10):
        _push(store, clock, at, P, "g")
        counter = store.family("c_total", "counter", "")
        assert counter is not None
        store.put_number(counter, labels, at, 0, False)
    clock.now += 1
    store.tick()
    store.ended(P)
    gauge = store.family("g", "gauge", "")
    assert gauge is not None
    store.end(gauge, labels)
    assert counter is not None
    store.end(counter, labels)
    assert _held(store, clock, 41.5) == {("c_total", "a")}
    assert _values(store.collect(), "c_total") == {labels: 40}
    assert _held(store, clock, 40 + 1 + 30) == {("c_total", "a")}
    assert _held(store, clock, 40 + 1 + 31.5) == set()
    assert store.producers_expired == 0


def test_a_live_producers_ended_counter_goes_at_once() -> None:
    clock = Clock()
    store = SeriesStore(staleness_seconds=300, clock=clock)
    _push(store, clock, 0, P, "g")
    counter = store.family("c_total", "counter", "")
    assert counter is not None
    store.put_number(counter, (("service_instance_id", "a"),), 1, 0, False)
    store.end(counter, (("service_instance_id", "a"),))
    assert _held(store, clock, 1) == {("g", "a"), ("target_info", "a")}


def test_producers_past_the_cap_age_by_staleness_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.otlp import store as store_module

    monkeypatch.setattr(store_module, "MAX_PRODUCERS", 1)
    clock = Clock()
    store = SeriesStore(staleness_seconds=30, clock=clock)
    for at in range(0, 40, 2):
        _push(store, clock, at, P, "g")
        _push(store, clock, at, Q, "g")
    assert list(store.producers) == [P]
    assert _held(store, clock, 38 + 9) == {("g", "b"), ("target_info", "b")}
    assert _held(store, clock, 38 + 30.1) == set()
