from __future__ import annotations

from exporter.status.ring import Ring, fell, increase, levels, rate, ratio, step_ratio, trend


def test_points_are_kept_spacing_apart_and_bounded() -> None:
    ring: Ring[tuple[float, float]] = Ring(3, 5.0)
    kept = [ring.add((float(t), float(t))) for t in (0, 2, 5, 9, 10, 15, 20)]
    assert kept == [True, False, True, False, True, True, True]
    assert [p[0] for p in ring.points] == [10.0, 15.0, 20.0]


def test_window_ends_with_the_latest_point() -> None:
    ring: Ring[tuple[float, float]] = Ring(10, 5.0)
    for t in (0.0, 5.0, 10.0):
        ring.add((t, t))
    assert ring.window(4.0, (12.0, 12.0)) == [(5.0, 5.0), (10.0, 10.0), (12.0, 12.0)]
    assert ring.window(4.0, (10.0, 10.0)) == [(5.0, 5.0), (10.0, 10.0)]


def test_rate_ratio_and_increase_between_the_first_and_last_point() -> None:
    points = [(0.0, 5.0, 1.0), (10.0, 15.0, 1.0), (20.0, 25.0, 6.0)]
    assert rate(points, 1) == 1.0
    assert increase(points, 2) == 5.0
    assert ratio(points, 1, 2) == 20 / 25
    assert rate(points[:1], 1) is None
    assert rate([(0.0, 5.0), (10.0, 1.0)], 1) is None  # a fall is never a negative rate
    assert ratio([(0.0, 1.0, 1.0), (5.0, 1.0, 1.0)], 1, 2) is None  # no lookup: unknown


def test_a_counter_that_falls_is_told() -> None:
    assert fell((0.0, 10.0, 5.0), (5.0, 11.0, 4.0), (1, 2))
    assert not fell((0.0, 10.0, 5.0), (5.0, 11.0, 5.0), (1, 2))


def test_trends_use_at_most_so_many_points_and_skip_a_reset() -> None:
    points = [(0.0, 10.0, 10.0), (5.0, 19.0, 11.0), (10.0, 1.0, 0.0)]
    assert trend(points, step_ratio(1, 2)) == [0.9, None]
    many = [(float(t), float(t)) for t in range(100)]
    assert len(trend(many, step_ratio(1, 1), at_most=24)) == 23
    assert levels(many, 1, at_most=24)[0] == 0.0 and levels(many, 1, at_most=24)[-1] == 99.0
