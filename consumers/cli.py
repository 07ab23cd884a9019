"""`rtml consume`: run consumer actor groups on Ray until interrupted (or for --duration)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from typing import Any

from rtml.arguments import positive_int
from rtml.errors import ConfigError, RtmlError
from rtml.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "consume",
        help="run the streaming pipelines' consumer actors on Ray",
        description=(
            "Start consumer actors for each pipeline on Ray (RAY_ADDRESS, or a local Ray) and "
            "print their progress until Ctrl-C, SIGTERM or --duration. Stopping is graceful: "
            "each actor finishes and commits its in-flight batch."
        ),
    )
    parser.add_argument(
        "--pipelines",
        default="profiles,fraud",
        type=_names,
        help="comma-separated pipelines to run (default: profiles,fraud)",
    )
    parser.add_argument(
        "--actors", type=positive_int, default=1, help="actors per pipeline (<= its partitions)"
    )
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help=(
            "resize each pipeline's actors from its Kafka lag, between "
            "RTML_AUTOSCALE__MIN_ACTORS and RTML_AUTOSCALE__MAX_ACTORS (<= partitions); "
            "--actors is the starting size"
        ),
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between lines")
    parser.set_defaults(run=consume_command)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one pipeline")
    return names


def consume_command(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.actors import ConsumerGroup, pipeline_factories
    from consumers.pipelines import input_partitions
    from rtml.ray_runtime import init_ray, shutdown_ray

    unknown = set(args.pipelines) - set(pipeline_factories())
    if unknown:
        known = ", ".join(sorted(pipeline_factories()))
        raise ConfigError(f"unknown pipeline(s) {', '.join(sorted(unknown))}; known: {known}")
    if "fraud" in args.pipelines:
        from features.patterns import load_rules

        load_rules(settings.rtml_pattern_rules)  # a bad rule set: one clear error, before Ray
    init_ray(settings)
    # After init_ray: Ray's driver installs a SIGTERM handler that aborts the process (exit -6,
    # no batch committed, members left to time out of the group); ours replaces it.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    groups = [ConsumerGroup(settings, name) for name in args.pipelines]
    try:
        for group in groups:
            group.scale(args.actors, max_members=input_partitions(settings, group.pipeline))
        deadline = time.monotonic() + args.duration if args.duration else None
        if args.autoscale:
            asyncio.run(_autoscaled(settings, groups, stop, deadline, args.interval))
        else:
            while not stop.wait(args.interval):
                _print_groups(groups)
                if deadline is not None and time.monotonic() >= deadline:
                    break
    finally:
        for group in groups:
            group.stop()
        shutdown_ray()
    return 0


def _print_groups(groups: list[Any]) -> None:
    for group in groups:
        print(format_group(group.pipeline, group.stats()), flush=True)
        errors = group.failed()
        if errors:
            raise RtmlError(f"{group.pipeline} actor failed: {errors[0]}")


async def _autoscaled(
    settings: Settings,
    groups: list[Any],
    stop: threading.Event,
    deadline: float | None,
    interval: float,
) -> None:
    """The autoscalers and the progress lines, until a signal or the deadline."""
    from consumers.autoscaler import Decision, autoscale_groups

    done = asyncio.Event()

    def changed(pipeline: str, decision: Decision) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(
            f"{stamp} {pipeline:<10} -> {decision.actors} actor(s): {decision.reason}", flush=True
        )

    async def watch() -> None:
        try:
            while not stop.is_set() and not done.is_set():
                await asyncio.sleep(interval)
                await asyncio.to_thread(_print_groups, groups)
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            done.set()

    watcher = asyncio.create_task(watch())
    try:
        await autoscale_groups(settings, groups, done, on_change=changed)
    finally:
        done.set()
        await watcher  # re-raises a failed actor


def format_group(pipeline: str, stats: list[dict[str, Any]]) -> str:
    records = sum(s["records"] for s in stats)
    lag = sum(sum(s["lag"].values()) for s in stats)
    partitions = sum(len(s["partitions"]) for s in stats)
    return (
        f"{time.strftime('%H:%M:%S')} {pipeline:<10} actors={len(stats)} "
        f"partitions={partitions} records={records:,} lag={lag:,}"
    )
