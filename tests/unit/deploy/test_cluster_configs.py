"""The Ray cluster launcher configs pass Ray's own schema validation, place rtml's actors by
custom resource, install rtml and launch the pipeline; their settings file loads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from rtml.settings import load_settings
from serving.config import AUTO_GPU_FRACTION, CLUSTER_APP_ARGS, CLUSTER_MODELS_DIR

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ["cluster.yaml", "deploy/cluster-onprem.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_config_is_valid_for_ray(name: str) -> None:
    prepared = prepare_config(load(name))  # what `ray up` does: fill defaults, then validate
    validate_config(prepared)
    assert prepared["cluster_name"].startswith("rtml")
    assert any("pip install" in cmd and "-e ." in cmd for cmd in prepared["setup_commands"])
    assert any(
        "RTML_CONFIG=$HOME/rtml/deploy/rtml-cluster.toml" in c for c in prepared["setup_commands"]
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_head_start_commands_launch_the_pipeline(name: str) -> None:
    commands = load(name)["head_start_ray_commands"]
    ray_start = next(i for i, c in enumerate(commands) if "ray start --head" in c)
    launch = [c for c in commands[ray_start + 1 :] if "scripts/cluster-start.sh" in c]
    assert len(launch) == 1, "the pipeline starts after Ray, once"
    assert launch[0].startswith("nohup ") and launch[0].rstrip().endswith("&"), (
        "in the background: `ray up` must not wait on it"
    )
    script = ROOT / "scripts" / "cluster-start.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)  # parses
    text = script.read_text()
    assert "serve --detach" in text and "consume --pipelines" in text and "--autoscale" in text


def test_cloud_config_places_consumers_on_cpu_and_replicas_on_gpu_workers() -> None:
    config = load("cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]["resources"]
    assert "consumer" not in head and "model" not in head and "GPU" not in head
    cpu, gpu = types["cpu_worker"]["resources"], types["gpu_worker"]["resources"]
    assert cpu["consumer"] > 0 and "GPU" not in cpu and "model" not in cpu
    assert gpu["GPU"] == 1 and "consumer" not in gpu
    # As many `model` units as GPU shares: the GPU bounds the replicas, not the resource.
    assert gpu["model"] * CLUSTER_APP_ARGS.model_resource_per_replica == 1 / AUTO_GPU_FRACTION
    assert CLUSTER_APP_ARGS.model_resource == "model"
    # The Serve config it deploys reads the models where the file mount puts them.
    launch = next(c for c in config["head_start_ray_commands"] if "cluster-start.sh" in c)
    assert "deploy/serve_config.cluster.yaml" in launch
    assert any(CLUSTER_MODELS_DIR in c for c in config["setup_commands"])


def test_onprem_workers_advertise_the_consumer_resource() -> None:
    commands = load("deploy/cluster-onprem.yaml")["worker_start_ray_commands"]
    assert any("--resources='{\"consumer\": 8}'" in c for c in commands)


def test_cluster_settings_file_loads_and_requires_the_consumer_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTML_CONFIG", str(ROOT / "deploy" / "rtml-cluster.toml"))
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-environment")
    settings = load_settings()
    assert settings.rtml_placement.require_consumer_resource
    assert settings.rtml_placement.consumer_resource == "consumer"
    assert not settings.kafka_is_managed and not settings.redis_is_managed
    assert settings.rtml_autoscale.min_actors <= settings.rtml_topics.transactions.partitions
