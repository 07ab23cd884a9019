"""The monitor's own metrics on a Prometheus endpoint (``rtml monitor --metrics-port``).

The monitor is a plain process, not a Ray actor, so ``prometheus_client`` is the right tool
here: a custom collector turns the latest ``MonitorReport`` into metric families at scrape
time (nothing is recorded between scrapes). Names and labels come from ``monitoring.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitoring import metrics as m
from monitoring.monitor import MonitorReport


def _family(spec: m.MetricSpec) -> GaugeMetricFamily | CounterMetricFamily:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


class MonitorCollector:
    def __init__(self) -> None:
        self.report: MonitorReport | None = None

    def describe(self) -> list[Metric]:
        return []  # families are known only at scrape time

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is None:
            return
        lag, status, drain = (
            _family(m.GROUP_LAG),
            _family(m.CONSUMER_STATUS),
            _family(m.TIME_TO_DRAIN),
        )
        for g in report.groups:
            for partition, value in g.partitions.items():
                lag.add_metric([g.group, g.topic, str(partition)], value)
            for name in ("ok", "stalled", "not_draining", "unknown"):
                status.add_metric([g.group, name], 1.0 if g.status == name else 0.0)
            seconds = g.time_to_drain_s
            drain.add_metric([g.group, g.topic], math.inf if seconds is None else seconds)
        yield from (lag, status, drain)

        rates = _family(m.TOPIC_RATE)
        for topic, rate in report.topic_rates.items():
            if rate is not None:
                rates.add_metric([topic], rate)
        yield rates

        age = _family(m.FEATURE_AGE)
        for group, seconds in report.signals.feature_age_s.items():
            age.add_metric([group], seconds)
        yield age

        nulls, rejected, versions = (
            _family(m.FIELD_NULL_RATIO),
            _family(m.FIELD_REJECTED),
            _family(m.SCHEMA_VERSION_CHANGES),
        )
        for topic, quality in report.quality.items():
            for name, ratio in quality.null_ratios().items():
                nulls.add_metric([topic, name.removeprefix(f"{topic}.")], ratio)
            for key, count in quality.rejected.items():
                field, _, reason = key.partition(":")
                rejected.add_metric([topic, field, reason], count)
            versions.add_metric([topic], quality.schema_version_changes)
        yield from (nulls, rejected, versions)

        psi, js = _family(m.FEATURE_PSI), _family(m.FEATURE_JS)
        for version, columns in report.drift.items():
            for column, (p, j, _) in columns.items():
                psi.add_metric([version, column], p)
                js.add_metric([version, column], j)
        yield from (psi, js)

        firing = _family(m.OPS_ALERT_FIRING)
        for rule, subject, _ in report.firing:
            firing.add_metric([rule, subject], 1.0)
        yield firing


def serve_metrics(port: int, collector: MonitorCollector, addr: str = "127.0.0.1") -> Any:
    """Serves ``collector`` on ``http://addr:port/metrics``; returns the server (shutdown())."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
