"""Lag per partition, time to drain and Burrow-style status from offset snapshots."""

from __future__ import annotations

from monitoring.lag import LagTracker, partition_lags
from monitoring.topic_rates import Snapshot


def snap(at: float, ends: dict[int, int], committed: dict[int, int]) -> Snapshot:
    return Snapshot(at, {"tx": ends}, {"g": {"tx": committed}})


def test_partition_lag_counts_uncommitted_partitions_whole() -> None:
    lags = partition_lags(snap(0, {0: 10, 1: 7}, {0: 4}), "g", "tx")
    assert [(p.partition, p.committed, p.lag) for p in lags] == [(0, 4, 6), (1, None, 7)]


def track(points: list[tuple[float, int, int]], window_s: float = 10.0) -> LagTracker:
    tracker = LagTracker({"g": "tx"}, window_s=window_s)
    for at, end, committed in points:
        tracker.observe(snap(at, {0: end}, {0: committed}))
    return tracker


def test_status_needs_a_full_window() -> None:
    assert track([(0, 100, 10), (5, 200, 10)]).group_status("g") == "unknown"


def test_a_consumer_that_stops_committing_with_lag_is_stalled() -> None:
    tracker = track([(t, 100 + 10 * t, 50) for t in range(0, 13)])
    assert tracker.status("g", 0) == "stalled"
    assert tracker.time_to_drain("g") is None
    assert tracker.total("g") == 170


def test_a_consumer_that_commits_but_falls_behind_is_not_draining() -> None:
    tracker = track([(t, 100 + 20 * t, 50 + 10 * t) for t in range(0, 13)])
    assert tracker.group_status("g") == "not_draining"


def test_a_draining_or_caught_up_consumer_is_ok_with_a_time_to_drain() -> None:
    draining = track([(t, 1000 + 10 * t, 100 + 60 * t) for t in range(0, 13)])
    assert draining.group_status("g") == "ok"
    lag = draining.total("g")  # 1120 - 820 = 300, shrinking 50/s
    assert lag == 300
    assert abs(draining.time_to_drain("g") - 300 / 50) < 1e-6
    idle = track([(t, 100, 100) for t in range(0, 13)])
    assert idle.group_status("g") == "ok" and idle.time_to_drain("g") == 0.0


def test_old_points_leave_the_window() -> None:
    tracker = track([(t, 100 + t, 50 if t < 20 else 100 + t) for t in range(0, 40)])
    assert tracker.group_status("g") == "ok"  # caught up after t=20, the stall left the window


def test_a_consumer_that_keeps_up_with_a_wobbling_lag_drains_within_a_second() -> None:
    # 100 records/s in and out; the lag between polls wobbles around 20.
    tracker = track([(t, 1000 + 100 * t, 980 + 100 * t - (t % 2) * 5) for t in range(0, 13)])
    assert tracker.group_status("g") == "ok"
    assert tracker.time_to_drain("g") == 20 / 100
