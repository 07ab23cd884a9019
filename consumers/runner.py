"""The consume loop of one consumer actor: poll a micro-batch, process it, commit it.

The loop owns group membership and the partition sessions (exactly-once state and
transactions, see ``partition_session``); a ``Pipeline`` owns what happens to the records.
One poll batch becomes one ``Pipeline.process`` call (one model call, one Redis pipeline), then
one transaction per input partition in the batch, committed concurrently.

Each partition's batch is snapshotted (outputs, changelog, offset: ``PartitionSession.snapshot``)
and committed before the next poll. With ``rtml_overlap_commits`` the transactions run as a task
(``_inflight``) while the next batch is polled and processed (the snapshot is taken before the
next batch touches the state); that batch's transactions begin only after it committed, and the
task is settled before revocation, recovery and shutdown. A record then waits about
max(process, commit) per cycle instead of their sum, when there is a core to spare: on 2 shared
cores the two competed for the CPU and it was slower, hence off by default.

Prefetch (``rtml_prefetch``): aiokafka sends no fetch to a broker while records it fetched from
that broker wait in its buffer, and a fetch returns as soon as any record is there. Polled once
per cycle, a record arriving just after that fetch returned waited for the next cycle's fetch
and was processed a cycle later still. While a batch is processed and committed, the loop keeps
taking what the fetcher returns (``_prefetch``, up to ``max_poll_records``) so a fetch is always
outstanding; the next cycle processes those records first. Records taken under a session that
has since closed (revoked, recovered, reopened with a seek) are dropped: the next session seeks
to its offset.

Garbage collection (``rtml_gc_freeze``): the keyed state is millions of long-lived container
objects, and a full collection of them stalls the loop for hundreds of ms per 100k keys (at 1M
cards, for longer than the group's session timeout: the member is dropped). At most every
``rtml_gc_collect_interval_s``, between batches and on idle or failed turns of the loop, the
runner collects the objects allocated since the last freeze (the loop's own cyclic garbage;
frozen objects are not scanned) and freezes the heap, so no collection ever scans the state.
While the loop runs, Python's automatic collections are off: they only rescanned the batch in
progress, 9% of an actor's CPU at 20,000 tx/s, and the collection after every small batch cost
~1.6 ms a cycle at 2,000 tx/s. Cyclic garbage waits at most the interval; state a key drops is
freed by reference counting, frozen or not. A periodic full collection
(``rtml_gc_full_collection_s``) is off by default.

Backpressure: at most one batch commits behind the one being processed, and a batch is not
committed before the previous one, so a slow downstream stage slows consumption instead of
filling memory; the fetcher's buffer is bounded by ``fetch_max_bytes``. Lag grows in Kafka,
where it is cheap and visible.

Group offsets: exactly once with keyed state, the offset a batch covers is committed in its
changelog transaction (``partition_session``); the consumer group's committed offsets, which
lag monitoring reads, are advisory. The loop commits them every
``rtml_group_offset_commit_interval_s`` in the background (one OffsetCommit for all its
partitions) and once more when it stops; a failed one is retried at the next interval.

Failures: a batch that cannot be committed (broker down, fenced, Redis down) is aborted, every
owned partition is reopened from its changelog (state and offset), and the loop retries with
backoff. The in-memory state is never trusted past a failed commit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumers.kafka_io import end_cancelled_fetches, make_consumer
from consumers.partition_session import (
    OutRecord,
    PartitionProcessor,
    PartitionSession,
    records_after,
)
from monitoring.pipeline_metrics import BatchStats, PipelineMetrics
from rtml.errors import RtmlError
from rtml.gc_control import automatic_gc
from rtml.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PartitionBatch:
    """The records of one input partition in a poll batch, and that partition's processor."""

    partition: int
    processor: PartitionProcessor
    records: Sequence[ConsumerRecord]


class Pipeline(Protocol):
    """What a consumer group does with its input: features, scoring, online store, outputs."""

    group_id: str
    input_topic: str
    changelog_topic: str | None  # None: a stateless pipeline
    # Optional, for metrics: ``name`` (the pipeline label, default the group id),
    # ``feature_group`` (its online-store group, for freshness) and ``batch_stats`` (a
    # ``BatchStats`` the pipeline fills with stage times and scores during ``process``).

    def new_processor(self, partition: int) -> PartitionProcessor: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def process(self, batches: list[PartitionBatch]) -> dict[int, list[OutRecord]]:
        """Process one poll batch; returns the output records per input partition.

        Bad records become dead-letter outputs; raising means the whole batch failed (an
        unavailable service) and will be retried from committed state.
        """
        ...

    def on_idle(self, processors: dict[int, PartitionProcessor], now_ms: int) -> None:
        """Called between polls: lets idle partitions advance their watermark."""
        ...

    def output_partitions(self) -> dict[str, int]:
        """Partition count of every output topic (for keyed outputs)."""
        ...

    def stats(self) -> dict[str, object]:
        """Pipeline counters: dead letters by reason, late events, unknown fields..."""
        ...


@dataclass
class RunnerStats:
    records: int = 0
    batches: int = 0
    failures: int = 0
    recoveries: int = 0
    last_batch_size: int = 0
    last_batch_seconds: float = 0.0
    # Wall seconds of the batches, by phase (sums: divide by ``batches`` for a mean).
    poll_seconds: float = 0.0  # getmany calls that returned records
    process_seconds: float = 0.0  # Pipeline.process
    commit_seconds: float = 0.0  # the transactions (or at-least-once writes)
    gc_seconds: float = 0.0  # the collections between batches (``rtml_gc_freeze``)
    gc_collections: int = 0
    started_at: float = field(default_factory=time.time)
    lag: dict[int, int] = field(default_factory=dict)
    restore_seconds: dict[int, float] = field(default_factory=dict)


class ConsumerRunner(ConsumerRebalanceListener):
    """Runs one group member until ``stop()``; partitions rebalance as members come and go."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        *,
        max_poll_records: int | None = None,
        poll_timeout_ms: int = 100,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._max_poll_records = max_poll_records or settings.rtml_max_poll_records
        self._poll_timeout_ms = poll_timeout_ms
        self._assigned: set[int] = set()  # by the group; a session exists once restored
        self._sessions: dict[int, PartitionSession] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._listener_error: BaseException | None = None
        self._inflight: asyncio.Task[None] | None = None  # the previous batch's commit
        self._advice: asyncio.Task[None] | None = None  # an advisory group offset commit
        self._next_advice = 0.0
        # Prefetched records, per partition, with the session they were taken under.
        self._carry: dict[TopicPartition, tuple[PartitionSession, list[ConsumerRecord]]] = {}
        self._carried = 0
        self._next_collect = 0.0
        self._next_full_gc = (
            time.monotonic() + settings.rtml_gc_full_collection_s
            if settings.rtml_gc_full_collection_s
            else float("inf")
        )
        self.stats = RunnerStats()
        self.metrics = PipelineMetrics(
            getattr(pipeline, "name", pipeline.group_id),
            pipeline.group_id,
            pipeline.input_topic,
            feature_group=getattr(pipeline, "feature_group", None),
        )

    @property
    def assigned(self) -> list[int]:
        """Partitions the group gave this member."""
        return sorted(self._assigned)

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    @property
    def ready(self) -> list[int]:
        """Assigned partitions whose state is restored: the ones being processed."""
        return sorted(self._sessions)

    def stop(self) -> None:
        """Ask the loop to finish its in-flight batch, commit it and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        with automatic_gc.paused(self._settings.rtml_gc_freeze):
            await self._run()

    async def _run(self) -> None:
        pipeline = self._pipeline
        try:
            await pipeline.start()
        except BaseException:
            await pipeline.stop()
            raise
        consumer = make_consumer(
            self._settings,
            group_id=pipeline.group_id,
            max_poll_records=self._max_poll_records,
        )
        self._consumer = consumer
        try:
            await consumer.start()
            consumer.subscribe([pipeline.input_topic], listener=self)
            backoff = 0.5
            while not self._stopping.is_set():
                try:
                    await self._poll_once(consumer)
                    await self._advise_group_offsets(consumer)
                    backoff = 0.5
                except (KafkaError, RtmlError, OSError) as exc:
                    self.stats.failures += 1
                    self.metrics.batch_failed()
                    log.warning("batch failed (%s); recovering from committed state", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    await self._recover(consumer)
                # Every turn, idle or failing ones too: the automatic collections are off, and
                # the metrics' exports are coalesced.
                self._collect_garbage()
                self.metrics.flush_when_due()
        finally:
            async with self._lock:
                await self._settle_commits(raise_errors=False)
                await self._advise_group_offsets(consumer, final=True)
                await self._close_sessions(list(self._sessions))
            await consumer.stop()  # leaves the group: the others take over at once
            await pipeline.stop()
            self.metrics.flush()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        if self._listener_error is not None:
            error, self._listener_error = self._listener_error, None
            raise RtmlError(f"partition assignment failed: {error}") from error
        missing = sorted(self._assigned - self._sessions.keys())
        if missing:
            async with self._lock:
                await self._open_sessions(consumer, missing)
        poll_started = time.perf_counter()
        polled = self._take_carry()
        room = self._max_poll_records - sum(len(r) for r in polled.values())
        if room > 0:
            more = await consumer.getmany(
                timeout_ms=0 if polled else self._poll_timeout_ms, max_records=room
            )
            for tp, records in more.items():
                polled.setdefault(tp, []).extend(records)
        poll_seconds = time.perf_counter() - poll_started
        async with self._lock:
            batches = []
            for tp, records in polled.items():
                session = self._sessions.get(tp.partition)
                if session is None:  # revoked while the fetch was in flight
                    continue
                records = records_after(records, session.next_offset)
                if records:
                    batches.append(PartitionBatch(tp.partition, session.processor, records))
            now_ms = time.time_ns() // 1_000_000
            self._pipeline.on_idle({p: s.processor for p, s in self._sessions.items()}, now_ms)
            if not batches:
                if self._inflight is not None and self._inflight.done():
                    await self._settle_commits()  # an idle loop still learns of a failed commit
                self._update_lag(consumer)
                return
            batch_stats: BatchStats | None = getattr(self._pipeline, "batch_stats", None)
            if batch_stats is not None:
                batch_stats.reset()  # what a failed batch left
            started = time.perf_counter()
            prefetch = None
            if self._settings.rtml_prefetch:
                prefetch = asyncio.create_task(self._prefetch(consumer))
            try:
                await self._process_and_commit(
                    consumer, batches, batch_stats, started, poll_seconds
                )
            finally:
                if prefetch is not None:
                    prefetch.cancel()
                    await asyncio.wait([prefetch])
                    end_cancelled_fetches(consumer)  # the prefetch's getmany, if it waited

    async def _process_and_commit(
        self,
        consumer: AIOKafkaConsumer,
        batches: list[PartitionBatch],
        batch_stats: BatchStats | None,
        started: float,
        poll_seconds: float,
    ) -> None:
        """Process a poll batch and commit it (or hand the commit to a task: overlapped).

        Without overlap, the batch's transactions begin before it is processed, so the broker
        adds their partitions meanwhile (``PartitionSession.begin_ahead``)."""
        sessions = [self._sessions[b.partition] for b in batches]
        settings = self._settings
        ahead = settings.rtml_begin_transactions_ahead and not settings.rtml_overlap_commits
        try:
            if ahead:
                await asyncio.gather(*(s.begin_ahead() for s in sessions))
            outputs = await self._pipeline.process(batches)
        except BaseException:
            if ahead:
                await asyncio.gather(*(s.abort_ahead() for s in sessions), return_exceptions=True)
            raise
        processed = time.perf_counter()
        measured = batch_stats.take() if batch_stats is not None else None
        # The previous batch must be committed before this one's transactions begin.
        await self._settle_commits()
        counts = self._pipeline.output_partitions()
        for session, b in zip(sessions, batches, strict=True):
            session.snapshot(outputs.get(b.partition, ()), b.records[-1].offset + 1, counts)
        size = sum(len(b.records) for b in batches)
        records = {b.partition: b.records for b in batches}
        commit = self._commit(
            sessions, records, outputs, measured, size, started, processed, poll_seconds
        )
        if self._settings.rtml_overlap_commits:
            self._inflight = asyncio.create_task(commit)  # settled before the next commit
        else:
            await commit
        self._update_lag(consumer)

    def _collect_garbage(self, *, now: bool = False) -> None:
        """Between batches (at most every ``rtml_gc_collect_interval_s``) and after a restore
        (``now``): collect what was allocated since the last freeze, then freeze it; a full
        collection first when one is due."""
        settings = self._settings
        if not settings.rtml_gc_freeze:
            return
        started = time.monotonic()
        if started < self._next_collect and not now:
            return
        self._next_collect = started + settings.rtml_gc_collect_interval_s
        if started >= self._next_full_gc:
            gc.unfreeze()
            self._next_full_gc = started + settings.rtml_gc_full_collection_s
        gc.collect()  # frozen objects are not scanned: only the batch's (or everything, unfrozen)
        gc.freeze()
        self.stats.gc_seconds += time.monotonic() - started
        self.stats.gc_collections += 1

    def _take_carry(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The prefetched records whose session is still the one they were taken under."""
        carry, self._carry, self._carried = self._carry, {}, 0
        return {
            tp: records
            for tp, (session, records) in carry.items()
            if self._sessions.get(tp.partition) is session
        }

    async def _prefetch(self, consumer: AIOKafkaConsumer) -> None:
        """Take fetched records into ``_carry`` until cancelled or ``max_poll_records`` wait."""
        while self._carried < self._max_poll_records:
            polled = await consumer.getmany(
                timeout_ms=self._poll_timeout_ms,
                max_records=self._max_poll_records - self._carried,
            )
            for tp, records in polled.items():
                session = self._sessions.get(tp.partition)
                if session is None:
                    continue  # not ours, or not restored: its next session seeks
                held = self._carry.get(tp)
                if held is not None and held[0] is session:
                    held[1].extend(records)
                else:
                    self._carry[tp] = (session, list(records))
                self._carried += len(records)

    async def _commit(
        self,
        sessions: list[PartitionSession],
        records: dict[int, Sequence[ConsumerRecord]],
        outputs: dict[int, list[OutRecord]],
        measured: BatchStats | None,
        size: int,
        started: float,
        processed: float,
        poll_seconds: float,
    ) -> None:
        """Commit a processed batch: one transaction per input partition, concurrently."""
        await asyncio.gather(*(s.commit_snapshot(self._pipeline.group_id) for s in sessions))
        committed = time.perf_counter()
        self.metrics.batch_committed(
            records,
            outputs,
            measured,
            process_s=processed - started,
            produce_s=committed - processed,
            committed_at_ms=time.time_ns() // 1_000_000,
            pipeline_stats=self._pipeline.stats(),
        )
        stats = self.stats
        stats.records += size
        stats.batches += 1
        stats.last_batch_size = size
        stats.last_batch_seconds = committed - started
        stats.poll_seconds += poll_seconds
        stats.process_seconds += processed - started
        stats.commit_seconds += committed - processed

    async def _settle_commits(self, *, raise_errors: bool = True) -> None:
        """Wait for the in-flight commit; its failure is raised here (the loop recovers)."""
        task, self._inflight = self._inflight, None
        if task is None:
            return
        try:
            await task
        except (KafkaError, RtmlError, OSError):
            if raise_errors:
                raise
            log.warning("the last batch's commit failed while closing", exc_info=True)

    async def _advise_group_offsets(
        self, consumer: AIOKafkaConsumer, *, final: bool = False
    ) -> None:
        """Commit the sessions' offsets to the consumer group when the interval has passed
        (in a background task), or now through the sessions' transactional producers
        (``final``: the member stops, maybe while the group rebalances).

        Advisory: the changelog transactions hold the offsets a restart resumes from; these
        are what lag monitoring reads. Never ahead of a committed transaction."""
        if self._advice is not None:
            if not (final or self._advice.done()):
                return
            await asyncio.wait([self._advice])
            self._advice = None
        now = time.monotonic()
        if not final and now < self._next_advice:
            return
        self._next_advice = now + self._settings.rtml_group_offset_commit_interval_s
        assigned = consumer.assignment()
        sessions = [s for s in self._sessions.values() if s.tp in assigned]
        if final:
            await self._commit_group_offsets_in_transactions(sessions)
            return
        due = [(s, offset) for s in sessions if (offset := s.group_offset_due()) is not None]
        if due:
            self._advice = asyncio.create_task(self._commit_group_offsets(consumer, due))

    async def _commit_group_offsets_in_transactions(self, sessions: list[PartitionSession]) -> None:
        """The sessions' offsets to the group, each through its transactional producer: for a
        member that stops or loses partitions, when a plain commit may fail (the group is
        rebalancing). A failure only leaves the advisory offset behind; it is logged."""
        due = [s for s in sessions if s.group_offset_due() is not None]
        if not due:
            return
        group = self._pipeline.group_id
        results = await asyncio.gather(
            *(asyncio.wait_for(s.commit_group_offset(group), 10.0) for s in due),
            return_exceptions=True,
        )
        for session, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                log.info("%s: group offset commit failed (%s)", session.tp, result)

    async def _commit_group_offsets(
        self, consumer: AIOKafkaConsumer, due: list[tuple[PartitionSession, int]]
    ) -> None:
        try:
            await asyncio.wait_for(consumer.commit({s.tp: offset for s, offset in due}), 10.0)
        except (KafkaError, TimeoutError) as exc:
            # A rebalance or an unreachable coordinator: the next interval tries again, and the
            # partitions' next owners resume from their changelogs whatever the group holds.
            log.info("advisory group offset commit failed (%s); retrying later", exc)
            return
        for session, offset in due:
            session.group_offset = offset

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for partition, session in self._sessions.items():
            highwater = consumer.highwater(session.tp)
            if highwater is not None:
                lag = max(0, highwater - session.next_offset)
                self.stats.lag[partition] = lag
                self.metrics.lag(partition, lag)

    async def _recover(self, consumer: AIOKafkaConsumer) -> None:
        """Drop every session; the next poll reopens them from changelog and committed offset."""
        async with self._lock:
            await self._settle_commits(raise_errors=False)
            await self._close_sessions(list(self._sessions))
            self.stats.recoveries += 1

    async def _open_sessions(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        topic = self._pipeline.input_topic
        tps = [TopicPartition(topic, p) for p in partitions if p in self._assigned]
        if not tps:
            return
        consumer.pause(*tps)  # nothing is processed before its state is restored
        opened = await asyncio.gather(
            *(
                PartitionSession.open(
                    self._settings,
                    group_id=self._pipeline.group_id,
                    tp=tp,
                    changelog_topic=self._pipeline.changelog_topic,
                    new_processor=self._pipeline.new_processor,
                    consumer=consumer,
                )
                for tp in tps
            ),
            return_exceptions=True,
        )
        errors = [result for result in opened if isinstance(result, BaseException)]
        for result in opened:
            if isinstance(result, PartitionSession):
                self._sessions[result.tp.partition] = result
                self.stats.restore_seconds[result.tp.partition] = result.restore_seconds
                consumer.resume(result.tp)
        self._collect_garbage(now=True)  # restored state is long-lived: out of every scan
        if errors:
            raise RtmlError(f"could not open {len(errors)} partition(s): {errors[0]}") from errors[
                0
            ]

    async def _close_sessions(self, partitions: list[int]) -> None:
        sessions = [self._sessions.pop(p) for p in partitions if p in self._sessions]
        for partition in partitions:
            self.stats.lag.pop(partition, None)
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

    # ConsumerRebalanceListener: aiokafka awaits these around every rebalance.
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:  # the in-flight batch commits first
            try:
                await self._settle_commits()
            except (KafkaError, RtmlError, OSError) as exc:
                # Nothing of it is committed: the next owners restart from committed state.
                # Ours is untrustworthy too: the loop reopens what it keeps.
                self._listener_error = exc
            else:
                # The group's offsets catch up with the changelog before the partitions go (a
                # member that then stops mid-restore would otherwise leave them behind).
                gone = {tp.partition for tp in revoked}
                await self._commit_group_offsets_in_transactions(
                    [s for p, s in self._sessions.items() if p in gone]
                )
            self._assigned -= {tp.partition for tp in revoked}
            await self._close_sessions([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Only records the assignment: the loop restores the new partitions (``_poll_once``),
        as Kafka Streams does, with the heartbeat going.

        aiokafka starts a member's heartbeat only after this callback returns, so a restore
        here (minutes for millions of cards) would hold the first heartbeat back for as long."""
        assert self._consumer is not None
        async with self._lock:
            self._assigned |= {tp.partition for tp in assigned}
            new = [tp for tp in assigned if tp.partition not in self._sessions]
            if new:
                self._consumer.pause(*new)  # nothing is fetched before its state is restored
