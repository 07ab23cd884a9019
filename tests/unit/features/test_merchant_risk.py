"""Delayed-label merchant risk: shares per window, the label delay in event time, duplicates,
pruning, and the same values in the consumers' rows and the offline replay."""

from __future__ import annotations

from typing import Literal

import pytest

from contracts.events import FraudLabel, Transaction
from features.config import FeatureConfig
from features.definitions import DAY_MS, FRAUD, FRAUD_FEATURE_NAMES, MERCHANT_RISK_FEATURE_NAMES
from features.fraud import FraudFeatureEngine
from features.merchant_risk import MerchantRisk, append_merchant_risk
from features.patterns import PatternEngine, shipped_rules
from features.replay import replay_fraud

DELAY = 7 * DAY_MS
T0 = 1_700_006_400_000  # a UTC midnight
N = 0


def label(
    merchant: str, event_time: int, decided_at: int, kind: Literal["fraud", "legitimate"]
) -> FraudLabel:
    global N
    N += 1
    return FraudLabel(f"e{N}", "card", merchant, kind, event_time, decided_at)


def test_shares_count_only_labels_older_than_the_delay() -> None:
    risk = MerchantRisk(DELAY)
    decided = T0 + 3_600_000
    risk.add(label("m", T0, decided, "fraud"))
    risk.add(label("m", T0, decided, "fraud"))
    risk.add(label("m", T0, decided, "legitimate"))
    assert risk.features("m", decided + DELAY - 1) == (None, None, None)
    one, seven, thirty = risk.features("m", decided + DELAY)
    assert one == seven == thirty == pytest.approx(2 / 3)
    assert risk.features("other", decided + DELAY) == (None, None, None)


def test_windows_are_the_utc_days_up_to_the_cutoff() -> None:
    risk = MerchantRisk(DELAY)
    risk.add(label("m", T0 - 3 * DAY_MS, T0, "fraud"))  # 3 days before the cutoff's day
    risk.add(label("m", T0 - 20 * DAY_MS, T0, "legitimate"))
    risk.add(label("m", T0 - 40 * DAY_MS, T0, "fraud"))  # outside every window
    one, seven, thirty = risk.features("m", T0 + DELAY + 1)
    assert (one, seven, thirty) == (None, 1.0, 0.5)


def test_a_transaction_is_counted_once_and_old_days_are_pruned() -> None:
    risk = MerchantRisk(DELAY)
    first = label("m", T0, T0, "fraud")
    assert risk.add(first)
    assert not risk.add(first)  # the relay may publish a label twice
    assert risk.duplicates == 1 and len(risk) == 1
    far = T0 + 100 * DAY_MS
    risk.add(label("n", far, far, "fraud"))
    assert risk.features("m", T0 + DELAY) == (None, None, None)  # pruned: too old
    assert not risk.add(label("m", T0, far, "fraud"))  # and no longer accepted
    kept = MerchantRisk(DELAY, prune=False)
    kept.add(first)
    kept.add(label("n", far, far, "fraud"))
    assert kept.features("m", T0 + DELAY) == (1.0, 1.0, 1.0)


def tx(i: int, merchant: str, t: int) -> Transaction:
    return Transaction(
        f"t{i}", f"card-{i % 3}", "u", merchant, "grocery", 10.0, "EUR", 0.0, 0.0, t, "pos"
    )


def test_online_rows_and_replay_compute_the_same_risk() -> None:
    labels = [label("m", T0, T0 + 1000, "fraud"), label("m", T0, T0 + 2000, "legitimate")]
    risk = MerchantRisk(DELAY)
    for item in labels:
        risk.add(item)
    txs = [tx(i, "m", T0 + DELAY + i * 1000 + 500) for i in range(6)]
    # What the consumers do: card rows, then the pattern features, then the merchant risk.
    engine = FraudFeatureEngine(FeatureConfig())
    patterns = PatternEngine(shipped_rules(), FeatureConfig())
    engine.assign(0)
    patterns.assign(0)
    card = engine.process_batch(0, txs, {}).rows
    online = append_merchant_risk(txs, patterns.process_batch(0, txs, card, {}).rows, risk)
    rows = [FRAUD.as_dict(row) for row in online if row]
    assert len(rows) == len(txs)
    shares = [row["merchant_fraud_share_7d"] for row in rows]
    assert shares == [None, 1.0, 0.5, 0.5, 0.5, 0.5]  # 1 s, 2 s after the delay: both count
    replayed = {r.event_id: r.features for r in replay_fraud(txs, partitions=1, labels=labels)}
    assert all(replayed[t.event_id] == row for t, row in zip(txs, rows, strict=True))
    assert FRAUD_FEATURE_NAMES[-len(MERCHANT_RISK_FEATURE_NAMES) :] == MERCHANT_RISK_FEATURE_NAMES


def test_without_labels_the_risk_is_null_and_late_rows_stay_none() -> None:
    txs = [tx(0, "m", T0), tx(1, "m", T0 + 1)]
    rows = append_merchant_risk(txs, [("card",), None], None)
    assert rows == [("card", None, None, None), None]
