"""Device choice and the thread policy."""

from __future__ import annotations

import pytest
import torch

from models.device import configure_threads, pick_device
from rtml.errors import ConfigError


def test_auto_picks_cuda_only_when_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None).type == expected
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_missing_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        pick_device("cuda")


def test_unknown_devices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="expected auto, cpu or cuda"):
        pick_device("gpu0")
    with pytest.raises(ConfigError, match="unsupported torch device"):
        pick_device("meta")


def test_configure_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert 1 <= configure_threads(None) <= 8
        with pytest.raises(ConfigError, match="num_threads must be >= 1"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)
