"""Global (all-partition) view counts per 1-minute slice, exactly once, through Kafka.

Each recommendation actor counts the views of its own partitions per slice (the engine's
``drain_view_deltas``) and writes those deltas to the ``{group}-view-slices`` topic inside the
same transaction as its offsets, so a delta is published exactly once however often a batch is
retried. Every actor follows that topic (read_committed) into a ``GlobalViews`` and reads IDF
and item popularity from it: the complete slices [h - 60 min, h).

Bound: an actor sees another partition's views of a minute once that partition's batch is
committed and fetched, i.e. within one batch interval plus the follower's poll (typically well
under a second when the pipeline keeps up); a lagging partition delays its own minutes only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumers.topic_follower import TopicFollower
from features.aggregates import GlobalViews, ViewSliceDelta
from features.definitions import SLICE_MS
from rtml.settings import Settings, TopicSpec

# Slices kept in memory: the 60-slice window plus slack for late deltas and lagging readers.
RETAIN_MS = 3 * 60 * SLICE_MS


class SliceDelta(msgspec.Struct, array_like=True):
    slice_start_ms: int
    categories: dict[str, int]
    items: dict[str, int]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SliceDelta)


def encode_delta(delta: ViewSliceDelta) -> bytes:
    return _encoder.encode(SliceDelta(delta.slice_start_ms, delta.categories, delta.items))


def topic_spec(name: str) -> TopicSpec:
    # Deltas older than the retained window are useless: let Kafka delete them.
    return TopicSpec(name=name, partitions=1, config={"retention.ms": str(4 * RETAIN_MS)})


class GlobalViewsFollower(TopicFollower):
    """Keeps ``views`` up to date from the deltas topic, from ``RETAIN_MS`` ago onwards."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        self.views = GlobalViews()
        self.applied = 0
        self.newest_slice_ms: int | None = None  # start of the newest slice seen (maybe partial)

    async def seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        since = time.time_ns() // 1_000_000 - RETAIN_MS
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, since))
        for tp in partitions:
            if found.get(tp) is not None:
                consumer.seek(tp, found[tp].offset)
            else:
                await consumer.seek_to_end(tp)

    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        deltas = []
        for record in records:
            delta = _decoder.decode(record.value)
            deltas.append(ViewSliceDelta(delta.slice_start_ms, delta.categories, delta.items))
        if not deltas:
            return
        self.views.apply(deltas)
        self.applied += len(deltas)
        newest = max(d.slice_start_ms for d in deltas)
        if self.newest_slice_ms is None or newest > self.newest_slice_ms:
            self.newest_slice_ms = newest
            self.views.evict_before(newest - RETAIN_MS)
