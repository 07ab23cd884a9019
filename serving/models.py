"""Which artifact a deployment serves, loading it off the event loop, and swapping it atomically.

A ``ModelSlot`` holds the model a replica scores with. ``reload(ref)`` loads the new artifact
in a worker thread (the replica keeps answering meanwhile), then replaces the reference in one
assignment. A batch reads the reference once when it starts, so requests in flight finish on
the model they started with; every response names the version that produced it.

If a reload fails, the old model keeps serving and the error is reported (``last_error``,
``GET /v1/models``, the ``rtml_serve_model_reloads{outcome="failed"}`` counter): a typo in a
config must not take fraud scoring down. A replica that has no model yet fails instead, so a
bad first deploy is loud.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from models.artifacts import latest, list_models
from models.errors import ArtifactError
from rtml.errors import ConfigError

log = logging.getLogger(__name__)

Kind = Literal["fraud", "recsys"]
M = TypeVar("M")


def resolve_artifact(models_dir: Path, kind: Kind, ref: str) -> Path:
    """The artifact directory ``ref`` names: "latest", a version under ``models_dir/<kind>``,
    or a path to an artifact directory."""
    if ref == "latest":
        return latest(models_dir, kind)
    if "/" in ref or ref.startswith("."):
        path = Path(ref).expanduser()
        if not path.is_dir():
            raise ArtifactError(path, "no such artifact directory")
        return path
    path = Path(models_dir) / kind / ref
    if not path.is_dir():
        known = [s.version for s in list_models(models_dir, kind)][-5:]
        hint = f"; newest: {', '.join(reversed(known))}" if known else ""
        raise ArtifactError(path, f"no {kind} model version {ref!r} under {models_dir}{hint}")
    return path


def pin_version(models_dir: Path, kind: Kind, ref: str) -> str:
    """``ref`` with "latest" replaced by the version it means now, so that every replica of a
    deployment (including the ones autoscaling adds later) loads the same artifact."""
    return resolve_artifact(models_dir, kind, ref).name if ref == "latest" else ref


@dataclass(frozen=True, slots=True)
class Loaded(Generic[M]):
    """A model and where it came from."""

    model: M
    version: str
    path: Path
    loaded_at_ms: int


class ModelSlot(Generic[M]):
    """The current model of one replica, replaced atomically by ``reload``."""

    def __init__(
        self,
        kind: Kind,
        models_dir: Path,
        load: Callable[[Path], M],
        version_of: Callable[[M], str],
    ) -> None:
        self.kind = kind
        self.models_dir = models_dir
        self._load = load
        self._version_of = version_of
        self._lock = asyncio.Lock()  # one reload at a time; scoring never takes it
        self.current: Loaded[M] | None = None
        self.requested: str = ""
        self.last_error: str | None = None

    async def reload(self, ref: str) -> bool:
        """Load ``ref`` and make it current; False (old model kept) when that fails and a model
        is already loaded. Without a model, the failure is raised (``ConfigError``)."""
        async with self._lock:
            self.requested = ref
            try:
                path = resolve_artifact(self.models_dir, self.kind, ref)
                current = self.current
                if current is not None and path.resolve() == current.path.resolve():
                    self.last_error = None
                    return True
                model = await asyncio.to_thread(self._load, path)
            except ConfigError as exc:
                if self.current is None:
                    raise
                self.last_error = str(exc)
                log.error(
                    "%s reload to %r failed, still serving %s: %s",
                    self.kind,
                    ref,
                    self.current.version,
                    exc,
                )
                return False
            # The swap: one reference assignment. Batches already running hold the old model.
            self.current = Loaded(model, self._version_of(model), path, time.time_ns() // 10**6)
            self.last_error = None
            return True
