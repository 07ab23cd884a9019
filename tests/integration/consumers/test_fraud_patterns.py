"""Complex event patterns through the real fraud pipeline (Kafka, Redis, in-process runners):
a rule set from a rules file (the shipped rules plus one alert-only rule, no code), matches that
start under one member and complete under the next (the partial matches and the card's last
profile travel through the changelog), PatternAlerts on fraud-alerts with the matched events'
ids, and pattern features equal to the offline replay."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import msgspec
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.pipelines.fraud_features import FeatureRow, FraudFeaturesPipeline
from consumers.runner import ConsumerRunner
from contracts.events import PatternAlert, Transaction, UserProfile, decode_fraud_alert
from features.patterns import DEFAULT_RULES_PATH, load_rules
from features.patterns.engine import profile_change_id
from features.replay import replay_fraud
from rtml.settings import Settings, Topics

PARTITIONS = 2
T0 = 1_700_000_000_000
MIN = 60_000
PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)

EXTRA_RULE = {
    "name": "double_big",
    "description": "two transactions over 1,000.00 within 5 minutes (alert only)",
    "within": "5m",
    "alert": True,
    "steps": [
        {"name": "first", "where": {"amount": {"gt": 1000.0}}},
        {"name": "second", "where": {"amount": {"gt": 1000.0}}},
    ],
}


def tx(event_id: str, card: str, minute: int, amount: float) -> Transaction:
    return Transaction(
        event_id=event_id,
        card_id=card,
        user_id="user-" + card,
        merchant_id="m-1",
        merchant_category="electronics",
        amount=amount,
        currency="EUR",
        lat=PARIS[0],
        lon=PARIS[1],
        event_time=T0 + minute * MIN,
        channel="online",
    )


def profile(card: str, home: tuple[float, float], minute: int) -> UserProfile:
    return UserProfile(
        user_id="user-" + card,
        home_lat=home[0],
        home_lon=home[1],
        account_age_days=400,
        segment="regular",
        updated_at=T0 + minute * MIN,
    )


async def send(producer: AIOKafkaProducer, topic: str, events: list) -> None:
    for event in events:
        key = event.card_id if isinstance(event, Transaction) else event.user_id
        await producer.send(topic, msgspec.json.encode(event), key=key.encode())
    await producer.flush()


async def read_committed(settings: Settings, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=1_000)
                values.extend(r.value for rs in batch.values() for r in rs)
            batch = await consumer.getmany(timeout_ms=1_500)  # duplicates would show here
            values.extend(r.value for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return values


async def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_pattern_alerts_and_features_survive_a_handover(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    shipped = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({**shipped, "rules": [*shipped["rules"], EXTRA_RULE]}))
    topics = Topics(
        transactions={"name": await new_topic(PARTITIONS), "partitions": PARTITIONS},
        user_profiles={"name": await new_topic(1, {"cleanup.policy": "compact"})},
        dead_letter={"name": await new_topic(1)},
        fraud_features={"name": await new_topic(PARTITIONS), "partitions": PARTITIONS},
        fraud_alerts={"name": await new_topic(1)},
    )  # type: ignore[arg-type]
    settings = stack_settings.model_copy(
        update={
            "rtml_topics": topics,
            "rtml_emit_feature_rows": True,
            "rtml_fraud_scoring": False,
            "rtml_pattern_rules": rules_file,
        }
    )
    group = f"test-patterns-{uuid.uuid4().hex[:8]}"

    def member() -> ConsumerRunner:
        return ConsumerRunner(settings, FraudFeaturesPipeline(settings, group_id=group))

    home = profile("A", PARIS, 0)
    moved = profile("A", NEW_YORK, 3)
    first_part = [tx("a1", "A", 1, 20.0), tx("b1", "B", 1, 1.0), tx("b2", "B", 2, 1.5)]
    second_part = [
        tx("b3", "B", 3, 0.5),
        tx("b4", "B", 4, 250.0),  # B: three probes under 2.00, then over 200.00
        tx("a2", "A", 5, 700.0),  # A: home moved at minute 3, then over 500.00
        tx("c1", "C", 5, 1500.0),
        tx("c2", "C", 6, 2000.0),
    ]

    await send(producer, topics.user_profiles.name, [home])
    first = member()
    first_task = asyncio.create_task(first.run())
    await send(producer, topics.transactions.name, first_part)
    await wait_for(lambda: first.stats.records >= len(first_part), 90, "the first member")
    first.stop()  # commits; the partial match of B and A's profile are in the changelog
    await first_task

    await send(producer, topics.user_profiles.name, [moved])
    second = member()  # restores from the changelog, loads the profile table, resumes
    second_task = asyncio.create_task(second.run())
    await send(producer, topics.transactions.name, second_part)
    await wait_for(lambda: second.stats.records >= len(second_part), 90, "the second member")
    second.stop()
    await second_task

    alerts = [
        decode_fraud_alert(v) for v in await read_committed(settings, topics.fraud_alerts.name, 3)
    ]
    assert all(isinstance(a, PatternAlert) for a in alerts)
    by_rule = {a.rule: a for a in alerts if isinstance(a, PatternAlert)}
    assert len(alerts) == 3 and set(by_rule) == {"card_testing", "account_takeover", "double_big"}
    assert by_rule["card_testing"].event_ids == ["b1", "b2", "b3", "b4"]
    assert by_rule["card_testing"].event_id == "b4" and by_rule["card_testing"].card_id == "B"
    assert by_rule["account_takeover"].event_ids == [
        profile_change_id("user-A", moved.updated_at),
        "a2",
    ]
    assert by_rule["double_big"].event_ids == ["c1", "c2"]
    assert all(a.rules_version == shipped["version"] for a in by_rule.values())

    values = await read_committed(settings, topics.fraud_features.name, 8)
    rows = {
        row.event_id: row.features for row in map(msgspec.json.Decoder(FeatureRow).decode, values)
    }
    assert len(rows) == 8 == len(values)
    assert rows["b4"]["pattern_card_testing_matched"] == 1
    assert rows["b4"]["pattern_card_testing_count"] == 1
    assert rows["a2"]["pattern_account_takeover_matched"] == 1
    assert rows["b3"]["pattern_card_testing_matched"] == 0
    # The offline replay of the same log computes the same rows (training = serving).
    log = [home, *first_part, moved, *second_part]
    replayed = replay_fraud(log, partitions=PARTITIONS, rules=load_rules(rules_file))
    assert {r.event_id: r.features for r in replayed} == rows
