"""Throughput per topic and lag per consumer group, read from Kafka's own offsets.

Works against any running pipeline (nothing in-process needed): end offsets give records
written per topic, the groups' committed offsets give how far each pipeline has come. Rates are
differences between two snapshots, so the first snapshot shows totals only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from infra.topics import describe_topics
from rtml.errors import ServiceUnavailable
from rtml.settings import Settings


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    end_offsets: dict[str, dict[int, int]]  # topic -> partition -> end offset
    committed: dict[str, dict[str, dict[int, int]]]  # group -> topic -> partition -> offset

    def total(self, topic: str) -> int:
        return sum(self.end_offsets.get(topic, {}).values())

    def lag(self, group: str, topic: str) -> int:
        ends = self.end_offsets.get(topic, {})
        done = self.committed.get(group, {}).get(topic, {})
        return sum(max(0, end - done.get(p, 0)) for p, end in ends.items())


@dataclass(frozen=True)
class TopicRate:
    topic: str
    total: int
    per_second: float | None


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    lag: int
    consumed_per_second: float | None


@dataclass(frozen=True)
class Report:
    topics: list[TopicRate]
    groups: list[GroupLag] = field(default_factory=list)


class OffsetMonitor:
    """Keeps one consumer and one admin client open; ``snapshot()`` is two round trips."""

    def __init__(self, settings: Settings, topics: Sequence[str], groups: Sequence[str]) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._groups = list(groups)
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partitions: list[TopicPartition] = []

    async def start(self) -> None:
        kwargs = self._settings.kafka_client_kwargs()
        self._consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False, group_id=None)
        self._admin = AIOKafkaAdminClient(**kwargs)
        try:
            await self._consumer.start()
            await self._admin.start()
            described = await describe_topics(self._settings, self._topics)
        except KafkaError as exc:
            await self.stop()
            raise ServiceUnavailable("kafka", f"cannot read offsets: {exc}") from exc
        except BaseException:
            await self.stop()
            raise
        self._partitions = [
            TopicPartition(info.name, p) for info in described for p in range(info.partitions)
        ]

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def snapshot(self) -> Snapshot:
        assert self._consumer is not None and self._admin is not None, "start() first"
        try:
            ends = await self._consumer.end_offsets(self._partitions) if self._partitions else {}
            committed: dict[str, dict[str, dict[int, int]]] = {}
            for group in self._groups:
                offsets = await self._group_offsets(group)
                by_topic: dict[str, dict[int, int]] = {}
                for tp, meta in offsets.items():
                    if meta.offset >= 0:
                        by_topic.setdefault(tp.topic, {})[tp.partition] = meta.offset
                committed[group] = by_topic
        except KafkaError as exc:
            raise ServiceUnavailable("kafka", f"cannot read offsets: {exc}") from exc
        by_topic_end: dict[str, dict[int, int]] = {}
        for tp, end in ends.items():
            by_topic_end.setdefault(tp.topic, {})[tp.partition] = end
        return Snapshot(time.monotonic(), by_topic_end, committed)

    async def _group_offsets(self, group: str, attempts: int = 10) -> dict[TopicPartition, Any]:
        """A group's committed offsets; retries while the broker finds the coordinator (on a
        fresh broker, the offsets topic is created by the first lookup)."""
        assert self._admin is not None
        for attempt in range(attempts):
            try:
                return await self._admin.list_consumer_group_offsets(group)
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")


def report(current: Snapshot, previous: Snapshot | None, group_inputs: dict[str, str]) -> Report:
    """Rates between two snapshots; ``group_inputs`` maps each group to its input topic."""
    elapsed = current.taken_at - previous.taken_at if previous else 0.0

    def rate(now: int, before: int) -> float | None:
        return (now - before) / elapsed if previous and elapsed > 0 else None

    topics = [
        TopicRate(t, current.total(t), rate(current.total(t), previous.total(t) if previous else 0))
        for t in sorted(current.end_offsets)
    ]
    groups = []
    for group, topic in group_inputs.items():
        done = sum(current.committed.get(group, {}).get(topic, {}).values())
        before = sum(previous.committed.get(group, {}).get(topic, {}).values()) if previous else 0
        groups.append(GroupLag(group, topic, current.lag(group, topic), rate(done, before)))
    return Report(topics, groups)
