"""Fraud features against a brute-force reference written straight from the definitions.

The reference keeps every processed transaction and, for each new one, scans all earlier
processed transactions of its card. Sums use math.fsum (the correctly rounded exact sum), which
the engine must match bit for bit; distances are compared to 1e-12 relative (the engine uses an
algebraically equal haversine with precomputed cosines).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import Transaction, UserProfile
from features.config import FeatureConfig
from features.definitions import FRAUD_FEATURE_NAMES, MERCHANT_RISK_FEATURE_NAMES
from features.fraud import FraudFeatureEngine, fraud_row_dict
from features.partitioner import partition_for_key

T0 = 1_700_000_000_000
R = 6371.0088
NEAR = (
    "distance_from_last_transaction_km",
    "speed_from_last_transaction_kmh",
    "distance_from_home_km",
)


def haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R * math.asin(math.sqrt(min(1.0, a)))


def reference(
    events: Sequence[Transaction],
    profiles: Mapping[str, UserProfile],
    config: FeatureConfig,
) -> list[dict[str, Any] | None]:
    """Features of one partition's events in order; None for late ones."""
    processed: list[Transaction] = []
    clock: int | None = None
    out: list[dict[str, Any] | None] = []
    for e in events:
        t = e.event_time
        if clock is not None and t < clock - config.allowed_lateness_ms:
            out.append(None)
            continue
        clock = t if clock is None else max(clock, t)
        mine = [p for p in processed if p.card_id == e.card_id and p.event_time <= t]

        def window(ms: int, mine: list[Transaction] = mine, t: int = t) -> list[Transaction]:
            return [p for p in mine if p.event_time > t - ms]

        f: dict[str, Any] = {"amount": e.amount}
        for label, ms in (("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)):
            w = [*window(ms), e]
            f[f"transaction_count_{label}"] = len(w)
            f[f"total_amount_{label}"] = math.fsum(p.amount for p in w)
        others = window(86_400_000)
        merchants = {p.merchant_id for p in others}
        f["unique_merchants_24h"] = len(merchants | {e.merchant_id})
        f["is_new_merchant_24h"] = int(e.merchant_id not in merchants)
        f["amount_to_mean_24h"] = (
            e.amount / (math.fsum(p.amount for p in others) / len(others)) if others else None
        )
        # Previous: greatest event_time <= t within the horizon; ties: processed last.
        candidates = [
            (p.event_time, i, p)
            for i, p in enumerate(mine)
            if p.event_time > t - config.previous_transaction_horizon_ms
        ]
        if candidates:
            prev = max(candidates, key=lambda c: (c[0], c[1]))[2]
            d = haversine(prev.lat, prev.lon, e.lat, e.lon)
            s = (t - prev.event_time) / 1000
            f["distance_from_last_transaction_km"] = d
            f["seconds_since_last_transaction"] = s
            f["speed_from_last_transaction_kmh"] = d * 3600 / max(s, 60.0)
        else:
            f["distance_from_last_transaction_km"] = None
            f["seconds_since_last_transaction"] = None
            f["speed_from_last_transaction_kmh"] = None
        profile = profiles.get(e.user_id)
        if profile is None:
            f["distance_from_home_km"] = f["account_age_days"] = None
        else:
            f["distance_from_home_km"] = haversine(e.lat, e.lon, profile.home_lat, profile.home_lon)
            f["account_age_days"] = float(profile.account_age_days)
        f["hour_of_day_utc"] = (t // 3_600_000) % 24
        f["is_online"] = int(e.channel == "online")
        f |= dict.fromkeys(MERCHANT_RISK_FEATURE_NAMES)  # no labels here (test_merchant_risk)
        processed.append(e)
        out.append(f)
    return out


def assert_rows_match(got: list[Any], want: list[dict[str, Any] | None]) -> None:
    assert len(got) == len(want)
    for i, (row, expected) in enumerate(zip(got, want, strict=True)):
        if expected is None:
            assert row is None, f"event {i} should be late"
            continue
        assert row is not None, f"event {i} should not be late"
        actual = fraud_row_dict(row)
        assert list(actual) == list(FRAUD_FEATURE_NAMES)
        for name in FRAUD_FEATURE_NAMES:
            a, b = actual[name], expected[name]
            if name in NEAR and a is not None and b is not None:
                assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9), (i, name, a, b)
            else:
                assert a == b and type(a) is type(b), (i, name, a, b)


def run_engine(
    events: Sequence[Transaction],
    profiles: Mapping[str, UserProfile],
    config: FeatureConfig,
    partitions: int,
    batch: int = 7,
) -> dict[int, tuple[list[Transaction], list[Any]]]:
    """Split by Kafka partitioner, process each partition in batches of ``batch``."""
    engine = FraudFeatureEngine(config)
    parts: dict[int, list[Transaction]] = {}
    for tx in events:
        parts.setdefault(partition_for_key(tx.card_id.encode(), partitions), []).append(tx)
    out = {}
    for p in parts:
        engine.assign(p)
    for p, txs in parts.items():
        rows: list[Any] = []
        for i in range(0, len(txs), batch):
            chunk = txs[i : i + batch]
            result = engine.process_batch(p, chunk, profiles)
            assert result.late == [j for j, r in enumerate(result.rows) if r is None]
            rows.extend(result.rows)
        out[p] = (txs, rows)
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("partitions", [1, 3])
def test_engine_equals_reference(streams: Any, seed: int, partitions: int) -> None:
    rng = random.Random(seed)
    config = streams_config(seed)
    events = streams.transactions(rng, 400, lateness=config.allowed_lateness_ms)
    profiles = streams.profiles(rng)
    results = run_engine(events, profiles, config, partitions)
    late = 0
    for txs, rows in results.values():
        assert_rows_match(rows, reference(txs, profiles, config))
        late += rows.count(None)
    assert 0 < late < len(events) // 4  # the stream did exercise lateness


def streams_config(seed: int) -> FeatureConfig:
    if seed % 4 == 3:  # lateness longer than the longest window
        return FeatureConfig(
            allowed_lateness_ms=30 * 3_600_000,
            previous_transaction_horizon_ms=3 * 86_400_000,
        )
    if seed % 2:
        return FeatureConfig()  # defaults: 1 h lateness, 7 d previous-transaction horizon
    return FeatureConfig(
        allowed_lateness_ms=10 * 60_000,
        previous_transaction_horizon_ms=86_400_000 + 10 * 60_000,
    )


_event = st.tuples(
    st.integers(0, 2),  # card
    st.sampled_from([0, 1, 999, 59_999, 60_000, 60_001, 299_999, 300_000, 3_600_000, 86_400_000]),
    st.booleans(),  # out of order
    st.integers(0, 700_000),  # how far back when out of order
    st.sampled_from([0.01, 0.1, 0.2, 0.3, 1.0, 12.34, 1e12, 5e-324, 1 / 3]),
    st.integers(0, 2),  # merchant
    st.sampled_from([(0.0, 0.0), (52.5, 13.4), (-33.9, 151.2), (0.0, 180.0)]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_event, min_size=1, max_size=40))
def test_engine_equals_reference_hypothesis(spec: list[tuple[Any, ...]]) -> None:
    config = FeatureConfig(
        allowed_lateness_ms=5 * 60_000,
        previous_transaction_horizon_ms=86_400_000 + 5 * 60_000,
    )
    clock = T0
    events = []
    for i, (card, gap, ooo, back, amount, merchant, (lat, lon)) in enumerate(spec):
        clock += gap
        events.append(
            Transaction(
                event_id=f"t{i}",
                card_id=f"c{card}",
                user_id=f"u{card}",
                merchant_id=f"m{merchant}",
                merchant_category="x",
                amount=amount,
                currency="EUR",
                lat=lat,
                lon=lon,
                event_time=clock - back if ooo else clock,
                channel="online" if i % 2 else "pos",
            )
        )
    profiles = {
        "u0": UserProfile(
            user_id="u0", home_lat=1.0, home_lon=2.0, account_age_days=3, segment="s", updated_at=0
        )
    }
    engine = FraudFeatureEngine(config)
    engine.assign(0)
    rows = engine.process_batch(0, events, profiles).rows
    assert_rows_match(rows, reference(events, profiles, config))


def tx(
    t: int, amount: float = 10.0, *, card: str = "c", merchant: str = "m", **kw: Any
) -> Transaction:
    fields: dict[str, Any] = {
        "event_id": f"e{t}-{amount}",
        "card_id": card,
        "user_id": "u",
        "merchant_id": merchant,
        "merchant_category": "x",
        "amount": amount,
        "currency": "EUR",
        "lat": 0.0,
        "lon": 0.0,
        "event_time": t,
        "channel": "pos",
    }
    fields.update(kw)
    return Transaction(**fields)


def features_of(
    engine: FraudFeatureEngine, event: Transaction, profile: UserProfile | None = None
) -> dict[str, Any]:
    row = engine.process(0, event, profile)
    assert row is not None
    return fraud_row_dict(row)


def new_engine(**config: Any) -> FraudFeatureEngine:
    engine = FraudFeatureEngine(FeatureConfig(**config))
    engine.assign(0)
    return engine


def test_window_bounds_are_open_on_the_left_to_the_millisecond() -> None:
    engine = new_engine()
    features_of(engine, tx(T0, 1.0))
    at_edge = features_of(engine, tx(T0 + 60_000, 2.0))  # T0 is not in (T0, T0 + 1m]
    assert at_edge["transaction_count_1m"] == 1 and at_edge["total_amount_1m"] == 2.0
    assert at_edge["transaction_count_5m"] == 2 and at_edge["total_amount_5m"] == 3.0
    inside = features_of(engine, tx(T0 + 60_000 + 59_999, 4.0))  # T0+1m is in
    assert inside["transaction_count_1m"] == 2 and inside["total_amount_1m"] == 6.0


def test_out_of_order_event_sees_only_earlier_event_times() -> None:
    engine = new_engine()
    features_of(engine, tx(T0, 1.0, merchant="a"))
    features_of(engine, tx(T0 + 120_000, 2.0, merchant="b", lat=10.0))
    early = features_of(engine, tx(T0 + 60_000, 4.0, merchant="c"))
    assert early["transaction_count_5m"] == 2  # T0 and itself, not T0 + 2m
    assert early["total_amount_5m"] == 5.0
    assert early["unique_merchants_24h"] == 2
    assert early["seconds_since_last_transaction"] == 60.0  # previous is T0, not T0 + 2m
    assert early["distance_from_last_transaction_km"] == 0.0
    after = features_of(engine, tx(T0 + 180_000, 8.0, merchant="a"))
    assert after["transaction_count_5m"] == 4 and after["total_amount_5m"] == 15.0
    assert after["seconds_since_last_transaction"] == 60.0  # previous is T0 + 2m
    assert after["is_new_merchant_24h"] == 0


def test_ties_previous_is_the_one_processed_last() -> None:
    engine = new_engine()
    features_of(engine, tx(T0, lat=0.0))
    features_of(engine, tx(T0 + 1000, lat=1.0))
    features_of(engine, tx(T0 + 1000, lat=2.0))
    f = features_of(engine, tx(T0 + 1000, lat=2.0))
    assert f["distance_from_last_transaction_km"] == 0.0
    assert f["seconds_since_last_transaction"] == 0.0
    assert f["speed_from_last_transaction_kmh"] == 0.0
    assert f["transaction_count_1m"] == 4


def test_sums_are_the_correctly_rounded_exact_sum() -> None:
    engine = new_engine()
    amounts = [0.1, 0.2, 0.3, 1e12, 5e-324, 1 / 3]
    for i, a in enumerate(amounts):
        f = features_of(engine, tx(T0 + i, a))
        assert f["total_amount_1m"] == math.fsum(amounts[: i + 1])
    naive = 0.1 + 0.2 + 0.3
    assert naive != math.fsum([0.1, 0.2, 0.3])  # summing in arrival order would differ


def test_amount_to_mean_and_new_merchant() -> None:
    engine = new_engine()
    first = features_of(engine, tx(T0, 10.0, merchant="a"))
    assert first["amount_to_mean_24h"] is None and first["is_new_merchant_24h"] == 1
    features_of(engine, tx(T0 + 1, 30.0, merchant="b"))
    f = features_of(engine, tx(T0 + 2, 40.0, merchant="a"))
    assert f["amount_to_mean_24h"] == 2.0 and f["is_new_merchant_24h"] == 0
    assert f["unique_merchants_24h"] == 2


def test_previous_transaction_survives_a_quiet_day_within_the_horizon() -> None:
    engine = new_engine()
    features_of(engine, tx(T0, lat=10.0))
    three_days = 3 * 86_400_000
    f = features_of(engine, tx(T0 + three_days))
    assert f["seconds_since_last_transaction"] == three_days / 1000
    assert f["distance_from_last_transaction_km"] == pytest.approx(1111.95, abs=0.01)
    assert f["transaction_count_1h"] == 1 and f["unique_merchants_24h"] == 1
    assert f["amount_to_mean_24h"] is None
    f = features_of(engine, tx(T0 + three_days + 8 * 86_400_000))  # beyond 7 days
    assert f["seconds_since_last_transaction"] is None
    assert f["distance_from_last_transaction_km"] is None


def test_profile_join_and_constant_features() -> None:
    engine = new_engine()
    profile = UserProfile(
        user_id="u", home_lat=0.0, home_lon=1.0, account_age_days=42, segment="s", updated_at=0
    )
    at = T0 - T0 % 86_400_000 + 13 * 3_600_000 + 5
    f = features_of(engine, tx(at, channel="online"), profile)
    assert f["distance_from_home_km"] == pytest.approx(111.195, abs=1e-3)
    assert f["account_age_days"] == 42.0
    assert f["hour_of_day_utc"] == 13 and f["is_online"] == 1
    g = features_of(engine, tx(at + 1))
    assert g["distance_from_home_km"] is None and g["account_age_days"] is None
    assert g["is_online"] == 0


def test_speed_divides_by_at_least_a_minute() -> None:
    engine = new_engine()
    features_of(engine, tx(T0, lat=0.0))
    f = features_of(engine, tx(T0 + 30_000, lat=1.0))
    assert f["speed_from_last_transaction_kmh"] == pytest.approx(111.195 * 60, rel=1e-4)
    g = features_of(engine, tx(T0 + 30_000 + 7_200_000, lat=2.0))
    assert g["speed_from_last_transaction_kmh"] == pytest.approx(111.195 / 2, rel=1e-4)


def test_keys_are_independent() -> None:
    engine = new_engine()
    features_of(engine, tx(T0, card="a"))
    f = features_of(engine, tx(T0 + 1, card="b"))
    assert f["transaction_count_1m"] == 1 and f["seconds_since_last_transaction"] is None
