"""The in-process alert evaluator: rules over the monitor's signals, with hysteresis, published
as firing/resolved events to the ops-alerts topic and the log (works without Prometheus)."""

from monitoring.alerts.rules import (
    AlertEvaluator,
    Finding,
    Rule,
    Signals,
    StatusRule,
    ThresholdRule,
    VolumeRule,
    default_rules,
)

__all__ = [
    "AlertEvaluator",
    "Finding",
    "Rule",
    "Signals",
    "StatusRule",
    "ThresholdRule",
    "VolumeRule",
    "default_rules",
]
