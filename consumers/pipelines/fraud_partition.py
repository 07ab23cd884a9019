"""One input partition of the fraud pipeline: the window state and the pattern state together.

Both engines' records go to the same changelog partition in the same Kafka transaction. A
touched card is written as one record under its key (``FraudCardV1``: the card engine's whole
state or head, and the pattern engine's), where each engine used to write its own: about half
the records per batch, for the producer, the broker, the log cleaner and a restore. The slices
of either buffer keep their own records (the pattern ones under ``PATTERN_KEY_PREFIX``), and so
do the two clocks (``PARTITION_META_KEY``, ``PATTERN_META_KEY``). A restore after a crash or a
rebalance brings back the partial matches exactly as it brings back the windows.

Changelogs written before the combined record hold each card's pattern state under
``PATTERN_KEY_PREFIX`` + its key. They restore as before, unless a combined record for the card
is there too (it is newer: the pattern record is stale). The commits after such a restore
migrate them, ``MIGRATE_PER_COMMIT`` cards at a time: each card's combined record and a
tombstone for its old one, in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec

from consumers.pipelines.engine_partition import META_KEY, EnginePartition
from features._engine import entity_key, entity_of
from features.errors import StateDecodeError
from features.fraud import FraudFeatureEngine
from features.patterns import PATTERN_KEY_PREFIX, PATTERN_META_KEY, PatternEngine
from features.state import SLICE_KEY_PREFIX, FraudCardV1, encoder, fraud_card_decoder

_PREFIX = PATTERN_KEY_PREFIX.encode()
_META = PATTERN_META_KEY.encode()
_NIL_BYTES = b"\xc0"  # msgpack nil: no state in that engine
_NIL = msgspec.Raw(_NIL_BYTES)
_COMBINED = encoder.encode(FraudCardV1(_NIL, _NIL))[:-2]  # what every combined record starts with
MIGRATE_PER_COMMIT = 10_000  # cards: keeps a migrating commit near the size of a usual one


class FraudPartition(EnginePartition):
    def __init__(self, engine: FraudFeatureEngine, patterns: PatternEngine, partition: int) -> None:
        super().__init__(engine, partition)
        self.patterns = patterns
        patterns.revoke(partition)  # a reopened partition starts empty, then restores
        patterns.assign(partition, now_ms=time.time_ns() // 1_000_000, changelog=True)
        self._legacy: dict[bytes, bytes | None] = {}  # restore: old pattern records, by card key
        self._migrate: list[bytes] = []  # card keys whose old pattern record the next commit ends

    def restore(self, key: bytes, value: bytes | None) -> None:
        if key == _META:
            if value:
                now_ms = time.time_ns() // 1_000_000
                self.patterns.restore_partition(self.partition, value, now_ms=now_ms)
        elif key.startswith(_PREFIX):
            key = key[len(_PREFIX) :]
            if key.startswith(SLICE_KEY_PREFIX):
                self.patterns.restore_record(self.partition, key, value)
            else:
                self._legacy[key] = value  # settled in finish_restore, once every record is in
        elif value is not None and value.startswith(_COMBINED):
            try:
                both = fraud_card_decoder.decode(value)
            except msgspec.DecodeError as exc:
                raise StateDecodeError(self.partition, entity_of(key), str(exc)) from exc
            super().restore(key, _state(both.card))
            self.patterns.restore_record(self.partition, key, _state(both.patterns))
        else:
            super().restore(key, value)

    def finish_restore(self) -> Iterator[int]:
        """Counts the cards with window state (their pattern state is restored beside)."""
        legacy, self._legacy = self._legacy, {}
        patterns, partition = self.patterns, self.partition
        for key, value in legacy.items():
            if not patterns.holds(partition, entity_of(key)):  # else a combined record did
                patterns.restore_record(partition, key, value)
            if value is not None:
                self._migrate.append(key)
        for _ in patterns.finish_restore(partition):
            yield 0
        yield from super().finish_restore()

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        engine, patterns, partition = self.engine, self.patterns, self.partition
        keys = engine.take_touched(partition)
        keys |= patterns.take_touched(partition)
        migrate = self._migrate[-MIGRATE_PER_COMMIT:]
        del self._migrate[-MIGRATE_PER_COMMIT:]
        keys.update(entity_of(key) for key in migrate)
        order = list(keys)
        cards, changes = engine.changelog_parts(partition, order)
        pattern_heads, pattern_slices = patterns.changelog_parts(partition, order, _PREFIX)
        add, join, combined, nil = changes.append, b"".join, _COMBINED, _NIL_BYTES
        for key, card, pattern in zip(order, cards, pattern_heads, strict=True):
            if card is None and pattern is None:
                add((entity_key(key), None))
            else:  # FraudCardV1 with both records embedded as they are (tested against it)
                add((entity_key(key), join((combined, card or nil, pattern or nil))))
        changes += pattern_slices
        changes.extend((_PREFIX + key, None) for key in migrate)
        changes.append((META_KEY, engine.serialize_partition(partition)))
        changes.append((_META, patterns.serialize_partition(partition)))
        return changes

    def close(self) -> None:
        super().close()
        self.patterns.revoke(self.partition)


def _state(raw: msgspec.Raw) -> bytes | None:
    """One engine's record embedded in a combined one (None: that engine had no state)."""
    data = bytes(raw)
    return None if data == _NIL_BYTES else data
