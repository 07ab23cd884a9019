"""`rtml demo`: the main job on the local stack, end to end, then a clean stop.

Starts Kafka and Redis (``infra``); trains small models if there are none yet (``rtml train``);
starts Ray, the Serve app (FraudScorer, Recommender, HTTP) and the consumer actors of every
pipeline; drives live synthetic traffic for ``--duration`` seconds while printing a live view
(records/s per topic, lag per pipeline, end-to-end latency percentiles, alerts) every two
seconds; waits for the pipelines to drain; and stops everything it started except the stack
(``rtml infra down`` stops that). ``--no-models`` runs the feature pipelines alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from typing import Any

from rtml.errors import RtmlError
from rtml.settings import Settings

PIPELINES = ("profiles", "fraud", "recsys")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the local stack with synthetic traffic",
        description=(
            "Start the local stack, the pipelines on Ray and live synthetic traffic; show "
            "records/s per topic and lag per pipeline; stop cleanly."
        ),
    )
    parser.add_argument("--duration", type=_positive, default=60.0, help="seconds of traffic")
    parser.add_argument("--rate", type=_positive, default=2_000.0, help="records/s produced")
    parser.add_argument("--users", type=int, default=200_000, help="synthetic users")
    parser.add_argument("--actors", type=int, default=1, help="consumer actors per pipeline")
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="resize each pipeline's actors from its lag (settings.rtml_autoscale)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--no-models", action="store_true", help="features only: no training, Serve or scoring"
    )
    parser.set_defaults(run=demo_command)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def demo_command(settings: Settings, args: argparse.Namespace) -> int:
    from infra import stack
    from rtml.interrupts import interrupt_on_sigterm

    interrupt_on_sigterm()  # stops the actors, Serve and Ray as Ctrl-C does

    say("starting the local stack (Kafka, Redis)")
    stack.up(settings)
    models = not args.no_models
    if models:
        train_if_missing(settings)
    settings = settings.model_copy(
        update={"rtml_fraud_scoring": models, "rtml_recommend_on_activity": models}
    )
    return asyncio.run(_run(settings, args))


def train_if_missing(settings: Settings) -> None:
    """Small models (a few minutes on two cores) when the models directory has none for the
    code's feature set (a model of older features cannot be served)."""
    from features.definitions import FEATURE_SET_VERSION
    from models.artifacts import list_models, read_manifest

    models_dir = settings.rtml_state_dir / "models"
    for kind, days in (("fraud", "7"), ("recsys", "2")):
        found = list_models(models_dir, kind)
        if found and read_manifest(found[-1].path).feature_set_version == FEATURE_SET_VERSION:
            continue
        say(f"no {kind} model yet: training a small one (rtml train {kind} --days {days})")
        done = subprocess.run(
            [sys.executable, "-m", "rtml.cli", "train", kind, "--days", days, "--users", "5000"],
            check=False,
        )
        if done.returncode != 0:
            raise RtmlError(f"training the {kind} model failed (exit {done.returncode})")


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} demo: {message}", flush=True)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.actors import ConsumerGroup
    from consumers.autoscaler import autoscale_groups
    from consumers.pipelines import input_partitions
    from monitoring.cli import watch
    from producers.config import GeneratorConfig
    from producers.runner import produce_live
    from rtml.ray_runtime import init_ray, shutdown_ray

    say(f"starting Ray and {args.actors} actor(s) per pipeline: {', '.join(PIPELINES)}")
    await asyncio.to_thread(init_ray, settings, dashboard=True)
    if settings.rtml_fraud_scoring:
        say("deploying the Serve app (FraudScorer, Recommender, HTTP on 127.0.0.1:8000)")
        await asyncio.to_thread(deploy_serving, settings)
    groups = [ConsumerGroup(settings, name) for name in PIPELINES]
    stop_scaling = asyncio.Event()
    scaling: asyncio.Task[None] | None = None
    try:
        for group in groups:
            most = input_partitions(settings, group.pipeline)
            await asyncio.to_thread(group.scale, min(args.actors, most))
        await _wait_ready(groups)
        config = GeneratorConfig(seed=args.seed, users=args.users)
        say(f"producing {args.rate:,.0f} records/s for {args.duration:.0f}s")
        viewer = asyncio.create_task(watch(settings, 2.0, None))
        if args.autoscale:
            scaling = asyncio.create_task(
                autoscale_groups(settings, groups, stop_scaling, on_change=_scaled)
            )
        summary = await produce_live(settings, config, rate=args.rate, duration_s=args.duration)
        say(
            f"produced {summary.total:,} records at {summary.rate:,.0f}/s "
            f"({summary.failed} failed); waiting for the pipelines to drain"
        )
        await _drain(groups, timeout_s=60.0)
        stop_scaling.set()
        if scaling is not None:
            await scaling
        viewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await viewer
        await asyncio.to_thread(_report, groups)
    finally:
        stop_scaling.set()
        if scaling is not None and not scaling.done():
            with contextlib.suppress(asyncio.CancelledError):
                await scaling
        say("stopping the pipelines (each actor commits its last batch)")
        for group in groups:
            await asyncio.to_thread(group.stop)
        if settings.rtml_fraud_scoring and settings.ray_address:
            await asyncio.to_thread(_stop_serving, settings)  # a shared cluster keeps running
        await asyncio.to_thread(shutdown_ray)
    say("done; `rtml infra down` stops Kafka and Redis")
    return 0


def _scaled(pipeline: str, decision: Any) -> None:
    say(f"autoscaler: {pipeline} -> {decision.actors} actor(s): {decision.reason}")


def deploy_serving(settings: Settings) -> None:
    from serving.config import serve_config
    from serving.deploy import deploy

    config = serve_config()
    config["applications"][0]["name"] = settings.rtml_serve_app
    deploy(config)


def _stop_serving(settings: Settings) -> None:
    """Delete the demo's Serve app from a cluster the demo joined. On the demo's own Ray there
    is nothing to do: ``ray.shutdown()`` stops it, while ``serve.delete`` waits ~30 s for the
    Ingress replica (Serve's direct ingress keeps a replica serving for
    ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``, 30 s, so that a load balancer in front
    can deregister it first)."""
    from ray import serve

    serve.delete(settings.rtml_serve_app)
    serve.shutdown()


async def _wait_ready(groups: list[Any], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = [await asyncio.to_thread(g.stats) for g in groups]
        if all(any(s["partitions"] for s in group_stats) for group_stats in stats):
            return
        await asyncio.sleep(1.0)
    raise RtmlError("the consumer actors did not get their partitions in time")


async def _drain(groups: list[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = [s for g in groups for s in await asyncio.to_thread(g.stats)]
        if all(sum(s["lag"].values()) == 0 for s in stats):
            return
        await asyncio.sleep(1.0)
    say("the pipelines still lag after the wait; stopping anyway (nothing is lost: lag stays)")


def _report(groups: list[Any]) -> None:
    for group in groups:
        stats = group.stats()
        records = sum(s["records"] for s in stats)
        failures = sum(s["failures"] for s in stats)
        print(
            f"  {group.pipeline:<9} processed {records:>10,} records "
            f"in {sum(s['batches'] for s in stats):,} batches, {failures} failed batches",
            file=sys.stdout,
        )
