"""Change data capture end to end: a row of the Postgres users table reaches the fraud features
through Debezium, Kafka Connect, the compacted user-profiles topic and the profile table.

An UPDATE of a user's home moves distance_from_home_km of the user's next transaction; a DELETE
(a tombstone on the topic) makes it null. Every step polls: the test asserts "within seconds",
not a fixed delay."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.pipelines.fraud_features import FeatureRow, FraudFeaturesPipeline
from consumers.runner import ConsumerRunner
from contracts.events import UserProfile
from database.connection import connect
from infra import kafka_connect
from rtml.settings import Settings, Topics

PARIS = (48.8566, 2.3522)
BERLIN = (52.52, 13.405)


def transaction(event_id: str, user: str, event_time: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "card_id": f"card-{user}",
            "user_id": user,
            "merchant_id": "m-1",
            "merchant_category": "grocery",
            "amount": 12.5,
            "currency": "EUR",
            "lat": PARIS[0],
            "lon": PARIS[1],
            "event_time": event_time,
            "channel": "pos",
        }
    ).encode()


async def profile_on_topic(settings: Settings, user: str, timeout_s: float = 60.0):
    """The newest record of ``user`` on user-profiles once one with a changed value arrives."""
    consumer = AIOKafkaConsumer(
        settings.rtml_topics.user_profiles.name,
        **settings.kafka_client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        if record.key == user.encode():
                            yield record
    finally:
        await consumer.stop()


async def next_row(
    consumer: AIOKafkaConsumer, event_id: str, timeout_s: float = 60.0
) -> FeatureRow:
    decoder = msgspec.json.Decoder(FeatureRow)
    async with asyncio.timeout(timeout_s):
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    row = decoder.decode(record.value)
                    if row.event_id == event_id:
                        return row


async def test_users_table_changes_reach_the_fraud_features(
    cdc_settings: Settings, new_topic, producer: AIOKafkaProducer
) -> None:
    state, tasks = kafka_connect.connector_state(cdc_settings)
    assert (state, tasks) == ("RUNNING", ["RUNNING"]), "the users connector should run"
    # `rtml infra up` again: the connector is found up to date, not re-registered.
    assert not await asyncio.to_thread(kafka_connect.register_users_connector, cdc_settings)
    topics = Topics(
        transactions={"name": await new_topic(2), "partitions": 2},
        user_profiles=cdc_settings.rtml_topics.user_profiles,  # what the connector writes
        dead_letter={"name": await new_topic(1)},
        fraud_features={"name": await new_topic(2), "partitions": 2},
    )  # type: ignore[arg-type]
    settings = cdc_settings.model_copy(
        update={"rtml_topics": topics, "rtml_emit_feature_rows": True, "rtml_fraud_scoring": False}
    )
    user = f"cdc-{uuid.uuid4().hex[:8]}"
    db = await connect(settings)
    try:
        await db.execute(
            "INSERT INTO users (user_id, home_lat, home_lon, account_age_days, segment) "
            "VALUES ($1, $2, $3, 30, 'regular')",
            user,
            *PARIS,
        )
        # The row arrives on the topic in the contract's shape, keyed by user_id.
        async for record in profile_on_topic(settings, user):
            profile = msgspec.json.decode(record.value, type=UserProfile)
            assert (profile.home_lat, profile.home_lon, profile.segment) == (*PARIS, "regular")
            assert abs(profile.updated_at - time.time() * 1000) < 120_000
            break

        pipeline = FraudFeaturesPipeline(settings, group_id=f"test-cdc-{uuid.uuid4().hex[:8]}")
        runner = ConsumerRunner(settings, pipeline)
        run = asyncio.create_task(runner.run())
        rows = AIOKafkaConsumer(
            topics.fraud_features.name,
            **settings.kafka_client_kwargs(),
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await rows.start()
        try:
            now = int(time.time() * 1000)
            await producer.send_and_wait(
                topics.transactions.name,
                transaction("tx-1", user, now),
                key=f"card-{user}".encode(),
            )
            first = await next_row(rows, "tx-1")
            assert first.features["distance_from_home_km"] is not None
            assert first.features["distance_from_home_km"] < 1.0  # paid at home

            await db.execute(
                "UPDATE users SET home_lat = $2, home_lon = $3 WHERE user_id = $1", user, *BERLIN
            )
            moved = await _poll_feature(
                producer, rows, topics.transactions.name, user, now, "moved"
            )
            assert moved is not None and 850 < moved < 900  # Paris-Berlin, about 878 km

            await db.execute("DELETE FROM users WHERE user_id = $1", user)
            gone = await _poll_feature(producer, rows, topics.transactions.name, user, now, "gone")
            assert gone is None
        finally:
            await rows.stop()
            runner.stop()
            await run
    finally:
        await db.close()


async def _poll_feature(
    producer: AIOKafkaProducer,
    rows: AIOKafkaConsumer,
    topic: str,
    user: str,
    now: int,
    tag: str,
    timeout_s: float = 60.0,
) -> float | None:
    """Send a transaction every ~second until its distance differs from the first one (the
    change has reached the profile table); the value of the first transaction that sees it."""
    deadline = time.monotonic() + timeout_s
    for i in range(10_000):
        event_id = f"tx-{tag}-{i}"
        value = transaction(event_id, user, now + (i + 1) * 1_000)
        await producer.send_and_wait(topic, value, key=f"card-{user}".encode())
        distance = (await next_row(rows, event_id)).features["distance_from_home_km"]
        changed = distance is None if tag == "gone" else distance is not None and distance > 1.0
        if changed:
            return distance
        assert time.monotonic() < deadline, f"the {tag} profile did not reach the features"
        await asyncio.sleep(0.5)
    raise AssertionError("unreachable")
