"""Where the models run: CUDA when there is one, else the CPU; and how many CPU threads torch uses.

Thread policy. The models are small (about 4 thousand parameters for fraud, a few hundred
thousand for the recommender), so intra-op parallelism barely pays off, and on a busy machine it
costs a lot (threads spin waiting for each other): measured on 2 shared cores, one fraud training
epoch took 0.8 s on 1 thread and 11 s on 2; the recommender trained in 57 s on 1 thread and 115 s
on 2, with bitwise identical results.

- serving: one thread per process (``configure_threads(1)``). A Ray Serve replica owns one CPU;
  a 512-row fraud micro-batch takes under a millisecond.
- training: 1 thread by default (``rtml train --threads N`` to change it);
  ``configure_threads(None)`` means one per CPU this process may use, at most 8.

``torch.set_num_interop_threads`` may only be called before torch's first parallel work, so it is
attempted once and otherwise left alone.
"""

from __future__ import annotations

import contextlib
import os

import torch

from rtml.errors import ConfigError

MAX_TRAINING_THREADS = 8
_interop_set = False


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else CPU. ``"cpu"``, ``"cuda"``, ``"cuda:1"``: that.

    Asking for CUDA on a machine without it is a ``ConfigError``, not a silent CPU fallback.
    """
    if requested is None or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"unknown torch device {requested!r}; expected auto, cpu or cuda[:N]"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported torch device {requested!r}; expected auto, cpu or cuda[:N]")
    return device


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads (``None``: ``min(available CPUs, 8)``); returns the count."""
    global _interop_set
    if num_threads is None:
        num_threads = min(available_cpus(), MAX_TRAINING_THREADS)
    if num_threads < 1:
        raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    if not _interop_set:
        _interop_set = True
        # RuntimeError: torch already ran parallel work in this process; keep its setting.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(max(1, min(num_threads, 4)))
    return num_threads


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA). numpy randomness is passed explicitly as ``Generator``s.

    On the CPU the training loops are bitwise reproducible with a seed. On CUDA cuDNN is put in
    deterministic mode; embedding backward passes (scatter-adds) may still differ in the last bits.
    """
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
