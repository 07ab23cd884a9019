"""The consumer autoscaler on the real broker, Redis and Ray: a backlog scales the fraud
pipeline's actors up, the quiet that follows scales them back down, and through both
rebalances every valid transaction gets exactly one feature row (read_committed), equal to the
offline replay of the same partitions."""

from __future__ import annotations

import asyncio
import itertools
import time

from aiokafka import AIOKafkaProducer

from consumers.actors import ConsumerGroup
from consumers.autoscaler import Decision, autoscale_groups
from rtml.settings import AutoscaleSettings, Settings
from tests.integration.consumers.test_fraud_features_exactly_once import (
    PARTITIONS,
    check_rows,
    pipeline_settings,
    produce,
    profiles,
    read_committed,
    reference_rows,
    transactions,
)

# Seconds, not minutes: small thresholds and short windows so the test runs in well under one.
AUTOSCALE = AutoscaleSettings(
    min_actors=1,
    max_actors=PARTITIONS,
    interval_s=1.0,
    window_s=3.0,
    scale_up_lag=2_000,
    scale_down_lag=0,
    target_drain_s=2.0,
    upscale_cooldown_s=1.0,
    downscale_cooldown_s=4.0,
    downscale_utilization=1.0,
)


async def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def test_backlog_scales_up_quiet_scales_down_every_event_once(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, ray_session: None
) -> None:
    settings = await pipeline_settings(stack_settings, new_topic)
    settings = settings.model_copy(update={"rtml_autoscale": AUTOSCALE})
    topics = settings.rtml_topics
    await produce(producer, topics.user_profiles.name, profiles())
    records, _ = transactions(64_000, seed=3)
    # The burst is on the topic before the first actor starts, so the backlog does not depend
    # on how fast the producer is next to the actor. Small poll batches (one transaction per
    # partition per 100 records) keep one actor at a few thousand records/s here: 60,000
    # outlast the upscale cooldown and target_drain_s many times over. A 20,000-record burst
    # produced while the actor ran was drained before the cooldown ended once the pipeline
    # got faster.
    await produce(producer, topics.transactions.name, records[:60_000])
    group = ConsumerGroup(
        settings,
        "fraud",
        runner_options={"max_poll_records": 100},
        actor_options={"num_cpus": 0.5},
    )
    changes: list[Decision] = []
    stop = asyncio.Event()
    await asyncio.to_thread(group.scale, 1)
    scaler = asyncio.create_task(
        autoscale_groups(settings, [group], stop, on_change=lambda _, d: changes.append(d))
    )
    try:

        async def scaled_up() -> bool:
            return group.size > 1

        await wait_until(scaled_up, 90, "the autoscaler to add actors under lag")
        assert "drains in" in changes[0].reason

        async def back_to_one() -> bool:
            assert not scaler.done(), scaler.exception()
            return group.size == 1

        await wait_until(back_to_one, 120, "the autoscaler to remove actors once drained")
        stop.set()
        await scaler  # a new burst now would scale up again: the tail is for one actor
        await produce(producer, topics.transactions.name, records[60_000:])
        reference = await reference_rows(settings)
        feature_records = await read_committed(settings, topics.fraud_features.name, len(reference))
        check_rows(feature_records, reference)
    finally:
        stop.set()
        await scaler
        await asyncio.to_thread(group.stop)

    sizes = [d.actors for d in changes]
    peak = max(sizes)
    assert peak > 1 and sizes[-1] == 1
    # Down one actor at a time (each step of a scale-down is its own rebalance).
    assert all(a - b == 1 for a, b in itertools.pairwise([1, *sizes]) if b < a), sizes
