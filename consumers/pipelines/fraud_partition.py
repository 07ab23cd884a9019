"""One input partition of the fraud pipeline: the window state and the pattern state together.

Both engines' records go to the same changelog partition in the same Kafka transaction: the
card features under their own keys (``EnginePartition``), the pattern state under
``PATTERN_KEY_PREFIX`` + its keys and its clock under ``PATTERN_META_KEY``. So a restore after
a crash or a rebalance brings back the partial matches exactly as it brings back the windows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from consumers.pipelines.engine_partition import EnginePartition
from features.fraud import FraudFeatureEngine
from features.patterns import PATTERN_KEY_PREFIX, PATTERN_META_KEY, PatternEngine

_PREFIX = PATTERN_KEY_PREFIX.encode()
_META = PATTERN_META_KEY.encode()


class FraudPartition(EnginePartition):
    def __init__(self, engine: FraudFeatureEngine, patterns: PatternEngine, partition: int) -> None:
        super().__init__(engine, partition)
        self.patterns = patterns
        patterns.revoke(partition)  # a reopened partition starts empty, then restores
        patterns.assign(partition, now_ms=time.time_ns() // 1_000_000, changelog=True)

    def restore(self, key: bytes, value: bytes | None) -> None:
        if key == _META:
            if value:
                now_ms = time.time_ns() // 1_000_000
                self.patterns.restore_partition(self.partition, value, now_ms=now_ms)
        elif key.startswith(_PREFIX):
            self.patterns.restore_record(self.partition, key[len(_PREFIX) :], value)
        else:
            super().restore(key, value)

    def finish_restore(self) -> Iterator[int]:
        """Counts the cards with window state (their pattern state is restored beside)."""
        for _ in self.patterns.finish_restore(self.partition):
            yield 0
        yield from super().finish_restore()

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        changes = super().drain_changelog()
        patterns, partition = self.patterns, self.partition
        changes.extend(patterns.changelog(partition, _PREFIX))
        changes.append((_META, patterns.serialize_partition(partition)))
        return changes

    def close(self) -> None:
        super().close()
        self.patterns.revoke(self.partition)
