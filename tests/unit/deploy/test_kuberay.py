"""The KubeRay manifests: the RayService's Serve config is the generated cluster config, its
worker groups advertise the resources rtml places actors by, and the consumer manifests point at
the right head service, consumer group and topic."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from consumers.pipelines import GROUP_IDS
from rtml.settings import Settings
from serving.config import CLUSTER_MODELS_DIR, cluster_serve_config
from serving.deploy import validate_config

ROOT = Path(__file__).resolve().parents[3]
KUBERAY = ROOT / "deploy" / "kuberay"


def documents(name: str) -> dict[str, dict]:
    """The manifests of a file by ``Kind/name``."""
    docs = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def rayservice() -> dict:
    return documents("rayservice.yaml")["RayService/rtml"]


def start_resources(group: dict) -> dict[str, float]:
    """KubeRay's rayStartParams.resources: a quoted JSON object."""
    text = group["rayStartParams"].get("resources")
    return json.loads(json.loads(text)) if text else {}


def test_serve_config_is_the_generated_cluster_config() -> None:
    service = rayservice()
    assert service["apiVersion"] == "ray.io/v1"
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve == cluster_serve_config(), (
        "serveConfigV2 differs from `python -m serving.config --cluster`; paste it in again"
    )
    validate_config(serve)


def test_worker_groups_carry_the_placement_resources() -> None:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["rayVersion"] == "2.60.0"
    head = cluster["headGroupSpec"]
    assert start_resources(head) == {}
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    consumers, models = groups["cpu-consumers"], groups["gpu-models"]
    assert start_resources(consumers)["consumer"] > 0
    assert start_resources(models)["model"] > 0 and models["rayStartParams"]["num-gpus"] == "1"
    for group in (consumers, models):
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu_limits = models["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == "1"
    # Pods that build or run the model deployments see the models volume.
    for spec in (head["template"]["spec"], models["template"]["spec"]):
        mounts = spec["containers"][0]["volumeMounts"]
        assert any(m["mountPath"] == CLUSTER_MODELS_DIR for m in mounts)


def test_consumer_driver_joins_the_rayservice_head_and_requires_consumer_nodes() -> None:
    docs = documents("consumers.yaml")
    settings = docs["ConfigMap/rtml-settings"]["data"]
    assert settings["RTML_PLACEMENT__REQUIRE_CONSUMER_RESOURCE"] == "true"
    # Every key is a real setting (a typo would be silently ignored by pydantic-settings).
    fields = {name.upper() for name in Settings.model_fields}
    for key in settings:
        assert key.split("__")[0] in fields, key
    driver = docs["Deployment/rtml-consumers"]["spec"]
    assert driver["replicas"] == 1
    container = driver["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["rtml", "consume"] and "--autoscale" in container["command"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RAY_ADDRESS"] == f"ray://{rayservice()['metadata']['name']}-head-svc:10001"
    assert docs["Job/rtml-topics"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "rtml",
        "infra",
        "up",
    ]


def test_keda_scales_the_fraud_group_on_its_lag_within_its_partitions() -> None:
    docs = documents("keda-consumers.yaml")
    scaled = docs["ScaledObject/rtml-fraud-consumers"]["spec"]
    assert scaled["scaleTargetRef"]["name"] in {
        d["metadata"]["name"] for k, d in docs.items() if k.startswith("Deployment/")
    }
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == GROUP_IDS["fraud"]
    assert trigger["metadata"]["topic"] == Settings().rtml_topics.transactions.name
    partitions = int(
        documents("consumers.yaml")["ConfigMap/rtml-settings"]["data"][
            "RTML_TOPICS__TRANSACTIONS__PARTITIONS"
        ]
    )
    assert scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= partitions
    assert f"TriggerAuthentication/{trigger['authenticationRef']['name']}" in docs
