"""Tiny real artifacts for the serving unit tests (no Ray, no Redis).

``artifacts`` (session): a models directory with two synthetic fraud models (the older scores
``sigmoid(amount - 5)``, the newer ``sigmoid(amount - 3)``) and one recommender over 50 items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.synthetic import save_fraud_model, save_recommender_model


@dataclass(frozen=True)
class Artifacts:
    models_dir: Path
    fraud_old: Path
    fraud_new: Path
    recommender: Path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    models_dir = tmp_path_factory.mktemp("models")
    old = save_fraud_model(models_dir, bias=-5.0, now=datetime(2025, 1, 1, tzinfo=UTC))
    new = save_fraud_model(models_dir, bias=-3.0, now=datetime(2025, 1, 2, tzinfo=UTC))
    rec = save_recommender_model(models_dir, n_items=50, dim=8)
    return Artifacts(models_dir, old, new, rec)
