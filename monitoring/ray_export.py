"""Recording ``monitoring.metrics`` specs with ``ray.util.metrics``, created on first use.

Outside a Ray worker (a runner driven directly by a test or a benchmark without ``ray.init``)
nothing is exported: the local aggregates that ``rtml status`` and the alert evaluator read are
kept either way.
"""

from __future__ import annotations

from typing import Any

from monitoring.metrics import BucketCounts, MetricSpec


class RayExport:
    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            import ray

            enabled = ray.is_initialized()
        self.enabled = enabled
        self._metrics: dict[str, Any] = {}

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

    def inc(self, spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
        if self.enabled and value > 0:
            self._metric(spec).inc(value, tags=tags)

    def set(self, spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
        if self.enabled:
            self._metric(spec).set(value, tags=tags)

    def observe(self, spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
        if self.enabled:
            self._metric(spec).observe(value, tags=tags)

    def add_buckets(self, spec: MetricSpec, delta: BucketCounts, tags: dict[str, str]) -> None:
        """Adds a batch's bucket counts to the cumulative ``le`` counters (one call per bucket
        that moved)."""
        if not self.enabled or delta.count == 0:
            return
        buckets = self._metric(spec, "_bucket_total")
        cumulative = delta.counts.cumsum()
        bounds = [*(f"{b:g}" for b in delta.bounds.tolist()), "+Inf"]
        for le, n in zip(bounds, cumulative.tolist(), strict=True):
            if n:
                buckets.inc(n, tags={**tags, "le": le})
        self._metric(spec, "_count_total").inc(delta.count, tags=tags)
        if delta.sum > 0:
            self._metric(spec, "_sum_total").inc(delta.sum, tags=tags)
