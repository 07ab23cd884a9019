"""A topic read into memory: from chosen offsets to the current end, then followed.

The base of the in-memory tables the actors keep beside their partitions (the user profiles,
the global view counts). ``start`` returns once the table has caught up with the end offsets
it found, so a pipeline never processes against a half-loaded table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumers.kafka_io import make_consumer
from infra.topics import describe_topics
from rtml.errors import ServiceUnavailable
from rtml.settings import Settings

log = logging.getLogger(__name__)


class TopicFollower(ABC):
    def __init__(
        self, settings: Settings, topic: str, *, catch_up_timeout_s: float = 120.0
    ) -> None:
        self._settings = settings
        self.topic = topic
        self._catch_up_timeout_s = catch_up_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        """Fold records (in offset order per partition) into the table."""

    async def seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Where reading starts; the whole topic by default."""
        await consumer.seek_to_beginning(*partitions)

    async def start(self) -> None:
        consumer = make_consumer(
            self._settings, group_id=None, read_committed=True, max_poll_records=10_000
        )
        try:
            await consumer.start()
            described = await describe_topics(self._settings, [self.topic])
            if not described:
                raise ServiceUnavailable("kafka", f"topic {self.topic} does not exist")
            tps = [TopicPartition(self.topic, p) for p in range(described[0].partitions)]
            consumer.assign(tps)
            await self.seek(consumer, tps)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + self._catch_up_timeout_s
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                if time.monotonic() > deadline:
                    raise ServiceUnavailable("kafka", f"{self.topic} did not load in time")
                self._apply_batch(await consumer.getmany(timeout_ms=500))
        except KafkaError as exc:
            await consumer.stop()
            raise ServiceUnavailable("kafka", f"cannot read {self.topic}: {exc}") from exc
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name=f"follow-{self.topic}")

    def _apply_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for records in batch.values():
            self.apply(records)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                self._apply_batch(await consumer.getmany(timeout_ms=200))
            except KafkaError as exc:  # the consumer reconnects by itself
                log.warning("following %s: %s", self.topic, exc)
                await asyncio.sleep(1.0)

    @property
    def failed(self) -> BaseException | None:
        """The error that ended the following task, if it died (``apply`` raised)."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
