"""The application builder: ``serve run serving.app:build_app`` or ``serve_config.yaml``.

``build_app(AppArgs)`` resolves what every replica must agree on before any starts: the models
directory and the model versions ("latest" becomes the version it means now, so replicas
added later by autoscaling load the same one), and the GPU share per replica. Then it binds
``FraudScorer`` and ``Recommender`` (each with ``user_config = {"model": <version>}``, the hot
reload knob; placed on model nodes where the cluster has them) and the HTTP ``Ingress``
that holds their handles.
"""

# No `from __future__ import annotations` here: Serve reads build_app's parameter annotation
# at runtime to validate the YAML's `args` into AppArgs.

from ray import serve

from serving.config import AppArgs, model_actor_options, parse_args
from serving.deployments import FraudScorer, Recommender
from serving.ingress import Ingress
from serving.models import pin_version
from serving.replica import models_dir_of, replica_settings


def _cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources()) if ray.is_initialized() else {}


def build_app(args: AppArgs) -> serve.Application:
    """The rtml Serve application from its typed arguments (a dict is validated too)."""
    args = parse_args(args)
    settings = replica_settings(args)
    models_dir = models_dir_of(args, settings)
    args = args.model_copy(update={"models_dir": models_dir})
    resources = _cluster_resources()
    fraud = FraudScorer.options(
        ray_actor_options=model_actor_options(args, args.fraud, resources),
        user_config={"model": pin_version(models_dir, "fraud", args.fraud.model)},
    ).bind(args)
    recommender = Recommender.options(
        ray_actor_options=model_actor_options(args, args.recommender, resources),
        user_config={"model": pin_version(models_dir, "recsys", args.recommender.model)},
    ).bind(args)
    return Ingress.options(ray_actor_options={"num_cpus": args.http.num_cpus}).bind(
        args, fraud, recommender
    )
