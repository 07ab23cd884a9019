"""Choosing artifacts and swapping models atomically (ModelSlot), without Serve."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from features.definitions import FRAUD_FEATURE_NAMES
from models.artifacts import load_fraud
from models.errors import ArtifactError
from models.fraud import LoadedFraudModel
from serving.models import ModelSlot, pin_version, resolve_artifact

if TYPE_CHECKING:
    from tests.unit.serving.conftest import Artifacts


def test_resolve_latest_version_or_path(artifacts: Artifacts) -> None:
    root = artifacts.models_dir
    assert resolve_artifact(root, "fraud", "latest") == artifacts.fraud_new
    assert resolve_artifact(root, "fraud", artifacts.fraud_old.name) == artifacts.fraud_old
    assert resolve_artifact(root, "recsys", str(artifacts.recommender)) == artifacts.recommender
    assert pin_version(root, "fraud", "latest") == artifacts.fraud_new.name
    assert pin_version(root, "fraud", "fraud-x") == "fraud-x"  # only "latest" is pinned


def test_an_unknown_version_lists_the_newest_ones(artifacts: Artifacts) -> None:
    with pytest.raises(ArtifactError, match="no fraud model version 'fraud-nope'") as info:
        resolve_artifact(artifacts.models_dir, "fraud", "fraud-nope")
    assert f"newest: {artifacts.fraud_new.name}, {artifacts.fraud_old.name}" in str(info.value)
    with pytest.raises(ArtifactError, match="no such artifact directory"):
        resolve_artifact(artifacts.models_dir, "fraud", "/nowhere/fraud-1")


def slot(artifacts: Artifacts, load: object = None) -> ModelSlot[LoadedFraudModel]:
    return ModelSlot(
        "fraud",
        artifacts.models_dir,
        load or (lambda path: load_fraud(path, "cpu")),  # type: ignore[arg-type]
        lambda model: model.version,
    )


def amount_rows(*amounts: float) -> np.ndarray:
    rows = np.full((len(amounts), len(FRAUD_FEATURE_NAMES)), np.nan, dtype=np.float32)
    rows[:, 0] = amounts
    return rows


async def test_reload_swaps_and_old_references_keep_working(artifacts: Artifacts) -> None:
    models = slot(artifacts)
    assert await models.reload(artifacts.fraud_old.name)
    before = models.current
    assert before is not None and before.version == artifacts.fraud_old.name
    assert await models.reload("latest")
    after = models.current
    assert after is not None and after.version == artifacts.fraud_new.name
    # A batch that started before the swap still holds (and can use) the old model.
    assert before.model.predict(amount_rows(5.0))[0] == pytest.approx(0.5)
    assert after.model.predict(amount_rows(5.0))[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert models.requested == "latest"


async def test_reloading_the_same_artifact_loads_nothing(artifacts: Artifacts) -> None:
    loads: list[Path] = []

    def load(path: Path) -> LoadedFraudModel:
        loads.append(path)
        return load_fraud(path, "cpu")

    models = slot(artifacts, load)
    await models.reload("latest")
    await models.reload(artifacts.fraud_new.name)
    assert loads == [artifacts.fraud_new]


async def test_a_failed_reload_keeps_the_old_model(artifacts: Artifacts) -> None:
    models = slot(artifacts)
    await models.reload(artifacts.fraud_old.name)
    assert not await models.reload("fraud-nope")
    assert models.current is not None and models.current.version == artifacts.fraud_old.name
    assert models.last_error is not None and "fraud-nope" in models.last_error
    assert await models.reload("latest")
    assert models.last_error is None


async def test_without_a_model_a_failed_load_is_raised(artifacts: Artifacts) -> None:
    models = slot(artifacts)
    with pytest.raises(ArtifactError, match="fraud-nope"):
        await models.reload("fraud-nope")
    assert models.current is None


async def test_loading_runs_off_the_event_loop(artifacts: Artifacts) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    release = threading.Event()

    def load(path: Path) -> LoadedFraudModel:
        seen.append(threading.get_ident())
        release.wait(5.0)
        return load_fraud(path, "cpu")

    models = slot(artifacts, load)
    reload = asyncio.create_task(models.reload("latest"))
    await asyncio.sleep(0.05)
    assert not reload.done()  # still loading, and the loop is free meanwhile
    release.set()
    assert await asyncio.wait_for(reload, 10.0)
    assert seen and seen[0] != loop_thread
