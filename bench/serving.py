"""The rtml Serve application in the bench's Ray, deployed once per bench run.

Scenarios that score with the model (the naive per-event pipeline, the end-to-end pipeline)
share one deployment::

    app = await bench_app(ctx)                  # deploys on first use, cached in ctx.shared
    handle = app.fraud_handle()                 # DeploymentHandle of its FraudScorer
    settings = app.configure(workload.settings) # rtml_serve_app = app.name (the pipelines' client)

The app is the real one (``serving.app:build_app`` from a Serve config, as ``rtml serve``
deploys it) with synthetic artifacts in the real format (``serving.synthetic``), written to a
directory under the bench's state dir. The fraud model has the production shape
(``mlp_fraud_model``: MLP 64-32, missing indicators), untrained: it costs what the trained model
costs; its scores mean nothing. Every deployment has exactly ``replicas`` replicas (no
autoscaling: a replica that appears mid-run would change what a round measures). The HTTP proxy
listens on a free port.

``bench_app`` registers its shutdown with ``ctx.on_close``: at the end of the run the app goes
with the bench's own Ray (``ray.shutdown()``), or is deleted on a shared one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import pids_titled
from bench.scenario import BenchContext
from rtml.settings import Settings

log = logging.getLogger(__name__)

SHARED_KEY = "serve_app"
DEPLOY_TIMEOUT_S = 240.0  # the first deploy on a loaded 2-core machine starts Serve's controller


@dataclass(frozen=True)
class BenchApp:
    """A deployed rtml Serve app: its name (``rtml_serve_app``) and the models it serves."""

    name: str
    models_dir: Path
    fraud_version: str
    recommender_version: str
    http_url: str  # Serve's HTTP proxy
    # The Ingress replicas' own HTTP servers (Serve's direct ingress, on in throughput mode).
    direct_urls: tuple[str, ...] = ()

    def fraud_handle(self) -> Any:
        """The FraudScorer's DeploymentHandle (``await h.score.remote(FraudScoreRequest)``)."""
        from ray import serve

        from serving.config import FRAUD_SCORER

        return serve.get_deployment_handle(FRAUD_SCORER, self.name)

    def recommender_handle(self) -> Any:
        from ray import serve

        from serving.config import RECOMMENDER

        return serve.get_deployment_handle(RECOMMENDER, self.name)

    def replica_pids(self, deployment: str) -> list[int]:
        """The processes of ``deployment``'s replicas on this machine (for ``CpuMeter``)."""
        return pids_titled(f"ray::ServeReplica:{self.name}:{deployment}")

    def configure(self, settings: Settings) -> Settings:
        """``settings`` whose pipelines score with this app (``ServeFraudScorer``)."""
        return settings.model_copy(update={"rtml_serve_app": self.name, "rtml_fraud_scoring": True})


async def bench_app(ctx: BenchContext, *, replicas: int = 1) -> BenchApp:
    """The run's Serve app: deployed on the first call (Ray must be up: ``needs_ray``); later
    calls return the same app whatever ``replicas`` they pass."""
    app = ctx.shared.get(SHARED_KEY)
    if app is None:
        ctx.say(f"deploying the rtml Serve app (synthetic models, {replicas} replica each)")
        app = await asyncio.to_thread(
            deploy_app, ctx.stack.settings, ctx.stack.state_dir, replicas=replicas
        )
        ctx.shared[SHARED_KEY] = app
        ctx.on_close(lambda: asyncio.to_thread(shutdown_app, app, own_ray=ctx.stack.ray_started))
        ctx.results.workloads["serve_app"] = {
            "app": app.name,
            "fraud_model": app.fraud_version,
            "fraud_model_shape": "production MLP (untrained, serving.synthetic.mlp_fraud_model)",
            "recommender_model": app.recommender_version,
            "replicas": replicas,
        }
        ctx.say(f"Serve app {app.name} running (fraud model {app.fraud_version})")
    assert isinstance(app, BenchApp)
    return app


def deploy_app(
    settings: Settings,
    state_dir: Path,
    *,
    replicas: int = 1,
    name: str | None = None,
    timeout_s: float = DEPLOY_TIMEOUT_S,
) -> BenchApp:
    """Write synthetic artifacts under ``state_dir`` and deploy the app; blocks until it runs.

    Synchronous (Serve's deploy API is); call it in a thread from async code.
    """
    from serving.config import FRAUD_SCORER, INGRESS, RECOMMENDER, AppArgs, serve_config
    from serving.deploy import deploy, direct_ingress_urls, serve_url
    from serving.synthetic import mlp_fraud_model, save_fraud_model, save_recommender_model

    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    name = name or f"bench-{uuid.uuid4().hex[:6]}"
    models = state_dir / "serve-models" / name
    models.mkdir(parents=True, exist_ok=True)
    fraud = save_fraud_model(models, model=mlp_fraud_model())
    recommender = save_recommender_model(models, n_items=1_000, dim=32)
    fixed = {"autoscaling_config": {"min_replicas": replicas, "max_replicas": replicas}}
    args = AppArgs(
        models_dir=models,
        device="cpu",
        redis_url=settings.redis_url,
        online_store_namespace="rtml",  # the consumers' default namespace
    )
    config = serve_config(
        args,
        app_name=name,
        port=_free_port(),
        deployments={FRAUD_SCORER: fixed, RECOMMENDER: fixed, INGRESS: fixed},
    )
    deploy(config, timeout_s=timeout_s)
    direct = tuple(direct_ingress_urls(name))
    return BenchApp(name, models, fraud.name, recommender.name, serve_url(), direct)


def shutdown_app(app: BenchApp, *, own_ray: bool) -> None:
    """Delete the app on a shared Ray (other Serve apps may be running there). On the bench's
    own Ray (``own_ray``) there is nothing to do: the run ends with ``ray.shutdown()``, which
    stops the app with every other actor, while ``serve.delete`` waits ~30 s for the Ingress
    replica (Serve's direct ingress drains for ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``,
    docs/serving.md)."""
    if own_ray:
        return
    from ray import serve

    serve.delete(app.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
