"""Small untrained models to save and load (weights are random but seeded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from features.definitions import FRAUD
from models.artifacts import Reference
from models.fraud import FraudClassifier, FraudConfig, fit_normalization
from models.two_tower import TwoTower, TwoTowerConfig, Vocabulary


@pytest.fixture
def fraud_rows() -> np.ndarray:
    """[64, F] raw rows with some nulls in the nullable features."""
    rng = np.random.default_rng(1)
    x = rng.lognormal(1.0, 1.0, size=(64, len(FRAUD.names))).astype(np.float32)
    for j, spec in enumerate(FRAUD.features):
        if spec.nullable:
            x[rng.random(64) < 0.3, j] = np.nan
    return x


@pytest.fixture
def fraud_model(fraud_rows: np.ndarray) -> FraudClassifier:
    torch.manual_seed(0)
    nullable = [f.nullable for f in FRAUD.features]
    norms = fit_normalization(fraud_rows, FRAUD.names, nullable)
    model = FraudClassifier(FraudConfig(hidden=(16, 8)), norms)
    model.set_calibration(0.7, -2.0)
    return model.eval()


@pytest.fixture
def fraud_reference(fraud_rows: np.ndarray) -> dict[str, Reference]:
    ref = {name: Reference.fit(fraud_rows[:, j]) for j, name in enumerate(FRAUD.names)}
    ref["score"] = Reference.fit(np.linspace(0, 1, 64))
    return ref


@pytest.fixture
def vocab() -> Vocabulary:
    items = tuple(f"i{k:02d}" for k in range(12))
    return Vocabulary(items, ("books", "games", "music"), tuple(k % 3 + 1 for k in range(12)))


@pytest.fixture
def recommender(vocab: Vocabulary) -> TwoTower:
    torch.manual_seed(0)
    config = TwoTowerConfig(n_items=12, n_categories=3, dim=8, hidden=16)
    popularity = torch.linspace(-1, 1, 12)
    model = TwoTower(config, torch.tensor(vocab.item_category), popularity)
    return model.eval()


def _user_row(
    interest: dict[str, float] | None = None,
    recent: list[str] | None = None,
    purchased: list[str] | None = None,
    views: int = 3,
    clicks: int = 1,
) -> tuple:
    return (interest or {"books": 1.0}, views, clicks, recent or ["i00", "i03"], purchased or [])


@pytest.fixture
def user_row():  # type: ignore[no-untyped-def]
    """Build a recommendation row: ``user_row(interest, recent, purchased, views, clicks)``."""
    return _user_row
