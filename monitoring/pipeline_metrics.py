"""The metrics of one consumer actor, recorded once per batch at the runner's stage boundaries.

Cheap by construction: a pipeline adds stage times and score arrays to a ``BatchStats`` while it
processes a batch (a few float additions), and the runner hands the finished batch to
``PipelineMetrics.batch_committed``: counters are incremented by batch counts, each stage
histogram gets one observation, per-record distributions (end-to-end latency, scores) are
bucketed with numpy. No per-event lock, call or allocation.

The same object keeps local totals (``summary()``) that the actor's ``stats()`` returns, so
``rtml consume``, the demo and the alert evaluator read them without a Prometheus server.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np

from monitoring import metrics as m
from monitoring.metrics import BucketCounts
from monitoring.ray_export import RayExport

T = TypeVar("T")
_timestamp = attrgetter("timestamp")  # ConsumerRecord.timestamp: the input's append time (ms)
_topic = attrgetter("topic")  # OutRecord.topic


@dataclass(slots=True)
class BatchStats:
    """What a pipeline measured inside one ``process`` call; the runner drains it per batch."""

    stages: dict[str, float] = field(default_factory=dict)
    scores: list[np.ndarray] = field(default_factory=list)
    model_version: str | None = None
    alerts: int = 0
    store_written: bool = False

    def lap(self, stage: str, since: float) -> float:
        """Adds the time since ``since`` (a ``perf_counter`` value) to ``stage``; returns now,
        the start of the next stage."""
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - since)
        return now

    async def timed(self, stage: str, work: Awaitable[T]) -> T:
        """Awaits ``work``, adding its time to ``stage``; stages may overlap (a store write
        beside a model call), so their sum can exceed the batch's processing time."""
        started = time.perf_counter()
        try:
            return await work
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + (time.perf_counter() - started)

    def scored(self, model_version: str, scores: np.ndarray, alerts: int) -> None:
        self.model_version = model_version
        self.scores.append(np.asarray(scores, dtype=np.float64))
        self.alerts += alerts

    def reset(self) -> None:
        self.stages = {}
        self.scores = []
        self.model_version = None
        self.alerts = 0
        self.store_written = False

    def take(self) -> BatchStats:
        """This batch's measurements, and a reset for the next batch (which may be processed
        while this one commits)."""
        taken = BatchStats(
            self.stages, self.scores, self.model_version, self.alerts, self.store_written
        )
        self.reset()
        return taken


class PipelineMetrics:
    """Per-actor metrics of one pipeline; see the module docstring."""

    def __init__(
        self,
        pipeline: str,
        group: str,
        topic: str,
        *,
        feature_group: str | None = None,
        export: RayExport | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.group = group
        self.topic = topic
        self.feature_group = feature_group
        self._export = export if export is not None else RayExport()
        self._tags = {"pipeline": pipeline}
        self.records = 0
        self.batches = 0
        self.produced: dict[str, int] = {}
        self.stage_seconds: dict[str, float] = {}  # cumulative, per stage
        self.end_to_end = BucketCounts(m.LATENCY_BUCKETS)  # cumulative, for summary()
        self.scores = BucketCounts(m.SCORE_BUCKETS)
        self.predictions = 0
        self.model_alerts = 0
        self.model_version: str | None = None
        self.last_update_s: float | None = None  # feature group written to the online store
        self._counted: dict[str, dict[str, int]] = {}  # pipeline stats seen so far, by kind

    def batch_committed(
        self,
        consumed: Mapping[int, Sequence[Any]],
        outputs: Mapping[int, Sequence[Any]],
        stats: BatchStats | None,
        *,
        process_s: float,
        produce_s: float,
        committed_at_ms: int,
        pipeline_stats: Mapping[str, Any] | None = None,
    ) -> None:
        """One committed batch: ``consumed`` maps input partitions to their records (with a
        Kafka ``timestamp``), ``outputs`` to their ``OutRecord``s."""
        export, tags = self._export, self._tags
        size = 0
        stamps: list[np.ndarray] = []
        for partition, records in consumed.items():
            n = len(records)
            size += n
            stamps.append(np.fromiter(map(_timestamp, records), dtype=np.float64, count=n))
            export.inc(
                m.RECORDS_CONSUMED, n, {**tags, "topic": self.topic, "partition": str(partition)}
            )
        produced: Counter[str] = Counter()
        for records in outputs.values():
            produced.update(map(_topic, records))  # counted in C, no Python loop per record
        for topic, n in produced.items():
            self.produced[topic] = self.produced.get(topic, 0) + n
            export.inc(m.RECORDS_PRODUCED, n, {**tags, "topic": topic})
        self.records += size
        self.batches += 1
        export.inc(m.BATCHES, 1, tags)
        export.observe(m.BATCH_RECORDS, size, tags)

        # A pipeline that times nothing itself: its whole process() is "features".
        stages = dict(stats.stages) if stats is not None and stats.stages else {}
        stages = stages or {"features": process_s}
        stages["produce"] = produce_s
        for stage, seconds in stages.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
            export.observe(m.STAGE_SECONDS, seconds, {**tags, "stage": stage})

        latency = BucketCounts(m.LATENCY_BUCKETS)
        if size:
            latency.add((committed_at_ms - np.concatenate(stamps)) / 1000.0)
        self.end_to_end.merge(latency)
        export.add_buckets(m.END_TO_END_SECONDS, latency, tags)

        if stats is not None:
            self._model(stats)
            if stats.store_written and self.feature_group is not None:
                self.last_update_s = committed_at_ms / 1000.0
                export.set(
                    m.FEATURE_LAST_UPDATE,
                    self.last_update_s,
                    {**tags, "feature_group": self.feature_group},
                )
        if pipeline_stats is not None:
            self._pipeline_counters(pipeline_stats)

    def _model(self, stats: BatchStats) -> None:
        if not stats.scores or stats.model_version is None:
            return
        scores = np.concatenate(stats.scores)
        version = stats.model_version
        tags = {**self._tags, "model_version": version}
        if version != self.model_version:
            if self.model_version is not None:
                old = {**self._tags, "model_version": self.model_version}
                self._export.set(m.MODEL_INFO, 0, old)
            self._export.set(m.MODEL_INFO, 1, tags)
            self.model_version = version
        self.predictions += scores.size
        self.model_alerts += stats.alerts
        self._export.inc(m.PREDICTIONS, scores.size, tags)
        self._export.inc(m.MODEL_ALERTS, stats.alerts, tags)
        delta = BucketCounts(m.SCORE_BUCKETS)
        delta.add(scores)
        self.scores.merge(delta)
        self._export.add_buckets(m.SCORE, delta, tags)

    def _pipeline_counters(self, stats: Mapping[str, Any]) -> None:
        """The pipeline's cumulative counters (dead letters by reason, late events, unknown
        fields), exported as the increments since the previous batch."""
        topic_tags = {**self._tags, "topic": self.topic}
        late = stats.get("late")
        sources: list[tuple[str, Mapping[str, int], m.MetricSpec, str | None]] = [
            ("dead_letters", stats.get("dead_letters") or {}, m.DEAD_LETTERS, "reason"),
            ("unknown_fields", stats.get("unknown_fields") or {}, m.UNKNOWN_FIELDS, "field"),
        ]
        if isinstance(late, int):
            sources.append(("late", {"": late}, m.LATE_EVENTS, None))
        for kind, totals, spec, label in sources:
            seen = self._counted.setdefault(kind, {})
            for key, total in totals.items():
                delta = total - seen.get(key, 0)
                if delta > 0:
                    seen[key] = total
                    tags = topic_tags if label is None else {**topic_tags, label: key}
                    self._export.inc(spec, delta, tags)

    def batch_failed(self) -> None:
        self._export.inc(m.BATCH_FAILURES, 1, self._tags)

    def lag(self, partition: int, records: int) -> None:
        self._export.set(
            m.CONSUMER_LAG,
            records,
            {**self._tags, "group": self.group, "topic": self.topic, "partition": str(partition)},
        )

    def flush(self) -> None:
        """Hand the coalesced exports to Ray now (a runner that stops)."""
        self._export.flush()

    def flush_when_due(self) -> None:
        """Hand them over if the export's interval is over: every turn of the loop, idle ones
        too, so a batch's counts do not wait for the next batch."""
        self._export.flush_when_due()

    def summary(self) -> dict[str, Any]:
        """Local totals since the actor started (plain data, for ``stats()``)."""
        e2e = self.end_to_end
        return {
            "records": self.records,
            "batches": self.batches,
            "produced": dict(self.produced),
            "stage_seconds": dict(self.stage_seconds),
            "end_to_end_seconds": {
                "count": e2e.count,
                "p50": e2e.quantile(0.50),
                "p95": e2e.quantile(0.95),
                "p99": e2e.quantile(0.99),
                "buckets": e2e.counts.tolist(),
                "sum": e2e.sum,
            },
            "predictions": self.predictions,
            "model_alerts": self.model_alerts,
            "model_version": self.model_version,
            "feature_last_update_s": self.last_update_s,
        }
