"""The denominators: how fast Kafka and aiokafka move the same records with no work on them.

Over the pre-produced transactions topic, in the bench process:

- ``consume``: a raw aiokafka loop (``getmany``, no decode) over every partition, with the
  consumer settings of the pipelines (``consumers.kafka_io.make_consumer``, read_committed);
- ``passthrough-txn``: consume -> produce the same keys and values to an output topic through
  record batches (``create_batch``/``send_batch``), one transaction per input partition per
  poll batch holding the outputs and the input offsets, committed concurrently: the commit
  cadence of ``consumers.partition_session``, with nothing else;
- ``passthrough``: the same without transactions (one idempotent producer; offsets committed
  after the outputs are acknowledged: the at-least-once cadence);
- ``runner-passthrough``: ``consumers.runner.ConsumerRunner`` with a pipeline that forwards
  each record (no decode, no state, no Redis): what the runner's framework costs, exactly once.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from bench.environment import create_topics
from bench.measure import run_until, runner_probe, time_drain
from bench.procs import CpuMeter
from bench.results import Sample
from bench.scenario import BenchContext, Case, Scenario
from bench.workload import TransactionsWorkload
from consumers.kafka_io import make_consumer, make_producer
from consumers.partition_session import OutRecord
from consumers.runner import ConsumerRunner, PartitionBatch
from rtml.settings import Settings, TopicSpec

OUTPUT = "ceiling.out"  # the passthrough variants' output topic (after the context's prefix)


class CeilingScenario(Scenario):
    name = "ceiling"
    summary = "raw aiokafka consume and consume->produce passthrough: the denominators"

    async def prepare(self, ctx: BenchContext) -> None:
        workload = await ctx.transactions()
        spec = TopicSpec(name=ctx.topic(OUTPUT), partitions=workload.partitions)
        await create_topics(workload.settings, [spec])

    def cases(self, ctx: BenchContext) -> list[Case]:
        consume = f"{self.name}/consume"
        return [
            Case(
                self.name,
                "consume",
                "raw aiokafka consume loop (getmany, no decode)",
                "events/s",
                _consume_case,
            ),
            Case(
                self.name,
                "passthrough-txn",
                "raw consume -> produce, one transaction per partition per poll",
                "events/s",
                _passthrough_case(transactional=True),
                (consume,),
            ),
            Case(
                self.name,
                "passthrough",
                "raw consume -> produce, no transactions",
                "events/s",
                _passthrough_case(transactional=False),
                (consume,),
            ),
            Case(
                self.name,
                "runner-passthrough",
                "ConsumerRunner forwarding records (exactly once, no decode/state/Redis)",
                "events/s",
                _runner_passthrough_case,
                (consume, f"{self.name}/passthrough-txn"),
            ),
        ]


def _meter(ctx: BenchContext) -> CpuMeter:
    return CpuMeter(
        {
            "consumer": [os.getpid()],
            "broker": [p for p in [ctx.stack.broker_pid] if p],
            "redis": [p for p in [ctx.stack.redis_pid] if p],
        }
    )


def _sample(round_: int, events: int, seconds: float, cpu: dict[str, float], **extra) -> Sample:
    details = {"events": events, "seconds": round(seconds, 4), **extra}
    details |= {k: round(v, 4) for k, v in cpu.items()}
    if events and "consumer_cpu_s" in cpu:
        details["consumer_cpu_us_per_event"] = round(cpu["consumer_cpu_s"] / events * 1e6, 3)
    return Sample(round_, events / seconds, details)


async def _consume_case(ctx: BenchContext, round_: int) -> Sample:
    workload = await ctx.transactions()
    consumer = make_consumer(
        workload.settings,
        group_id=None,
        read_committed=True,
        max_poll_records=workload.settings.rtml_max_poll_records,
    )
    tps = [TopicPartition(workload.topic, p) for p in range(workload.partitions)]
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        meter = _meter(ctx)
        meter.start()
        started = asyncio.get_running_loop().time()
        count = await _drain(consumer, workload, lambda batch: None)
        seconds = asyncio.get_running_loop().time() - started
        cpu = meter.result()
    finally:
        await consumer.stop()
    return _sample(round_, count, seconds, cpu)


async def _drain(consumer, workload: TransactionsWorkload, handle) -> int:
    """Poll until every partition is read to its end offset; ``handle`` each poll batch."""
    remaining = {p for p, end in workload.ends.items() if end > 0}
    count = 0
    while remaining:
        batch = await consumer.getmany(
            timeout_ms=100, max_records=workload.settings.rtml_max_poll_records
        )
        if not batch:
            continue
        result = handle(batch)
        if result is not None:
            await result
        for tp, records in batch.items():
            count += len(records)
            if records and records[-1].offset + 1 >= workload.ends[tp.partition]:
                remaining.discard(tp.partition)
    return count


def _passthrough_case(*, transactional: bool):
    async def run(ctx: BenchContext, round_: int) -> Sample:
        workload = await ctx.transactions()
        return await _passthrough(ctx, workload, round_, transactional=transactional)

    return run


async def _passthrough(
    ctx: BenchContext, workload: TransactionsWorkload, round_: int, *, transactional: bool
) -> Sample:
    settings = workload.settings
    output = ctx.topic(OUTPUT)
    group = f"bench-passthrough-{uuid.uuid4().hex[:8]}"
    tps = [TopicPartition(workload.topic, p) for p in range(workload.partitions)]
    consumer = make_consumer(
        settings,
        group_id=group,
        read_committed=True,
        max_poll_records=settings.rtml_max_poll_records,
    )
    if transactional:
        producers = {
            tp.partition: make_producer(settings, transactional_id=f"{group}-{tp.partition}")
            for tp in tps
        }
    else:
        shared = make_producer(settings)
        producers = {tp.partition: shared for tp in tps}
    unique = list({id(p): p for p in producers.values()}.values())
    await consumer.start()
    try:
        await asyncio.gather(*(p.start() for p in unique))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def forward(batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
            if transactional:
                await asyncio.gather(
                    *(
                        _commit_txn(producers[tp.partition], output, tp, rs, group)
                        for tp, rs in batch.items()
                    )
                )
                return
            futures = []
            for tp, records in batch.items():
                futures += await _send(producers[tp.partition], output, tp.partition, records)
            await asyncio.gather(*futures)
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})

        meter = _meter(ctx)
        meter.start()
        started = asyncio.get_running_loop().time()
        count = await _drain(consumer, workload, forward)
        seconds = asyncio.get_running_loop().time() - started
        cpu = meter.result()
    finally:
        await asyncio.gather(*(p.stop() for p in unique), return_exceptions=True)
        await consumer.stop()
    return _sample(round_, count, seconds, cpu)


async def _send(
    producer: AIOKafkaProducer, output: str, partition: int, records: list[ConsumerRecord]
) -> list[asyncio.Future]:
    """The records' keys and values to the output partition, in as few batches as fit."""
    futures = []
    builder = producer.create_batch()
    for r in records:
        if builder.append(timestamp=r.timestamp, key=r.key, value=r.value) is None:
            futures.append(await producer.send_batch(builder, output, partition=partition))
            builder = producer.create_batch()
            builder.append(timestamp=r.timestamp, key=r.key, value=r.value)
    futures.append(await producer.send_batch(builder, output, partition=partition))
    return futures


async def _commit_txn(
    producer: AIOKafkaProducer,
    output: str,
    tp: TopicPartition,
    records: list[ConsumerRecord],
    group: str,
) -> None:
    async with producer.transaction():
        await asyncio.gather(*await _send(producer, output, tp.partition, records))
        await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)


# --- the runner with nothing to do ------------------------------------------------------------


class _Stateless:
    def restore(self, key: bytes, value: bytes | None) -> None:
        return None

    def finish_restore(self) -> Iterator[int]:
        yield 0

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        return []


class PassthroughPipeline:
    """Forwards every record to ``output`` (same partition): the runner's own cost."""

    changelog_topic = None

    def __init__(self, group_id: str, input_topic: str, output: str, partitions: int) -> None:
        self.group_id = group_id
        self.input_topic = input_topic
        self._output = output
        self._partitions = {output: partitions}

    def new_processor(self, partition: int) -> _Stateless:
        return _Stateless()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def process(self, batches: list[PartitionBatch]) -> dict[int, list[OutRecord]]:
        out = self._output
        return {
            b.partition: [
                OutRecord(out, r.key, r.value, r.timestamp, b.partition) for r in b.records
            ]
            for b in batches
        }

    def on_idle(self, processors: dict[int, object], now_ms: int) -> None:
        return None

    def output_partitions(self) -> dict[str, int]:
        return self._partitions

    def stats(self) -> dict[str, object]:
        return {}


async def _runner_passthrough_case(ctx: BenchContext, round_: int) -> Sample:
    workload = await ctx.transactions()
    settings: Settings = workload.settings
    group = f"bench-runner-passthrough-{uuid.uuid4().hex[:8]}"  # new: starts at the beginning
    pipeline = PassthroughPipeline(group, workload.topic, ctx.topic(OUTPUT), workload.partitions)
    runner = ConsumerRunner(settings, pipeline)  # the pipelines' micro-batch size
    meter = _meter(ctx)
    task = asyncio.create_task(runner.run())
    try:
        timing = await run_until(
            task,
            time_drain(
                "ceiling/runner-passthrough",
                runner_probe([runner], workload.partitions, os.getpid()),
                workload.transactions,
                timeout_s=600,
                on_ready=lambda _: meter.start(),
            ),
        )
        cpu = meter.result()
    finally:
        runner.stop()
        await task
    return _sample(
        round_,
        timing.events,
        timing.seconds,
        cpu,
        startup_s=round(timing.startup_s, 3),
        batches=runner.stats.batches,
    )
