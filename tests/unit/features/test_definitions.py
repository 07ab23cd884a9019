"""The feature schema: one ordered definition that the engines' rows follow."""

from __future__ import annotations

import pytest

from contracts.events import Transaction, UserEvent
from features.aggregates import GlobalViews
from features.definitions import (
    FRAUD,
    FRAUD_CARD,
    FRAUD_FEATURE_NAMES,
    RECOMMENDATION,
    FeatureGroup,
    FeatureSpec,
)
from features.fraud import FraudFeatureEngine
from features.recommendations import RecommendationFeatureEngine

PYTHON_TYPES = {"int": int, "float": float, "list[str]": list, "dict[str,float]": dict}


def test_groups_are_ordered_unique_and_documented() -> None:
    assert FRAUD_FEATURE_NAMES[:4] == (
        "amount",
        "transaction_count_1m",
        "transaction_count_5m",
        "transaction_count_1h",
    )
    for group in (FRAUD, RECOMMENDATION):
        assert len(set(group.names)) == len(group.names)
        assert all(f.description and f.dtype in PYTHON_TYPES for f in group.features)
    with pytest.raises(ValueError, match="duplicate"):
        FeatureGroup("g", "k", (FeatureSpec("a", "int", False, "x"),) * 2)
    with pytest.raises(ValueError, match=f"row has 1 values, expected {len(FRAUD_FEATURE_NAMES)}"):
        FRAUD.as_dict((1.0,))


def test_engine_rows_follow_the_declared_types_and_nullability() -> None:
    fraud = FraudFeatureEngine()
    fraud.assign(0)
    tx = Transaction(
        event_id="e",
        card_id="c",
        user_id="u",
        merchant_id="m",
        merchant_category="x",
        amount=3.5,
        currency="EUR",
        lat=1.0,
        lon=2.0,
        event_time=1_700_000_000_000,
        channel="online",
    )
    first = fraud.process(0, tx)
    second = fraud.process(0, tx)
    for row in (first, second):
        assert row is not None
        for spec, value in zip(FRAUD_CARD.features, row, strict=True):
            if value is None:
                assert spec.nullable, spec.name
            else:
                assert type(value) is PYTHON_TYPES[spec.dtype], spec.name
    recs = RecommendationFeatureEngine()
    recs.assign(0)
    ev = UserEvent(
        event_id="v", user_id="u", item_id="i", category="c", event_type="view", event_time=0
    )
    row = recs.process(0, ev, GlobalViews())
    assert row is not None
    for spec, value in zip(RECOMMENDATION.features, row, strict=True):
        assert type(value) is PYTHON_TYPES[spec.dtype], spec.name
