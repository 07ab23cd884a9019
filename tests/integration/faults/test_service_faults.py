"""Redis and Kafka fail under a running fraud pipeline: stopped and restarted, or frozen (SIGSTOP)
for longer than the group's session timeout. After each, every input is scored exactly once
(read_committed) with the features of an uninterrupted offline replay."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from consumers.runner import ConsumerRunner
from tests.integration.faults.harness import (
    AmountModel,
    FraudWorkload,
    PrivateStack,
    report,
    wait_for,
)

N = 3_000
# Slow enough that a fault always finds a batch in flight; fast enough for a lean test.
MODEL_DELAY_S = 0.05


@contextlib.asynccontextmanager
async def running(runner: ConsumerRunner) -> AsyncIterator[asyncio.Task[None]]:
    """The runner's loop as a task, stopped (or cancelled) however the test ends."""
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        runner.stop()
        await asyncio.wait([task], timeout=60)
        task.cancel()


async def finish(runner, task: asyncio.Task[None], records: int, timeout_s: float) -> float:
    """Wait until ``records`` inputs are committed; returns the seconds it took."""
    took = await wait_for(
        lambda: runner.stats.records >= records or task.done(), timeout_s, f"{records} records"
    )
    if task.done():
        task.result()  # the loop died: raise its error
    runner.stop()
    await asyncio.wait_for(task, 60)
    return took


async def test_redis_stopped_and_restarted_mid_run(private_stack: PrivateStack) -> None:
    work = await FraudWorkload.create(private_stack.settings, "redis", N, seed=11)
    runner = work.runner(AmountModel(delay_s=MODEL_DELAY_S))
    await work.produce(0, N // 2)
    async with running(runner) as task:
        await wait_for(lambda: runner.stats.records >= 300, 120, "the runner to start")

        await asyncio.to_thread(private_stack.stop_redis)
        try:
            await work.produce(N // 2, N)  # Kafka is up: input keeps arriving
            await wait_for(lambda: runner.stats.failures >= 1, 60, "a batch to fail on Redis")
            # The batch before the failed one was past its Redis write and may still commit
            # (commits overlap the next batch): the recovery settles it first.
            await wait_for(lambda: runner.stats.recoveries >= 1, 60, "the recovery")
            stalled = runner.stats.records
            await asyncio.sleep(2.0)
            assert runner.stats.records == stalled, "nothing commits while the online store is down"
        finally:
            await asyncio.to_thread(private_stack.start_redis)
        back = time.monotonic()
        batches = runner.stats.batches
        first = await wait_for(lambda: runner.stats.batches > batches, 60, "the first commit")
        await finish(runner, task, N, 120)
        report("redis restart", runner, first_commit=first, caught_up=time.monotonic() - back)
    await work.check_exactly_once(N)


async def test_kafka_broker_stopped_and_restarted_mid_run(private_stack: PrivateStack) -> None:
    work = await FraudWorkload.create(private_stack.settings, "kafka", N, seed=12)
    runner = work.runner(AmountModel(delay_s=MODEL_DELAY_S))
    await work.produce(0, N // 2)
    async with running(runner) as task:
        await wait_for(lambda: runner.stats.records >= 300, 120, "the runner to start")

        await asyncio.to_thread(private_stack.stop_kafka)  # controlled shutdown, mid-transaction
        try:
            await asyncio.sleep(3.0)
        finally:
            await asyncio.to_thread(private_stack.start_kafka)
        back = time.monotonic()
        batches = runner.stats.batches
        first = await wait_for(lambda: runner.stats.batches > batches, 120, "the first commit")
        await work.produce(N // 2, N)
        await finish(runner, task, N, 120)
        report("kafka restart", runner, first_commit=first, caught_up=time.monotonic() - back)
    await work.check_exactly_once(N)


async def test_kafka_frozen_longer_than_the_session_timeout(private_stack: PrivateStack) -> None:
    """SIGSTOP: connections stay open but nothing answers (a network partition); the group's
    session (10 s) expires on the broker while it is frozen."""
    work = await FraudWorkload.create(private_stack.settings, "sigstop", N, seed=13)
    runner = work.runner(AmountModel(delay_s=MODEL_DELAY_S))
    await work.produce(0, N)
    async with running(runner) as task:
        await wait_for(lambda: runner.stats.records >= 300, 120, "the runner to start")

        pid = private_stack.freeze_kafka()
        try:
            await asyncio.sleep(15.0)
        finally:
            private_stack.thaw_kafka(pid)
        back = time.monotonic()
        batches = runner.stats.batches
        first = await wait_for(lambda: runner.stats.batches > batches, 120, "the first commit")
        await finish(runner, task, N, 120)
        report("kafka SIGSTOP 15s", runner, first_commit=first, caught_up=time.monotonic() - back)
    await work.check_exactly_once(N)
