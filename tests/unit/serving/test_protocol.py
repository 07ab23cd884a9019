"""The handle API's structures: validation at construction, pickling, row helpers."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from contracts.events import AlertReason, ScoredItem
from features.definitions import FRAUD_FEATURE_NAMES, RECOMMENDATION_FEATURE_NAMES
from serving.protocol import (
    N_FRAUD_FEATURES,
    FraudScoreRequest,
    FraudScoreResponse,
    RecommendRequest,
    RecommendResponse,
    fraud_row_array,
    recommendation_row,
)

F = N_FRAUD_FEATURES


def test_fraud_request_round_trips_through_pickle() -> None:
    rows = np.arange(3 * F, dtype=np.float32).reshape(3, F)
    rows[1, 10] = np.nan
    request = pickle.loads(pickle.dumps(FraudScoreRequest(rows, 0.8)))
    assert request.explain_threshold == 0.8
    np.testing.assert_array_equal(request.rows, rows)  # NaN == NaN for assert_array_equal
    assert len(request) == 3


def test_fraud_request_takes_the_consumers_positional_form() -> None:
    # consumers.scoring calls FraudScoreRequest(rows, explain_threshold) positionally.
    request = FraudScoreRequest(np.zeros((2, F), dtype=np.float32), None)
    assert request.explain_threshold is None


def test_fraud_request_converts_other_float_dtypes() -> None:
    request = FraudScoreRequest(np.ones((2, F), dtype=np.float64))
    assert request.rows.dtype == np.float32


@pytest.mark.parametrize(
    ("rows", "threshold", "error", "match"),
    [
        (
            np.zeros((2, F - 1), np.float32),
            None,
            ValueError,
            rf"shape \[B, {F}\].*got \[2, {F - 1}\]",
        ),
        (np.zeros(F, np.float32), None, ValueError, "shape"),
        (np.zeros((2, F), np.int64), None, TypeError, "float32"),
        ([[0.0] * F], None, TypeError, "numpy array"),
        (np.zeros((1, F), np.float32), 1.5, ValueError, r"explain_threshold .* \[0, 1\]"),
        (np.zeros((1, F), np.float32), "0.5", ValueError, "explain_threshold"),
    ],
)
def test_fraud_request_refuses_what_the_model_cannot_take(
    rows: object, threshold: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        FraudScoreRequest(rows, threshold)  # type: ignore[arg-type]


def test_fraud_response_round_trips_through_pickle() -> None:
    reason = AlertReason("amount", 900.0, 2.5)
    response = FraudScoreResponse("fraud-v1", np.array([0.1, 0.95]), {1: [reason]})
    back = pickle.loads(pickle.dumps(response))
    assert back.model_version == "fraud-v1"
    assert back.scores.tolist() == [0.1, 0.95]
    assert back.reasons == {1: [reason]}
    assert len(back) == 2


def user_row(purchased: list[str] | None = None) -> tuple:
    return ({"books": 1.0}, 3, 1, ["i1"], purchased or [])


def test_recommend_request_excludes_purchases_by_default() -> None:
    request = RecommendRequest([user_row(["i7"]), user_row()], k=5)
    assert request.exclusions() == [["i7"], []]
    explicit = RecommendRequest([user_row(["i7"])], k=5, exclude=[{"i9"}])
    assert explicit.exclusions() == [{"i9"}]
    back = pickle.loads(pickle.dumps(request))
    assert back == request


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rows": [user_row()], "k": 0}, "k must be a positive integer"),
        ({"rows": [user_row()], "k": True}, "k must be a positive integer"),
        ({"rows": [({}, 1, 1)], "k": 3}, r"rows\[0\] has 3 values, expected 5"),
        ({"rows": [user_row()], "k": 3, "exclude": []}, "exclude has 0 entries for 1 rows"),
    ],
)
def test_recommend_request_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecommendRequest(**kwargs)


def test_recommend_response_pickles() -> None:
    response = RecommendResponse("recsys-v1", [[ScoredItem("i1", 0.5)]])
    assert pickle.loads(pickle.dumps(response)) == response


def test_row_helpers_follow_the_feature_definitions() -> None:
    stored = {name: float(i) for i, name in enumerate(FRAUD_FEATURE_NAMES)}
    stored["seconds_since_last_transaction"] = None
    row = fraud_row_array(stored)
    assert row.dtype == np.float32 and row.shape == (F,)
    j = FRAUD_FEATURE_NAMES.index("seconds_since_last_transaction")
    assert math.isnan(row[j])
    assert row[0] == 0.0 and row[-1] == F - 1
    features = dict(zip(RECOMMENDATION_FEATURE_NAMES, "abcde", strict=True))
    assert recommendation_row(features) == tuple("abcde")
    with pytest.raises(KeyError, match="purchased_items"):
        recommendation_row({k: v for k, v in features.items() if k != "purchased_items"})
