"""`rtml status`: a live terminal view of the running pipelines; `rtml monitor`: the alert
evaluator as a service (ops-alerts topic, log, optional Prometheus endpoint)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from typing import Any, TextIO

from monitoring.monitor import Monitor, MonitorReport, Watch
from monitoring.view import format_view
from rtml.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="live view: rates, lag, latency percentiles, freshness, drift, firing alerts",
        description=(
            "Print, every --interval seconds, records/s per topic, lag and status per pipeline "
            "group, feature freshness, end-to-end latency percentiles, drift, input quality "
            "and the alerts that would fire; read from Kafka (works against any running "
            "pipeline). Publishes nothing: `rtml monitor` does."
        ),
    )
    parser.add_argument("--interval", type=_positive, default=2.0, help="seconds between views")
    parser.add_argument("--duration", type=_positive, help="stop after this many seconds")
    parser.add_argument("--once", action="store_true", help="print totals and lag once and exit")
    parser.set_defaults(run=status_command)

    monitor = subparsers.add_parser(
        "monitor",
        help="run the alert evaluator: firing/resolved events to ops-alerts and the log",
        description=(
            "Evaluate the alert rules (lag, stalled consumers, feature staleness, latency, "
            "null ratio, drift, volume) every RTML_MONITORING__INTERVAL_S seconds and publish "
            "their state changes to the ops-alerts topic; optionally serve the monitor's "
            "metrics for Prometheus."
        ),
    )
    monitor.add_argument("--duration", type=_positive, help="stop after this many seconds")
    monitor.add_argument(
        "--metrics-port", type=_port, help="serve the monitor's metrics on 127.0.0.1:PORT/metrics"
    )
    monitor.set_defaults(run=monitor_command)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1-65535), got {text!r}")
    return int(text)


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
    """Print the view every ``interval`` seconds (``once``: offsets only, one view)."""
    watch_spec = Watch.pipelines(settings)
    watch_spec = dataclasses.replace(watch_spec, alerts_topic=None)  # read-only
    monitor = Monitor(settings, watch_spec, follow=not once, log_events=False)
    await monitor.start()
    try:
        deadline = time.monotonic() + duration if duration else None
        first = True
        while True:
            report = await monitor.tick()
            if once or not first:  # the first tick has no rates yet
                print(format_view(report), file=out, flush=True)
            if once or (deadline is not None and time.monotonic() >= deadline):
                return
            first = False
            await asyncio.sleep(interval)
    finally:
        await monitor.stop()


def monitor_command(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=settings.rtml_log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # one line per subscription
    asyncio.run(_monitor(settings, args.duration, args.metrics_port))
    return 0


async def _monitor(settings: Settings, duration: float | None, metrics_port: int | None) -> None:
    from monitoring.monitor_export import MonitorCollector, serve_metrics

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    collector = MonitorCollector()
    server = serve_metrics(metrics_port, collector) if metrics_port is not None else None
    monitor = Monitor(settings)
    await monitor.start()

    def on_tick(report: MonitorReport) -> None:
        collector.report = report
        for event in report.events:
            print(
                f"{time.strftime('%H:%M:%S')} {event.state.upper()} {event.rule} "
                f"[{event.subject}]: {event.message}",
                flush=True,
            )

    try:
        await monitor.run(stop, on_tick)
    finally:
        await monitor.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
