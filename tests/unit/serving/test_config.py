"""The app's configuration: serve_config.yaml in sync with the code, typed args, the builder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from ray.serve.config import AutoscalingConfig

from models.errors import ArtifactError
from serving.config import (
    AUTO_GPU_FRACTION,
    CLUSTER_HEADER,
    DEPLOYMENT_OPTIONS,
    FRAUD_SCORER,
    INGRESS,
    RECOMMENDER,
    AppArgs,
    cluster_serve_config,
    model_actor_options,
    parse_args,
    parse_user_config,
    render,
    resolve_num_gpus,
    serve_config,
)
from serving.deploy import validate_config, with_models
from serving.errors import ServingConfigError

if TYPE_CHECKING:
    from tests.unit.serving.conftest import Artifacts

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "serve_config.yaml"


def test_committed_serve_config_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text() == render(), (
        "serve_config.yaml is out of sync with serving/config.py; regenerate it with "
        "`python -m serving.config > serve_config.yaml`"
    )


def test_committed_cluster_serve_config_is_what_the_code_generates() -> None:
    committed = ROOT / "deploy" / "serve_config.cluster.yaml"
    assert committed.read_text() == render(cluster_serve_config(), header=CLUSTER_HEADER), (
        "deploy/serve_config.cluster.yaml is out of sync with serving/config.py; regenerate it "
        "with `python -m serving.config --cluster > deploy/serve_config.cluster.yaml`"
    )
    schema = validate_config(yaml.safe_load(committed.read_text()))
    (app,) = schema.applications
    args = AppArgs.model_validate(app.args)
    assert args.model_resource_required and args.fraud.num_gpus == AUTO_GPU_FRACTION
    # Even before a GPU node exists: the request is what makes Ray's autoscaler start one.
    assert model_actor_options(args, args.fraud, {"CPU": 8.0}) == {
        "num_cpus": 1.0,
        "num_gpus": AUTO_GPU_FRACTION,
        "resources": {"model": 1.0},
    }


def test_committed_serve_config_is_a_valid_serve_config_for_the_builder() -> None:
    config = yaml.safe_load(COMMITTED.read_text())
    schema = validate_config(config)
    (app,) = schema.applications
    assert app.import_path == "serving.app:build_app"
    assert AppArgs.model_validate(app.args) == AppArgs()
    assert {d.name for d in app.deployments} == {FRAUD_SCORER, RECOMMENDER, INGRESS}


@pytest.mark.parametrize("name", [FRAUD_SCORER, RECOMMENDER, INGRESS])
def test_autoscaling_is_fast_up_slow_down(name: str) -> None:
    options = DEPLOYMENT_OPTIONS[name]
    autoscaling = AutoscalingConfig(**options["autoscaling_config"])
    assert 1 <= autoscaling.min_replicas < autoscaling.max_replicas
    assert autoscaling.upscale_delay_s <= 5.0
    assert autoscaling.downscale_delay_s >= 60.0
    # Serve averages load over look_back_period_s; it must span more than one metrics push.
    assert autoscaling.look_back_period_s > autoscaling.metrics_interval_s
    # Bursts: overshoot the step up, give back only part of the surplus per step down.
    assert autoscaling.get_upscaling_factor() > 1 > autoscaling.get_downscaling_factor()
    assert options["max_ongoing_requests"] > autoscaling.target_ongoing_requests


def test_decorators_carry_the_same_defaults_as_the_yaml() -> None:
    from serving.deployments import FraudScorer, Recommender
    from serving.ingress import Ingress

    for deployment in (FraudScorer, Recommender, Ingress):
        options = DEPLOYMENT_OPTIONS[deployment.name]
        config = deployment._deployment_config
        assert config.max_ongoing_requests == options["max_ongoing_requests"]
        wanted = AutoscalingConfig(**options["autoscaling_config"])
        assert config.autoscaling_config == wanted


def test_serve_config_overrides_deployments_without_touching_the_defaults() -> None:
    config = serve_config(
        port=9123,
        app_name="x",
        deployments={FRAUD_SCORER: {"user_config": {"model": "fraud-v2"}}},
    )
    fraud = config["applications"][0]["deployments"][0]
    assert fraud["user_config"] == {"model": "fraud-v2"}
    assert "user_config" not in DEPLOYMENT_OPTIONS[FRAUD_SCORER]
    assert config["http_options"]["port"] == 9123
    with pytest.raises(ServingConfigError, match="unknown deployment 'Nope'"):
        serve_config(deployments={"Nope": {}})


def test_with_models_changes_only_user_config() -> None:
    config = serve_config(AppArgs(online_store_namespace="ns"))
    updated = with_models(config, "rtml", recommender="recsys-v9")
    deployments = {d["name"]: d for d in updated["applications"][0]["deployments"]}
    assert deployments[RECOMMENDER]["user_config"] == {"model": "recsys-v9"}
    assert "user_config" not in deployments[FRAUD_SCORER]
    # Same args, hence the same code version: Serve reconfigures instead of restarting.
    assert updated["applications"][0]["args"] == config["applications"][0]["args"]
    assert "user_config" not in config["applications"][0]["deployments"][1]  # not mutated
    with pytest.raises(ServingConfigError, match="no application 'other'"):
        with_models(config, "other", fraud="x")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"redis_url": "http://x"}, "redis_url: Value error, 'http://x' must start with redis://"),
        ({"http": {"default_k": 50, "max_k": 10}}, r"default_k \(50\) must be <= max_k \(10\)"),
        ({"device": "cpu", "fraud": {"num_gpus": 0.5}}, "device is cpu but fraud.num_gpus"),
        ({"device": "cuda", "recommender": {"num_gpus": 0}}, "recommender.num_gpus is 0"),
        ({"fraud": {"batch_wait_timeout_s": 1.0}}, "fraud.batch_wait_timeout_s"),
        ({"fraud": {"num_gpus": -1}}, "fraud.num_gpus"),
        ({"frued": {}}, "frued: Extra inputs are not permitted"),
        ({"http": {"max_body_bytes": 10}}, "http.max_body_bytes"),
        ({"model_resource": None, "model_resource_required": True}, "needs a model_resource"),
    ],
)
def test_bad_args_name_the_field(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ServingConfigError, match=match):
        parse_args(args)


def test_args_come_as_a_model_or_a_dict() -> None:
    args = AppArgs(fraud={"model": "fraud-v1", "num_gpus": 0.25})
    assert parse_args(args) is args
    assert parse_args(args.model_dump(mode="json")) == args
    assert parse_args(None) == AppArgs()


def test_gpus_auto_takes_a_share_only_where_there_are_gpus() -> None:
    auto = AppArgs()
    assert resolve_num_gpus(auto, "auto", cluster_gpus=0) == 0.0
    assert resolve_num_gpus(auto, "auto", cluster_gpus=2) == AUTO_GPU_FRACTION
    assert resolve_num_gpus(auto, 0.5, cluster_gpus=0) == 0.5
    assert resolve_num_gpus(AppArgs(device="cpu"), "auto", cluster_gpus=4) == 0.0
    with pytest.raises(ServingConfigError, match="no GPU resources"):
        resolve_num_gpus(AppArgs(device="cuda"), "auto", cluster_gpus=0)


def test_model_replicas_go_to_model_nodes_only_where_the_cluster_has_them() -> None:
    args = AppArgs()
    cluster = {"CPU": 40.0, "GPU": 2.0, "model": 16.0, "consumer": 32.0}
    assert model_actor_options(args, args.fraud, cluster) == {
        "num_cpus": 0.5,
        "num_gpus": AUTO_GPU_FRACTION,
        "resources": {"model": 1.0},
    }
    laptop = {"CPU": 8.0}
    assert model_actor_options(args, args.recommender, laptop) == {"num_cpus": 0.5, "num_gpus": 0.0}
    unplaced = AppArgs(model_resource=None, device="cpu")
    assert model_actor_options(unplaced, unplaced.fraud, cluster) == {
        "num_cpus": 0.5,
        "num_gpus": 0.0,
    }


def test_user_config_names_a_model() -> None:
    assert parse_user_config(FRAUD_SCORER, {"model": "latest"}).model == "latest"
    with pytest.raises(ServingConfigError, match="FraudScorer user_config must be"):
        parse_user_config(FRAUD_SCORER, {"modle": "x"})
    with pytest.raises(ServingConfigError, match="model"):
        parse_user_config(FRAUD_SCORER, None)


def test_builder_pins_latest_and_sets_resources(artifacts: Artifacts) -> None:
    from ray.serve._private.build_app import build_app as serve_build

    from serving.app import build_app

    app = build_app(AppArgs(models_dir=artifacts.models_dir, fraud={"num_cpus": 0.75}))
    built = {d.name: d for d in serve_build(app, name="rtml").deployments}
    # "latest" is pinned at build time: replicas autoscaling adds later load the same model.
    assert built[FRAUD_SCORER].user_config == {"model": artifacts.fraud_new.name}
    assert built[RECOMMENDER].user_config == {"model": artifacts.recommender.name}
    assert built[FRAUD_SCORER].ray_actor_options == {"num_cpus": 0.75, "num_gpus": 0.0}
    assert built[INGRESS].ray_actor_options == {"num_cpus": 0.25}
    # Replicas get the resolved models directory, so they agree with the builder.
    (args,) = built[FRAUD_SCORER].init_args
    assert args.models_dir == artifacts.models_dir


def test_builder_fails_fast_without_models(tmp_path: Path) -> None:
    from serving.app import build_app

    with pytest.raises(ArtifactError, match="no fraud model found; train one"):
        build_app({"models_dir": str(tmp_path)})
