"""The text of ``rtml status``: one block per tick of the monitor."""

from __future__ import annotations

import time

from monitoring.monitor import MonitorReport

_PAD = " " * 10


def format_view(report: MonitorReport, *, now: float | None = None) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    lines = [f"{stamp}  {'topic':<24}{'records/s':>12}{'total':>14}"]
    live = any(rate is not None for rate in report.topic_rates.values())
    for topic in sorted(report.topic_totals):
        rate = report.topic_rates.get(topic)
        if live and not rate:
            continue  # a live view shows the topics that move
        shown = f"{rate:,.0f}" if rate is not None else "-"
        lines.append(f"{_PAD}{topic:<24}{shown:>12}{report.topic_totals[topic]:>14,}")

    active = [g for g in report.groups if g.consumed_per_second or g.lag]
    if active:
        lines.append(
            f"{_PAD}{'pipeline group':<24}{'consumed/s':>12}{'lag':>14}  {'status':<13}drain"
        )
        for g in active:
            rate = f"{g.consumed_per_second:,.0f}" if g.consumed_per_second is not None else "-"
            drain = _seconds(g.time_to_drain_s) if g.time_to_drain_s is not None else "never"
            lines.append(f"{_PAD}{g.group:<24}{rate:>12}{g.lag:>14,}  {g.status:<13}{drain}")

    ages = report.signals.feature_age_s
    if ages:
        shown = ", ".join(f"{group} {_seconds(age)} ago" for group, age in sorted(ages.items()))
        lines.append(f"{_PAD}features updated: {shown}")

    latency = report.latency
    if latency is not None:
        if latency.p50_ms is None:
            lines.append(f"{_PAD}end-to-end latency: no scores read yet")
        else:
            lines.append(
                f"{_PAD}end-to-end latency p50 {latency.p50_ms:,.0f} ms  "
                f"p95 {latency.p95_ms:,.0f} ms  p99 {latency.p99_ms:,.0f} ms  "
                f"({latency.count:,} scores, {latency.alerts:,} fraud alerts)"
            )

    for version, columns in sorted(report.drift.items()):
        top = sorted(columns.items(), key=lambda item: -item[1][0])[:3]
        shown = ", ".join(f"{name} {psi:.2f}" for name, (psi, _, _) in top)
        lines.append(f"{_PAD}drift {version}: highest PSI {shown}")

    for topic, quality in sorted(report.quality.items()):
        ratios = quality.null_ratios()
        if not ratios:
            continue
        field, worst = max(ratios.items(), key=lambda item: item[1])
        unknown = sum(quality.unknown_fields.values())
        rejected = sum(quality.rejected.values())
        lines.append(
            f"{_PAD}input {topic}: max null {worst:.1%} ({field.removeprefix(topic + '.')}), "
            f"{rejected:,} rejected, {unknown:,} unknown fields, "
            f"{quality.schema_version_changes} schema_version changes"
        )

    if report.firing:
        for rule, subject, message in report.firing:
            lines.append(f"{_PAD}FIRING {rule} [{subject}]: {message}")
    else:
        lines.append(f"{_PAD}alerts: none firing")
    return "\n".join(lines)


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.0f}s"
    if value < 3600:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"
