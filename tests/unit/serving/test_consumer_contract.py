"""The handle API is a contract with consumers.scoring: its response feeds score_outputs."""

from __future__ import annotations

import numpy as np

from consumers.scoring import PendingScore, encode_rows, features_json, score_outputs
from contracts.events import AlertReason, Transaction
from features.definitions import FRAUD_FEATURE_NAMES
from serving.protocol import FraudScoreRequest, FraudScoreResponse


def test_consumer_rows_and_our_response_fit_together() -> None:
    tx = Transaction(
        event_id="e1",
        card_id="c1",
        user_id="u1",
        merchant_id="m",
        merchant_category="food",
        amount=10.0,
        currency="EUR",
        lat=0.0,
        lon=0.0,
        event_time=1,
        channel="pos",
    )
    row = tuple(None if i == 10 else float(i) for i in range(len(FRAUD_FEATURE_NAMES)))
    features = features_json(row)
    pending = [PendingScore(0, tx, row, 1, features), PendingScore(1, tx, row, 1, features)]
    request = FraudScoreRequest(encode_rows(pending), 0.8)  # what the consumer sends
    assert request.rows.shape == (2, len(FRAUD_FEATURE_NAMES))
    reason = AlertReason("amount", 10.0, 1.5)
    response = FraudScoreResponse("fraud-v1", np.array([0.1, 0.9]), {1: [reason]})
    outputs = score_outputs(
        pending,
        response,
        threshold=0.8,
        scores_topic="fraud-scores",
        alerts_topic="fraud-alerts",
        scored_at=2,
    )
    assert [r.topic for r in outputs[0]] == ["fraud-scores"]
    assert [r.topic for r in outputs[1]] == ["fraud-scores", "fraud-alerts"]
    assert b'"model_version":"fraud-v1"' in outputs[1][1].value
    assert b'"feature":"amount"' in outputs[1][1].value
