"""State snapshots: restoring a partition from its changelog gives bit-identical features.

The changelog is simulated as a compacted topic: after each batch the consumer writes
``serialize(key)`` for every key ``drain_touched`` reports (None: a tombstone) and the
partition's metadata; a crash restores a fresh engine from the latest value of every key.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest

from features.aggregates import GlobalViews
from features.config import FeatureConfig
from features.errors import StateDecodeError
from features.fraud import FraudFeatureEngine
from features.partitioner import partition_for_key
from features.recommendations import RecommendationFeatureEngine
from features.state import PARTITION_META_KEY, CardStateV1, CardStateV2

META = PARTITION_META_KEY

MIN = 60_000
CONFIGS = [
    FeatureConfig(
        allowed_lateness_ms=10 * MIN,
        previous_transaction_horizon_ms=24 * 60 * MIN + 10 * MIN,
        history_horizon_ms=2 * 60 * MIN,
    ),
    FeatureConfig(),
]


class Changelog:
    """A compacted changelog: the latest record per (partition, key)."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, bytes]] = {}

    def flush(self, engine: Any, partition: int) -> None:
        log = self.records.setdefault(partition, {})
        for key in engine.drain_touched(partition):
            value = engine.serialize(partition, key)
            if value is None:
                log.pop(key, None)
            else:
                log[key] = value
        log[META] = engine.serialize_partition(partition)

    def restore(self, engine: Any, partition: int) -> None:
        engine.assign(partition)
        log = self.records.get(partition, {})
        if META in log:
            engine.restore_partition(partition, log[META])
        for key, value in log.items():
            if key != META:
                engine.restore(partition, key, value)


def split(
    events: Sequence[Any], key: Callable[[Any], str], partitions: int
) -> dict[int, list[Any]]:
    parts: dict[int, list[Any]] = {}
    for e in events:
        parts.setdefault(partition_for_key(key(e).encode(), partitions), []).append(e)
    return parts


def check_restore(
    make: Callable[[], Any],
    parts: dict[int, list[Any]],
    process: Callable[[Any, int, list[Any]], list[Any]],
    crash_points: Sequence[float],
    batch: int = 9,
) -> None:
    for p, events in parts.items():
        straight = make()
        straight.assign(p)
        expected = []
        for i in range(0, len(events), batch):
            expected.extend(process(straight, p, events[i : i + batch]))
        for fraction in crash_points:
            crash = int(len(events) * fraction) // batch * batch
            engine = make()
            engine.assign(p)
            log = Changelog()
            got = []
            for i in range(0, crash, batch):
                got.extend(process(engine, p, events[i : i + batch]))
                log.flush(engine, p)
            engine = make()  # the crash: a fresh engine, restored from the changelog
            log.restore(engine, p)
            for i in range(crash, len(events), batch):
                got.extend(process(engine, p, events[i : i + batch]))
            assert got == expected, (p, fraction)


@pytest.mark.parametrize("seed", range(4))
def test_fraud_restore_is_bit_identical(streams: Any, seed: int) -> None:
    config = CONFIGS[seed % 2]
    rng = random.Random(seed)
    events = streams.transactions(rng, 500, lateness=config.allowed_lateness_ms)
    profiles = streams.profiles(rng)
    parts = split(events, lambda tx: tx.card_id, 2)

    def process(engine: FraudFeatureEngine, p: int, batch: list[Any]) -> list[Any]:
        return engine.process_batch(p, batch, profiles).rows

    check_restore(lambda: FraudFeatureEngine(config), parts, process, [0.1, 0.5, 0.77, 1.0])


@pytest.mark.parametrize("seed", range(4))
def test_recommendation_restore_is_bit_identical(streams: Any, seed: int) -> None:
    config = CONFIGS[seed % 2]
    rng = random.Random(seed)
    events = streams.user_events(rng, 500, lateness=config.allowed_lateness_ms)
    views = GlobalViews()
    for e in events:
        if e.event_type == "view":
            views.add_view(e.event_time, e.category, e.item_id)
    parts = split(events, lambda e: e.user_id, 2)

    def process(engine: RecommendationFeatureEngine, p: int, batch: list[Any]) -> list[Any]:
        return engine.process_batch(p, batch, views).rows

    make = lambda: RecommendationFeatureEngine(config)  # noqa: E731
    check_restore(make, parts, process, [0.1, 0.5, 0.77, 1.0])


def test_restored_watermark_keeps_late_events_late(streams: Any) -> None:
    engine = FraudFeatureEngine(CONFIGS[0])
    engine.assign(4)
    events = streams.transactions(random.Random(1), 50, ooo=0.0)
    engine.process_batch(4, events, {})
    meta = engine.serialize_partition(4)
    fresh = FraudFeatureEngine(CONFIGS[0])
    fresh.assign(4)
    fresh.restore_partition(4, meta)
    assert fresh.watermark(4) == engine.watermark(4)
    wm = engine.watermark(4)
    assert wm is not None
    late = msgspec.structs.replace(events[0], event_time=wm - 1)
    assert fresh.process_batch(4, [late], {}).late == [0]


def test_serialized_state_is_compact_and_versioned(streams: Any) -> None:
    engine = FraudFeatureEngine()
    engine.assign(0)
    events = [
        msgspec.structs.replace(tx, card_id="k", event_time=1_700_000_000_000 + i * 1000)
        for i, tx in enumerate(streams.transactions(random.Random(3), 3))
    ]
    engine.process_batch(0, events, {})
    data = engine.serialize(0, "k")
    assert data is not None
    raw = msgspec.msgpack.decode(data)
    assert raw[0] == "f2"  # format tag and version
    state = msgspec.msgpack.decode(data, type=CardStateV2)
    assert state.last == events[-1].event_time
    assert list(array("q", state.times)) == [e.event_time for e in events]
    assert list(array("d", state.amounts)) == [e.amount for e in events]
    assert state.merchants == [e.merchant_id for e in events]
    assert len(data) < 200
    assert msgspec.msgpack.decode(engine.serialize_partition(0)) == ["p1", events[-1].event_time]


def test_bad_records_raise_state_decode_error() -> None:
    fraud = FraudFeatureEngine()
    fraud.assign(2)
    with pytest.raises(StateDecodeError, match="partition 2 key 'k'"):
        fraud.restore(2, "k", b"\x93\x01\x02\x03")
    bad = msgspec.msgpack.encode(CardStateV1(0, [0, 1], [1.0], ["m"], [0.0], [0.0], None))
    with pytest.raises(StateDecodeError, match="different lengths"):
        fraud.restore(2, "k", bad)
    recs = RecommendationFeatureEngine()
    recs.assign(2)
    good = msgspec.msgpack.encode(CardStateV1(0, [0], [1.0], ["m"], [0.0], [0.0], None))
    with pytest.raises(StateDecodeError):
        recs.restore(2, "k", good)  # a card state is not a user state
    with pytest.raises(StateDecodeError, match="metadata"):
        recs.restore_partition(2, good)


def test_version_1_records_still_restore() -> None:
    """A changelog written before the columnar format (V1: ages, lists) loads as V2."""
    engine = FraudFeatureEngine()
    engine.assign(0)
    v1 = CardStateV1(10_000, [5_000, 0], [1.5, 2.25], ["m1", "m2"], [0.1, 0.2], [0.3, 0.4], None)
    engine.restore(0, "k", msgspec.msgpack.encode(v1))
    state = msgspec.msgpack.decode(engine.serialize(0, "k") or b"", type=CardStateV2)
    assert list(array("q", state.times)) == [5_000, 10_000]
    assert list(array("d", state.amounts)) == [1.5, 2.25]
    assert list(array("d", state.lat)) == [0.1, 0.2]
    assert state.merchants == ["m1", "m2"]


def test_tombstone_removes_a_key() -> None:
    engine = FraudFeatureEngine()
    engine.assign(0)
    good = msgspec.msgpack.encode(CardStateV1(10, [0], [1.0], ["m"], [0.0], [0.0], None))
    engine.restore(0, "k", good)
    assert engine.keys(0) == ["k"]
    assert msgspec.msgpack.decode(engine.serialize(0, "k") or b"")[0] == "f2"
    engine.restore(0, "k", None)
    assert engine.keys(0) == []
    assert engine.serialize(0, "k") is None
