"""fraud-alerts carries model alerts and pattern alerts; both decode, old records too."""

from __future__ import annotations

import msgspec
import pytest

from contracts.events import AlertReason, FraudAlert, PatternAlert, decode_fraud_alert


def test_pattern_and_score_alerts_are_told_apart() -> None:
    pattern = PatternAlert(
        rule="card_testing",
        rules_version=1,
        event_id="e4",
        card_id="c1",
        event_ids=["e1", "e2", "e3", "e4"],
        matches=1,
        event_time=10,
        ingested_at=11,
        detected_at=12,
    )
    score = FraudAlert(
        event_id="e4",
        card_id="c1",
        score=0.9,
        model_version="m",
        features={"amount": 1.0},
        event_time=10,
        ingested_at=11,
        scored_at=12,
        threshold=0.8,
        reasons=[AlertReason("amount", 1.0, 0.5)],
    )
    assert decode_fraud_alert(msgspec.json.encode(pattern)) == pattern
    assert decode_fraud_alert(msgspec.json.encode(score)) == score
    assert b'"alert_type":"pattern"' in msgspec.json.encode(pattern)
    assert b'"alert_type":"score"' in msgspec.json.encode(score)


def test_a_score_alert_from_before_alert_type_still_decodes() -> None:
    old = msgspec.json.encode(
        {
            "event_id": "e",
            "card_id": "c",
            "score": 0.9,
            "model_version": "m",
            "features": {},
            "event_time": 1,
            "ingested_at": 1,
            "scored_at": 2,
            "threshold": 0.8,
            "reasons": [],
            "schema_version": 1,
        }
    )
    alert = decode_fraud_alert(old)
    assert isinstance(alert, FraudAlert) and alert.alert_type == "score"
    with pytest.raises(msgspec.ValidationError):
        decode_fraud_alert(b'{"alert_type": "pattern", "rule": "x"}')
