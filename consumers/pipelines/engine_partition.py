"""One input partition's view of a shared feature engine, as the runner's PartitionProcessor.

An actor keeps one engine (fraud or recommendations) for all its partitions; this adapter maps
the changelog protocol onto it: one record per touched key (its serialized state, None when it
expired) plus the partition's clock under ``PARTITION_META_KEY``.
"""

from __future__ import annotations

import time
from typing import Any

from features.state import PARTITION_META_KEY

META_KEY = PARTITION_META_KEY.encode()


class EnginePartition:
    def __init__(self, engine: Any, partition: int) -> None:
        self.engine = engine
        self.partition = partition
        engine.revoke(partition)  # a reopened partition starts empty, then restores
        engine.assign(partition, now_ms=time.time_ns() // 1_000_000)

    def restore(self, key: bytes, value: bytes | None) -> None:
        if key == META_KEY:
            if value:
                now_ms = time.time_ns() // 1_000_000
                self.engine.restore_partition(self.partition, value, now_ms=now_ms)
        else:
            self.engine.restore(self.partition, key.decode("utf-8"), value)

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        engine, partition = self.engine, self.partition
        changes: list[tuple[bytes, bytes | None]] = [
            (key.encode("utf-8"), engine.serialize(partition, key))
            for key in engine.drain_touched(partition)
        ]
        changes.append((META_KEY, engine.serialize_partition(partition)))
        return changes

    def close(self) -> None:
        self.engine.revoke(self.partition)
