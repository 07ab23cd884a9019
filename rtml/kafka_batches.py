"""Kafka record batches: Kafka's key partitioner and the ``Outbox``, the batched write path.

Per-record ``producer.send()`` costs tens of microseconds of Python (a coroutine, the
partitioner, a future per record); appending to a record batch costs about half a microsecond.
The ``Outbox`` collects records per destination partition into aiokafka batch builders and hands
each over with one ``send_batch``. The consumers' transactions and the producers' sink both
write through it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2


class KeyPartitioner:
    """Kafka's default partitioner (murmur2 of the key), with a memo per key (at most
    ``max_entries`` per partition count; a full one starts over).

    The memo maps bytes to int, one dict per partition count: it holds no container, so the
    garbage collector never tracks it. Keyed by ``(key, count)`` tuples it was tracked (each
    new tuple is), went back among the young objects whenever a key was added, and every
    collection between batches walked all of its up to ``max_entries`` entries again.
    """

    def __init__(self, max_entries: int = 500_000) -> None:
        self._memo: dict[int, dict[bytes, int]] = {}
        self._max_entries = max_entries

    def __call__(self, key: bytes, partitions: int) -> int:
        memo = self._memo.get(partitions)
        if memo is None:
            memo = self._memo[partitions] = {}
        partition = memo.get(key)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % partitions
            if len(memo) >= self._max_entries:
                memo.clear()
            memo[key] = partition
        return partition


class Outbox:
    """A micro-batch's output records, grouped per destination topic-partition.

    ``handed`` lists ``(topic, records, delivery future)`` for every batch handed to the
    producer so far, also when ``hand_over`` raised part way: what was sent can be counted.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._builders: dict[tuple[str, int], list[Any]] = defaultdict(list)
        self.count = 0
        self.handed: list[tuple[str, int, asyncio.Future[Any]]] = []

    def add(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, timestamp_ms: int
    ) -> None:
        builders = self._builders[(topic, partition)]
        if (
            builders
            and builders[-1].append(timestamp=timestamp_ms, key=key, value=value) is not None
        ):
            self.count += 1
            return
        builder = self._producer.create_batch()
        if builder.append(timestamp=timestamp_ms, key=key, value=value) is None:
            raise ValueError(f"record for {topic}[{partition}] exceeds the producer's batch size")
        builders.append(builder)
        self.count += 1

    @property
    def destinations(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs that have records not yet handed over."""
        return list(self._builders)

    async def hand_over(self) -> list[asyncio.Future[Any]]:
        """Hand every batch to the producer; returns their delivery futures.

        The batches are closed first: complete, they go out at once instead of lingering
        (``linger_ms``) for records that will never come."""
        futures = []
        builders_by_tp, self._builders = self._builders, defaultdict(list)
        for (topic, partition), builders in builders_by_tp.items():
            for builder in builders:
                builder.close()
                future = await self._producer.send_batch(builder, topic, partition=partition)
                self.handed.append((topic, builder.record_count(), future))
                futures.append(future)
        return futures

    async def send(self) -> None:
        """Hand every batch to the producer and wait until the broker acknowledged them all."""
        futures = await self.hand_over()
        if futures:
            await asyncio.gather(*futures)
