"""Starting Ray from settings: what the local instance is given."""

from __future__ import annotations

import os
from typing import Any

import pytest
import ray

from rtml.ray_runtime import init_ray
from rtml.settings import Settings


@pytest.fixture
def ray_init(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("C", (), {"gcs_address": "x"}))
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED", raising=False)
    return seen


def test_a_local_instance_gets_the_cpu_budget(ray_init: dict[str, Any]) -> None:
    init_ray(Settings(ray_num_cpus=3))
    assert ray_init["address"] == "local" and ray_init["num_cpus"] == 3


def test_serve_throughput_mode_reaches_the_processes_ray_starts(
    ray_init: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    init_ray(Settings(ray_serve_throughput_optimized=False))
    assert os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED")  # the setting's own variable
    init_ray(Settings())  # on by default
    assert os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED")
    init_ray(Settings(ray_address="ray://cluster:10001", ray_serve_throughput_optimized=True))
    assert "RAY_SERVE_THROUGHPUT_OPTIMIZED" not in os.environ  # a cluster has its own
