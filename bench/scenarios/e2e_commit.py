"""The e2e pipeline's batch commit, its transactions begun at the commit or ahead of it.

``commit-ahead`` and ``commit-new`` run the same loop on the same broker, one after the other
in each round: four ``PartitionSession``s (the input partitions of one actor of the e2e loads)
with real transactional producers each commit a batch of the size a 2,000 tx/s load gives
(8 score records and 8 changelog records per partition) after 12 ms of simulated processing,
concurrently, like the runner. ``commit-ahead`` begins the transactions before the 12 ms
(``PartitionSession.begin_ahead``, what the runner does by default), so the broker adds their
partitions meanwhile. The value is the median commit, the slowest of the four; the details
hold its p99 and the CPU per transaction of the bench process and of the broker.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import numpy as np
from aiokafka import TopicPartition

from bench.environment import create_topics
from bench.procs import CpuMeter
from bench.results import Sample
from bench.scenario import BenchContext, Case
from consumers.kafka_io import make_producer, start_client
from consumers.partition_session import OutRecord, PartitionSession
from rtml.settings import TopicSpec

SESSIONS = 4
RECORDS = 8  # per partition and batch, of each kind: 2,000 tx/s over 8 partitions, ~30 ms
PROCESS_S = 0.012  # the features and the model call, between the poll and the commit
WARMUP_CYCLES = 50
CYCLES = 300
TOPIC = "e2e.commit"


def commit_cases(scenario: str) -> list[Case]:
    """``commit-ahead`` first: a broker that is still warming up (an ``--only e2e`` run) slows
    the first case of the first round, which then favours ``commit-new``, not the change."""
    new = Case(
        scenario,
        "commit-new",
        "one actor's batch commit (4 transactions), each begun at the commit: p50",
        "ms",
        _case(ahead=False),
        higher_is_better=False,
    )
    ahead = Case(
        scenario,
        "commit-ahead",
        "the same, the transactions begun ahead of the commit: p50",
        "ms",
        _case(ahead=True),
        (new.id,),
        higher_is_better=False,
    )
    return [ahead, new]


async def prepare_commit(ctx: BenchContext) -> None:
    topic = ctx.topic(TOPIC)
    specs = [TopicSpec(name=f"{topic}.{kind}", partitions=SESSIONS) for kind in ("out", "log")]
    await create_topics(ctx.stack.settings, specs)


class _Changes:
    """A partition's state changes: ``RECORDS`` keys per batch."""

    def __init__(self) -> None:
        self.value = b"s" * 300

    def restore(self, key: bytes, value: bytes | None) -> None:
        pass

    def finish_restore(self) -> Iterator[int]:
        yield 0

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        return [(b"card-%d" % i, self.value) for i in range(RECORDS)]


def _case(*, ahead: bool):
    async def run(ctx: BenchContext, round_: int) -> Sample:
        return await _commits(ctx, round_, ahead=ahead)

    return run


async def _commits(ctx: BenchContext, round_: int, *, ahead: bool) -> Sample:
    settings = ctx.stack.settings
    topic = ctx.topic(TOPIC)
    out, changelog = f"{topic}.out", f"{topic}.log"
    counts = {out: SESSIONS}
    value = b"v" * 200
    sessions: list[PartitionSession] = []
    try:
        for p in range(SESSIONS):
            txn_id = f"{topic}-{'ahead' if ahead else 'new'}-{round_}-{p}"
            producer = await start_client(make_producer(settings, transactional_id=txn_id))
            sessions.append(
                PartitionSession(
                    tp=TopicPartition(topic, p),
                    producer=producer,
                    processor=_Changes(),
                    next_offset=0,
                    changelog_topic=changelog,
                    consumer=None,  # type: ignore[arg-type]  # exactly once: not used
                )
            )

        async def commit(session: PartitionSession, cycle: int) -> float:
            if ahead:
                await session.begin_ahead()
            await asyncio.sleep(PROCESS_S)
            started = time.perf_counter()
            now_ms = time.time_ns() // 1_000_000
            partition = session.tp.partition
            outputs = [OutRecord(out, b"k", value, now_ms, partition) for _ in range(RECORDS)]
            session.snapshot(outputs, cycle + 1, counts)
            await session.commit_snapshot("bench-commit")
            return time.perf_counter() - started

        async def cycle(i: int) -> float:
            return max(await asyncio.gather(*(commit(s, i) for s in sessions)))

        for i in range(WARMUP_CYCLES):
            await cycle(i)
        meter = CpuMeter(
            {"bench": [os.getpid()], "broker": [p for p in [ctx.stack.broker_pid] if p]}
        )
        meter.start()
        seconds = np.asarray([await cycle(WARMUP_CYCLES + i) for i in range(CYCLES)]) * 1000
        cpu = meter.result()
    finally:
        await asyncio.gather(*(s.producer.stop() for s in sessions), return_exceptions=True)
    transactions = CYCLES * SESSIONS
    details: dict[str, float] = {
        "cycles": CYCLES,
        "transactions": transactions,
        "p50_ms": round(float(np.percentile(seconds, 50)), 2),
        "p95_ms": round(float(np.percentile(seconds, 95)), 2),
        "p99_ms": round(float(np.percentile(seconds, 99)), 2),
    }
    for group in ("bench", "broker"):
        if f"{group}_cpu_s" in cpu:
            per_txn = cpu[f"{group}_cpu_s"] / transactions * 1000
            details[f"{group}_cpu_ms_per_transaction"] = round(per_txn, 3)
    ctx.say(
        f"e2e/commit-{'ahead' if ahead else 'new'}: p50/p95/p99 {details['p50_ms']:.1f}/"
        f"{details['p95_ms']:.1f}/{details['p99_ms']:.1f} ms, broker CPU per transaction "
        f"{details.get('broker_cpu_ms_per_transaction', 0):.2f} ms"
    )
    return Sample(round_, details["p50_ms"], details)
