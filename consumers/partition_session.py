"""Exactly-once processing of one input partition, Kafka-Streams style.

An actor that owns input partition p holds a ``PartitionSession`` for it:

- a transactional producer whose id is fixed per input partition
  (``{group}-{topic}-{p}``). Starting it fences any zombie that still thinks it owns p, and
  waits for that zombie's open transaction to be aborted or completed (aiokafka's
  ``send_offsets_to_transaction`` takes only a group id, so per-partition ids are how we fence);
- the partition's keyed state, restored from partition p of a compacted changelog topic;
- the input offset to resume from: the offset record of that changelog (read after fencing),
  or the group's committed offset when the changelog has none or is behind it.

Each micro-batch's outputs, its changelog records (the new state of every key it touched) and
the input offset it covers (an offset record in the changelog) are written in one Kafka
transaction. After a crash the new owner restores the state as of the last committed
transaction and resumes at the offset committed with it: every event counts exactly once in the
state, and a read_committed reader sees each output exactly once.

Why the offset is a changelog record and not a transactional offset commit: the offset commit
costs a transaction two more requests (AddOffsetsToTxn, TxnOffsetCommit), about 40% of
aiokafka's CPU per transaction, and one more partition to mark at its end. The consumer group's
committed offset (what lag monitoring and ``rtml status`` read) is then advisory: the runner
commits it every ``rtml_group_offset_commit_interval_s`` and when it stops, never ahead of a
committed transaction. A stateless pipeline (no changelog) sends its offsets to the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from consumers.kafka_io import (
    add_partitions_to_transaction,
    make_consumer,
    make_producer,
    start_client,
    transaction_failed_fatally,
)
from rtml.kafka_batches import KeyPartitioner, Outbox
from rtml.settings import Settings

log = logging.getLogger(__name__)

# Changelog key of the input offset the state covers: the next offset to process.
OFFSET_KEY = b"\x00offset"
RESTORE_SLICE_KEYS = 2_000  # keys restored between two turns of the event loop
# How long after a transaction begins ahead its partitions are added: the previous commit's
# markers take 1 - 2 ms to write (``begin_ahead``).
ADD_AHEAD_DELAY_S = 0.003


@dataclass(slots=True)
class OutRecord:
    """One output record. ``partition`` None means: Kafka's default partitioner on ``key``."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What one batch commits on one partition, taken before the state moves on."""

    outputs: list[OutRecord]
    changelog: list[tuple[bytes, bytes | None]]
    next_offset: int
    partition_counts: dict[str, int]
    taken_at: int  # ms, the changelog records' timestamp


class PartitionProcessor(Protocol):
    """The keyed state and logic of one input partition (features; scoring sits on top)."""

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Take one changelog record (the latest value of ``key``, None: a tombstone)."""

    def finish_restore(self) -> Iterator[int]:
        """Every record is in: build the state, yielding between chunks of keys how many of
        the chunk's keys have state (the caller lets its event loop run in between)."""

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        """The serialized state of every key touched since the last drain (None: expired)."""


@dataclass
class PartitionSession:
    tp: TopicPartition
    producer: AIOKafkaProducer
    processor: PartitionProcessor
    next_offset: int
    changelog_topic: str | None
    consumer: AIOKafkaConsumer
    exactly_once: bool = True
    restored_keys: int = 0
    restore_seconds: float = 0.0
    batches: int = 0
    records: int = 0
    group_offset: int | None = None  # the offset last committed to the consumer group
    _partitioner: KeyPartitioner = field(default_factory=KeyPartitioner)
    _pending: _Snapshot | None = None
    _begun: bool = False  # a transaction begun ahead of its commit (``begin_ahead``)
    _add_timer: asyncio.TimerHandle | None = None  # its partitions, added a moment later
    _written: set[TopicPartition] = field(default_factory=set)  # by the last transaction

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        group_id: str,
        tp: TopicPartition,
        changelog_topic: str | None,
        new_processor: Callable[[int], PartitionProcessor],
        consumer: AIOKafkaConsumer,
    ) -> PartitionSession:
        started = time.monotonic()
        exactly_once = settings.rtml_delivery == "exactly_once"
        transactional_id = f"{group_id}-{tp.topic}-{tp.partition}" if exactly_once else None
        # InitProducerId: fences zombies of this partition.
        producer = await start_client(make_producer(settings, transactional_id=transactional_id))
        try:
            processor = new_processor(tp.partition)
            restored, state_offset = 0, None
            if changelog_topic is not None:
                restored, state_offset = await restore_changelog(
                    settings, TopicPartition(changelog_topic, tp.partition), processor
                )
            committed = await consumer.committed(tp)
        except BaseException:
            await producer.stop()
            raise
        next_offset = committed if committed is not None else await _earliest(consumer, tp)
        if state_offset is not None and state_offset > next_offset:
            # The state holds the records up to state_offset, and their outputs exist: exactly
            # once, they were committed in the same transaction (the group offset is advisory
            # and lags); at least once, the state was saved after the outputs and before the
            # offset commit.
            next_offset = state_offset
        consumer.seek(tp, next_offset)
        session = cls(
            tp=tp,
            producer=producer,
            processor=processor,
            next_offset=next_offset,
            changelog_topic=changelog_topic,
            consumer=consumer,
            exactly_once=exactly_once,
            restored_keys=restored,
            restore_seconds=time.monotonic() - started,
            group_offset=committed,
        )
        log.info(
            "partition %s ready: %d keys restored in %.2fs, resuming at offset %d",
            tp,
            restored,
            session.restore_seconds,
            next_offset,
        )
        return session

    def snapshot(
        self, outputs: Iterable[OutRecord], next_offset: int, partition_counts: dict[str, int]
    ) -> None:
        """Take what the batch will commit: its outputs, the changelog of the state as it is
        *now*, and the input offset. The state may change again right after (the next batch is
        processed while this one commits); ``commit_snapshot`` writes what was taken."""
        if self._pending is not None:
            raise RuntimeError(f"{self.tp}: the previous snapshot is not committed yet")
        changelog: list[tuple[bytes, bytes | None]] = []
        if self.changelog_topic is not None:
            changelog = self.processor.drain_changelog()
        self._pending = _Snapshot(
            list(outputs), changelog, next_offset, partition_counts, time.time_ns() // 1_000_000
        )

    async def begin_ahead(self) -> None:
        """Begin the next transaction now, while the batch is processed, and add to it the
        partitions it will most likely write: the changelog's and those the last transaction
        wrote, ``ADD_AHEAD_DELAY_S`` later. The broker then records them (AddPartitionsToTxn)
        off the commit's critical path, and the commit is one produce and the EndTxn. A guess
        that misses only costs a marker in a partition without records; a partition not
        guessed (or not added yet) is added at the commit, as before. Exactly once only;
        ``abort_ahead`` when the batch fails before its commit."""
        if not self.exactly_once or self._begun:
            return
        await self.producer.begin_transaction()
        self._begun = True
        expected = set(self._written)
        if self.changelog_topic is not None:
            expected.add(TopicPartition(self.changelog_topic, self.tp.partition))
        # Not at once: right after the previous commit the broker is still writing its markers
        # and answers CONCURRENT_TRANSACTIONS, retried every 2 ms (requests for nothing).
        self._add_timer = asyncio.get_running_loop().call_later(
            ADD_AHEAD_DELAY_S, add_partitions_to_transaction, self.producer, expected
        )

    async def abort_ahead(self) -> None:
        """Abort a transaction begun ahead whose batch failed (nothing was sent in it)."""
        if not self._begun:
            return
        self._begun = False
        self._cancel_add()
        await self.producer.abort_transaction()

    def _cancel_add(self) -> None:
        """The commit (or abort) is here: partitions not added yet are added by the sends."""
        if self._add_timer is not None:
            self._add_timer.cancel()
            self._add_timer = None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """The transaction begun ahead, or a new one; committed on success, else aborted."""
        if not self._begun:
            await self.producer.begin_transaction()
        self._begun = False
        self._cancel_add()
        try:
            yield
        except BaseException:
            if not transaction_failed_fatally(self.producer):
                await self.producer.abort_transaction()
            raise
        await self.producer.commit_transaction()

    async def commit_snapshot(self, group_id: str) -> None:
        """Exactly once: the snapshot's outputs, changelog and input offset in one transaction.

        At least once (brokers without transactions): outputs first, then the changelog with
        the offset it covers, then the offset commit. A crash in between repeats outputs (the
        same inputs through the same restored state: identical duplicates) but never loses one.
        """
        snap, self._pending = self._pending, None
        if snap is None:
            raise RuntimeError(f"{self.tp}: nothing to commit (snapshot first)")
        if not self.exactly_once:
            await self._commit_at_least_once(snap)
            return
        async with self._transaction():
            outbox = Outbox(self.producer)
            self._add_outputs(outbox, snap)
            if self.changelog_topic is not None:
                # The offset is a changelog record of this transaction (module docstring).
                self._add_changelog(outbox, snap, snap.next_offset)
                await asyncio.gather(*await outbox.hand_over())
            else:
                # The offsets join the transaction while the records are in flight (one round
                # trip less); both must succeed before the commit.
                delivered = await outbox.hand_over()
                await asyncio.gather(
                    *delivered,
                    self.producer.send_offsets_to_transaction(
                        {self.tp: snap.next_offset}, group_id
                    ),
                )
                self.group_offset = snap.next_offset
        self.next_offset = snap.next_offset
        self.batches += 1

    async def commit_group_offset(self, group_id: str) -> None:
        """Commit ``next_offset`` to the consumer group in a transaction of its own.

        For a member that stops: a plain offset commit needs the member's current group
        generation and fails while the group rebalances (another member left first); offsets
        sent to a transaction need only the group id. Exactly once with a changelog only."""
        offset = self.next_offset
        async with self._transaction():
            await self.producer.send_offsets_to_transaction({self.tp: offset}, group_id)
        self.group_offset = offset

    def group_offset_due(self) -> int | None:
        """The offset to commit to the consumer group (advisory), or None when it has it."""
        return None if self.group_offset == self.next_offset else self.next_offset

    async def commit(
        self,
        group_id: str,
        outputs: Iterable[OutRecord],
        next_offset: int,
        partition_counts: dict[str, int],
    ) -> None:
        """``snapshot`` and ``commit_snapshot`` in one step."""
        self.snapshot(outputs, next_offset, partition_counts)
        await self.commit_snapshot(group_id)

    async def _commit_at_least_once(self, snap: _Snapshot) -> None:
        outbox = Outbox(self.producer)
        self._add_outputs(outbox, snap)
        await outbox.send()
        outbox = Outbox(self.producer)
        self._add_changelog(outbox, snap, snap.next_offset)
        await outbox.send()
        await self.consumer.commit({self.tp: snap.next_offset})
        self.next_offset = self.group_offset = snap.next_offset
        self.batches += 1

    def _add_outputs(self, outbox: Outbox, snap: _Snapshot) -> None:
        counts = snap.partition_counts
        for record in snap.outputs:
            partition = record.partition
            if partition is None:
                if record.key is None:
                    raise ValueError(f"output to {record.topic} needs a key or a partition")
                partition = self._partitioner(record.key, counts[record.topic])
            outbox.add(record.topic, partition, record.key, record.value, record.timestamp_ms)
        self._written = {TopicPartition(topic, p) for topic, p in outbox.destinations}

    def _add_changelog(self, outbox: Outbox, snap: _Snapshot, covers_offset: int | None) -> None:
        if self.changelog_topic is None:
            return
        for key, value in snap.changelog:
            outbox.add(self.changelog_topic, self.tp.partition, key, value, snap.taken_at)
        if covers_offset is not None:
            offset = str(covers_offset).encode()
            outbox.add(self.changelog_topic, self.tp.partition, OFFSET_KEY, offset, snap.taken_at)

    async def close(self) -> None:
        self._cancel_add()  # a transaction begun ahead: its next owner's fencing aborts it
        try:
            close = getattr(self.processor, "close", None)
            if close is not None:
                close()  # drop the partition's in-memory state: it belongs to its next owner
        finally:
            await self.producer.stop()


async def _earliest(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    offsets = await consumer.beginning_offsets([tp])
    return offsets[tp]


async def restore_changelog(
    settings: Settings, tp: TopicPartition, processor: PartitionProcessor
) -> tuple[int, int | None]:
    """Replay a changelog partition (read_committed, to its end) into ``processor``.

    Only the last record per key matters (it is compacted), so records are folded first and
    each record is applied once. Returns the number of keys with state, and the input offset the
    state covers (None: the changelog has no offset record).
    """
    reader = await start_client(
        make_consumer(settings, group_id=None, read_committed=True, max_poll_records=10_000)
    )
    try:
        reader.assign([tp])
        end = (await reader.end_offsets([tp]))[tp]
        await reader.seek_to_beginning(tp)
        latest: dict[bytes, bytes | None] = {}
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=1_000)
            for record in batch.get(tp, ()):
                if record.key is not None:
                    latest[record.key] = record.value
    finally:
        await reader.stop()
    covers = latest.pop(OFFSET_KEY, None)
    for count, (key, value) in enumerate(latest.items(), 1):
        processor.restore(key, value)
        if count % RESTORE_SLICE_KEYS == 0:
            await _between_restore_slices(settings)
    restored = 0
    for keys in processor.finish_restore():
        restored += keys
        await _between_restore_slices(settings)
    return restored, int(covers) if covers else None


async def _between_restore_slices(settings: Settings) -> None:
    """Let the loop run (heartbeats, the other partitions' restores) between slices of keys.

    Decoding 100k+ keys of one partition without yielding blocked the loop past the group's
    session timeout at 1M cards: the member was dropped mid-restore and started over. The
    restored state is long-lived: with ``rtml_gc_freeze`` it is frozen as it comes, so the
    automatic collections that its growth triggers do not rescan it (seconds at that size).
    """
    if settings.rtml_gc_freeze:
        gc.freeze()
    await asyncio.sleep(0)


def records_after(records: Sequence[ConsumerRecord], next_offset: int) -> Sequence[ConsumerRecord]:
    """Drop records before ``next_offset`` (a fetch that raced a seek may deliver them)."""
    if not records or records[0].offset >= next_offset:
        return records
    return [r for r in records if r.offset >= next_offset]
