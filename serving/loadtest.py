"""Autoscaling under a burst: replicas go up under load and come back down after.

    python -m serving.loadtest                         # ~1.5 min on a laptop
    python -m serving.loadtest --concurrency 32 --burst-s 60 --downscale-delay-s 120

Starts a local Ray, deploys the app with synthetic
artifacts and the FraudScorer's autoscaling from serve_config.yaml, except for the flags given
here (a shorter downscale delay by default, so the run ends), then: idle, a burst of
``--concurrency`` callers each sending 512-row batches back to back through a handle (as
consumer actors do), idle again. Every second it prints the FraudScorer's running replicas,
calls/s and the call latency. ``--latency-ms`` makes each forward pass that much slower
(``simulated_latency_ms``), standing in for a heavier model so that a small machine saturates.
Not part of the test suite: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving import synthetic
from serving.config import DEPLOYMENT_OPTIONS, FRAUD_SCORER, INGRESS, RECOMMENDER, AppArgs
from serving.protocol import FraudScoreRequest


@dataclass
class Window:
    """Calls answered since the last print."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def take(self) -> tuple[list[float], int]:
        taken, errors = self.latencies_ms, self.errors
        self.latencies_ms, self.errors = [], 0
        return taken, errors


def running_replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[FRAUD_SCORER]
    return status.replica_states.get("RUNNING", 0)


async def run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from serving.config import serve_config
    from serving.deploy import deploy

    models = Path(tempfile.mkdtemp(prefix="rtml-loadtest-"))
    synthetic.save_fraud_model(models)
    synthetic.save_recommender_model(models)
    ray.init(
        num_cpus=args.ray_cpus,
        include_dashboard=False,
        namespace="rtml-loadtest",
        log_to_driver=False,
    )
    autoscaling = dict(DEPLOYMENT_OPTIONS[FRAUD_SCORER]["autoscaling_config"])
    autoscaling.update(
        max_replicas=args.max_replicas,
        upscale_delay_s=args.upscale_delay_s,
        downscale_delay_s=args.downscale_delay_s,
        look_back_period_s=args.look_back_s,
    )
    one = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}
    config = serve_config(
        AppArgs(
            models_dir=models,
            device="cpu",
            fraud={"num_cpus": 0.5},
            recommender={"num_cpus": 0.5},
            http={"num_cpus": 0.25},
            redis_url="redis://127.0.0.1:1/0",  # never contacted: no HTTP traffic
            simulated_latency_ms=args.latency_ms,
        ),
        app_name="loadtest",
        port=_free_port(),
        deployments={
            FRAUD_SCORER: {"autoscaling_config": autoscaling},
            RECOMMENDER: one,
            INGRESS: one,
        },
    )
    print(f"FraudScorer autoscaling: {autoscaling}")
    deploy(config)
    handle = serve.get_deployment_handle(FRAUD_SCORER, "loadtest")
    request = FraudScoreRequest(synthetic.fraud_rows(512), 0.9)
    window = Window()
    stop = asyncio.Event()
    started = time.monotonic()
    phase = "idle"
    timeline: list[tuple[float, str, int]] = []

    async def caller() -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                await handle.score.remote(request)
            except Exception:  # noqa: BLE001 - counted and reported; a load test keeps going
                window.errors += 1
                continue
            window.latencies_ms.append((time.perf_counter() - sent) * 1000.0)

    async def report(until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            latencies, errors = window.take()
            replicas = running_replicas("loadtest")
            elapsed = time.monotonic() - started
            timeline.append((elapsed, phase, replicas))
            if latencies:
                p50, p99 = np.percentile(latencies, [50, 99])
                stats = f"{len(latencies):5d} calls/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
            else:
                stats = "    0 calls/s"
            print(f"t={elapsed:6.1f}s  {phase:5s}  replicas={replicas}  {stats}  errors={errors}")

    await report(time.monotonic() + args.idle_s)
    phase = "burst"
    callers = [asyncio.create_task(caller()) for _ in range(args.concurrency)]
    await report(time.monotonic() + args.burst_s)
    stop.set()
    await asyncio.gather(*callers)
    phase = "after"
    burst_end = time.monotonic() - started
    deadline = time.monotonic() + args.downscale_delay_s + args.settle_s
    while time.monotonic() < deadline:
        await report(time.monotonic() + 1.0)
        if running_replicas("loadtest") == 1 and time.monotonic() - started > burst_end + 2:
            break
    serve.shutdown()
    ray.shutdown()

    burst = [(t, r) for t, p, r in timeline if p == "burst"]
    peak = max((r for _, r in burst), default=0)
    first_up = next((t for t, r in burst if r > 1), None)
    down = next((t for t, p, r in timeline if p == "after" and r == 1), None)
    burst_start = burst[0][0] - 1.0 if burst else 0.0
    print(
        f"summary: peak {peak} replicas; first upscale "
        f"{f'{first_up - burst_start:.0f} s into the burst' if first_up else 'never'}; "
        f"back to 1 replica "
        f"{f'{down - burst_end:.0f} s after it' if down else 'not within the wait'}"
    )
    return 0 if peak > 1 and down is not None else 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.loadtest", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16, help="callers in the burst")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--burst-s", type=float, default=40.0)
    parser.add_argument("--settle-s", type=float, default=30.0, help="extra wait for downscale")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added per forward pass")
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--upscale-delay-s", type=float, default=3.0)
    parser.add_argument("--downscale-delay-s", type=float, default=15.0)
    parser.add_argument("--look-back-s", type=float, default=10.0)
    parser.add_argument("--ray-cpus", type=int, default=8, help="logical CPUs of the local Ray")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
