from __future__ import annotations

from exporter.status.ring import Ring, rate, ratio, since_reset, step_ratio, steps


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


def test_rate_and_ratio_start_again_after_a_counter_reset() -> None:
    points = [(0.0, 100.0, 10.0), (10.0, 200.0, 20.0), (20.0, 5.0, 1.0), (30.0, 25.0, 1.0)]
    assert since_reset(points, 1) == points[2:]
    assert rate(points, 1) == 2.0  # (25 - 5) / 10 s, not a negative rate
    assert ratio(points, 1, 2) == 1.0  # 20 hits, 0 misses since the restart
    assert rate(points[:1], 1) is None
    assert ratio([(0.0, 1.0, 1.0), (5.0, 1.0, 1.0)], 1, 2) is None  # no lookup: unknown


def test_step_ratio_skips_a_reset() -> None:
    points = [(0.0, 10.0, 10.0), (5.0, 19.0, 11.0), (10.0, 1.0, 0.0)]
    assert steps(points, step_ratio(1, 2)) == [0.9, None]
