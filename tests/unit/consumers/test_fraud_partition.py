"""A fraud partition's changelog (both engines, one log) restores to exactly the live state,
whatever the card ids: ids may start with NUL, as every reserved changelog key does."""

from __future__ import annotations

from typing import Any

from consumers.pipelines.fraud_partition import FraudPartition
from contracts.events import Transaction
from features.fraud import FraudFeatureEngine
from features.patterns import PatternEngine
from features.patterns.language import load_rules

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
