"""Every metric the serving layer exports, named in one place.

``ray.util.metrics`` inside the replicas: Ray's metrics agent exports them on each node's
Prometheus endpoint (and the dashboard's Grafana), with the replica's tags. A process-local
``prometheus_client`` registry would never leave the actor.

Metrics are created when a replica starts (``ModelMetrics(...)``/``HttpMetrics()``), never at
import, so importing this module costs nothing and needs no Ray.
"""

from __future__ import annotations

import time

REQUESTS = "rtml_serve_requests_total"  # Counter{deployment, outcome}: handle calls answered
ROWS = "rtml_serve_rows_total"  # Counter{deployment}: rows (transactions, users) scored
BATCH_ROWS = "rtml_serve_batch_rows"  # Histogram{deployment}: rows per forward pass
BATCH_REQUESTS = "rtml_serve_batch_requests"  # Histogram{deployment}: requests coalesced
COMPUTE_SECONDS = "rtml_serve_compute_seconds"  # Histogram{deployment}: forward pass (+ explain)
LATENCY_SECONDS = "rtml_serve_latency_seconds"  # Histogram{deployment}: call, inside the replica
MODEL_LOADED = "rtml_serve_model_loaded"  # Gauge{deployment, version}: 1 for the loaded one
MODEL_RELOADS = "rtml_serve_model_reloads_total"  # Counter{deployment, outcome}: ok | failed
HTTP_REQUESTS = "rtml_http_requests_total"  # Counter{route, status}
HTTP_LATENCY_SECONDS = "rtml_http_latency_seconds"  # Histogram{route}
# Counter{group, source}: online_store | request | popularity | stored_top_k
FEATURE_SOURCE = "rtml_http_feature_rows_total"
# Histogram{group}: now minus the event time of stored feature rows read at prediction time.
FEATURE_AGE_SECONDS = "rtml_http_feature_age_seconds"
ALL_NAMES = (
    REQUESTS, ROWS, BATCH_ROWS, BATCH_REQUESTS, COMPUTE_SECONDS, LATENCY_SECONDS, MODEL_LOADED,
    MODEL_RELOADS, HTTP_REQUESTS, HTTP_LATENCY_SECONDS, FEATURE_SOURCE, FEATURE_AGE_SECONDS,
)  # fmt: skip

# Seconds (Prometheus base units); the callers measure in ms and the methods convert.
_SECONDS_BUCKETS = [
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02, 0.035, 0.05, 0.075, 0.1,
    0.2, 0.5, 1.0, 5.0,
]  # fmt: skip
_AGE_BUCKETS = [1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600]
_ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
_REQUEST_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64]


class ModelMetrics:
    """The metrics of one model deployment's replica."""

    def __init__(self, deployment: str) -> None:
        from ray.util import metrics

        tags: dict[str, str] = {"deployment": deployment}
        self.requests = metrics.Counter(
            REQUESTS, "Handle calls answered, by outcome.", ("deployment", "outcome")
        )
        self.rows = metrics.Counter(ROWS, "Rows scored.", ("deployment",))
        self.batch_rows = metrics.Histogram(
            BATCH_ROWS, "Rows per forward pass.", _ROW_BUCKETS, ("deployment",)
        )
        self.batch_requests = metrics.Histogram(
            BATCH_REQUESTS, "Requests per forward pass.", _REQUEST_BUCKETS, ("deployment",)
        )
        self.compute_seconds = metrics.Histogram(
            COMPUTE_SECONDS, "Forward pass time.", _SECONDS_BUCKETS, ("deployment",)
        )
        self.latency_seconds = metrics.Histogram(
            LATENCY_SECONDS, "Call time inside the replica.", _SECONDS_BUCKETS, ("deployment",)
        )
        self.model_loaded = metrics.Gauge(
            MODEL_LOADED, "1 for the model version a replica serves.", ("deployment", "version")
        )
        self.reloads = metrics.Counter(
            MODEL_RELOADS, "Model (re)loads, by outcome.", ("deployment", "outcome")
        )
        for metric in (
            self.requests,
            self.rows,
            self.batch_rows,
            self.batch_requests,
            self.compute_seconds,
            self.latency_seconds,
            self.model_loaded,
            self.reloads,
        ):
            metric.set_default_tags(tags)

    def batch(self, rows: int, requests: int, compute_ms: float) -> None:
        self.rows.inc(rows)
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.compute_seconds.observe(compute_ms / 1000.0)

    def answered(self, outcome: str, latency_ms: float) -> None:
        self.requests.inc(1, tags={"outcome": outcome})
        self.latency_seconds.observe(latency_ms / 1000.0)

    def swapped(self, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self.model_loaded.set(0, tags={"version": old})
        self.model_loaded.set(1, tags={"version": new})

    def reloaded(self, ok: bool) -> None:
        self.reloads.inc(1, tags={"outcome": "ok" if ok else "failed"})


class HttpMetrics:
    """The ingress's metrics."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(
            HTTP_REQUESTS, "HTTP requests, by route and status.", ("route", "status")
        )
        self.latency_seconds = metrics.Histogram(
            HTTP_LATENCY_SECONDS, "HTTP request time in the ingress.", _SECONDS_BUCKETS, ("route",)
        )
        self.feature_rows = metrics.Counter(
            FEATURE_SOURCE, "Feature rows used, by where they came from.", ("group", "source")
        )
        self.feature_age = metrics.Histogram(
            FEATURE_AGE_SECONDS,
            "Age (now - event time) of stored feature rows read at prediction time.",
            _AGE_BUCKETS,
            ("group",),
        )

    def answered(self, route: str, status: int, latency_ms: float) -> None:
        self.requests.inc(1, tags={"route": route, "status": str(status)})
        self.latency_seconds.observe(latency_ms / 1000.0, tags={"route": route})

    def feature_ages(self, group: str, event_times_ms: list[int]) -> None:
        """One observation per stored row a request used (a request holds a few)."""
        now_ms = time.time() * 1000.0
        for event_time in event_times_ms:
            self.feature_age.observe(
                max(0.0, (now_ms - event_time) / 1000.0), tags={"group": group}
            )

    def sources(self, group: str, counts: dict[str, int]) -> None:
        for source, n in counts.items():
            if n:
                self.feature_rows.inc(n, tags={"group": group, "source": source})
