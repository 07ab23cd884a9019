"""Recording ``monitoring.metrics`` specs with ``ray.util.metrics``, created on first use.

Outside a Ray worker (a runner driven directly by a test or a benchmark without ``ray.init``)
nothing is exported: the local aggregates that ``rtml status`` and the alert evaluator read are
kept either way.

Counter increments, gauge values and bulk-histogram counts are coalesced per series and handed
to Ray at most every ``flush_interval_s`` (and on ``flush``): one ``ray.util.metrics`` call costs
~10 us, a batch of the latency configuration made ~40 of them (~6% of the actor's loop, ~0.5 ms
of a ~13 ms cycle), and Ray's agent reports them every few seconds anyway. Histogram
observations (``observe``) go to Ray at once: a histogram needs every value.
"""

from __future__ import annotations

import time
from typing import Any

from monitoring.metrics import BucketCounts, MetricSpec

FLUSH_INTERVAL_S = 1.0

_Series = tuple[str, tuple[tuple[str, str], ...]]  # metric name, its tags in call order


class RayExport:
    def __init__(
        self, enabled: bool | None = None, *, flush_interval_s: float = FLUSH_INTERVAL_S
    ) -> None:
        if enabled is None:
            import ray

            enabled = ray.is_initialized()
        self.enabled = enabled
        self._metrics: dict[str, Any] = {}
        self._specs: dict[str, MetricSpec] = {}
        self._interval = flush_interval_s
        self._next_flush = 0.0  # the first call flushes: a new series shows up at once
        self._counts: dict[_Series, float] = {}
        self._gauges: dict[_Series, float] = {}
        self._buckets: dict[_Series, BucketCounts] = {}

    def _metric(self, spec: MetricSpec, suffix: str = "") -> Any:
        name = spec.name + suffix
        metric = self._metrics.get(name)
        if metric is None:
            from ray.util import metrics

            if spec.kind == "counter":
                metric = metrics.Counter(name, spec.help, spec.labels)
            elif spec.kind == "gauge":
                metric = metrics.Gauge(name, spec.help, spec.labels)
            elif spec.kind == "histogram":
                metric = metrics.Histogram(name, spec.help, list(spec.buckets), spec.labels)
            else:  # the series of a bulk histogram
                labels = (*spec.labels, "le") if suffix == "_bucket_total" else spec.labels
                metric = metrics.Counter(name, f"{spec.help} ({suffix[1:]})", labels)
            self._metrics[name] = metric
        return metric

    def _series(self, spec: MetricSpec, tags: dict[str, str]) -> _Series:
        self._specs[spec.name] = spec
        return spec.name, tuple(tags.items())

    def inc(self, spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
        if self.enabled and value > 0:
            series = self._series(spec, tags)
            self._counts[series] = self._counts.get(series, 0) + value
            self.flush_when_due()

    def set(self, spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
        if self.enabled:
            self._gauges[self._series(spec, tags)] = value
            self.flush_when_due()

    def observe(self, spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
        if self.enabled:
            self._metric(spec).observe(value, tags=tags)

    def add_buckets(self, spec: MetricSpec, delta: BucketCounts, tags: dict[str, str]) -> None:
        """Adds a batch's bucket counts to the cumulative ``le`` counters (at the flush, one
        call per bucket that moved)."""
        if not self.enabled or delta.count == 0:
            return
        series = self._series(spec, tags)
        pending = self._buckets.get(series)
        if pending is None:
            pending = self._buckets[series] = BucketCounts(tuple(delta.bounds.tolist()))
        pending.merge(delta)
        self.flush_when_due()

    def flush_when_due(self) -> None:
        """Flush when the interval since the last flush is over (every call checks)."""
        if time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        """Hand everything coalesced so far to Ray; the next flush is an interval from now."""
        self._next_flush = time.monotonic() + self._interval
        counts, self._counts = self._counts, {}
        gauges, self._gauges = self._gauges, {}
        buckets, self._buckets = self._buckets, {}
        specs = self._specs
        for (name, tags), value in counts.items():
            self._metric(specs[name]).inc(value, tags=dict(tags))
        for (name, tags), value in gauges.items():
            self._metric(specs[name]).set(value, tags=dict(tags))
        for (name, tags), delta in buckets.items():
            self._send_buckets(specs[name], delta, dict(tags))

    def _send_buckets(self, spec: MetricSpec, delta: BucketCounts, tags: dict[str, str]) -> None:
        counters = self._metric(spec, "_bucket_total")
        cumulative = delta.counts.cumsum()
        bounds = [*(f"{b:g}" for b in delta.bounds.tolist()), "+Inf"]
        for le, n in zip(bounds, cumulative.tolist(), strict=True):
            if n:
                counters.inc(n, tags={**tags, "le": le})
        self._metric(spec, "_count_total").inc(delta.count, tags=tags)
        if delta.sum > 0:
            self._metric(spec, "_sum_total").inc(delta.sum, tags=tags)
