"""`rtml status`: a live view of records per second per topic and lag per pipeline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any, TextIO

from monitoring.latency import ScoreLatency, format_latency
from monitoring.topic_rates import OffsetMonitor, Report, Snapshot, report
from rtml.settings import Settings

# Each pipeline's consumer group and its input topic (by settings field).
PIPELINE_GROUPS = {
    "rtml-fraud-features": "transactions",
    "rtml-recsys-features": "user_events",
    "rtml-profiles": "user_profiles",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="live records/s per topic and lag per pipeline",
        description="Print records/s per topic and lag per consumer group, read from Kafka.",
    )
    parser.add_argument("--interval", type=_positive, default=2.0, help="seconds between lines")
    parser.add_argument("--duration", type=_positive, help="stop after this many seconds")
    parser.add_argument("--once", action="store_true", help="print totals once and exit")
    parser.set_defaults(run=status_command)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def status_command(settings: Settings, args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(settings, args.interval, args.duration, once=args.once))
    return 0


async def watch(
    settings: Settings,
    interval: float,
    duration: float | None,
    *,
    once: bool = False,
    out: TextIO = sys.stdout,
) -> None:
    topics = settings.rtml_topics
    names = [spec.name for spec in topics.all()]
    group_inputs = {g: getattr(topics, field).name for g, field in PIPELINE_GROUPS.items()}
    monitor = OffsetMonitor(settings, names, list(group_inputs))
    await monitor.start()
    latency = ScoreLatency(settings, threshold=settings.rtml_fraud_alert_threshold)
    if not once:
        await latency.start()
    try:
        previous: Snapshot | None = None
        deadline = time.monotonic() + duration if duration else None
        while True:
            current = await monitor.snapshot()
            if previous is not None or once:
                lines = format_report(report(current, previous, group_inputs))
                if not once:
                    lines += "\n" + format_latency(latency.summary())
                print(lines, file=out, flush=True)
            if once or (deadline is not None and time.monotonic() >= deadline):
                return
            previous = current
            await asyncio.sleep(interval)
    finally:
        await latency.stop()
        await monitor.stop()


def format_report(rep: Report) -> str:
    stamp = time.strftime("%H:%M:%S")
    lines = [f"{stamp}  {'topic':<22}{'records/s':>12}{'total':>14}"]
    live = any(t.per_second is not None for t in rep.topics)
    for t in rep.topics:
        if live and not t.per_second:
            continue  # a live view shows the topics that move
        rate = f"{t.per_second:,.0f}" if t.per_second is not None else "-"
        lines.append(f"{'':10}{t.topic:<22}{rate:>12}{t.total:>14,}")
    active = [g for g in rep.groups if g.consumed_per_second or g.lag]
    if active:
        lines.append(f"{'':10}{'pipeline group':<22}{'consumed/s':>12}{'lag':>14}")
        for g in active:
            rate = f"{g.consumed_per_second:,.0f}" if g.consumed_per_second is not None else "-"
            lines.append(f"{'':10}{g.group:<22}{rate:>12}{g.lag:>14,}")
    return "\n".join(lines)
