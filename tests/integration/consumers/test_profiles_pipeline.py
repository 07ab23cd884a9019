"""The consume loop on the real broker and Redis, through the stateless profiles materializer:
valid profiles land in the online store, tombstones delete, bad records are dead-lettered
exactly once, and offsets are committed with the outputs."""

from __future__ import annotations

import asyncio
import json
import uuid

import msgspec
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.pipelines.profiles import ProfilesPipeline
from consumers.runner import ConsumerRunner
from contracts.codec import dead_letter_payload
from contracts.events import DeadLetter
from rtml.settings import Settings, Topics
from store.online import OnlineStore


def profile(user: str, age: int, updated_at: int) -> bytes:
    return json.dumps(
        {
            "user_id": user,
            "home_lat": 48.85,
            "home_lon": 2.35,
            "account_age_days": age,
            "segment": "regular",
            "updated_at": updated_at,
            "schema_version": 1,
        }
    ).encode()


async def run_until(runner: ConsumerRunner, records: int, timeout_s: float = 60.0) -> None:
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(timeout_s):
            while runner.stats.records < records:
                if task.done():
                    task.result()
                await asyncio.sleep(0.1)
    finally:
        runner.stop()
        await task


async def read_committed(settings: Settings, topic: str) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3_000)
    finally:
        await consumer.stop()
    decoder = msgspec.json.Decoder(DeadLetter)
    return [decoder.decode(r.value) for records in batch.values() for r in records]


async def test_profiles_are_materialized_and_bad_records_dead_lettered(
    stack_settings: Settings,
    new_topic,
    producer: AIOKafkaProducer,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    profiles_topic = await new_topic(partitions=2, config={"cleanup.policy": "compact"})
    dead_topic = await new_topic()
    topics = Topics(
        user_profiles={"name": profiles_topic, "partitions": 2},  # type: ignore[arg-type]
        dead_letter={"name": dead_topic, "partitions": 1},  # type: ignore[arg-type]
    )
    settings = stack_settings.model_copy(update={"rtml_topics": topics})
    for i in range(200):
        await producer.send(profiles_topic, profile(f"u{i}", i, 1_000 + i), key=f"u{i}".encode())
    bad = [b"{not json", b'{"user_id": "u3"}', b"\xff\xfe"]
    for value in bad:
        await producer.send(profiles_topic, value, key=b"u3")
    await producer.send(profiles_topic, None, key=b"u7")  # tombstone
    # Log order is the truth of a compacted topic: the later record wins despite updated_at.
    await producer.send(profiles_topic, profile("u8", 999, 500), key=b"u8")
    await producer.flush()

    store = OnlineStore(redis_client, namespace=redis_prefix.rstrip(":"))
    group = f"test-profiles-{uuid.uuid4().hex[:8]}"
    runner = ConsumerRunner(settings, ProfilesPipeline(settings, store=store, group_id=group))
    await run_until(runner, 205)

    rows = await store.read("profile", ["u0", "u3", "u7", "u8", "u199", "nobody"])
    ages = [json.loads(row.payload)["account_age_days"] if row else None for row in rows]
    assert ages == [0, 3, None, 999, 199, None]
    assert rows[0] is not None and rows[0].event_time == 1_000

    dead = await read_committed(settings, dead_topic)
    assert sorted(dead_letter_payload(d) or b"" for d in dead) == sorted(bad)
    assert {d.error.kind for d in dead} == {"malformed_json", "missing_field", "invalid_encoding"}
    assert all(d.source_topic == profiles_topic for d in dead)

    # Offsets were committed with the outputs: a restarted member has nothing left to do and
    # dead-letters nothing again.
    check = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=group)
    await check.start()
    try:
        committed = [await check.committed(TopicPartition(profiles_topic, p)) for p in (0, 1)]
    finally:
        await check.stop()
    assert sum(c or 0 for c in committed) == 205
    again = ConsumerRunner(settings, ProfilesPipeline(settings, store=store, group_id=group))
    task = asyncio.create_task(again.run())
    await asyncio.sleep(3)
    again.stop()
    await task
    assert again.stats.records == 0
    assert len(await read_committed(settings, dead_topic)) == len(bad)
