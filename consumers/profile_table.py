"""The user-profiles topic materialized in memory: the table side of the fraud stream-table join.

Transactions are keyed by card and profiles by user, so they are not co-partitioned; every
fraud actor therefore keeps the whole (compacted, small) profiles table, like a Kafka Streams
GlobalKTable: read from the beginning to the end offsets on start, then followed in the
background. The join is "as of processing time": a transaction sees the profile the table holds
when its batch is processed. A tombstone (null value) deletes the profile.

Invalid profile records are counted and skipped here; the profiles materializer (which
commits offsets) is the one that dead-letters them, so a restart does not dead-letter them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from consumers.kafka_io import make_consumer
from contracts.codec import EventDecoder
from contracts.events import UserProfile
from infra.topics import describe_topics
from rtml.errors import InvalidEvent, ServiceUnavailable
from rtml.settings import Settings

log = logging.getLogger(__name__)


class ProfileTable:
    def __init__(self, settings: Settings, *, catch_up_timeout_s: float = 120.0) -> None:
        self._settings = settings
        self._topic = settings.rtml_topics.user_profiles.name
        self._decoder = EventDecoder(UserProfile, max_bytes=settings.rtml_max_record_bytes)
        self._profiles: dict[str, UserProfile] = {}
        self._catch_up_timeout_s = catch_up_timeout_s
        self._task: asyncio.Task[None] | None = None
        self.invalid = 0
        self.updates = 0
        self.last_update_ms = 0

    def get(self, user_id: str) -> UserProfile | None:
        return self._profiles.get(user_id)

    def __len__(self) -> int:
        return len(self._profiles)

    async def start(self) -> None:
        """Load the table to the current end of the topic, then follow it in the background."""
        consumer = make_consumer(self._settings, group_id=None, max_poll_records=10_000)
        try:
            await consumer.start()
            described = await describe_topics(self._settings, [self._topic])
            if not described:
                raise ServiceUnavailable("kafka", f"topic {self._topic} does not exist")
            tps = [TopicPartition(self._topic, p) for p in range(described[0].partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + self._catch_up_timeout_s
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                if time.monotonic() > deadline:
                    raise ServiceUnavailable("kafka", f"{self._topic} did not load in time")
                self._apply(await consumer.getmany(timeout_ms=500))
        except KafkaError as exc:
            await consumer.stop()
            raise ServiceUnavailable("kafka", f"cannot load {self._topic}: {exc}") from exc
        except BaseException:
            await consumer.stop()
            raise
        log.info("profile table loaded: %d profiles", len(self._profiles))
        self._task = asyncio.create_task(self._follow(consumer), name="profile-table")

    async def _follow(self, consumer) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                try:
                    self._apply(await consumer.getmany(timeout_ms=1_000))
                except KafkaError as exc:  # the consumer reconnects by itself
                    log.warning("profile table follow: %s", exc)
                    await asyncio.sleep(1.0)
        finally:
            await consumer.stop()

    def _apply(self, batch: dict) -> None:  # type: ignore[type-arg]
        for records in batch.values():
            for record in records:
                if record.key is None:
                    self.invalid += 1
                    continue
                user_id = record.key.decode("utf-8", "replace")
                if record.value is None:
                    self._profiles.pop(user_id, None)
                else:
                    try:
                        profile = self._decoder.decode(record.value).event
                    except InvalidEvent:
                        self.invalid += 1
                        continue
                    self._profiles[profile.user_id] = profile
                self.updates += 1
                self.last_update_ms = record.timestamp

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
