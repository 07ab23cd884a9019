"""A fraud partition's changelog (both engines, one log, one record per card) restores to exactly
the live state, whatever the card ids: ids may start with NUL, as every reserved changelog key
does. Changelogs written before the combined record restore too, and are migrated."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from consumers.pipelines import fraud_partition
from consumers.pipelines.fraud_partition import FraudPartition
from contracts.events import Transaction
from features.definitions import DAY_MS
from features.errors import StateDecodeError
from features.fraud import FraudFeatureEngine
from features.patterns import PATTERN_KEY_PREFIX, PATTERN_META_KEY, PatternEngine
from features.patterns.language import load_rules
from features.state import FraudCardV1, encoder, fraud_card_decoder

T0 = 1_700_000_000_000
CARDS = [
    "c1",
    "\x00partition-meta",
    "\x00pattern-meta",
    "\x00pattern:c1",
    "\x00s28333333:c1",
    "\x00offset",
    "\x00e\x00c1",
]


def tx(i: int, card: str) -> Transaction:
    return Transaction(
        event_id=f"e{i}",
        card_id=card,
        user_id="u1",
        merchant_id=f"m{i % 4}",
        merchant_category="food",
        amount=1.5 + i,
        currency="EUR",
        lat=48.0,
        lon=2.0 + i / 1000,
        event_time=T0 + i * 7_000,
        channel="pos",
    )


def state(partition: FraudPartition) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, engine in (("cards", partition.engine), ("patterns", partition.patterns)):
        keys = engine._partition(0).keys
        out[name] = {key: engine._encode(st) for key, st in keys.items()}
        out[name + " clock"] = engine.serialize_partition(0)
    return out


def test_reserved_looking_card_ids_restore_as_themselves() -> None:
    rules = load_rules()
    live = FraudPartition(FraudFeatureEngine(), PatternEngine(rules), 0)
    log: dict[bytes, bytes] = {}
    events = [tx(i, CARDS[i % len(CARDS)]) for i in range(140)]  # 20 each: sliced past 8
    for start in range(0, len(events), 10):
        batch = events[start : start + 10]
        rows = live.engine.process_batch(0, batch, {}).rows
        live.patterns.process_batch(0, batch, rows, {})
        for key, value in live.drain_changelog():
            if value is None:
                log.pop(key, None)
            else:
                log[key] = value
    restored = FraudPartition(FraudFeatureEngine(), PatternEngine(rules), 0)
    for key, value in log.items():
        restored.restore(key, value)
    assert sum(restored.finish_restore()) == len(CARDS)
    assert sorted(restored.engine.keys(0)) == sorted(CARDS)
    assert state(restored) == state(live)


def fold(log: dict[bytes, bytes], changes: list[tuple[bytes, bytes | None]]) -> None:
    """Apply a drain to a compacted log (the latest value per key; a tombstone removes it)."""
    for key, value in changes:
        if value is None:
            log.pop(key, None)
        else:
            log[key] = value


def feed(partition: FraudPartition, events: list[Transaction]) -> None:
    rows = partition.engine.process_batch(0, events, {}).rows
    partition.patterns.process_batch(0, events, rows, {})


def restore(log: dict[bytes, bytes]) -> FraudPartition:
    restored = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    for key, value in log.items():
        restored.restore(key, value)
    sum(restored.finish_restore())
    return restored


def test_a_touched_card_is_one_record_with_both_states() -> None:
    live = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    feed(live, [tx(i, f"c{i}") for i in range(5)])
    changes = live.drain_changelog()
    cards = {key: value for key, value in changes if not key.startswith(b"\x00")}
    assert sorted(cards) == [b"c0", b"c1", b"c2", b"c3", b"c4"]
    assert len(changes) == 5 + 2  # and the two clocks
    both = fraud_card_decoder.decode(cards[b"c0"])
    assert bytes(both.card) == live.engine._encode(live.engine._partition(0).keys["c0"])
    assert bytes(both.patterns) == live.patterns._encode(live.patterns._partition(0).keys["c0"])
    assert cards[b"c0"] == encoder.encode(FraudCardV1(both.card, both.patterns))


def test_a_card_gone_from_both_engines_is_a_tombstone() -> None:
    live = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    feed(live, [tx(0, "old")])
    live.drain_changelog()
    far = tx(1, "new")
    feed(live, [Transaction(**{**msgspec.structs.asdict(far), "event_time": T0 + 30 * DAY_MS})])
    assert dict(live.drain_changelog())[b"old"] is None


def legacy_drain(partition: FraudPartition) -> list[tuple[bytes, bytes | None]]:
    """What a fraud partition wrote before the combined record: each engine its own records."""
    changes = partition.engine.changelog(0)
    changes.extend(partition.patterns.changelog(0, PATTERN_KEY_PREFIX.encode()))
    changes.append((b"\x00partition-meta", partition.engine.serialize_partition(0)))
    changes.append((PATTERN_META_KEY.encode(), partition.patterns.serialize_partition(0)))
    return changes


def test_a_changelog_written_before_the_combined_record_restores_and_migrates() -> None:
    live = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    log: dict[bytes, bytes] = {}
    events = [tx(i, CARDS[i % len(CARDS)]) for i in range(140)]
    for start in range(0, len(events), 10):
        feed(live, events[start : start + 10])
        fold(log, legacy_drain(live))
    old_keys = {key for key in log if key.startswith(PATTERN_KEY_PREFIX.encode() + b"\x00e")}
    assert old_keys  # the old per-card pattern records, escaped ids included

    restored = restore(log)
    assert state(restored) == state(live)
    # The next commit rewrites every card restored from an old record as one combined record
    # and ends the old one, in the same drain.
    migration = restored.drain_changelog()
    fold(log, migration)
    heads = [key for key in log if key.startswith(PATTERN_KEY_PREFIX.encode())]
    assert all(key.startswith(PATTERN_KEY_PREFIX.encode() + b"\x00s") for key in heads)
    assert state(restore(log)) == state(live)
    assert restored.drain_changelog() == [
        (b"\x00partition-meta", live.engine.serialize_partition(0)),
        (PATTERN_META_KEY.encode(), live.patterns.serialize_partition(0)),
    ]  # migrated once


def test_a_large_migration_is_spread_over_commits_and_restores_at_any_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fraud_partition, "MIGRATE_PER_COMMIT", 2)
    live = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    log: dict[bytes, bytes] = {}
    feed(live, [tx(i, f"c{i}") for i in range(5)])
    fold(log, legacy_drain(live))
    old = PATTERN_KEY_PREFIX.encode()
    restored = restore(log)
    left = []
    for _ in range(3):
        fold(log, restored.drain_changelog())
        left.append(sum(1 for key in log if key.startswith(old)))
        assert state(restore(log)) == state(live)  # a crash between two of them loses nothing
    assert left == [3, 1, 0]


def test_a_combined_record_wins_over_an_old_pattern_record_of_the_card() -> None:
    live = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    feed(live, [tx(0, "c1")])
    stale = dict(legacy_drain(live))
    feed(live, [tx(1, "c1")])
    log: dict[bytes, bytes] = {}
    fold(log, live.drain_changelog())
    # Compaction keeps the old key, and a restore folds keys in their first-seen order: the old
    # record may come after the newer combined one.
    log[PATTERN_KEY_PREFIX.encode() + b"c1"] = stale[PATTERN_KEY_PREFIX.encode() + b"c1"]
    assert state(restore(log)) == state(live)


def test_an_undecodable_combined_record_names_its_card() -> None:
    partition = FraudPartition(FraudFeatureEngine(), PatternEngine(load_rules()), 0)
    bad = encoder.encode(FraudCardV1(msgspec.Raw(b"\xc0"), msgspec.Raw(b"\xc0")))[:-1]
    with pytest.raises(StateDecodeError, match="c9"):
        partition.restore(b"c9", bad)
