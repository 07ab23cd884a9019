"""The monitor: measures the running pipelines from outside and evaluates the alert rules.

Everything it reads is in Kafka, so it needs no access to the actors and works against any
running pipeline (``rtml monitor``, ``rtml status``, the demo):

- end offsets and the groups' committed offsets: input rates, lag per partition, Burrow status
  (``monitoring.lag``), and feature freshness: a pipeline writes a feature group to the online
  store in every batch it commits, so the group's newest update is when its committed offsets
  last moved (before the first move seen, the monitor's start counts as the last update);
- the fraud-scores topic: end-to-end latency percentiles (``monitoring.latency``) and, with
  ``monitoring.quality``, null rates and drift of the model's inputs and of the score;
- the raw input topics: data quality per field (``monitoring.quality``).

Each ``tick`` turns these into ``Signals``, runs the ``AlertEvaluator`` and publishes its
state changes to the ops-alerts topic (and the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts.codec import encode
from contracts.events import InputEvent, OpsAlert, Transaction, UserEvent
from monitoring.alerts import AlertEvaluator, Rule, Signals, default_rules
from monitoring.lag import LagTracker, Status
from monitoring.latency import LatencySummary, ScoreLatency
from monitoring.quality import InputQuality, ScoreDrift
from monitoring.topic_rates import OffsetMonitor, Snapshot, report
from rtml.errors import RtmlError, ServiceUnavailable
from rtml.settings import Settings

log = logging.getLogger(__name__)

# Each pipeline's consumer group, its input topic (by settings field) and the online-store
# feature group it writes.
PIPELINES = {
    "fraud": ("rtml-fraud-features", "transactions", "fraud"),
    "recsys": ("rtml-recsys-features", "user_events", "recsys"),
    "profiles": ("rtml-profiles", "user_profiles", "profile"),
}


@dataclass(frozen=True)
class Watch:
    """What a monitor watches."""

    groups: dict[str, str]  # consumer group -> its input topic
    feature_groups: dict[str, str] = field(default_factory=dict)  # feature group -> its writer
    volume_topics: Sequence[str] = ()  # input topics whose rate is judged against a baseline
    scores_topic: str | None = None  # fraud-scores: end-to-end latency
    alerts_topic: str | None = None  # ops-alerts: None publishes to the log only
    other_topics: Sequence[str] = ()  # shown with their rates, not judged
    quality_topics: dict[str, type[InputEvent]] = field(default_factory=dict)  # null ratios
    models_dir: Path | None = None  # drift of scores_topic against the artifacts' references

    @classmethod
    def pipelines(cls, settings: Settings) -> Watch:
        topics = settings.rtml_topics
        groups = {group: getattr(topics, field).name for group, field, _ in PIPELINES.values()}
        # Profiles change rarely by nature: their staleness is no alert.
        features = {fg: group for group, _, fg in PIPELINES.values() if fg != "profile"}
        inputs = [topics.transactions.name, topics.user_events.name]
        judged = {*groups.values()}
        return cls(
            groups=groups,
            feature_groups=features,
            volume_topics=inputs,
            scores_topic=topics.fraud_scores.name,
            alerts_topic=topics.ops_alerts.name,
            other_topics=[t.name for t in topics.all() if t.name not in judged],
            quality_topics={
                topics.transactions.name: Transaction,
                topics.user_events.name: UserEvent,
            },
            models_dir=settings.rtml_state_dir / "models",
        )


@dataclass(frozen=True)
class GroupView:
    group: str
    topic: str
    lag: int
    status: Status
    consumed_per_second: float | None
    time_to_drain_s: float | None
    partitions: dict[int, int]  # partition -> lag


@dataclass(frozen=True)
class MonitorReport:
    """One tick: what ``rtml status`` shows."""

    signals: Signals
    topic_rates: dict[str, float | None]
    topic_totals: dict[str, int]
    groups: list[GroupView]
    latency: LatencySummary | None
    drift: dict[str, dict[str, tuple[float, float, float]]]  # version -> column -> stats
    quality: dict[str, InputQuality]
    events: list[OpsAlert]
    firing: list[tuple[str, str, str]]  # rule, subject, message


class Monitor:
    def __init__(
        self,
        settings: Settings,
        watch: Watch | None = None,
        *,
        rules: Sequence[Rule] | None = None,
        clock: Callable[[], float] = time.time,
        follow: bool = True,
        log_events: bool = True,
    ) -> None:
        """``follow=False`` reads offsets only (no latency, quality or drift followers);
        ``log_events=False`` keeps state changes out of the log (a terminal view)."""
        self._settings = settings
        self.watch = watch or Watch.pipelines(settings)
        self.config = settings.rtml_monitoring
        self.evaluator = AlertEvaluator(
            rules if rules is not None else default_rules(self.config), log_events=log_events
        )
        self._clock = clock
        w = self.watch
        topics = sorted({*w.groups.values(), *w.volume_topics, *w.other_topics})
        self._offsets = OffsetMonitor(settings, topics, list(w.groups))
        self.lag = LagTracker(w.groups, window_s=self.config.consumer_window_s)
        self._latency: ScoreLatency | None = None
        if w.scores_topic is not None and follow:
            self._latency = ScoreLatency(
                settings,
                window_s=self.config.latency_window_s,
                threshold=settings.rtml_fraud_alert_threshold,
                topic=w.scores_topic,
            )
        c = self.config
        self.quality = {
            topic: InputQuality(settings, topic, event_type, window_s=c.quality_window_s)
            for topic, event_type in w.quality_topics.items()
            if follow
        }
        self.drift: ScoreDrift | None = None
        if w.scores_topic is not None and w.models_dir is not None and follow:
            self.drift = ScoreDrift(
                settings, w.scores_topic, w.models_dir, window_s=c.drift_window_s
            )
        self._producer: AIOKafkaProducer | None = None
        self._unpublished: list[OpsAlert] = []
        self._previous: Snapshot | None = None
        self._last_update: dict[str, float] = {}
        self._started_at = 0.0

    async def start(self) -> None:
        self._started_at = self._clock()
        await self._offsets.start()
        try:
            for follower in self._followers():
                await follower.start()
            if self.watch.alerts_topic is not None:
                self._producer = AIOKafkaProducer(
                    **self._settings.kafka_client_kwargs(), acks="all", enable_idempotence=True
                )
                await self._producer.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        for follower in self._followers():
            await follower.stop()
        await self._offsets.stop()

    def _followers(self) -> list[ScoreLatency | ScoreDrift | InputQuality]:
        followers: list[ScoreLatency | ScoreDrift | InputQuality] = list(self.quality.values())
        if self._latency is not None:
            followers.append(self._latency)
        if self.drift is not None:
            followers.append(self.drift)
        return followers

    async def tick(self) -> MonitorReport:
        """Measure, evaluate, publish; one round of the loop."""
        for follower in self._followers():
            if follower.failed is not None:  # a bug, not an outage: say so loudly
                raise RtmlError(
                    f"following {follower.topic} failed: {follower.failed!r}"
                ) from follower.failed
        snapshot = await self._offsets.snapshot()
        now = self._clock()
        self.lag.observe(snapshot)
        rates = report(snapshot, self._previous, self.watch.groups)
        self._previous = snapshot
        groups = []
        for g in rates.groups:
            if g.consumed_per_second:  # committed offsets moved: the features were written
                self._last_update[g.group] = now
            groups.append(
                GroupView(
                    g.group,
                    g.topic,
                    self.lag.total(g.group),
                    self.lag.group_status(g.group),
                    g.consumed_per_second,
                    self.lag.time_to_drain(g.group),
                    {p.partition: p.lag for p in self.lag.partitions(g.group)},
                )
            )

        latency = self._latency.summary() if self._latency is not None else None
        p99: dict[str, float] = {}
        enough = latency is not None and latency.window_count >= self.config.latency_min_samples
        if latency is not None and latency.p99_ms is not None and enough:
            p99["fraud"] = latency.p99_ms / 1000.0
        c = self.config
        null_ratio: dict[str, float] = {}
        schema_drift: dict[str, float] = {}
        for quality in self.quality.values():
            null_ratio |= quality.null_ratios(c.quality_min_samples)
            schema_drift |= quality.schema_drift(c.quality_min_samples)
        drift = self.drift.statistics(c.drift_min_samples) if self.drift is not None else {}
        psi: dict[str, float] = {}
        for columns in drift.values():
            for column, (value, _, _) in columns.items():
                psi[column] = max(value, psi.get(column, 0.0))
        signals = Signals(
            at=now,
            lag={g.group: float(g.lag) for g in groups},
            consumer_status={g.group: g.status for g in groups},
            feature_age_s={
                fg: now - self._last_update.get(group, self._started_at)
                for fg, group in self.watch.feature_groups.items()
            },
            latency_p99_s=p99,
            null_ratio=null_ratio,
            schema_drift=schema_drift,
            psi=psi,
            input_rate={
                t.topic: t.per_second
                for t in rates.topics
                if t.topic in self.watch.volume_topics and t.per_second is not None
            },
        )
        events = self.evaluator.evaluate(signals)
        await self._publish(events)
        return MonitorReport(
            signals=signals,
            topic_rates={t.topic: t.per_second for t in rates.topics},
            topic_totals={t.topic: t.total for t in rates.topics},
            groups=groups,
            latency=latency,
            drift=drift,
            quality=self.quality,
            events=events,
            firing=[(rule, subject, f.message) for rule, subject, f in self.evaluator.firing()],
        )

    async def _publish(self, events: list[OpsAlert]) -> None:
        """Publishes ``events`` after any that an earlier tick could not publish, in order."""
        if self._producer is None or self.watch.alerts_topic is None:
            return
        self._unpublished += events
        if not self._unpublished:
            return
        topic = self.watch.alerts_topic
        try:
            sent = [
                await self._producer.send(topic, encode(e), key=f"{e.rule}:{e.subject}".encode())
                for e in self._unpublished
            ]
            await asyncio.gather(*sent)
        except KafkaError as exc:
            # Kept for the next tick (they are in the log already); a duplicate is possible if
            # part of them was written, never a loss.
            raise ServiceUnavailable(
                "kafka", f"cannot publish {len(self._unpublished)} alert events to {topic}: {exc}"
            ) from exc
        self._unpublished = []

    async def run(self, stop: asyncio.Event, on_tick: Callable[[MonitorReport], None]) -> None:
        """Tick every ``interval_s`` until ``stop`` is set; a Kafka outage skips ticks."""
        while not stop.is_set():
            try:
                on_tick(await self.tick())
            except ServiceUnavailable as exc:
                log.warning("monitor tick failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.interval_s)
