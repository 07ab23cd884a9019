"""The in-process alert evaluator on the real broker: induced lag/stall, staleness, a volume
drop and a volume spike fire, resolve when the condition ends, and steady traffic stays quiet.

A real consumer group (an aiokafka consumer that commits what it reads) and a real producer
play the pipeline; the monitor sees them only through Kafka, as it sees the real pipelines.
Timings are scaled down (seconds instead of minutes) through ``MonitoringConfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.events import OpsAlert
from monitoring.config import MonitoringConfig
from monitoring.monitor import Monitor, Watch
from rtml.settings import Settings

RATE = 200  # records/s


async def produce(
    producer: AIOKafkaProducer, topic: str, on: asyncio.Event, spike: asyncio.Event
) -> None:
    n = 0
    while True:
        await on.wait()
        started = time.monotonic()
        step = RATE // 10
        sent = [await producer.send(topic, b"{}", key=str(n + i).encode()) for i in range(step)]
        if spike.is_set():  # ten times the rate, in a cheap record batch (a loaded machine)
            batch = producer.create_batch()
            for _ in range(10 * step):
                batch.append(key=None, value=b"{}", timestamp=None)
            sent.append(await producer.send_batch(batch, topic, partition=n % 2))
        await asyncio.gather(*sent)
        n += step
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


async def consume(settings: Settings, topic: str, group: str, on: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while True:
            if not on.is_set():  # a stalled consumer: alive in the group, commits nothing
                await asyncio.sleep(0.1)
                continue
            await consumer.getmany(timeout_ms=100)
            await consumer.commit()
    finally:
        await consumer.stop()


class Ticks:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.events: list[OpsAlert] = []

    async def until(self, done: Callable[[list[OpsAlert]], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self.events):
            assert time.monotonic() < deadline, f"timed out; events so far: {self.summary()}"
            self.events += (await self.monitor.tick()).events
            await asyncio.sleep(0.25)

    async def run_for(self, seconds: float) -> list[OpsAlert]:
        start = len(self.events)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.events += (await self.monitor.tick()).events
            await asyncio.sleep(0.25)
        return self.events[start:]

    def summary(self) -> list[tuple[str, str, str]]:
        return [(e.rule, e.subject, e.state) for e in self.events]


def has(*wanted: tuple[str, str]) -> Callable[[list[OpsAlert]], bool]:
    def done(events: list[OpsAlert]) -> bool:
        seen = {(e.rule, e.state) for e in events}
        return all(w in seen for w in wanted)

    return done


async def test_lag_stall_staleness_and_volume_drop_fire_and_resolve(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, read_topic
) -> None:
    topic = await new_topic(partitions=2)
    alerts_topic = await new_topic()
    group = f"test-monitor-{uuid.uuid4().hex[:8]}"
    config = MonitoringConfig(
        interval_s=0.25,
        for_s=1.0,
        resolve_s=1.5,
        lag_records=400,
        lag_for_s=1.0,
        consumer_window_s=2.5,
        staleness_s=2.5,
        volume_window_s=1.5,
        volume_baseline_s=4.0,
        volume_drop_factor=0.3,
        volume_min_rate=20.0,
    )
    settings = stack_settings.model_copy(update={"rtml_monitoring": config})
    producing, consuming = asyncio.Event(), asyncio.Event()
    producing.set()
    consuming.set()
    spiking = asyncio.Event()
    tasks = [
        asyncio.create_task(produce(producer, topic, producing, spiking)),
        asyncio.create_task(consume(settings, topic, group, consuming)),
    ]
    watch = Watch(
        groups={group: topic},
        feature_groups={"test-features": group},
        volume_topics=[topic],
        alerts_topic=alerts_topic,
    )
    monitor = Monitor(settings, watch)
    await monitor.start()
    try:
        ticks = Ticks(monitor)
        # The group joins and catches up before the clock of the rules starts.
        deadline = time.monotonic() + 60
        while (await monitor.tick()).groups[0].lag > RATE // 2:
            assert time.monotonic() < deadline, "the test consumer never caught up"
            await asyncio.sleep(0.25)

        quiet = await ticks.run_for(7.0)  # covers the volume baseline and the Burrow window
        assert quiet == [], f"steady traffic raised {ticks.summary()}"

        consuming.clear()  # stall the consumer: lag grows, nothing commits
        stalled = (
            ("consumer_stalled", "firing"),
            ("consumer_lag", "firing"),
            ("feature_staleness", "firing"),
        )
        await ticks.until(has(*stalled), timeout_s=30)
        consuming.set()
        await ticks.until(has(*((rule, "resolved") for rule, _ in stalled)), timeout_s=30)
        assert not any(e.rule.startswith("volume") for e in ticks.events)

        producing.clear()  # the input stops: a volume drop, and the features go stale
        await ticks.until(has(("volume_drop", "firing")), timeout_s=30)
        await ticks.until(has(("feature_staleness", "firing")), timeout_s=30)
        assert monitor.evaluator.firing(), "firing alerts are listed"
        producing.set()
        await ticks.until(
            lambda events: (
                [e.state for e in events if e.rule == "volume_drop"] == ["firing", "resolved"]
                and [e.state for e in events if e.rule == "feature_staleness"][-1] == "resolved"
            ),
            timeout_s=30,
        )
        assert monitor.evaluator.firing() == []

        await ticks.run_for(5.0)  # a steady baseline again
        spiking.set()
        await ticks.until(has(("volume_spike", "firing")), timeout_s=30)
        spiking.clear()
        await ticks.until(has(("volume_spike", "resolved")), timeout_s=30)
        assert monitor.evaluator.firing() == []
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await monitor.stop()

    # Every state change is on the ops-alerts topic, in order, each episode once.
    published = [
        msgspec.json.decode(r.value, type=OpsAlert) for r in await read_topic(alerts_topic)
    ]
    assert [(e.rule, e.subject, e.state) for e in published] == ticks.summary()
    for rule in ("consumer_stalled", "volume_drop", "volume_spike"):
        states = [e.state for e in published if e.rule == rule]
        assert states == ["firing", "resolved"], (rule, states)
    # The spike may make a real lag episode of its own: each fired once and resolved.
    lag_states = [e.state for e in published if e.rule == "consumer_lag"]
    assert lag_states[:2] == ["firing", "resolved"]
    assert lag_states == ["firing", "resolved"] * (len(lag_states) // 2)
    assert {r.key for r in await read_topic(alerts_topic)} >= {
        f"volume_drop:{topic}".encode(),
        f"consumer_stalled:{group}".encode(),
    }
