"""Serving latency, measured: what a replica spends on a batch, and a handle call end to end.

    python -m serving.bench                      # replica work only (seconds)
    python -m serving.bench --handle             # plus handle calls on a local Serve app

Replica work runs the replicas' own batch functions (``serving.deployments.score_batch`` /
``recommend_batch``) on a ``TorchWorker`` thread with the replicas' torch thread count, on
models of the production shape with synthetic weights: the fraud MLP (``FraudConfig()``) on
512-row micro-batches with ~1% of the rows explained (alerts), and exact top-50 over a
100,000-item catalog (D = 64). ``--handle`` deploys the app (synthetic artifacts in a temp
dir, no HTTP traffic) and times ``FraudScorer.score`` / ``Recommender.recommend`` through a
DeploymentHandle from this process: that adds Ray's RPC, the object store and the batch wait.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from features.definitions import RECOMMENDATION_FEATURE_NAMES
from models.fraud import LoadedFraudModel
from serving import synthetic
from serving.deployments import recommend_batch, score_batch
from serving.protocol import FraudScoreRequest, RecommendRequest
from serving.replica import TorchWorker


def percentiles(samples_ms: list[float]) -> str:
    p50, p99 = np.percentile(samples_ms, [50, 99])
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  (n={len(samples_ms)})"


async def timed(
    worker: TorchWorker, fn: Callable[..., Any], args: tuple[Any, ...], n: int
) -> list[float]:
    """Wall time of ``n`` runs of ``fn(*args)`` on the torch thread, as the replica calls it."""
    for _ in range(max(10, n // 20)):  # warm up
        await worker.run(fn, *args)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await worker.run(fn, *args)
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def user_rows(n: int, n_items: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        cats = rng.choice(20, size=3, replace=False)
        interest = {f"cat-{c:03d}": float(w) for c, w in zip(cats, rng.random(3), strict=True)}
        recent = [f"item-{i:06d}" for i in rng.choice(n_items, size=20, replace=False)]
        bought = [f"item-{i:06d}" for i in rng.choice(n_items, size=50, replace=False)]
        rows.append((interest, 12, 3, recent, bought))
    assert len(rows[0]) == len(RECOMMENDATION_FEATURE_NAMES)
    return rows


async def replica_work(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    worker = TorchWorker("bench-torch", args.threads)
    fraud = LoadedFraudModel(synthetic.mlp_fraud_model().to(device), "bench", device, manifest={})
    rows = synthetic.fraud_rows(args.rows, seed=1)
    scores = fraud.predict(rows)
    alert_threshold = float(np.quantile(scores, 0.99))  # ~1% of the rows alert
    alerting = [FraudScoreRequest(rows, alert_threshold)]
    quiet = [FraudScoreRequest(rows, None)]
    print(
        f"torch {torch.__version__} on {device}, {args.threads} intra-op thread(s), "
        f"{platform.processor() or platform.machine()}"
    )
    samples = await timed(worker, score_batch, (fraud, alerting, 3), args.iterations)
    print(f"FraudScorer batch, {args.rows} rows, ~1% explained:  {percentiles(samples)}")
    samples = await timed(worker, score_batch, (fraud, quiet, 3), args.iterations)
    print(f"FraudScorer batch, {args.rows} rows, none explained: {percentiles(samples)}")

    rec = synthetic.loaded_recommender(args.items, dim=64, device=device)
    for users in (1, 32):
        request = [RecommendRequest(user_rows(users, args.items), k=args.k)]
        samples = await timed(worker, recommend_batch, (rec, request), args.iterations // 4)
        print(
            f"Recommender top-{args.k} of {args.items:,} items, {users} user(s), "
            f"50 purchases excluded each: {percentiles(samples)}"
        )
    worker.close()


async def handle_calls(args: argparse.Namespace) -> None:
    import ray
    from ray import serve

    from serving.config import FRAUD_SCORER, RECOMMENDER, AppArgs, serve_config
    from serving.deploy import deploy

    models = Path(tempfile.mkdtemp(prefix="rtml-bench-"))
    synthetic.save_fraud_model(models, model=synthetic.mlp_fraud_model())
    synthetic.save_recommender_model(models, n_items=args.items, dim=64)
    ray.init(num_cpus=4, include_dashboard=False, namespace="rtml-bench", log_to_driver=False)
    try:
        app_args = AppArgs(
            models_dir=models,
            device=args.device,
            torch_threads=args.threads,
            redis_url="redis://127.0.0.1:1/0",  # never contacted: no HTTP traffic
        )
        one = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}
        deploy(
            serve_config(
                app_args,
                app_name="bench",
                port=_free_port(),
                deployments={FRAUD_SCORER: one, RECOMMENDER: one},
            )
        )
        fraud = serve.get_deployment_handle(FRAUD_SCORER, "bench")
        recommender = serve.get_deployment_handle(RECOMMENDER, "bench")
        score_request = FraudScoreRequest(synthetic.fraud_rows(args.rows, seed=1), 0.99)
        recommend_request = RecommendRequest(user_rows(1, args.items), args.k)

        async def score() -> None:
            await fraud.score.remote(score_request)

        async def recommend() -> None:
            await recommender.recommend.remote(recommend_request)

        for name, call in (
            (f"handle FraudScorer.score, {args.rows} rows", score),
            (f"handle Recommender.recommend, top-{args.k}, 1 user", recommend),
        ):
            for _ in range(20):
                await call()
            samples = []
            for _ in range(args.iterations // 4):
                started = time.perf_counter()
                await call()
                samples.append((time.perf_counter() - started) * 1000.0)
            print(f"{name}: {percentiles(samples)}")
    finally:
        serve.shutdown()
        ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=512, help="fraud micro-batch rows")
    parser.add_argument("--items", type=int, default=100_000, help="catalog size")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--handle", action="store_true", help="also time handle calls")
    args = parser.parse_args(argv)
    asyncio.run(replica_work(args))
    if args.handle:
        asyncio.run(handle_calls(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
