"""Alert rules and their evaluator: pure logic over ``Signals``, driven by the caller's clock.

Each rule turns one tick's signals into ``Finding``s per subject (a group, a topic, a feature).
The evaluator applies hysteresis per (rule, subject), as Prometheus' ``for`` does and
Alertmanager's resolve timeout does for the way back:

- a breached subject is *pending*; it *fires* once it has been breached for ``for_s``
  (a clear tick while pending resets it);
- a firing subject *resolves* once it has been clear for ``resolve_s`` (a breached tick resets
  the clear time);
- a subject missing from a tick (no data) changes nothing.

So a flapping signal yields at most one firing and one resolved event per episode.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from contracts.events import OpsAlert
from monitoring.config import MonitoringConfig

log = logging.getLogger(__name__)

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Signals:
    """What the monitor measured at ``at`` (epoch seconds). Missing keys mean "no data"."""

    at: float
    lag: dict[str, float] = field(default_factory=dict)  # group -> total lag (records)
    consumer_status: dict[str, str] = field(default_factory=dict)  # group -> lag.Status
    feature_age_s: dict[str, float] = field(default_factory=dict)  # feature group -> age
    latency_p99_s: dict[str, float] = field(default_factory=dict)  # pipeline -> p99
    null_ratio: dict[str, float] = field(default_factory=dict)  # "topic.field" -> share
    # "topic.field" -> share of the window's records with that unknown field
    # ("topic.schema_version": version changes per record)
    schema_drift: dict[str, float] = field(default_factory=dict)
    psi: dict[str, float] = field(default_factory=dict)  # model feature (or "score") -> PSI
    input_rate: dict[str, float] = field(default_factory=dict)  # topic -> records/s


@dataclass(frozen=True)
class Finding:
    breached: bool
    value: float | None
    threshold: float | None
    message: str


class Rule(ABC):
    name: str
    severity: Severity
    for_s: float
    resolve_s: float

    @abstractmethod
    def check(self, signals: Signals) -> dict[str, Finding]:
        """Findings per subject for this tick."""


@dataclass
class ThresholdRule(Rule):
    """Breached while a signal is above (or below) a threshold."""

    name: str
    signal: Callable[[Signals], dict[str, float]]
    threshold: float
    describe: str  # "{subject}", "{value}" and "{threshold}" are filled in
    for_s: float
    resolve_s: float
    severity: Severity = "warning"
    above: bool = True

    def check(self, signals: Signals) -> dict[str, Finding]:
        findings = {}
        for subject, value in self.signal(signals).items():
            breached = value > self.threshold if self.above else value < self.threshold
            message = self.describe.format(subject=subject, value=value, threshold=self.threshold)
            findings[subject] = Finding(breached, value, self.threshold, message)
        return findings


@dataclass
class StatusRule(Rule):
    """Breached while a consumer group's Burrow status is ``status``."""

    name: str
    status: str
    describe: str
    for_s: float
    resolve_s: float
    severity: Severity = "critical"

    def check(self, signals: Signals) -> dict[str, Finding]:
        findings = {}
        for group, status in signals.consumer_status.items():
            if status == "unknown":
                continue  # not enough history: no data
            lag = signals.lag.get(group)
            message = self.describe.format(subject=group, lag=lag)
            findings[group] = Finding(status == self.status, lag, None, message)
        return findings


@dataclass
class VolumeRule(Rule):
    """The input rate over the last ``window_s`` against its mean over the ``baseline_s``
    before that: a spike above ``factor`` times the baseline (``factor > 1``) or a drop below it
    (``factor < 1``). Judged only once the baseline covers most of ``baseline_s`` and is at least
    ``min_rate``, so a topic's first minutes and idle topics raise nothing."""

    name: str
    factor: float
    window_s: float
    baseline_s: float
    min_rate: float
    for_s: float
    resolve_s: float
    severity: Severity = "warning"
    _samples: dict[str, deque[tuple[float, float]]] = field(default_factory=dict, repr=False)

    def check(self, signals: Signals) -> dict[str, Finding]:
        findings = {}
        now = signals.at
        horizon = now - self.window_s - self.baseline_s
        for topic, rate in signals.input_rate.items():
            samples = self._samples.setdefault(topic, deque())
            samples.append((now, rate))
            while samples and samples[0][0] < horizon:
                samples.popleft()
            split = now - self.window_s
            current = [r for t, r in samples if t > split]
            baseline = [(t, r) for t, r in samples if t <= split]
            if not baseline or baseline[-1][0] - baseline[0][0] < 0.8 * self.baseline_s:
                continue
            base = sum(r for _, r in baseline) / len(baseline)
            if base < self.min_rate:
                continue
            rate_now = sum(current) / len(current)
            limit = base * self.factor
            spike = self.factor > 1
            breached = rate_now > limit if spike else rate_now < limit
            word = "spike" if spike else "drop"
            message = (
                f"{topic}: input rate {rate_now:,.1f}/s vs a baseline of {base:,.1f}/s "
                f"(volume {word}: {'above' if spike else 'below'} {limit:,.1f}/s)"
            )
            findings[topic] = Finding(breached, rate_now, limit, message)
        return findings


@dataclass
class _State:
    since: float  # breached since (pending/firing), or clear since (while firing)
    firing: bool = False
    clear_since: float | None = None
    started_at: float = 0.0


class AlertEvaluator:
    """Runs the rules on each tick's signals; returns the state changes as ``OpsAlert``s."""

    def __init__(self, rules: Iterable[Rule], *, log_events: bool = True) -> None:
        self.rules = list(rules)
        self._log_events = log_events
        self._states: dict[tuple[str, str], _State] = {}
        self._last: dict[tuple[str, str], Finding] = {}

    def evaluate(self, signals: Signals) -> list[OpsAlert]:
        now = signals.at
        events = []
        for rule in self.rules:
            for subject, finding in rule.check(signals).items():
                key = (rule.name, subject)
                self._last[key] = finding
                state = self._states.get(key)
                if finding.breached:
                    if state is None:
                        state = self._states[key] = _State(since=now, started_at=now)
                    state.clear_since = None
                    if not state.firing and now - state.since >= rule.for_s:
                        state.firing = True
                        events.append(self._event(rule, subject, "firing", finding, state, now))
                elif state is not None:
                    if not state.firing:
                        del self._states[key]  # pending, then clear: nothing happened
                        continue
                    if state.clear_since is None:
                        state.clear_since = now
                    if now - state.clear_since >= rule.resolve_s:
                        del self._states[key]
                        events.append(self._event(rule, subject, "resolved", finding, state, now))
        for event in events if self._log_events else ():
            log.warning(
                "ops alert %s %s [%s]: %s", event.state, event.rule, event.subject, event.message
            )
        return events

    def firing(self) -> list[tuple[str, str, Finding]]:
        """(rule, subject, latest finding) of every firing alert."""
        return [
            (rule, subject, self._last[(rule, subject)])
            for (rule, subject), state in sorted(self._states.items())
            if state.firing
        ]

    @staticmethod
    def _event(
        rule: Rule, subject: str, state: str, finding: Finding, st: _State, now: float
    ) -> OpsAlert:
        return OpsAlert(
            rule=rule.name,
            subject=subject[:256],
            state=state,  # type: ignore[arg-type]
            severity=rule.severity,
            value=finding.value,
            threshold=finding.threshold,
            message=finding.message[:1000],
            started_at=int(st.started_at * 1000),
            at=int(now * 1000),
        )


def default_rules(config: MonitoringConfig) -> list[Rule]:
    """The rules of the issue, with ``config``'s thresholds and timings."""
    c = config
    return [
        ThresholdRule(
            "consumer_lag",
            lambda s: s.lag,
            c.lag_records,
            "{subject}: lag {value:,.0f} records (threshold {threshold:,.0f})",
            for_s=c.lag_for_s,
            resolve_s=c.resolve_s,
        ),
        StatusRule(
            "consumer_stalled",
            "stalled",
            "{subject}: lag {lag} and no commit for the whole window (consumer stopped?)",
            for_s=0.0,  # the status is judged over a window already
            resolve_s=c.resolve_s,
        ),
        StatusRule(
            "consumer_not_draining",
            "not_draining",
            "{subject}: committing but lag grew at every step ({lag} records)",
            for_s=0.0,
            resolve_s=c.resolve_s,
            severity="warning",
        ),
        ThresholdRule(
            "feature_staleness",
            lambda s: s.feature_age_s,
            c.staleness_s,
            "feature group {subject}: newest update {value:,.0f}s old (limit {threshold:,.0f}s)",
            for_s=0.0,  # the age itself is the duration
            resolve_s=c.resolve_s,
            severity="critical",
        ),
        ThresholdRule(
            "latency_p99",
            lambda s: s.latency_p99_s,
            c.latency_p99_s,
            "{subject}: end-to-end p99 {value:.3f}s (SLO {threshold:.3f}s)",
            for_s=c.for_s,
            resolve_s=c.resolve_s,
        ),
        ThresholdRule(
            "null_ratio",
            lambda s: s.null_ratio,
            c.null_ratio,
            "{subject}: {value:.1%} null or missing (threshold {threshold:.1%})",
            for_s=c.for_s,
            resolve_s=c.resolve_s,
        ),
        ThresholdRule(
            "schema_drift",
            lambda s: s.schema_drift,
            c.schema_drift_ratio,
            "{subject}: in {value:.1%} of the records (unknown field or schema_version "
            "change; threshold {threshold:.1%})",
            for_s=c.for_s,
            resolve_s=c.resolve_s,
        ),
        ThresholdRule(
            "feature_drift_psi",
            lambda s: s.psi,
            c.psi,
            "{subject}: PSI {value:.3f} against the model's reference (threshold {threshold})",
            for_s=c.for_s,
            resolve_s=c.resolve_s,
        ),
        VolumeRule(
            "volume_spike",
            c.volume_spike_factor,
            c.volume_window_s,
            c.volume_baseline_s,
            c.volume_min_rate,
            for_s=c.for_s,
            resolve_s=c.resolve_s,
        ),
        VolumeRule(
            "volume_drop",
            c.volume_drop_factor,
            c.volume_window_s,
            c.volume_baseline_s,
            c.volume_min_rate,
            for_s=c.for_s,
            resolve_s=c.resolve_s,
            severity="critical",
        ),
    ]
