"""What every model replica sets up: its settings, device, torch threads and the torch thread.

Torch work never runs on the replica's event loop: each model replica owns one worker thread
(``TorchWorker``) that runs the forward passes one after another, with torch's intra-op threads
set to ``torch_threads``. The loop stays free to accept requests, fill the next batch and
answer health checks while a batch computes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

from models.device import configure_threads, pick_device
from rtml.settings import Settings, load_settings
from serving.config import AppArgs

T = TypeVar("T")


def replica_settings(args: AppArgs) -> Settings:
    """The process's settings (env, TOML, defaults), with the app's explicit overrides."""
    overrides: dict[str, Any] = {}
    if args.redis_url is not None:
        overrides["redis_url"] = args.redis_url
    return load_settings(**overrides)


def models_dir_of(args: AppArgs, settings: Settings) -> Path:
    return args.models_dir if args.models_dir is not None else settings.rtml_state_dir / "models"


def replica_device(device: str, gpu_ids: list[Any] | None = None) -> torch.device:
    """CUDA when this replica was given a GPU (or ``device`` is "cuda"), else the CPU.

    A replica scheduled without GPUs stays on the CPU even on a GPU node: the GPU belongs to
    the replicas that reserved it.
    """
    if device == "cpu":
        return torch.device("cpu")
    if gpu_ids is None:
        import ray

        gpu_ids = list(ray.get_gpu_ids()) if ray.is_initialized() else []
    if device == "cuda" or gpu_ids:
        return pick_device("cuda")
    return torch.device("cpu")


class TorchWorker:
    """One thread for a replica's torch work, with ``threads`` intra-op threads."""

    def __init__(self, name: str, threads: int) -> None:
        configure_threads(threads)
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=name,
            initializer=torch.set_num_threads,
            initargs=(threads,),
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
