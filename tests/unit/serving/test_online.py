"""Features for HTTP requests: stored rows, request-only features, unreadable rows."""

from __future__ import annotations

import math

import msgspec
import pytest

from contracts.events import Transaction, UserProfile
from features.definitions import FRAUD_FEATURE_NAMES, RECOMMENDATION_FEATURE_NAMES
from serving.online import (
    RecommendationFeatures,
    StoredFeatures,
    assemble_fraud,
    decode_profile,
    decode_stored,
    request_features,
)
from store.online import Row

T = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def tx(event_id: str, card: str, amount: float, *, user: str = "u1", t: int = T) -> Transaction:
    return Transaction(
        event_id=event_id,
        card_id=card,
        user_id=user,
        merchant_id="m1",
        merchant_category="food",
        amount=amount,
        currency="EUR",
        lat=48.85,
        lon=2.35,
        event_time=t,
        channel="online",
    )


def stored_row(event_id: str, amount: float) -> StoredFeatures:
    features: dict = dict.fromkeys(FRAUD_FEATURE_NAMES, 2.0)
    features["amount"] = amount
    features["distance_from_home_km"] = None
    return StoredFeatures(event_id, T - 5_000, features)


def test_request_features_treat_each_transaction_as_its_cards_first() -> None:
    profile = UserProfile("u1", 48.85, 2.45, 400, "gold", T - 10)
    rows = request_features(
        [tx("e1", "c1", 40.0), tx("e2", "c1", 60.0, t=T + 1_000)], {"u1": profile}
    )
    first = dict(zip(FRAUD_FEATURE_NAMES, rows[0], strict=True))
    second = dict(zip(FRAUD_FEATURE_NAMES, rows[1], strict=True))
    assert first["amount"] == 40.0 and second["amount"] == 60.0
    # Nothing of the other transaction of the same card is seen.
    assert second["transaction_count_1h"] == 1 and second["total_amount_1h"] == 60.0
    assert first["unique_merchants_24h"] == 1 and first["is_new_merchant_24h"] == 1
    assert first["seconds_since_last_transaction"] is None
    assert first["amount_to_mean_24h"] is None
    assert first["hour_of_day_utc"] == 22 and first["is_online"] == 1
    assert first["account_age_days"] == 400.0
    assert first["distance_from_home_km"] == pytest.approx(7.3, abs=0.1)  # 0.1 deg of lon
    (alone,) = request_features([tx("e3", "c9", 5.0)], {})
    without = dict(zip(FRAUD_FEATURE_NAMES, alone, strict=True))
    assert without["distance_from_home_km"] is None and without["account_age_days"] is None


def test_assemble_uses_stored_rows_where_present_and_says_so() -> None:
    transactions = [tx("e1", "c-stored", 900.0), tx("e2", "c-new", 12.5)]
    features = assemble_fraud(transactions, {"c-stored": stored_row("e0", 777.0)}, {})
    assert features.sources == ["online_store", "request"]
    assert features.event_ids == ["e0", "e2"]
    assert features.event_times == [T - 5_000, T]
    assert features.rows.shape == (2, len(FRAUD_FEATURE_NAMES))
    assert features.as_dict(0)["amount"] == 777.0  # the stored row's, as documented
    assert features.as_dict(0)["distance_from_home_km"] is None
    assert features.as_dict(1)["amount"] == 12.5
    assert features.as_dict(1)["transaction_count_1m"] == 1.0
    assert math.isnan(features.rows[1, FRAUD_FEATURE_NAMES.index("distance_from_home_km")])


def test_a_stored_row_that_does_not_fit_the_definitions_is_recomputed() -> None:
    broken = StoredFeatures("e0", T, {"amount": 1.0})  # an older feature set, say
    features = assemble_fraud([tx("e1", "c1", 3.0)], {"c1": broken}, {})
    assert features.sources == ["request"]
    assert features.as_dict(0)["amount"] == 3.0


def test_unreadable_payloads_are_treated_as_absent() -> None:
    assert decode_stored(None) is None
    assert decode_stored(Row(b"not json", T, T)) is None
    assert decode_stored(Row(b'{"event_id": "e", "event_time": 1}', T, T)) is None
    good = msgspec.json.encode(
        {"event_id": "e", "card_id": "c", "event_time": 5, "features": {}, "computed_at": 6}
    )
    assert decode_stored(Row(good, 5, 6)) == StoredFeatures("e", 5, {})
    assert decode_profile(Row(b'{"user_id": "u"}', T, T)) is None


def test_typed_recommendation_features_follow_the_definitions() -> None:
    assert RecommendationFeatures.__struct_fields__ == RECOMMENDATION_FEATURE_NAMES
