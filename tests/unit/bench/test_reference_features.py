"""The reference pipelines' features (bench.reference_features) equal the engine's, value for
value, on transactions in and slightly out of order, with and without profiles."""

from __future__ import annotations

import random

from bench import reference_features as ref
from contracts.events import Transaction, UserProfile
from features import FeatureConfig, FraudFeatureEngine
from features.definitions import DAY_MS, FRAUD_CARD, MINUTE_MS

T0 = 1_700_000_000_000


def _transactions(n: int, seed: int) -> list[Transaction]:
    rnd = random.Random(seed)
    out = []
    t = T0
    for i in range(n):
        t += rnd.choice([0, 1_000, 20_000, 59_999, 60_000, 4 * MINUTE_MS, 3_600_000, DAY_MS // 3])
        # Some arrive up to 50 minutes late (inside the engine's allowed lateness of 1 h).
        event_time = t - rnd.choice([0, 0, 0, 0, 1_000, 30 * MINUTE_MS, 50 * MINUTE_MS])
        out.append(
            Transaction(
                event_id=f"e{i}",
                card_id=f"card-{rnd.randrange(6)}",
                user_id=f"user-{rnd.randrange(4)}",
                merchant_id=f"m-{rnd.randrange(5)}",
                merchant_category="grocery",
                amount=round(rnd.uniform(0.01, 500.0), 2),
                currency="EUR",
                lat=rnd.uniform(-60, 60),
                lon=rnd.uniform(-170, 170),
                event_time=event_time,
                channel=rnd.choice(["pos", "online"]),
            )
        )
    return out


def test_reference_rows_equal_the_engine_rows() -> None:
    txs = _transactions(3_000, seed=7)
    profiles = {
        "user-0": UserProfile("user-0", 48.8, 2.3, 400, "a", T0),
        "user-1": UserProfile("user-1", -33.9, 151.2, 12, "b", T0),
    }
    engine = FraudFeatureEngine(FeatureConfig())
    engine.assign(0)
    expected = engine.process_batch(0, txs, profiles).rows
    states: dict[str, ref.CardState] = {}
    compared = 0
    for tx, want in zip(txs, expected, strict=True):
        if want is None:  # late for the engine: the reference has no watermark
            continue
        p = profiles.get(tx.user_id)
        got = ref.update(
            states.setdefault(tx.card_id, ref.new_state()),
            tx.event_time,
            tx.amount,
            tx.merchant_id,
            tx.lat,
            tx.lon,
            tx.channel == "online",
            None if p is None else (p.home_lat, p.home_lon, p.account_age_days),
        )
        assert dict(zip(FRAUD_CARD.names, got, strict=True)) == dict(
            zip(FRAUD_CARD.names, want, strict=True)
        ), tx
        compared += 1
    assert compared > 2_500
    # The state stays bounded: only the last 25 h of a card's transactions are kept.
    for state in states.values():
        times = [e[0] for e in state["h"]]
        assert times == sorted(times)
        assert times[-1] - times[0] <= ref.KEEP_MS


def test_first_transaction_has_no_previous_and_counts_itself() -> None:
    row = ref.update(ref.new_state(), T0, 10.0, "m", 1.0, 2.0, online=True)
    values = dict(zip(FRAUD_CARD.names, row, strict=True))
    assert values["transaction_count_1m"] == values["transaction_count_1h"] == 1
    assert values["total_amount_1h"] == 10.0
    assert values["unique_merchants_24h"] == values["is_new_merchant_24h"] == 1
    assert values["amount_to_mean_24h"] is None
    assert values["seconds_since_last_transaction"] is None
    assert values["distance_from_home_km"] is None
    assert values["is_online"] == 1
