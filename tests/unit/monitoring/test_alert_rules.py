"""The alert rules and their hysteresis, on a fake clock (plain numbers for ``Signals.at``)."""

from __future__ import annotations

from monitoring.alerts import AlertEvaluator, Signals, StatusRule, ThresholdRule, VolumeRule
from monitoring.alerts.rules import default_rules
from monitoring.config import MonitoringConfig


def lag_rule(for_s: float = 10.0, resolve_s: float = 20.0) -> ThresholdRule:
    return ThresholdRule(
        "consumer_lag", lambda s: s.lag, 100, "{subject}: {value}", for_s=for_s, resolve_s=resolve_s
    )


def run(evaluator: AlertEvaluator, ticks: list[tuple[float, Signals]]) -> list[tuple[float, str]]:
    return [(at, e.state) for at, signals in ticks for e in evaluator.evaluate(signals)]


def test_fires_only_after_the_condition_held_for_its_duration_and_resolves_after_clear() -> None:
    evaluator = AlertEvaluator([lag_rule()])
    lags = {0: 500, 5: 500, 9: 500, 10: 500, 15: 500, 20: 50, 30: 50, 39: 50, 40: 50, 45: 50}
    events = run(evaluator, [(t, Signals(at=t, lag={"g": v})) for t, v in lags.items()])
    assert events == [(10, "firing"), (40, "resolved")]
    assert evaluator.firing() == []


def test_a_flapping_signal_fires_once_and_does_not_resolve_between_flaps() -> None:
    evaluator = AlertEvaluator([lag_rule(for_s=4.0, resolve_s=10.0)])
    ticks = [(float(t), Signals(at=t, lag={"g": 500 if t % 2 == 0 else 10})) for t in range(60)]
    ticks += [(float(t), Signals(at=t, lag={"g": 10})) for t in range(60, 80)]
    events = run(evaluator, ticks)
    # Breached ticks never last 4 s while flapping every second: nothing fires at all.
    assert events == []
    evaluator = AlertEvaluator([lag_rule(for_s=0.0, resolve_s=10.0)])
    events = run(evaluator, ticks)
    assert events == [(0.0, "firing"), (69.0, "resolved")]


def test_a_short_breach_within_the_for_duration_is_forgotten() -> None:
    evaluator = AlertEvaluator([lag_rule(for_s=10.0)])
    ticks = [(t, Signals(at=t, lag={"g": 500 if t < 8 else 0})) for t in range(0, 30, 2)]
    ticks += [(t, Signals(at=t, lag={"g": 500})) for t in range(30, 39, 2)]
    assert run(evaluator, ticks) == []  # 30..38 is 8 s: still pending


def test_missing_data_changes_nothing() -> None:
    evaluator = AlertEvaluator([lag_rule(for_s=0.0, resolve_s=5.0)])
    assert run(evaluator, [(0, Signals(at=0, lag={"g": 500}))]) == [(0, "firing")]
    assert run(evaluator, [(t, Signals(at=t)) for t in range(1, 100)]) == []
    assert [rule for rule, _, _ in evaluator.firing()] == ["consumer_lag"]


def test_subjects_are_independent() -> None:
    evaluator = AlertEvaluator([lag_rule(for_s=0.0, resolve_s=0.0)])
    events = evaluator.evaluate(Signals(at=0, lag={"a": 500, "b": 5}))
    assert [(e.subject, e.state) for e in events] == [("a", "firing")]
    events = evaluator.evaluate(Signals(at=1, lag={"a": 5, "b": 500}))
    assert sorted((e.subject, e.state) for e in events) == [("a", "resolved"), ("b", "firing")]
    assert events[0].started_at <= events[0].at


def test_stalled_and_not_draining_consumers() -> None:
    rules = [
        StatusRule("consumer_stalled", "stalled", "{subject} {lag}", for_s=0.0, resolve_s=0.0),
        StatusRule("consumer_not_draining", "not_draining", "{subject}", for_s=0.0, resolve_s=0.0),
    ]
    evaluator = AlertEvaluator(rules)
    assert evaluator.evaluate(Signals(at=0, consumer_status={"g": "unknown"})) == []
    fired = evaluator.evaluate(Signals(at=1, lag={"g": 7}, consumer_status={"g": "stalled"}))
    assert [(e.rule, e.state, e.value) for e in fired] == [("consumer_stalled", "firing", 7)]
    moved = evaluator.evaluate(Signals(at=2, consumer_status={"g": "not_draining"}))
    assert sorted((e.rule, e.state) for e in moved) == [
        ("consumer_not_draining", "firing"),
        ("consumer_stalled", "resolved"),
    ]


def volume(factor: float) -> VolumeRule:
    return VolumeRule(
        "volume", factor, window_s=10, baseline_s=60, min_rate=1.0, for_s=0.0, resolve_s=5.0
    )


def test_volume_drop_and_spike_against_the_trailing_baseline() -> None:
    drop, spike = volume(0.3), volume(3.0)
    evaluator = AlertEvaluator([drop, spike])
    rate = {t: 100.0 for t in range(0, 100)}
    rate |= {t: 5.0 for t in range(100, 130)}  # a drop
    rate |= {t: 100.0 for t in range(130, 200)}
    rate |= {t: 1000.0 for t in range(200, 215)}  # a spike
    rate |= {t: 100.0 for t in range(215, 260)}
    events = [
        (t, e.rule, e.state)
        for t, r in rate.items()
        for e in evaluator.evaluate(Signals(at=t, input_rate={"tx": r}))
    ]
    assert [(rule, state) for _, rule, state in events] == [
        ("volume", "firing"),
        ("volume", "resolved"),
        ("volume", "firing"),
        ("volume", "resolved"),
    ]
    times = [t for t, _, _ in events]
    assert 100 <= times[0] <= 110  # the drop is seen within the window
    assert 130 < times[1] <= 150
    assert 200 <= times[2] <= 210
    assert 215 < times[3] <= 235


def test_volume_stays_quiet_on_steady_noisy_traffic_and_before_a_baseline_exists() -> None:
    evaluator = AlertEvaluator([volume(0.3), volume(3.0)])
    noisy = [100.0, 140.0, 70.0, 120.0, 90.0]
    for t in range(0, 600):
        assert evaluator.evaluate(Signals(at=t, input_rate={"tx": noisy[t % 5]})) == []
    idle = AlertEvaluator([volume(0.3)])
    for t in range(0, 200):  # a baseline below min_rate is not judged
        assert idle.evaluate(Signals(at=t, input_rate={"idle": 0.5 if t < 100 else 0.0})) == []


def test_default_rules_cover_the_issue_with_its_thresholds() -> None:
    config = MonitoringConfig(for_s=0.0, resolve_s=0.0, lag_for_s=0.0)
    evaluator = AlertEvaluator(default_rules(config))
    signals = Signals(
        at=0.0,
        lag={"g": 200_000},
        consumer_status={"g": "stalled"},
        feature_age_s={"fraud": 301.0, "recsys": 10.0},
        latency_p99_s={"fraud": 0.25},
        null_ratio={"transactions.amount": 0.5},
        psi={"amount_zscore": 0.3, "score": 0.05},
        schema_drift={"transactions.device": 0.5, "transactions.schema_version": 0.0},
    )
    fired = {(e.rule, e.subject) for e in evaluator.evaluate(signals)}
    assert fired == {
        ("consumer_lag", "g"),
        ("consumer_stalled", "g"),
        ("feature_staleness", "fraud"),
        ("latency_p99", "fraud"),
        ("null_ratio", "transactions.amount"),
        ("feature_drift_psi", "amount_zscore"),
        ("schema_drift", "transactions.device"),
    }
    quiet = Signals(
        at=1.0,
        lag={"g": 10},
        consumer_status={"g": "ok"},
        feature_age_s={"fraud": 1.0},
        latency_p99_s={"fraud": 0.05},
        null_ratio={"transactions.amount": 0.0},
        psi={"amount_zscore": 0.01},
        schema_drift={"transactions.device": 0.0},
    )
    assert {e.state for e in evaluator.evaluate(quiet)} == {"resolved"}
    assert evaluator.firing() == []
