"""The HTML as a person reads it: states in words, figures with units, ages with the time."""

from __future__ import annotations

from exporter.status.page import render
from exporter.status.views import AppView, PoolView, ReceiverView, Status, TargetView

NOW = 1_800_000_000.0


def status(targets: list[TargetView], apps: list[AppView]) -> Status:
    return Status(NOW, "0.1.0", NOW - 600, 300.0, True, targets, apps, [], 0,
                  ReceiverView(True))


def test_a_target_down_says_so_in_words_with_its_reason_and_since_when() -> None:
    down = TargetView("redis://cache:6379", "down", error="timeout after 5s",
                      changed_at=NOW - 75, last_scrape_at=NOW - 2,
                      last_scrape_duration_seconds=5.0)
    html = render(status([down], []))
    assert "▼ down" in html and "timeout after 5s" in html
    assert 'title="2027-01-15T07:59:58Z">2 s ago</time> in 5 s' in html
    assert "1 min 15 s ago" in html
    assert "The Redis target is DOWN: redis://cache:6379 (timeout after 5s)." in html
    assert "<title>1 down · " in html


def test_an_app_that_stopped_pushing_and_its_pool_waiting() -> None:
    app = AppView("api", "w-1", "stopped pushing", NOW - 40, pools=[
        PoolView("main", "postgresql", 20, 0, 20, 3, 2)])
    html = render(status([], [app]))
    assert "▼ stopped pushing" in html
    assert "20 of 20 used (100 %)" in html
    assert '<span class="bad">3 waiting</span>' in html
    assert "2 timeouts in 5 min" in html
    assert "40 s ago" in html


def test_many_instances_are_summed_per_service_first() -> None:
    from exporter.status.snapshot import service_views

    def instance(name: str, state: str, used: float, pending: float) -> AppView:
        return AppView("api", name, state, NOW - 1, pools=[
            PoolView("main", "postgresql", used, 0, 20, pending, 1)],
            request_rate_per_second=10.0, error_ratio=0.1, sends_http=True)

    apps = [instance("w-1", "pushing", 5, 0), instance("w-2", "pushing", 15, 2),
            instance("w-3", "stopped pushing", 20, 9)]
    [api] = service_views(apps)
    assert (api.pushing, api.stopped, api.pool_used, api.pool_max) == (2, 1, 20, 40)
    assert (api.pending_requests, api.timeouts_in_window) == (2, 2)
    assert api.request_rate_per_second == 20.0
    assert api.error_ratio is not None and abs(api.error_ratio - 0.1) < 1e-9
    page = status([], apps)
    page.services = [api]
    html = render(page)
    assert '2 pushing, <span class="bad">1 stopped</span>' in html
    assert "20 of 40 used (50 %)" in html and '<span class="bad">2 waiting</span>' in html
    assert "20 /s, " in html
