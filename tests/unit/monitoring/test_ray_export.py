"""What reaches Ray's metrics: increments, gauges and bucket counts coalesced per series,
handed over at most once per flush interval; histogram observations at once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from monitoring import metrics as m
from monitoring.metrics import BucketCounts
from monitoring.ray_export import RayExport


class FakeMetric:
    def __init__(self, name: str, calls: list[tuple[str, str, float, dict[str, str]]]) -> None:
        self.name, self.calls = name, calls

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("inc", self.name, value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", self.name, value, tags))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("observe", self.name, value, tags))


class FakeRayExport(RayExport):
    """RayExport with ``ray.util.metrics`` replaced by recorders."""

    def __init__(self, flush_interval_s: float) -> None:
        super().__init__(enabled=True, flush_interval_s=flush_interval_s)
        self.calls: list[tuple[str, str, float, dict[str, str]]] = []

    def _metric(self, spec: m.MetricSpec, suffix: str = "") -> Any:
        return FakeMetric(spec.name + suffix, self.calls)


def test_within_the_interval_increments_add_up_and_gauges_keep_the_last_value() -> None:
    export = FakeRayExport(flush_interval_s=3600)
    tags = {"pipeline": "fraud", "topic": "tx"}
    export.inc(m.RECORDS_PRODUCED, 2, tags)  # the first call flushes: new series show at once
    assert export.calls == [("inc", m.RECORDS_PRODUCED.name, 2, tags)]
    export.calls.clear()
    for n in (3, 4):
        export.inc(m.RECORDS_PRODUCED, n, dict(tags))
    export.inc(m.RECORDS_PRODUCED, 5, {**tags, "topic": "other"})
    export.inc(m.RECORDS_PRODUCED, 0, tags)  # nothing to add
    export.set(m.CONSUMER_LAG, 10, {"partition": "0"})
    export.set(m.CONSUMER_LAG, 7, {"partition": "0"})
    observed = {"pipeline": "fraud", "stage": "features"}
    export.observe(m.STAGE_SECONDS, 0.25, observed)
    assert export.calls == [("observe", m.STAGE_SECONDS.name, 0.25, observed)]  # at once
    export.calls.clear()
    export.flush()
    assert sorted(export.calls, key=str) == sorted(
        [
            ("inc", m.RECORDS_PRODUCED.name, 7, tags),
            ("inc", m.RECORDS_PRODUCED.name, 5, {**tags, "topic": "other"}),
            ("set", m.CONSUMER_LAG.name, 7, {"partition": "0"}),
        ],
        key=str,
    )
    export.calls.clear()
    export.flush()
    assert export.calls == []  # nothing pending


def test_bucket_counts_are_merged_then_sent_as_cumulative_le_counters() -> None:
    export = FakeRayExport(flush_interval_s=3600)
    export.flush()
    tags = {"pipeline": "fraud"}
    for values in ([0.004, 0.3], [0.004]):
        delta = BucketCounts((0.005, 0.5))
        delta.add(np.array(values))
        export.add_buckets(m.END_TO_END_SECONDS, delta, tags)
    assert export.calls == []
    export.flush()
    name = m.END_TO_END_SECONDS.name
    assert export.calls == [
        ("inc", f"{name}_bucket_total", 2, {**tags, "le": "0.005"}),
        ("inc", f"{name}_bucket_total", 3, {**tags, "le": "0.5"}),
        ("inc", f"{name}_bucket_total", 3, {**tags, "le": "+Inf"}),
        ("inc", f"{name}_count_total", 3, tags),
        ("inc", f"{name}_sum_total", pytest.approx(0.308), tags),
    ]


def test_a_call_after_the_interval_flushes_everything_pending() -> None:
    export = FakeRayExport(flush_interval_s=0.0)
    export.inc(m.BATCHES, 1, {"pipeline": "fraud"})
    export.set(m.CONSUMER_LAG, 3, {"partition": "1"})
    assert [c[0] for c in export.calls] == ["inc", "set"]


def test_disabled_outside_ray_nothing_is_kept_or_sent() -> None:
    export = RayExport(enabled=False)
    export.inc(m.BATCHES, 1, {"pipeline": "fraud"})
    export.set(m.CONSUMER_LAG, 3, {"partition": "1"})
    export.flush()  # would import ray.util.metrics for anything pending


def test_flush_when_due_waits_for_the_interval() -> None:
    export = FakeRayExport(flush_interval_s=3600)
    export.flush()
    export.inc(m.BATCHES, 1, {"pipeline": "fraud"})
    export.flush_when_due()
    assert export.calls == []
    export._next_flush = 0.0  # the interval is over
    export.flush_when_due()
    assert export.calls == [("inc", m.BATCHES.name, 1, {"pipeline": "fraud"})]
