"""Per-batch metrics: bucketed distributions, stage times, counters from batch counts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from monitoring import metrics as m
from monitoring.metrics import BucketCounts
from monitoring.pipeline_metrics import BatchStats, PipelineMetrics
from monitoring.ray_export import RayExport


class RecordingExport(RayExport):
    """Keeps what would go to Ray, to check the calls per batch."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.calls: list[tuple[str, str, float, dict[str, str]]] = []

    def inc(self, spec: m.MetricSpec, value: float, tags: dict[str, str]) -> None:
        if value > 0:
            self.calls.append(("inc", spec.name, value, tags))

    def set(self, spec: m.MetricSpec, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", spec.name, value, tags))

    def observe(self, spec: m.MetricSpec, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("observe", spec.name, value, tags))

    def add_buckets(self, spec: m.MetricSpec, delta: BucketCounts, tags: dict[str, str]) -> None:
        self.calls.append(("buckets", spec.name, delta.count, tags))

    def named(self, kind: str, name: str) -> list[tuple[float, dict[str, str]]]:
        return [(v, t) for k, n, v, t in self.calls if k == kind and n == name]


@dataclass
class Rec:
    timestamp: int


@dataclass
class Out:
    topic: str


def test_bucket_counts_quantiles_interpolate_like_histogram_quantile() -> None:
    counts = BucketCounts((0.1, 0.2, 0.5))
    counts.add(np.array([0.05] * 50 + [0.15] * 40 + [0.3] * 9 + [9.0]))
    assert counts.counts.tolist() == [50, 40, 9, 1]
    assert counts.count == 100
    assert counts.quantile(0.5) == pytest.approx(0.1)
    assert counts.quantile(0.7) == pytest.approx(0.15)
    assert counts.quantile(0.995) == 0.5  # above the top bound: the top bound
    assert BucketCounts((1.0,)).quantile(0.5) is None
    taken = counts.take()
    assert taken.count == 100 and counts.count == 0 and counts.sum == 0.0


def test_a_value_on_a_bound_falls_in_that_bucket_as_prometheus_le() -> None:
    counts = BucketCounts((0.1, 0.2))
    counts.add(np.array([0.1, 0.2, 0.2000001]))
    assert counts.counts.tolist() == [1, 1, 1]


def test_one_batch_costs_one_call_per_counter_and_stage_and_bucket_set() -> None:
    export = RecordingExport()
    metrics = PipelineMetrics("fraud", "g", "tx", feature_group="fraud", export=export)
    stats = BatchStats()
    stats.stages = {"decode": 0.01, "features": 0.04, "store_write": 0.02, "model_call": 0.03}
    stats.store_written = True
    stats.scored("fraud-v1", np.array([0.1, 0.9, 0.95]), alerts=2)
    consumed = {0: [Rec(1_000), Rec(1_050)], 3: [Rec(1_100)]}
    outputs = {0: [Out("scores"), Out("scores"), Out("dead-letter")], 3: [Out("scores")]}
    metrics.batch_committed(
        consumed,
        outputs,
        stats,
        process_s=0.1,
        produce_s=0.02,
        committed_at_ms=1_200,
        pipeline_stats={"dead_letters": {"late": 1}, "late": 1, "unknown_fields": {"x": 2}},
    )
    consumed_calls = export.named("inc", m.RECORDS_CONSUMED.name)
    assert sorted((v, t["partition"]) for v, t in consumed_calls) == [(1, "3"), (2, "0")]
    produced = {t["topic"]: v for v, t in export.named("inc", m.RECORDS_PRODUCED.name)}
    assert produced == {"scores": 3, "dead-letter": 1}
    stages = {t["stage"]: v for v, t in export.named("observe", m.STAGE_SECONDS.name)}
    assert set(stages) == {"decode", "features", "store_write", "model_call", "produce"}
    assert stages["features"] == 0.04 and stages["produce"] == 0.02
    assert export.named("observe", m.BATCH_RECORDS.name)[0][0] == 3
    assert export.named("buckets", m.END_TO_END_SECONDS.name)[0][0] == 3
    assert export.named("inc", m.PREDICTIONS.name)[0][0] == 3
    assert export.named("inc", m.MODEL_ALERTS.name)[0][0] == 2
    assert export.named("set", m.MODEL_INFO.name) == [
        (1, {"pipeline": "fraud", "model_version": "fraud-v1"})
    ]
    assert export.named("set", m.FEATURE_LAST_UPDATE.name)[0][0] == 1.2
    assert export.named("inc", m.DEAD_LETTERS.name)[0][1]["reason"] == "late"
    summary = metrics.summary()
    assert summary["end_to_end_seconds"]["count"] == 3
    assert 0.1 <= summary["end_to_end_seconds"]["p99"] <= 0.2  # latencies 0.1 to 0.2 s
    assert summary["feature_last_update_s"] == 1.2

    # A second batch exports only the increments of the pipeline's cumulative counters; a
    # pipeline that timed no stage has all of process() as "features".
    export.calls.clear()
    metrics.batch_committed(
        {0: [Rec(2_000)]},
        {},
        BatchStats(),
        process_s=0.01,
        produce_s=0.01,
        committed_at_ms=2_010,
        pipeline_stats={"dead_letters": {"late": 1, "out_of_range": 4}, "late": 1},
    )
    assert [(v, t["reason"]) for v, t in export.named("inc", m.DEAD_LETTERS.name)] == [
        (4, "out_of_range")
    ]
    assert export.named("inc", m.LATE_EVENTS.name) == []
    assert export.named("set", m.FEATURE_LAST_UPDATE.name) == []  # nothing written this time
    stages = {t["stage"]: v for v, t in export.named("observe", m.STAGE_SECONDS.name)}
    assert stages == {"features": 0.01, "produce": 0.01}


async def test_batch_stats_time_overlapping_stages_and_hand_over_per_batch() -> None:
    stats = BatchStats()
    await asyncio.gather(
        stats.timed("store_write", asyncio.sleep(0.01)),
        stats.timed("model_call", asyncio.sleep(0.01)),
    )
    stats.scored("v", np.array([0.5]), 0)
    taken = stats.take()
    assert set(taken.stages) == {"store_write", "model_call"}
    assert all(v >= 0.01 for v in taken.stages.values())
    assert taken.model_version == "v" and len(taken.scores) == 1
    assert stats.stages == {} and stats.scores == [] and stats.model_version is None


def test_metric_names_follow_prometheus_conventions() -> None:
    names = [spec.name for spec in m.ALL]
    assert len(names) == len(set(names))
    for spec in m.ALL:
        assert spec.name.startswith("rtml_")
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert not spec.name.endswith("_ms"), spec.name
        if spec.kind in ("histogram", "bulk_histogram"):
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets
    assert "ray_rtml_end_to_end_latency_seconds_bucket_total" in m.exported_series()
    assert "ray_rtml_serve_latency_seconds_bucket" in m.exported_series()


def test_bulk_histogram_exports_cumulative_le_counters() -> None:
    counted: list[tuple[str, float, dict[str, Any]]] = []

    class Counter:
        def __init__(self, name: str) -> None:
            self.name = name

        def inc(self, value: float, tags: dict[str, str]) -> None:
            counted.append((self.name, value, tags))

    export = RayExport(enabled=True)
    export._metric = lambda spec, suffix="": Counter(spec.name + suffix)  # type: ignore[method-assign]
    delta = BucketCounts((0.1, 0.2))
    delta.add(np.array([0.05, 0.15, 0.15, 3.0]))
    export.add_buckets(m.END_TO_END_SECONDS, delta, {"pipeline": "p"})
    buckets = [(v, t["le"]) for n, v, t in counted if n.endswith("_bucket_total")]
    assert buckets == [(1, "0.1"), (3, "0.2"), (4, "+Inf")]
    count = [v for n, v, _ in counted if n.endswith("_count_total")]
    assert count == [4]
