"""Every metric of the streaming pipelines and the monitor, named in one place.

Prometheus conventions: base units (seconds, records, ratios), counters end in ``_total``,
labels ``pipeline`` (fraud, recsys, profiles), ``group`` (the Kafka consumer group), ``topic``,
``partition``, and a few specific ones (``stage``, ``reason``, ``field``, ``feature``,
``model_version``, ``rule``).

The metrics are recorded with ``ray.util.metrics`` inside the consumer actors (a process-local
``prometheus_client`` registry would never leave the actor): Ray's metrics agent exports them on
every node's metrics export port, each name prefixed with ``ray_`` (``rtml_records_consumed_total``
is scraped as ``ray_rtml_records_consumed_total``), and the Ray dashboard's Grafana shows them.
The serving metrics (``serving/metrics.py``) follow the same path.

Bulk histograms: a per-record distribution (end-to-end latency, score) observed one record at a
time would cost one Ray call per record (microseconds each, thousands per batch). Instead each
batch is bucketed with numpy (``BucketCounts``) and the bucket deltas are added to Ray counters
named like a Prometheus histogram's series (``<name>_bucket_total{le}``, ``<name>_count_total``,
``<name>_sum_total``): ``histogram_quantile(0.99, sum by (le) (rate(..._bucket_total[1m])))``
works on them as on any histogram, at a cost of one counter call per bucket per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["counter", "gauge", "histogram", "bulk_histogram"]
# Where a metric is recorded: inside the Ray actors (exported by Ray's metrics agent, prefixed
# ``ray_``) or by the monitor process (``rtml monitor --metrics-port``, prometheus_client).
Source = Literal["actor", "monitor"]

# Buckets (upper bounds) in base units.
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
RECORD_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

# Stages of a batch, in order (label ``stage``).
STAGES = ("decode", "features", "store_write", "model_call", "produce")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    source: Source = "actor"

    @property
    def exported(self) -> str:
        """The name Prometheus scrapes (Ray prefixes its custom metrics with ``ray_``)."""
        return f"ray_{self.name}" if self.source == "actor" else self.name

    def series(self) -> list[str]:
        """Every series name this metric appears under in a scrape."""
        base = self.exported
        if self.kind == "histogram":
            return [f"{base}_bucket", f"{base}_count", f"{base}_sum"]
        if self.kind == "bulk_histogram":
            return [f"{base}_bucket_total", f"{base}_count_total", f"{base}_sum_total"]
        return [base]


def _spec(
    name: str, kind: Kind, help: str, *labels: str, buckets: tuple[float, ...] = ()
) -> MetricSpec:
    return MetricSpec(name, kind, help, labels, buckets)


def _monitor(name: str, kind: Kind, help: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, kind, help, labels, source="monitor")


# -- the consumer pipelines (one series set per actor; sum them in PromQL) ---------------------
RECORDS_CONSUMED = _spec(
    "rtml_records_consumed_total", "counter", "Input records processed and committed.",
    "pipeline", "topic", "partition",
)  # fmt: skip
RECORDS_PRODUCED = _spec(
    "rtml_records_produced_total", "counter", "Output records committed, by output topic.",
    "pipeline", "topic",
)  # fmt: skip
DEAD_LETTERS = _spec(
    "rtml_dead_letters_total", "counter", "Input records dead-lettered, by reason.",
    "pipeline", "topic", "reason",
)  # fmt: skip
LATE_EVENTS = _spec(
    "rtml_late_events_total", "counter", "Events older than the watermark (dead-lettered).",
    "pipeline", "topic",
)  # fmt: skip
UNKNOWN_FIELDS = _spec(
    "rtml_unknown_fields_total", "counter", "Input records carrying a field the contract lacks.",
    "pipeline", "topic", "field",
)  # fmt: skip
BATCHES = _spec(
    "rtml_batches_total", "counter", "Poll batches committed.", "pipeline",
)  # fmt: skip
BATCH_FAILURES = _spec(
    "rtml_batch_failures_total", "counter", "Batches aborted and retried from committed state.",
    "pipeline",
)  # fmt: skip
STAGE_SECONDS = _spec(
    "rtml_stage_seconds", "histogram", "Time per batch in each stage.",
    "pipeline", "stage", buckets=SECONDS_BUCKETS,
)  # fmt: skip
BATCH_RECORDS = _spec(
    "rtml_batch_records", "histogram", "Input records per poll batch.",
    "pipeline", buckets=RECORD_BUCKETS,
)  # fmt: skip
END_TO_END_SECONDS = _spec(
    "rtml_end_to_end_latency_seconds", "bulk_histogram",
    "Input record timestamp to its outputs committed, per record.",
    "pipeline", buckets=LATENCY_BUCKETS,
)  # fmt: skip
CONSUMER_LAG = _spec(
    "rtml_consumer_lag_records", "gauge", "High watermark minus the next offset to process.",
    "pipeline", "group", "topic", "partition",
)  # fmt: skip
FEATURE_LAST_UPDATE = _spec(
    "rtml_feature_last_update_timestamp_seconds", "gauge",
    "When a feature group was last written to the online store (age: time() - this).",
    "pipeline", "feature_group",
)  # fmt: skip

# -- the model, as the fraud pipeline sees its answers ----------------------------------------
PREDICTIONS = _spec(
    "rtml_predictions_total", "counter", "Scores returned by the model.",
    "pipeline", "model_version",
)  # fmt: skip
MODEL_ALERTS = _spec(
    "rtml_model_alerts_total", "counter", "Scores at or above the alert threshold.",
    "pipeline", "model_version",
)  # fmt: skip
SCORE = _spec(
    "rtml_score", "bulk_histogram", "Distribution of model scores.",
    "pipeline", "model_version", buckets=SCORE_BUCKETS,
)  # fmt: skip
MODEL_INFO = _spec(
    "rtml_model_info", "gauge", "1 for the model version that scored the latest batch.",
    "pipeline", "model_version",
)  # fmt: skip

# -- the monitor (rtml monitor: Kafka offsets, the topics' contents, the alert evaluator) ----
GROUP_LAG = _monitor(
    "rtml_group_lag_records", "gauge", "End offset minus committed offset, per partition.",
    "group", "topic", "partition",
)  # fmt: skip
CONSUMER_STATUS = _monitor(
    "rtml_consumer_status", "gauge",
    "1 for a group's Burrow-style status (ok, stalled, not_draining, unknown).",
    "group", "status",
)  # fmt: skip
TIME_TO_DRAIN = _monitor(
    "rtml_group_time_to_drain_seconds", "gauge",
    "Lag divided by the net drain rate (+Inf: not draining).", "group", "topic",
)  # fmt: skip
TOPIC_RATE = _monitor(
    "rtml_topic_records_per_second", "gauge", "Records appended per second.", "topic",
)  # fmt: skip
FEATURE_AGE = _monitor(
    "rtml_feature_age_seconds", "gauge",
    "Seconds since a feature group's writer last committed (the monitor's view).",
    "feature_group",
)  # fmt: skip
FIELD_NULL_RATIO = _monitor(
    "rtml_field_null_ratio", "gauge", "Share of null or missing values of an input field.",
    "topic", "field",
)  # fmt: skip
FIELD_REJECTED = _monitor(
    "rtml_field_rejected_total", "counter",
    "Sampled input values the contract rejects (out_of_range, invalid_type...), by field.",
    "topic", "field", "reason",
)  # fmt: skip
SCHEMA_VERSION_CHANGES = _monitor(
    "rtml_schema_version_changes_total", "counter",
    "Changes of schema_version between consecutive sampled records of a topic.", "topic",
)  # fmt: skip
FEATURE_PSI = _monitor(
    "rtml_feature_psi", "gauge", "Population stability index vs the model's reference.",
    "model_version", "feature",
)  # fmt: skip
FEATURE_JS = _monitor(
    "rtml_feature_js_divergence", "gauge", "Jensen-Shannon divergence (base 2) vs reference.",
    "model_version", "feature",
)  # fmt: skip
OPS_ALERT_FIRING = _monitor(
    "rtml_ops_alert_firing", "gauge", "1 while an in-process alert rule fires.", "rule", "subject",
)  # fmt: skip

ALL: tuple[MetricSpec, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, MetricSpec)
)


def exported_series() -> set[str]:
    """Every series name a scrape of Ray's export port can show for rtml's metrics."""
    from serving import metrics as serving_metrics

    names = {series for spec in ALL for series in spec.series()}
    for name in serving_metrics.ALL_NAMES:
        names |= {f"ray_{name}", f"ray_{name}_total", f"ray_{name}_bucket"}
        names |= {f"ray_{name}_count", f"ray_{name}_sum"}
    return names


class BucketCounts:
    """Cumulative-ready bucket counts of a per-record distribution, filled a batch at a time.

    ``add`` is two vectorized numpy calls per batch (searchsorted + bincount); nothing per record
    in Python. ``quantile`` interpolates inside a bucket, as ``histogram_quantile`` does.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # last: above the top bound
        self.sum = 0.0

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        index = np.searchsorted(self.bounds, values, side="left")  # value <= bound: that bucket
        self.counts += np.bincount(index, minlength=self.counts.size)
        self.sum += float(values.sum())

    def merge(self, other: BucketCounts) -> None:
        self.counts += other.counts
        self.sum += other.sum

    def take(self) -> BucketCounts:
        """These counts, and reset to zero (the delta since the previous take)."""
        taken = BucketCounts(tuple(self.bounds.tolist()))
        taken.counts, taken.sum = self.counts, self.sum
        self.counts = np.zeros_like(self.counts)
        self.sum = 0.0
        return taken

    def quantile(self, q: float) -> float | None:
        """The q-quantile estimated from the buckets; None when empty. Values above the top
        bound report the top bound (as Prometheus does)."""
        total = self.counts.sum()
        if total == 0:
            return None
        rank = q * total
        cumulative = np.cumsum(self.counts)
        i = int(np.searchsorted(cumulative, rank, side="left"))
        if i >= self.bounds.size:
            return float(self.bounds[-1])
        lower = float(self.bounds[i - 1]) if i > 0 else 0.0
        below = float(cumulative[i - 1]) if i > 0 else 0.0
        in_bucket = float(self.counts[i])
        fraction = (rank - below) / in_bucket if in_bucket else 1.0
        return lower + (float(self.bounds[i]) - lower) * fraction
