"""Rates and lag from two offset snapshots."""

from __future__ import annotations

from monitoring.topic_rates import Snapshot, report


def snap(at: float, ends: dict, committed: dict) -> Snapshot:
    return Snapshot(at, ends, committed)


def test_rates_are_differences_over_elapsed_time_and_lag_is_per_partition() -> None:
    before = snap(10.0, {"tx": {0: 100, 1: 50}}, {"g": {"tx": {0: 90, 1: 50}}})
    after = snap(12.0, {"tx": {0: 300, 1: 150}}, {"g": {"tx": {0: 250, 1: 140}}})
    rep = report(after, before, {"g": "tx"})
    assert rep.topics[0].topic == "tx"
    assert rep.topics[0].total == 450
    assert rep.topics[0].per_second == (450 - 150) / 2
    group = rep.groups[0]
    assert group.lag == (300 - 250) + (150 - 140)
    assert group.consumed_per_second == ((250 + 140) - (90 + 50)) / 2


def test_first_snapshot_has_totals_but_no_rates() -> None:
    rep = report(snap(1.0, {"tx": {0: 7}}, {}), None, {"g": "tx"})
    assert rep.topics[0].per_second is None
    assert rep.groups[0].lag == 7  # nothing committed yet: everything is lag


def test_lag_never_goes_negative_when_a_commit_overtakes_a_stale_end_offset() -> None:
    current = snap(1.0, {"tx": {0: 10}}, {"g": {"tx": {0: 12}}})
    assert current.lag("g", "tx") == 0
