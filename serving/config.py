"""The Serve application's configuration: typed builder arguments and per-deployment options.

Two layers, as Ray Serve intends them:

- ``AppArgs``: what the app is built from (``args:`` in ``serve_config.yaml``, validated by the
  builder ``serving.app:build_app``): where the models are and which ones to load, devices and
  resources, batching, the online store, HTTP limits. Changing them rebuilds the app (a rolling
  replacement of the replicas).
- ``DEPLOYMENT_OPTIONS``: each deployment's scaling knobs (``deployments:`` in the YAML, and the
  defaults in code): ``max_ongoing_requests``, ``autoscaling_config``, shutdown and health
  checks. Changing them, or a deployment's ``user_config`` (the model version: hot reload),
  updates running replicas in place.

``serve_config.yaml`` at the repository root is generated from these defaults::

    python -m serving.config > serve_config.yaml

and a unit test fails when the committed file differs from what this module renders.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.errors import ServingConfigError

APP_NAME = "rtml"  # the default of settings.rtml_serve_app, which the consumers look up
IMPORT_PATH = "serving.app:build_app"
FRAUD_SCORER = "FraudScorer"
RECOMMENDER = "Recommender"
INGRESS = "Ingress"
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
HTTP_TIMEOUT_S = 30.0
# num_gpus "auto": this share of a GPU per model replica when the cluster has GPUs. The models
# are small (KBs to tens of MB), so eight replicas share one device.
AUTO_GPU_FRACTION = 0.125

# Bursty streams: scale up a few seconds after load goes over target, scale down only after
# two quiet minutes (a consumer catching up after a lag spike keeps its replicas).
# metrics_interval_s: how often handles and replicas push load to the controller. Serve 2.60
# marks the field deprecated (in favour of RAY_SERVE_*_AUTOSCALING_METRIC_PUSH_INTERVAL_S
# variables that nothing reads yet) but it is the knob that works; its default, 10 s, would
# delay every upscale by up to 10 s. look_back_period_s must stay above it.
# upscaling_factor > 1 overshoots a burst's step (the load keeps growing while new replicas
# start); downscaling_factor < 1 gives back half the surplus per step, never all at once.
# Consumer autoscaling (consumers/autoscaler.py) feeds this loop: each consumer actor keeps one
# scoring call in flight, so more consumer actors under lag mean more ongoing requests here.
DEPLOYMENT_OPTIONS: dict[str, dict[str, Any]] = {
    FRAUD_SCORER: {
        # A consumer keeps one call in flight per poll batch; replicas coalesce what arrives.
        "max_ongoing_requests": 64,
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 4,
            "upscale_delay_s": 3.0,
            "downscale_delay_s": 120.0,
            "look_back_period_s": 10.0,
            "metrics_interval_s": 2.0,
            "upscaling_factor": 1.5,
            "downscaling_factor": 0.5,
        },
        "graceful_shutdown_wait_loop_s": 1.0,
        "graceful_shutdown_timeout_s": 30.0,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
    },
    RECOMMENDER: {
        "max_ongoing_requests": 64,
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 8,
            "upscale_delay_s": 3.0,
            "downscale_delay_s": 120.0,
            "look_back_period_s": 10.0,
            "metrics_interval_s": 2.0,
            "upscaling_factor": 1.5,
            "downscaling_factor": 0.5,
        },
        "graceful_shutdown_wait_loop_s": 1.0,
        "graceful_shutdown_timeout_s": 30.0,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
    },
    INGRESS: {
        "max_ongoing_requests": 128,
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 16,
            "upscale_delay_s": 3.0,
            "downscale_delay_s": 120.0,
            "look_back_period_s": 10.0,
            "metrics_interval_s": 2.0,
            "upscaling_factor": 1.5,
            "downscaling_factor": 0.5,
        },
        "graceful_shutdown_wait_loop_s": 1.0,
        "graceful_shutdown_timeout_s": 30.0,
    },
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelDeploymentArgs(_Frozen):
    # The artifact: a version under models_dir/<kind>/, "latest" (resolved once when the app
    # is built, so every replica loads the same one) or an artifact directory.
    model: str = Field(default="latest", min_length=1)
    # Logical CPUs per replica: half a core, so that `serve run` on a 2-core machine fits the
    # whole app; a replica uses one core at most (torch_threads=1). Raise on dedicated nodes.
    num_cpus: float = Field(default=0.5, gt=0)
    # GPUs per replica, fractional allowed; "auto": AUTO_GPU_FRACTION when the cluster has GPUs.
    num_gpus: float | Literal["auto"] = "auto"
    # How long a request waits for others to share its forward pass.
    batch_wait_timeout_s: float = Field(default=0.001, ge=0.0, le=0.05)

    @field_validator("num_gpus")
    @classmethod
    def _check_gpus(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and value < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return value


class FraudScorerArgs(ModelDeploymentArgs):
    # Rows per forward pass. A request this large or larger is scored alone, at once.
    max_batch_rows: int = Field(default=4096, ge=1, le=65_536)
    # Features named per alert (AlertReason), largest contribution first.
    explain_top_k: int = Field(default=3, ge=1, le=17)


class RecommenderArgs(ModelDeploymentArgs):
    # Users per forward pass (a [users, catalog] score matrix).
    max_batch_users: int = Field(default=256, ge=1, le=4096)


class HttpArgs(_Frozen):
    num_cpus: float = Field(default=0.25, gt=0)
    # Request bodies above this are refused with 413 before they are read.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_transactions: int = Field(default=1000, ge=1, le=100_000)
    default_k: int = Field(default=20, ge=1)
    max_k: int = Field(default=200, ge=1, le=10_000)
    # Alerts (and reasons) at or above it; None: settings.rtml_fraud_alert_threshold.
    alert_threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_k(self) -> HttpArgs:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must be <= max_k ({self.max_k})")
        return self


class AppArgs(_Frozen):
    """The arguments of ``serving.app:build_app``. Unset connection values come from
    ``rtml.settings.load_settings()`` in each replica."""

    # None: <settings.rtml_state_dir>/models, where `rtml train` writes.
    models_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch intra-op threads per model replica (a replica owns num_cpus CPUs).
    torch_threads: int = Field(default=1, ge=1, le=64)
    # None: settings.redis_url.
    redis_url: str | None = None
    online_store_namespace: str = Field(default="rtml", min_length=1, pattern=r"^[^\s]+$")
    fraud: FraudScorerArgs = Field(default_factory=FraudScorerArgs)
    recommender: RecommenderArgs = Field(default_factory=RecommenderArgs)
    http: HttpArgs = Field(default_factory=HttpArgs)
    # Placement: a custom resource the model nodes advertise (cluster.yaml's gpu_worker:
    # ``resources: {model: 8}``, the KubeRay manifest's GPU group). Each model replica asks for
    # ``model_resource_per_replica`` of it, so replicas land on those nodes and their count per
    # node is bounded; requested only when the cluster has the resource (one machine: no), or
    # always with model_resource_required (an autoscaling cluster starts model nodes on demand).
    model_resource: str | None = Field(default="model", min_length=1)
    model_resource_per_replica: float = Field(default=1.0, gt=0)
    model_resource_required: bool = False
    # Load tests only: extra milliseconds each forward pass takes (simulates a heavy model).
    simulated_latency_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _check_placement(self) -> AppArgs:
        if self.model_resource_required and self.model_resource is None:
            raise ValueError("model_resource_required needs a model_resource name")
        return self

    @model_validator(mode="after")
    def _check_device(self) -> AppArgs:
        for name in ("fraud", "recommender"):
            gpus = getattr(self, name).num_gpus
            if self.device == "cpu" and gpus not in ("auto", 0, 0.0):
                raise ValueError(f"device is cpu but {name}.num_gpus is {gpus}")
            if self.device == "cuda" and gpus in (0, 0.0):
                raise ValueError(f"device is cuda but {name}.num_gpus is 0")
        return self


class ModelUserConfig(_Frozen):
    """A model deployment's ``user_config``: what ``reconfigure`` loads (hot reload)."""

    model: str = Field(min_length=1)


def parse_user_config(deployment: str, data: Any) -> ModelUserConfig:
    from pydantic import ValidationError

    try:
        return ModelUserConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'user_config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ServingConfigError(
            f"{deployment} user_config must be {{model: <version|latest|path>}}: {problems}"
        ) from exc


def parse_args(args: AppArgs | dict[str, Any] | None) -> AppArgs:
    """``AppArgs`` from a builder argument (Serve passes a model or the YAML's dict)."""
    if isinstance(args, AppArgs):
        return args
    from pydantic import ValidationError

    try:
        return AppArgs.model_validate(args or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ServingConfigError(f"invalid serve app args: {problems}") from exc


def resolve_num_gpus(args: AppArgs, requested: float | str, cluster_gpus: float) -> float:
    """GPUs per replica: an explicit number as is; "auto": a share when the cluster has GPUs
    and the device is not forced to the CPU."""
    if requested != "auto":
        gpus = float(requested)
    elif args.device == "cpu" or cluster_gpus <= 0:
        gpus = 0.0
    else:
        gpus = AUTO_GPU_FRACTION
    if args.device == "cuda" and gpus <= 0:
        raise ServingConfigError(
            "device is cuda but the Ray cluster has no GPU resources (set device: auto or cpu)"
        )
    return gpus


def model_actor_options(
    args: AppArgs, model: ModelDeploymentArgs, cluster_resources: dict[str, float]
) -> dict[str, Any]:
    """Ray actor options of a model replica: its CPU and GPU share, and the model-node
    resource where the cluster advertises it."""
    gpus = resolve_num_gpus(args, model.num_gpus, cluster_resources.get("GPU", 0.0))
    options: dict[str, Any] = {"num_cpus": model.num_cpus, "num_gpus": gpus}
    resource = args.model_resource
    present = resource is not None and cluster_resources.get(resource, 0.0) > 0
    if resource is not None and (present or args.model_resource_required):
        options["resources"] = {resource: args.model_resource_per_replica}
    return options


def deployment_options(name: str) -> dict[str, Any]:
    """A copy of ``DEPLOYMENT_OPTIONS[name]`` (the decorator defaults of that deployment)."""
    return copy.deepcopy(DEPLOYMENT_OPTIONS[name])


def serve_config(
    args: AppArgs | None = None,
    *,
    app_name: str = APP_NAME,
    host: str = DEFAULT_HTTP_HOST,
    port: int = DEFAULT_HTTP_PORT,
    deployments: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Serve config (the ``serve run`` / ``serve deploy`` schema) for this application.

    ``deployments``: per deployment, options that replace the defaults (e.g. a ``user_config``
    to hot-reload a model, or a test's autoscaling).
    """
    args = args or AppArgs()
    options = {name: deployment_options(name) for name in DEPLOYMENT_OPTIONS}
    for name, extra in (deployments or {}).items():
        if name not in options:
            raise ServingConfigError(f"unknown deployment {name!r}; expected {list(options)}")
        options[name] |= copy.deepcopy(extra)
    return {
        "proxy_location": "HeadOnly",
        # request_timeout_s: the proxy answers 408 rather than let a client wait forever.
        "http_options": {"host": host, "port": port, "request_timeout_s": HTTP_TIMEOUT_S},
        "applications": [
            {
                "name": app_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": args.model_dump(mode="json"),
                "deployments": [{"name": name, **opts} for name, opts in options.items()],
            }
        ],
    }


HEADER = """\
# The rtml Serve application: FraudScorer, Recommender and the HTTP Ingress.
#
# Generated from serving/config.py (AppArgs defaults, DEPLOYMENT_OPTIONS); regenerate with
#     python -m serving.config > serve_config.yaml
# tests/unit/serving/test_config.py fails when this file and the code disagree.
#
# Run it:            serve run serve_config.yaml      (or: rtml serve)
# Hot-reload a model: add `user_config: {model: <version>}` to the FraudScorer or Recommender
# entry under `deployments` and `serve deploy serve_config.yaml` (or: rtml serve reload
# --fraud-model <version>); replicas load it and swap without dropping requests.
"""


# On a Ray cluster (cluster.yaml, deploy/kuberay/): the models on a path every node mounts,
# replicas on the GPU nodes (a GPU share and the model-node resource, both requested even
# before such a node exists, so that Ray's autoscaler starts one), HTTP on every interface.
CLUSTER_MODELS_DIR = "/mnt/rtml/models"
CLUSTER_APP_ARGS = AppArgs(
    models_dir=Path(CLUSTER_MODELS_DIR),
    fraud=FraudScorerArgs(num_cpus=1.0, num_gpus=AUTO_GPU_FRACTION),
    recommender=RecommenderArgs(num_cpus=1.0, num_gpus=AUTO_GPU_FRACTION),
    model_resource_required=True,
)
CLUSTER_HEADER = """\
# The rtml Serve application on a Ray cluster with GPU model nodes (cluster.yaml,
# deploy/kuberay/rayservice.yaml): models under /mnt/rtml/models on every node, FraudScorer and
# Recommender replicas on nodes with the `model` resource and a GPU share, HTTP on 0.0.0.0.
#
# Generated from serving/config.py (CLUSTER_APP_ARGS); regenerate with
#     python -m serving.config --cluster > deploy/serve_config.cluster.yaml
# tests/unit/serving/test_config.py fails when this file and the code disagree.
"""


def cluster_serve_config() -> dict[str, Any]:
    return serve_config(CLUSTER_APP_ARGS, host="0.0.0.0")


def render(config: dict[str, Any] | None = None, *, header: str = HEADER) -> str:
    """The YAML text of ``config`` (default: ``serve_config()``), with the header."""
    body = yaml.safe_dump(config or serve_config(), sort_keys=False, width=100)
    return header + "\n" + body


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--cluster"]:
        sys.stdout.write(render(cluster_serve_config(), header=CLUSTER_HEADER))
    elif not argv:
        sys.stdout.write(render())
    else:
        sys.stderr.write("usage: python -m serving.config [--cluster]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
