"""The fraud classifier: normalization, missing values, encoding, predictions, explanations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from features.definitions import FRAUD
from models.fraud import (
    FeatureNorm,
    FraudClassifier,
    FraudConfig,
    LoadedFraudModel,
    encode_rows,
    fit_normalization,
)

NAMES = FRAUD.names
NULLABLE = [f.nullable for f in FRAUD.features]
F = len(NAMES)


def typical_row(**values: float | None) -> tuple[float | int | None, ...]:
    base = dict.fromkeys(NAMES, 1.0)
    base.update(values)
    return tuple(base[n] for n in NAMES)


def unit_norms() -> tuple[FeatureNorm, ...]:
    """Identity transform, mean 0, std 1: normalized value == raw value."""
    return tuple(
        FeatureNorm(n, "identity", 0.0, 1.0, nullable)
        for n, nullable in zip(NAMES, NULLABLE, strict=True)
    )


def linear_model(
    weights: dict[str, float], indicator_weights: dict[str, float] | None = None
) -> FraudClassifier:
    """A logistic regression (no hidden layer) with chosen weights; other weights are 0."""
    config = FraudConfig(n_features=F, n_nullable=sum(NULLABLE), hidden=(), dropout=0.0)
    model = FraudClassifier(config, unit_norms())
    linear = model.mlp[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        for name, w in weights.items():
            linear.weight[0, NAMES.index(name)] = w
        nullable_names = [n for n, nb in zip(NAMES, NULLABLE, strict=True) if nb]
        for name, w in (indicator_weights or {}).items():
            linear.weight[0, F + nullable_names.index(name)] = w
    return model.eval()


def test_transforms_are_log1p_for_heavy_tails_and_identity_for_flags() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(2.0, 1.0, size=(500, F)).astype(np.float32)
    x[:100, NAMES.index("distance_from_home_km")] = np.nan
    norms = {n.name: n for n in fit_normalization(x, NAMES, NULLABLE)}
    assert norms["amount"].transform == "log1p"
    assert norms["transaction_count_1h"].transform == "log1p"
    assert norms["is_online"].transform == "identity"
    assert norms["hour_of_day_utc"].transform == "identity"
    amount = np.log1p(x[:, NAMES.index("amount")].astype(np.float64))
    assert norms["amount"].mean == pytest.approx(amount.mean(), rel=1e-6)
    assert norms["amount"].std == pytest.approx(amount.std(), rel=1e-6)
    # Stats of a nullable feature ignore its nulls.
    dist = np.log1p(x[100:, NAMES.index("distance_from_home_km")].astype(np.float64))
    assert norms["distance_from_home_km"].mean == pytest.approx(dist.mean(), rel=1e-6)
    assert norms["distance_from_home_km"].nullable


def test_null_becomes_zero_with_its_indicator_set() -> None:
    norms = tuple(
        FeatureNorm(n, "log1p" if n == "amount" else "identity", 0.5, 2.0, nb)
        for n, nb in zip(NAMES, NULLABLE, strict=True)
    )
    model = FraudClassifier(FraudConfig(), norms)
    x = torch.from_numpy(
        encode_rows([typical_row(amount=math.e - 1, distance_from_home_km=None)], F)
    )
    inputs = model.inputs(x)[0]  # [F + N]
    assert inputs.shape == (F + sum(NULLABLE),)
    assert inputs[NAMES.index("amount")] == pytest.approx((1.0 - 0.5) / 2.0)  # log1p(e - 1) = 1
    assert inputs[NAMES.index("distance_from_home_km")] == 0.0
    nullable_names = [n for n, nb in zip(NAMES, NULLABLE, strict=True) if nb]
    indicators = inputs[F:].tolist()
    assert indicators[nullable_names.index("distance_from_home_km")] == 1.0
    assert sum(indicators) == 1.0


def test_extreme_values_are_clipped() -> None:
    model = FraudClassifier(FraudConfig(clip=8.0), unit_norms())
    x = torch.from_numpy(encode_rows([typical_row(amount=1e12)], F))
    assert model.inputs(x)[0, NAMES.index("amount")] == 8.0


def test_encode_rows_checks_the_width() -> None:
    with pytest.raises(ValueError, match=f"{F} values"):
        encode_rows([(1.0, 2.0)], F)
    assert encode_rows([], F).shape == (0, F)


def test_predict_is_a_calibrated_probability() -> None:
    model = linear_model({"amount": 1.0})
    model.set_calibration(2.0, -1.0)
    loaded = LoadedFraudModel(model, "v", torch.device("cpu"), {})
    p = loaded.predict([typical_row(amount=0.0), typical_row(amount=1.0)])
    assert p.dtype == np.float64
    expected = 1 / (1 + np.exp(-(2.0 * np.array([0.0, 1.0]) - 1.0)))
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert loaded.predict([]).shape == (0,)


def test_explain_names_the_features_that_drove_the_score() -> None:
    model = linear_model(
        {"amount": 2.0, "transaction_count_5m": 0.5, "is_online": -3.0},
        indicator_weights={"distance_from_home_km": 1.5},
    )
    loaded = LoadedFraudModel(model, "v", torch.device("cpu"), {})
    row = typical_row(
        amount=3.0, transaction_count_5m=4.0, is_online=1.0, distance_from_home_km=None
    )
    (reasons,) = loaded.explain([row], top_k=5)
    # Linear model: contribution = weight * normalized input; negative ones are no reasons.
    assert [(r.feature, r.value) for r in reasons] == [
        ("amount", 3.0),
        ("transaction_count_5m", 4.0),
        ("distance_from_home_km", None),
    ]
    assert [r.contribution for r in reasons] == pytest.approx([6.0, 2.0, 1.5])
    (top1,) = loaded.explain([row], top_k=1)
    assert [r.feature for r in top1] == ["amount"]
    assert loaded.explain([typical_row(amount=-1.0, transaction_count_5m=0.0)]) == [[]]


def test_explain_on_an_mlp_is_cheap_and_consistent_with_the_score() -> None:
    torch.manual_seed(0)
    model = FraudClassifier(FraudConfig(), unit_norms()).eval()
    loaded = LoadedFraudModel(model, "v", torch.device("cpu"), {})
    rows = [typical_row(amount=float(a)) for a in range(10)]
    reasons = loaded.explain(rows, top_k=3)
    assert len(reasons) == 10
    for row_reasons in reasons:
        contributions = [r.contribution for r in row_reasons]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)
