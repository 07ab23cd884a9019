"""One input partition's view of a shared feature engine, as the runner's PartitionProcessor.

An actor keeps one engine (fraud or recommendations) for all its partitions; this adapter maps
the changelog protocol onto it: the engine's records for its touched keys (``changelog``: a
whole state per key, or a head and the changed slices of its buffer) plus the partition's clock
under ``PARTITION_META_KEY``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from features.state import PARTITION_META_KEY

META_KEY = PARTITION_META_KEY.encode()


class EnginePartition:
    def __init__(self, engine: Any, partition: int) -> None:
        self.engine = engine
        self.partition = partition
        engine.revoke(partition)  # a reopened partition starts empty, then restores
        engine.assign(partition, now_ms=time.time_ns() // 1_000_000, changelog=True)

    def restore(self, key: bytes, value: bytes | None) -> None:
        if key == META_KEY:
            if value:
                now_ms = time.time_ns() // 1_000_000
                self.engine.restore_partition(self.partition, value, now_ms=now_ms)
        else:
            self.engine.restore_record(self.partition, key, value)

    def finish_restore(self) -> Iterator[int]:
        return self.engine.finish_restore(self.partition)  # type: ignore[no-any-return]

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        changes: list[tuple[bytes, bytes | None]] = self.engine.changelog(self.partition)
        changes.append((META_KEY, self.engine.serialize_partition(self.partition)))
        return changes

    def close(self) -> None:
        self.engine.revoke(self.partition)
