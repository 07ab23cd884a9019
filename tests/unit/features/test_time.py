"""Event time: watermarks, late events, idle partitions, and state expiry (bounded memory)."""

from __future__ import annotations

import random
from array import array
from sys import getsizeof
from typing import Any

import msgspec
import pytest

from contracts.events import Transaction, UserEvent
from features.aggregates import GlobalViews
from features.config import FeatureConfig
from features.errors import PartitionNotAssigned
from features.fraud import FraudFeatureEngine, fraud_row_dict
from features.recommendations import RecommendationFeatureEngine
from features.state import CardStateV2, UserStateV1

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_040_000  # a minute boundary
CONFIG = FeatureConfig(
    allowed_lateness_ms=10 * MIN,
    previous_transaction_horizon_ms=DAY + 10 * MIN,
    history_horizon_ms=2 * HOUR,
    idle_timeout_ms=30_000,
)


def tx(t: int, card: str = "c", **kw: Any) -> Transaction:
    fields: dict[str, Any] = {
        "event_id": f"{card}-{t}",
        "card_id": card,
        "user_id": "u",
        "merchant_id": "m",
        "merchant_category": "x",
        "amount": 5.0,
        "currency": "EUR",
        "lat": 1.0,
        "lon": 2.0,
        "event_time": t,
        "channel": "pos",
    }
    fields.update(kw)
    return Transaction(**fields)


def uev(t: int, user: str = "u", kind: str = "view", item: str = "i") -> UserEvent:
    return UserEvent(
        event_id=f"{user}-{t}-{kind}",
        user_id=user,
        item_id=item,
        category="c",
        event_type=kind,  # type: ignore[arg-type]
        event_time=t,
    )


def fraud(*partitions: int, now_ms: int | None = None) -> FraudFeatureEngine:
    engine = FraudFeatureEngine(CONFIG)
    for p in partitions or (0,):
        engine.assign(p, now_ms=now_ms)
    return engine


def test_watermark_is_the_clock_minus_lateness_and_never_goes_back() -> None:
    engine = fraud()
    assert engine.watermark(0) is None
    engine.process_batch(0, [tx(T0), tx(T0 + 5 * MIN), tx(T0 + MIN)], {})
    assert engine.watermark(0) == T0 + 5 * MIN - 10 * MIN
    engine.process_batch(0, [tx(T0 - 4 * MIN)], {})  # out of order, not late
    assert engine.watermark(0) == T0 - 5 * MIN


def test_late_events_are_reported_and_change_nothing() -> None:
    engine = fraud()
    engine.process_batch(0, [tx(T0), tx(T0 + 20 * MIN, card="d")], {})
    engine.drain_touched(0)
    before = {k: engine.serialize(0, k) for k in engine.keys(0)}
    wm = engine.watermark(0)
    assert wm == T0 + 10 * MIN
    result = engine.process_batch(0, [tx(wm - 1), tx(wm, card="e"), tx(T0 - DAY, card="c")], {})
    assert result.late == [0, 2]
    assert result.rows[0] is None and result.rows[2] is None and result.rows[1] is not None
    assert engine.drain_touched(0) == ["e"]  # only the accepted event touched state
    assert {k: engine.serialize(0, k) for k in before} == before
    assert engine.watermark(0) == wm


def test_late_views_are_not_counted_globally() -> None:
    engine = RecommendationFeatureEngine(CONFIG)
    engine.assign(0)
    views = GlobalViews()
    result = engine.process_batch(0, [uev(T0 + HOUR), uev(T0, item="late")], views)
    assert result.late == [1]
    deltas = engine.drain_view_deltas(0)
    assert [(d.slice_start_ms, d.items) for d in deltas] == [(T0 + HOUR, {"i": 1})]


def test_partitions_keep_separate_clocks() -> None:
    engine = fraud(0, 1)
    engine.process_batch(0, [tx(T0 + DAY)], {})
    result = engine.process_batch(1, [tx(T0, card="other")], {})
    assert result.late == []
    assert engine.watermark(1) == T0 - 10 * MIN


def test_unassigned_and_revoked_partitions_are_refused() -> None:
    engine = fraud(0)
    with pytest.raises(PartitionNotAssigned, match="partition 3"):
        engine.process_batch(3, [tx(T0)], {})
    engine.process_batch(0, [tx(T0)], {})
    engine.revoke(0)
    with pytest.raises(PartitionNotAssigned):
        engine.serialize(0, "c")
    engine.assign(0)
    assert engine.key_count(0) == 0


def test_idle_partition_clock_follows_processing_time() -> None:
    engine = fraud(0, 1, now_ms=1_000)
    engine.process_batch(0, [tx(T0)], {}, now_ms=2_000)
    assert engine.advance_idle(2_000 + 29_999) == []  # not idle long enough
    assert engine.watermark(0) == T0 - 10 * MIN
    assert engine.advance_idle(2_000 + 45_000) == [0]  # partition 1 has no clock yet
    assert engine.watermark(0) == T0 + 45_000 - 10 * MIN
    assert engine.advance_idle(2_000 + 45_000) == []  # idempotent
    result = engine.process_batch(0, [tx(T0 + 45_000 - 10 * MIN - 1)], {}, now_ms=50_000)
    assert result.late == [0]  # late against the advanced watermark
    # A new batch restarts the idle timer from the advanced clock.
    assert engine.advance_idle(50_000 + 29_999) == []
    engine.advance_idle(50_000 + 60_000)
    assert engine.watermark(0) == T0 + 45_000 + 60_000 - 10 * MIN


def test_idle_advance_expires_quiet_keys() -> None:
    engine = fraud(now_ms=0)
    engine.process_batch(0, [tx(T0)], {}, now_ms=0)
    engine.drain_touched(0)
    horizon = CONFIG.previous_transaction_horizon_ms + CONFIG.allowed_lateness_ms
    engine.advance_idle(horizon - MIN)
    assert engine.key_count(0) == 1
    engine.advance_idle(horizon + MIN)
    assert engine.key_count(0) == 0
    assert engine.drain_touched(0) == ["c"]  # so the consumer writes a tombstone
    assert engine.serialize(0, "c") is None


def test_quiet_card_is_dropped_after_horizon_plus_lateness() -> None:
    engine = fraud()
    engine.process_batch(0, [tx(T0, card="quiet"), tx(T0, card="busy")], {})
    horizon = CONFIG.previous_transaction_horizon_ms
    lateness = CONFIG.allowed_lateness_ms
    t = T0
    while t < T0 + horizon + lateness - MIN:
        t = min(t + 7 * MIN, T0 + horizon + lateness - MIN)
        engine.process_batch(0, [tx(t, card="busy")], {})
        assert "quiet" in engine.keys(0), t - T0
    engine.drain_touched(0)
    engine.process_batch(0, [tx(T0 + horizon + lateness + MIN, card="busy")], {})
    assert engine.keys(0) == ["busy"]
    assert sorted(engine.drain_touched(0)) == ["busy", "quiet"]
    assert engine.serialize(0, "quiet") is None
    # The busy card kept only what its windows can still need.
    state = msgspec.msgpack.decode(engine.serialize(0, "busy") or b"", type=CardStateV2)
    assert state.last - min(array("q", state.times)) <= DAY + lateness
    assert state.anchor is not None


def test_state_stays_bounded_on_a_long_stream() -> None:
    """30 days of traffic on rotating cards: keys alive and events buffered stay bounded."""
    engine = fraud()
    rng = random.Random(5)
    t = T0
    horizon = CONFIG.previous_transaction_horizon_ms + CONFIG.allowed_lateness_ms
    most_keys = 0
    for day in range(30):
        batch = []
        for _ in range(400):
            t += rng.randrange(2 * DAY // 400)
            batch.append(tx(t, card=f"c{day}-{rng.randrange(50)}"))
        engine.process_batch(0, batch, {})
        most_keys = max(most_keys, engine.key_count(0))
        for key in engine.drain_touched(0):
            data = engine.serialize(0, key)
            if data is not None:
                state = msgspec.msgpack.decode(data, type=CardStateV2)
                times = array("q", state.times)
                assert not times or state.last - min(times) <= DAY + CONFIG.allowed_lateness_ms
    # Cards of a day are alive for at most ~1 day of activity + the horizon.
    days_alive = 1 + horizon / DAY + 1
    assert engine.key_count(0) <= 50 * (days_alive + 1)
    assert most_keys <= 50 * (days_alive + 1)


def test_recommendation_state_expires_settled_items() -> None:
    engine = RecommendationFeatureEngine(CONFIG)
    engine.assign(0)
    views = GlobalViews()
    engine.process_batch(
        0, [uev(T0, item="a"), uev(T0 + 100 * MIN, kind="purchase", item="p")], views
    )
    engine.process_batch(0, [uev(T0 + 140 * MIN, user="other")], views)  # watermark T0 + 130 min
    state = msgspec.msgpack.decode(engine.serialize(0, "u") or b"", type=UserStateV1)
    assert state.recent_items == [] and state.ages == []  # "a" is older than the horizon
    assert state.purchased_items == ["p"]
    engine.process_batch(0, [uev(T0 + 100 * MIN + 2 * HOUR + 10 * MIN + MIN, user="other")], views)
    assert engine.keys(0) == ["other"]
    assert engine.serialize(0, "u") is None


def test_runaway_key_is_capped() -> None:
    engine = FraudFeatureEngine(FeatureConfig(max_events_per_key=100))
    engine.assign(0)
    engine.process_batch(0, [tx(T0 + i) for i in range(250)], {})
    state = msgspec.msgpack.decode(engine.serialize(0, "c") or b"", type=CardStateV2)
    assert len(state.merchants) <= 100


def test_card_is_kept_until_the_last_moment_an_event_can_see_it() -> None:
    engine = fraud()
    last = T0 + 30_000  # mid-minute
    horizon = CONFIG.previous_transaction_horizon_ms
    engine.process_batch(0, [tx(last, card="quiet")], {})
    # Another card moves the watermark to last + horizon - 1: the oldest event still accepted.
    engine.process_batch(0, [tx(last + horizon - 1 + CONFIG.allowed_lateness_ms, card="x")], {})
    row = engine.process(0, tx(last + horizon - 1, card="quiet"))
    assert row is not None
    assert fraud_row_dict(row)["seconds_since_last_transaction"] == (horizon - 1) / 1000


def test_the_expiry_index_holds_the_keys_not_their_history() -> None:
    """A key moves to a newer wheel bucket with each event. The buckets it leaves must not keep
    the hash tables of their busiest moment until the horizon sweeps them: the index would then
    grow with the events of a whole horizon (7 days for cards), not with the keys."""
    engine = fraud()
    rng = random.Random(3)
    t = T0
    for _ in range(40):  # 40,000 events on 2,000 cards over ~22 h: nothing expires
        batch = []
        for _ in range(1_000):
            t += rng.randrange(4_000)
            batch.append(tx(t, card=f"c{rng.randrange(2_000)}"))
        engine.process_batch(0, batch, {})
    wheel = engine._parts[0].wheel
    assert engine.key_count(0) == 2_000
    assert sum(len(members) for members in wheel.values()) == 2_000
    assert all(wheel.values())  # a bucket every key has left is gone
    assert len(wheel) <= 1_024 + 1  # at most ~1024 buckets per horizon
    table_bytes = sum(getsizeof(members) for members in wheel.values())
    assert table_bytes < 2_000 * 128 + len(wheel) * 256
