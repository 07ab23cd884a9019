"""Synthetic model artifacts for serving's tests, load test and benchmarks (not for production).

Real artifacts in the real format (``models.artifacts.save_fraud`` / ``save_recommender``),
built in milliseconds without training:

- the fraud model is a logistic regression on the raw amount, ``score = sigmoid(amount_weight *
  amount + bias)``, so a test can put rows above or below a threshold by choosing the amount,
  and two artifacts with different ``bias`` score differently;
- the recommender is an untrained two-tower model (seeded random weights) over a catalog of
  ``n_items`` items named ``item-000000``... in ``n_categories`` categories.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from features.definitions import FRAUD
from models.artifacts import save_fraud, save_recommender
from models.fraud import FeatureNorm, FraudClassifier, FraudConfig, fit_normalization
from models.two_tower import LoadedRecommender, TwoTower, TwoTowerConfig, Vocabulary


def fraud_model(*, amount_weight: float = 1.0, bias: float = -5.0) -> FraudClassifier:
    """``sigmoid(amount_weight * amount + bias)``: every other feature has weight 0."""
    norms = [FeatureNorm(f.name, "identity", 0.0, 1.0, f.nullable) for f in FRAUD.features]
    config = FraudConfig(
        n_features=len(norms),
        n_nullable=sum(n.nullable for n in norms),
        hidden=(),
        dropout=0.0,
        clip=1e9,  # no clipping: the score is the plain logistic of the amount
    )
    model = FraudClassifier(config, norms)
    linear = model.mlp[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0, FRAUD.names.index("amount")] = amount_weight
        linear.bias.fill_(bias)
    return model.eval()


def fraud_rows(n: int, *, seed: int = 0) -> np.ndarray:
    """float32 [n, F] feature rows with heavy tails and ~30% nulls in the nullable features."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 1.0, size=(n, len(FRAUD.names))).astype(np.float32)
    for j, spec in enumerate(FRAUD.features):
        if spec.nullable:
            x[rng.random(n) < 0.3, j] = np.nan
    return x


def mlp_fraud_model(*, seed: int = 0) -> FraudClassifier:
    """An untrained fraud model of the production shape (``FraudConfig()``: MLP 64-32, missing
    indicators, normalization fitted on ``fraud_rows``): for latency measurements."""
    torch.manual_seed(seed)
    nullable = [f.nullable for f in FRAUD.features]
    norms = fit_normalization(fraud_rows(4096, seed=seed), FRAUD.names, nullable)
    return FraudClassifier(FraudConfig(), norms).eval()


def save_fraud_model(
    models_dir: Path,
    *,
    amount_weight: float = 1.0,
    bias: float = -5.0,
    now: datetime | None = None,
    model: FraudClassifier | None = None,
) -> Path:
    """Write a synthetic fraud artifact under ``models_dir/fraud/`` (the logistic model, or
    ``model``); returns its directory."""
    return save_fraud(
        model or fraud_model(amount_weight=amount_weight, bias=bias),
        models_dir,
        training_data={"source": "serving.synthetic"},
        metrics={},
        reference={},
        report={"synthetic": True},
        now=now,
    )


def catalog(n_items: int, n_categories: int = 20) -> Vocabulary:
    items = tuple(f"item-{k:06d}" for k in range(n_items))
    categories = tuple(f"cat-{c:03d}" for c in range(n_categories))
    return Vocabulary(items, categories, tuple(k % n_categories + 1 for k in range(n_items)))


def recommender(
    n_items: int, *, n_categories: int = 20, dim: int = 64, seed: int = 0
) -> tuple[TwoTower, Vocabulary]:
    vocab = catalog(n_items, n_categories)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = TwoTowerConfig(n_items=n_items, n_categories=n_categories, dim=dim, hidden=2 * dim)
    popularity = torch.randn(n_items, generator=generator)
    model = TwoTower(config, torch.tensor(vocab.item_category), popularity)
    return model.eval(), vocab


def save_recommender_model(
    models_dir: Path,
    *,
    n_items: int = 200,
    n_categories: int = 20,
    dim: int = 16,
    seed: int = 0,
    now: datetime | None = None,
) -> Path:
    """Write a synthetic recommender artifact under ``models_dir/recsys/``."""
    model, vocab = recommender(n_items, n_categories=n_categories, dim=dim, seed=seed)
    return save_recommender(
        model,
        vocab,
        models_dir,
        training_data={"source": "serving.synthetic"},
        metrics={},
        reference={},
        report={"synthetic": True},
        now=now,
    )


def loaded_recommender(
    n_items: int, *, dim: int = 64, device: str | torch.device = "cpu", seed: int = 0
) -> LoadedRecommender:
    """A recommender as serving holds it, without an artifact on disk (for benchmarks)."""
    model, vocab = recommender(n_items, dim=dim, seed=seed)
    target = torch.device(device)
    with torch.inference_mode():
        table = model.item_vectors().float()
    return LoadedRecommender(
        model.to(target), table.to(target).contiguous(), vocab, "synthetic", target, {}
    )
