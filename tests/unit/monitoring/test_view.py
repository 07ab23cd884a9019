"""The text of `rtml status`."""

from __future__ import annotations

from monitoring.alerts import Signals
from monitoring.latency import LatencySummary
from monitoring.monitor import GroupView, MonitorReport
from monitoring.view import format_view


def report(**changes: object) -> MonitorReport:
    base = {
        "signals": Signals(at=0.0, feature_age_s={"fraud": 2.0, "recsys": 400.0}),
        "topic_rates": {"transactions": 2000.0, "idle": 0.0},
        "topic_totals": {"transactions": 120_000, "idle": 5},
        "groups": [
            GroupView("rtml-fraud-features", "transactions", 150, "ok", 1990.0, 0.5, {0: 150}),
            GroupView("quiet", "idle", 0, "ok", 0.0, 0.0, {0: 0}),
        ],
        "latency": LatencySummary(5000, 12.0, 40.0, 95.0, 7, 900),
        "drift": {"fraud-v1": {"amount": (0.31, 0.1, 0.0), "hour_of_day_utc": (0.02, 0.0, 0.0)}},
        "quality": {},
        "events": [],
        "firing": [("consumer_lag", "rtml-fraud-features", "lag 150")],
    }
    return MonitorReport(**{**base, **changes})  # type: ignore[arg-type]


def test_live_view_shows_rates_lag_freshness_percentiles_drift_and_firing_alerts() -> None:
    text = format_view(report())
    assert "transactions" in text and "2,000" in text and "120,000" in text
    assert "idle" not in text  # a live view shows the topics that move
    assert "rtml-fraud-features" in text and "quiet" not in text  # caught up and idle
    assert "fraud 2s ago" in text and "recsys 7m ago" in text
    assert "p50 12 ms" in text and "p95 40 ms" in text and "p99 95 ms" in text
    assert "highest PSI amount 0.31" in text
    assert "FIRING consumer_lag [rtml-fraud-features]: lag 150" in text


def test_first_view_without_rates_lists_every_topic_and_says_when_nothing_fires() -> None:
    text = format_view(
        report(topic_rates={"transactions": None, "idle": None}, firing=[], latency=None)
    )
    assert "idle" in text and "alerts: none firing" in text
    assert "latency" not in text
