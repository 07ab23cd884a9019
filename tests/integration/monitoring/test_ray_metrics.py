"""Metrics recorded inside a consumer actor reach Ray's Prometheus export port, under the names
monitoring.metrics defines (prefixed ray_), and the actor's stats carry the local summary."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import ray
from aiokafka import AIOKafkaProducer

from consumers.actors import ConsumerGroup
from monitoring import metrics as m
from rtml.settings import Settings, Topics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def profile(user: str) -> bytes:
    return json.dumps(
        {
            "user_id": user,
            "home_lat": 48.85,
            "home_lon": 2.35,
            "account_age_days": 3,
            "segment": "regular",
            "updated_at": 1_000,
            "schema_version": 1,
        }
    ).encode()


async def test_actor_metrics_are_exported_by_ray(
    ray_session: None, stack_settings: Settings, new_topic, producer: AIOKafkaProducer
) -> None:
    profiles_topic = await new_topic(partitions=2, config={"cleanup.policy": "compact"})
    topics = Topics(
        user_profiles={"name": profiles_topic, "partitions": 2},  # type: ignore[arg-type]
        dead_letter={"name": await new_topic()},  # type: ignore[arg-type]
    )
    settings = stack_settings.model_copy(update={"rtml_topics": topics})
    for i in range(300):
        await producer.send(profiles_topic, profile(f"u{i}"), key=f"u{i}".encode())
    await producer.send(profiles_topic, b"{not json", key=b"bad")
    await producer.flush()

    group = ConsumerGroup(settings, "profiles", actor_options={"num_cpus": 0.1})
    try:
        await asyncio.to_thread(group.scale, 1)
        deadline = time.monotonic() + 90
        while True:
            stats = await asyncio.to_thread(group.stats)
            if stats[0]["metrics"]["records"] >= 301:
                break
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.5)
        summary = stats[0]["metrics"]
        assert summary["end_to_end_seconds"]["count"] == 301
        assert summary["feature_last_update_s"] is not None
        assert set(summary["stage_seconds"]) >= {"features", "produce"}

        port = ray.nodes()[0]["MetricsExportPort"]
        wanted = [
            m.RECORDS_CONSUMED.exported,
            m.RECORDS_PRODUCED.exported,
            m.DEAD_LETTERS.exported,
            m.STAGE_SECONDS.exported + "_bucket",
            m.END_TO_END_SECONDS.exported + "_bucket_total",
            m.CONSUMER_LAG.exported,
            m.FEATURE_LAST_UPDATE.exported,
        ]
        body = ""
        deadline = time.monotonic() + 60  # Ray's agent exports every few seconds
        while not all(f"{name}{{" in body for name in wanted):
            assert time.monotonic() < deadline, [n for n in wanted if f"{n}{{" not in body]
            await asyncio.sleep(1.0)
            body = await asyncio.to_thread(scrape, port)
        consumed = [
            line
            for line in body.splitlines()
            if line.startswith(m.RECORDS_CONSUMED.exported + "{") and profiles_topic in line
        ]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in consumed) == 301
        assert 'reason="malformed_json"' in body
    finally:
        await asyncio.to_thread(group.stop)
