"""The end-to-end latency alert on the real broker: scores whose input records were appended
long before (a slow model) fire latency_p99; prompt scores resolve it and stay quiet."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from contracts.codec import encode
from contracts.events import FraudScore, OpsAlert
from monitoring.alerts import default_rules
from monitoring.config import MonitoringConfig
from monitoring.monitor import Monitor, Watch
from rtml.settings import Settings


def score(n: int, delay_ms: int) -> bytes:
    now = time.time_ns() // 1_000_000
    return encode(FraudScore(f"e{n}", "c1", 0.1, "v1", {}, now, now - delay_ms, now))


async def test_slow_scores_fire_the_latency_alert_and_prompt_ones_resolve_it(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=2)
    config = MonitoringConfig(
        latency_p99_s=0.5, latency_window_s=2.0, latency_min_samples=50, for_s=0.5, resolve_s=1.0
    )
    settings = stack_settings.model_copy(update={"rtml_monitoring": config})
    rules = [r for r in default_rules(config) if r.name == "latency_p99"]
    monitor = Monitor(settings, Watch(groups={}, scores_topic=topic), rules=rules)
    await monitor.start()
    events: list[OpsAlert] = []
    n = 0

    async def scores(delay_ms: int, seconds: float) -> None:
        nonlocal n
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = [await producer.send(topic, score(n + i, delay_ms)) for i in range(40)]
            await asyncio.gather(*sent)
            n += 40
            events.extend((await monitor.tick()).events)
            await asyncio.sleep(0.2)

    try:
        await scores(0, 4.0)
        for _ in range(30):  # a cold broker: the monitor's reader may start a little late
            if monitor_has_latency(report := await monitor.tick()):
                break
            await scores(0, 0.5)
        assert events == []
        assert report.latency is not None and report.latency.p99_ms is not None
        assert report.latency.p99_ms < 500
        for _ in range(30):  # the model takes 2 s: input appended 2 s before the score
            await scores(2_000, 0.5)
            if events:
                break
        assert [(e.rule, e.subject, e.state) for e in events] == [
            ("latency_p99", "fraud", "firing")
        ]
        assert events[0].value is not None and events[0].value >= 2.0
        for _ in range(30):
            await scores(0, 0.5)
            if len(events) == 2:
                break
        assert [e.state for e in events] == ["firing", "resolved"]
    finally:
        await monitor.stop()


def monitor_has_latency(report: object) -> bool:
    latency = getattr(report, "latency", None)
    return latency is not None and latency.p99_ms is not None
