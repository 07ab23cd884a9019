"""The application builder: ``serve run serving.app:build_app`` or ``serve_config.yaml``.

``build_app(AppArgs)`` resolves what every replica must agree on before any starts: the models
directory and the model versions ("latest" becomes the version it means now, so replicas
added later by autoscaling load the same one), and the GPU share per replica. Then it binds
``FraudScorer`` and ``Recommender`` (each with ``user_config = {"model": <version>}``, the hot
reload knob) and the HTTP ``Ingress`` that holds their handles.
"""

# No `from __future__ import annotations` here: Serve reads build_app's parameter annotation
# at runtime to validate the YAML's `args` into AppArgs.

from typing import Any

from ray import serve

from serving.config import AppArgs, parse_args, resolve_num_gpus
from serving.deployments import FraudScorer, Recommender
from serving.ingress import Ingress
from serving.models import pin_version
from serving.replica import models_dir_of, replica_settings


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0


def actor_options(num_cpus: float, num_gpus: float) -> dict[str, Any]:
    return {"num_cpus": num_cpus, "num_gpus": num_gpus}


def build_app(args: AppArgs) -> serve.Application:
    """The rtml Serve application from its typed arguments (a dict is validated too)."""
    args = parse_args(args)
    settings = replica_settings(args)
    models_dir = models_dir_of(args, settings)
    args = args.model_copy(update={"models_dir": models_dir})
    gpus = _cluster_gpus()
    fraud = FraudScorer.options(
        ray_actor_options=actor_options(
            args.fraud.num_cpus, resolve_num_gpus(args, args.fraud.num_gpus, gpus)
        ),
        user_config={"model": pin_version(models_dir, "fraud", args.fraud.model)},
    ).bind(args)
    recommender = Recommender.options(
        ray_actor_options=actor_options(
            args.recommender.num_cpus, resolve_num_gpus(args, args.recommender.num_gpus, gpus)
        ),
        user_config={"model": pin_version(models_dir, "recsys", args.recommender.model)},
    ).bind(args)
    return Ingress.options(ray_actor_options={"num_cpus": args.http.num_cpus}).bind(
        args, fraud, recommender
    )
