"""State snapshots: restoring a partition from its changelog gives bit-identical features.

The changelog is simulated as a compacted topic: after each batch the consumer writes the
engine's ``changelog`` records (None: a tombstone) and the partition's metadata; a crash
restores a fresh engine from the latest value of every key (``restore_record``, then
``finish_restore``). After every batch the log must restore to exactly the live state.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest

from features._engine import WHOLE_MAX_ENTRIES, slice_key
from features.aggregates import GlobalViews
from features.config import FeatureConfig
from features.errors import StateDecodeError
from features.fraud import FraudFeatureEngine
from features.partitioner import partition_for_key
from features.patterns import PatternEngine
from features.patterns.language import load_rules
from features.recommendations import RecommendationFeatureEngine
from features.state import PARTITION_META_KEY, SLICE_MS, CardStateV1, CardStateV2

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
        self.records: dict[int, dict[bytes, bytes]] = {}
        self.written = 0  # records written (tombstones included)

    def flush(self, engine: Any, partition: int) -> list[tuple[bytes, bytes | None]]:
        log = self.records.setdefault(partition, {})
        changes = engine.changelog(partition)
        for key, value in changes:
            if value is None:
                log.pop(key, None)
            else:
                log[key] = value
        self.written += len(changes)
        log[META.encode()] = engine.serialize_partition(partition)
        return changes

    def restore(self, engine: Any, partition: int) -> None:
        engine.assign(partition, changelog=True)
        log = self.records.get(partition, {})
        if META.encode() in log:
            engine.restore_partition(partition, log[META.encode()])
        for key, value in log.items():
            if key != META.encode():
                engine.restore_record(partition, key, value)
        for _ in engine.finish_restore(partition, chunk=3):
            pass


def assert_same_state(live: Any, restored: Any, partition: int) -> None:
    """Every key's whole state (``_encode``) is the same in both engines."""
    assert sorted(live.keys(partition)) == sorted(restored.keys(partition))
    for key in live.keys(partition):
        a = live._partition(partition).keys[key]
        b = restored._partition(partition).keys[key]
        assert live._encode(a) == restored._encode(b), key


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
            engine.assign(p, changelog=True)
            log = Changelog()
            got = []
            for i in range(0, crash, batch):
                got.extend(process(engine, p, events[i : i + batch]))
                log.flush(engine, p)
                if fraction == 1.0:  # the log holds exactly the live state after every batch
                    mirror = make()
                    log.restore(mirror, p)
                    assert_same_state(engine, mirror, p)
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


def test_a_busy_card_writes_its_head_and_newest_slice_only(streams: Any) -> None:
    """The bytes a touched card writes do not grow with its buffer (the sliced changelog)."""
    engine = FraudFeatureEngine()
    engine.assign(0, changelog=True)
    base = msgspec.structs.replace(streams.transactions(random.Random(5), 1)[0], card_id="k")
    t0 = 1_700_000_000_000
    sizes = []
    for i in range(400):  # one every 10 s: 400 buffered over 40 slices
        t = t0 + i * 10_000
        engine.process_batch(0, [msgspec.structs.replace(base, event_time=t)], {})
        changes = Changelog().flush(engine, 0)
        if i < WHOLE_MAX_ENTRIES:  # a short buffer: one whole-state record
            assert [key for key, _ in changes] == [b"k"]
        elif i > WHOLE_MAX_ENTRIES:  # then its head and the slice that changed
            assert [key for key, _ in changes] == [b"k", slice_key(t // SLICE_MS, b"k")]
            sizes.append(sum(len(value or b"") for _, value in changes))
    assert len(engine._partition(0).keys["k"].times) == 400
    assert max(sizes) < 400


@pytest.mark.parametrize("seed", range(2))
def test_the_event_cap_keeps_the_log_exact(streams: Any, seed: int) -> None:
    """The cap drops a card's oldest entries (any slice, out of order): the log follows."""
    config = FeatureConfig(max_events_per_key=100)
    rng = random.Random(seed)
    events = streams.transactions(rng, 700, cards=1, ooo=0.3)
    t0 = 1_700_000_000_000
    events = [  # one every 7 s, every third up to 4 minutes out of order
        msgspec.structs.replace(
            tx, event_time=t0 + i * 7_000 - rng.randrange(240_000) * (i % 3 == 0)
        )
        for i, tx in enumerate(events)
    ]
    rules = load_rules()

    def make() -> Any:
        return FraudFeatureEngine(config), PatternEngine(rules, config)

    live = make()
    logs = (Changelog(), Changelog())
    for engine in live:
        engine.assign(0, changelog=True)
    for i in range(0, len(events), 9):
        batch = events[i : i + 9]
        rows = live[0].process_batch(0, batch, {}).rows
        live[1].process_batch(0, batch, rows, {})
        mirror = make()
        for engine, twin, log in zip(live, mirror, logs, strict=True):
            log.flush(engine, 0)
            log.restore(twin, 0)
            assert_same_state(engine, twin, 0)
    assert len(live[0]._partition(0).keys["card-0"].times) <= 100


def test_whole_state_records_upgrade_to_slices(streams: Any) -> None:
    """A changelog of whole-state records (before the slices) restores, and a restored card's
    first write puts its whole buffer into slices: the log then restores without the old."""
    events = streams.transactions(random.Random(9), 400, cards=3)
    old = FraudFeatureEngine(CONFIGS[0])
    old.assign(0)
    old.process_batch(0, events[:200], {})
    log = Changelog()
    records = log.records.setdefault(0, {})
    for key in old.drain_touched(0):
        value = old.serialize(0, key)
        if value is not None:
            records[key.encode()] = value
    records[META.encode()] = old.serialize_partition(0)
    engine = FraudFeatureEngine(CONFIGS[0])
    log.restore(engine, 0)
    assert_same_state(old, engine, 0)
    for i in range(200, len(events), 9):
        engine.process_batch(0, events[i : i + 9], {})
        log.flush(engine, 0)
        mirror = FraudFeatureEngine(CONFIGS[0])
        log.restore(mirror, 0)
        assert_same_state(engine, mirror, 0)


def test_a_key_that_expires_and_comes_back_leaves_no_stale_slices(streams: Any) -> None:
    """A sliced card expires (idle partition), then transacts again before the next drain: its
    old slices get tombstones, whether it is written whole again or grows back into slices."""
    config = CONFIGS[0]
    engine = FraudFeatureEngine(config)
    engine.assign(0, changelog=True, now_ms=0)
    log = Changelog()
    base = msgspec.structs.replace(streams.transactions(random.Random(2), 1)[0], card_id="k")
    t0 = 1_700_000_000_000

    def tx(t: int) -> Any:
        return msgspec.structs.replace(base, event_time=t)

    engine.process_batch(0, [tx(t0 + i * 20_000) for i in range(20)], {}, now_ms=0)
    assert len(log.flush(engine, 0)) > 2  # a head and slices
    later = 10 * config.previous_transaction_horizon_ms
    assert engine.advance_idle(later) == [0]
    assert engine.key_count(0) == 0  # expired
    comeback = t0 + later
    for i in range(12):  # whole again, then past the whole-state limit
        engine.process_batch(0, [tx(comeback + i * 20_000)], {}, now_ms=later)
        log.flush(engine, 0)
        mirror = FraudFeatureEngine(config)
        log.restore(mirror, 0)
        assert_same_state(engine, mirror, 0)
