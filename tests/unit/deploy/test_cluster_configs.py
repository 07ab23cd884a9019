"""The Ray cluster launcher configs pass Ray's own schema validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["cluster.yaml", "deploy/cluster-onprem.yaml"])
def test_cluster_config_is_valid_for_ray(name: str) -> None:
    config = yaml.safe_load((ROOT / name).read_text())
    prepared = prepare_config(config)  # what `ray up` does: fill defaults, then validate
    validate_config(prepared)
    assert prepared["cluster_name"].startswith("rtml")
    assert any("pip install" in cmd for cmd in prepared["setup_commands"])


def test_cloud_config_has_cpu_and_gpu_worker_types() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = config["available_node_types"]
    assert types["cpu_worker"]["resources"]["consumer"] > 0
    assert types["gpu_worker"]["resources"]["GPU"] == 1
    assert config["head_node_type"] in types
