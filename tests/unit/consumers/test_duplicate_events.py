"""Duplicate event ids, as defined in docs/operations.md: exactly once is per input record. Two
records carrying the same event are two inputs: each gets its own row, the second counting the
first in its windows, exactly as the offline replay computes them (so online and offline agree,
and a consumer of fraud-scores can deduplicate on event_id)."""

from __future__ import annotations

from consumers.pipelines.engine_partition import EnginePartition
from contracts.events import Transaction
from features.definitions import FRAUD_CARD
from features.fraud import FraudFeatureEngine
from features.replay import replay_fraud

T0 = 1_700_000_000_000


def tx(i: int, event_id: str | None = None) -> Transaction:
    return Transaction(
        event_id=event_id or f"e{i}",
        card_id="card-1",
        user_id="user-1",
        merchant_id=f"m{i % 3}",
        merchant_category="food",
        amount=10.0 + i,
        currency="EUR",
        lat=48.85,
        lon=2.35,
        event_time=T0 + i * 1_000,
        channel="pos",
    )


def test_the_same_event_twice_is_two_inputs_scored_as_the_replay_scores_them() -> None:
    events = [tx(0), tx(1), tx(2), tx(2, "e2")]  # e2 delivered twice by its producer
    engine = FraudFeatureEngine()
    EnginePartition(engine, 0)
    online = engine.process_batch(0, events, {}, now_ms=T0 + 10_000).rows
    # The card engine's features (the pattern features come from the pattern engine).
    offline = [
        {name: row.features[name] for name in FRAUD_CARD.names}
        for row in replay_fraud(events, partitions=1)
    ]

    rows = [dict(zip(FRAUD_CARD.names, row, strict=True)) for row in online if row]
    assert rows == offline
    first, second = rows[2], rows[3]
    assert second["transaction_count_1m"] == first["transaction_count_1m"] + 1
    assert second["total_amount_1m"] == first["total_amount_1m"] + 12.0
