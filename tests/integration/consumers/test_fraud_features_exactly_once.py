"""The fraud feature pipeline on the real broker, Redis and Ray: every valid transaction gets
exactly one feature row (read_committed) equal to an uninterrupted offline run of the same
engine over the same partitions, while members join, leave and crash (kill -9)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
import uuid
from collections import Counter

import msgspec
import pytest
import ray
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.environment import OffsetReader
from consumers.actors import ConsumerGroup
from consumers.pipelines import GROUP_IDS
from consumers.pipelines.fraud_features import FeatureRow, FraudFeaturesPipeline
from consumers.runner import ConsumerRunner
from contracts.codec import EventDecoder
from contracts.events import DeadLetter, Transaction, UserProfile
from features.replay import replay_fraud
from rtml.errors import InvalidEvent
from rtml.settings import Settings, Topics

PARTITIONS = 4
T0 = 1_700_000_000_000


async def pipeline_settings(stack_settings: Settings, new_topic) -> Settings:
    topics = Topics(
        transactions={"name": await new_topic(PARTITIONS), "partitions": PARTITIONS},
        user_profiles={"name": await new_topic(1, {"cleanup.policy": "compact"})},
        dead_letter={"name": await new_topic(1)},
        fraud_features={"name": await new_topic(PARTITIONS), "partitions": PARTITIONS},
    )  # type: ignore[arg-type]
    return stack_settings.model_copy(
        update={"rtml_topics": topics, "rtml_emit_feature_rows": True, "rtml_fraud_scoring": False}
    )


def transactions(n: int, seed: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, value) records: out-of-order events, ~1% malformed, a few late ones."""
    rnd = random.Random(seed)
    records: list[tuple[bytes, bytes]] = []
    bad = 0
    for i in range(n):
        card = f"card-{rnd.randrange(300)}"
        event_time = T0 + i * 200 - rnd.randrange(0, 20_000)
        if i > 1_000 and i % 997 == 0:
            event_time = T0 + i * 200 - 3 * 3_600_000  # behind the 1 h watermark: late
        tx = {
            "event_id": f"tx-{seed}-{i}",
            "card_id": card,
            "user_id": f"user-{card[5:]}",
            "merchant_id": f"m-{rnd.randrange(60)}",
            "merchant_category": "grocery",
            "amount": round(rnd.lognormvariate(3, 1), 2) + 0.01,
            "currency": "EUR",
            "lat": 48.8 + rnd.random(),
            "lon": 2.3 + rnd.random(),
            "event_time": event_time,
            "channel": rnd.choice(["pos", "online"]),
        }
        value = json.dumps(tx).encode()
        if i % 101 == 50:
            value = value[:-7]  # truncated JSON
            bad += 1
        records.append((card.encode(), value))
    return records, bad


def profiles() -> list[tuple[bytes, bytes]]:
    out = []
    for u in range(0, 300, 2):  # half of the users have a profile
        profile = {
            "user_id": f"user-{u}",
            "home_lat": 48.85,
            "home_lon": 2.35,
            "account_age_days": u,
            "segment": "regular",
            "updated_at": T0,
        }
        out.append((f"user-{u}".encode(), json.dumps(profile).encode()))
    return out


async def produce(producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]]):
    for key, value in records:
        await producer.send(topic, value, key=key)
    await producer.flush()


async def read_committed(settings: Settings, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(60):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=1_000)
                records.extend(r for rs in batch.values() for r in rs)
            # Anything beyond the expected count would be a duplicate: read a little longer.
            batch = await consumer.getmany(timeout_ms=2_000)
            records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return records


async def reference_rows(settings: Settings) -> dict[str, dict[str, float | None]]:
    """Features of every non-late valid transaction from the offline replay of the topic."""
    topic = settings.rtml_topics.transactions.name
    consumer = AIOKafkaConsumer(
        topic, **settings.kafka_client_kwargs(), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(60):
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while not all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                batch = await consumer.getmany(timeout_ms=1_000)
                records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))  # production order
    decoder = EventDecoder(Transaction)
    profile_decoder = msgspec.json.Decoder(UserProfile)
    log: list[Transaction | UserProfile] = [profile_decoder.decode(v) for _, v in profiles()]
    for record in records:
        try:
            log.append(decoder.decode(record.value).event)
        except InvalidEvent:
            continue  # malformed ones are dead-lettered online
    rows = replay_fraud(log, partitions=PARTITIONS, config=settings.rtml_features)
    return {row.event_id: row.features for row in rows}


def check_rows(
    feature_records: list,
    reference: dict[str, dict[str, float | None]],
    *,
    duplicates_allowed: bool = False,
) -> None:
    """One row per event (or, at least once, any duplicates identical) equal to the replay."""
    decoder = msgspec.json.Decoder(FeatureRow)
    rows = [decoder.decode(r.value) for r in feature_records]
    counts = Counter(row.event_id for row in rows)
    duplicates = [event_id for event_id, c in counts.items() if c > 1]
    if not duplicates_allowed:
        assert not duplicates, f"{len(duplicates)} events have more than one row"
    assert set(counts) == set(reference), "missing or unexpected feature rows"
    mismatched = [row.event_id for row in rows if row.features != reference[row.event_id]]
    assert not mismatched, f"{len(mismatched)} rows differ from the uninterrupted run"


async def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("overlap", "prefetch"),
    [(False, True), (True, True), (False, False)],
    ids=["inline-commits", "overlapped-commits", "no-prefetch"],
)
async def test_members_joining_and_leaving_count_every_event_once(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, overlap: bool, prefetch: bool
) -> None:
    settings = await pipeline_settings(stack_settings, new_topic)
    settings = settings.model_copy(
        update={"rtml_overlap_commits": overlap, "rtml_prefetch": prefetch}
    )
    topics = settings.rtml_topics
    await produce(producer, topics.user_profiles.name, profiles())
    records, bad = transactions(8_000, seed=1)
    group = f"test-fraud-{uuid.uuid4().hex[:8]}"

    def member() -> ConsumerRunner:
        pipeline = FraudFeaturesPipeline(settings, group_id=group)
        return ConsumerRunner(settings, pipeline, max_poll_records=500)

    first = member()
    first_task = asyncio.create_task(first.run())
    await produce(producer, topics.transactions.name, records[:3_000])
    await wait_for(lambda: first.stats.records >= 1_000, 60, "the first member to start")
    second = member()  # joins: partitions are split, state moves through the changelog
    second_task = asyncio.create_task(second.run())
    await wait_for(
        lambda: second.ready and len(first.ready) < PARTITIONS, 60, "the partitions to split"
    )
    await produce(producer, topics.transactions.name, records[3_000:6_000])
    await wait_for(lambda: second.stats.records > 0, 60, "the second member to process")
    first.stop()  # leaves gracefully: commits its batch, the second takes everything
    await first_task
    third = member()
    third_task = asyncio.create_task(third.run())
    await wait_for(lambda: third.ready, 60, "the third member to get partitions")
    await produce(producer, topics.transactions.name, records[6_000:])
    await wait_for(
        lambda: first.stats.records + second.stats.records + third.stats.records >= 8_000,
        90,
        "all records",
    )
    second.stop()
    third.stop()
    await asyncio.gather(second_task, third_task)

    reference = await reference_rows(settings)
    late = 8_000 - bad - len(reference)
    assert late > 0, "the stream should contain late events"
    feature_records = await read_committed(settings, topics.fraud_features.name, len(reference))
    check_rows(feature_records, reference)

    dead = await read_committed(settings, topics.dead_letter.name, bad + late)
    kinds = Counter(msgspec.json.decode(r.value, type=DeadLetter).error.kind for r in dead)
    assert kinds == {"malformed_json": bad, "late": late}


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
async def test_killed_actor_restores_state_and_resumes(
    stack_settings: Settings,
    new_topic,
    producer: AIOKafkaProducer,
    ray_session: None,
    delivery: str,
) -> None:
    """Exactly once: one row per event. At least once: at least one, duplicates identical.

    Exactly once, the group's committed offsets are advisory: with an interval longer than the
    test they are committed only when the members stop, so every resume after the kill comes
    from the offsets in the changelog transactions."""
    settings = await pipeline_settings(stack_settings, new_topic)
    settings = settings.model_copy(
        update={"rtml_delivery": delivery, "rtml_group_offset_commit_interval_s": 300.0}
    )
    topics = settings.rtml_topics
    await produce(producer, topics.user_profiles.name, profiles())
    records, _ = transactions(6_000, seed=2)
    group = ConsumerGroup(
        settings,
        "fraud",
        runner_options={"max_poll_records": 300},
        actor_options={"num_cpus": 0.5},
    )
    group.scale(2)
    try:
        await produce(producer, topics.transactions.name, records[:2_000])

        def processed() -> int:
            return sum(s["records"] for s in group.stats())

        await wait_for(lambda: processed() >= 1_000, 90, "the actors to start")
        victim = group.actors()[0]
        pid = await victim.pid.remote()
        produce_rest = asyncio.create_task(
            produce(producer, topics.transactions.name, records[2_000:])
        )
        await asyncio.sleep(0.3)
        os.kill(pid, signal.SIGKILL)  # mid-batch, mid-transaction
        await produce_rest

        reference = await reference_rows(settings)
        feature_records = await read_committed(settings, topics.fraud_features.name, len(reference))
        check_rows(feature_records, reference, duplicates_allowed=delivery == "at_least_once")
        new_pid = await victim.pid.remote()
        assert new_pid != pid, "the actor should have been restarted"
        assert ray.get(victim.stats.remote())["partitions"] is not None

        def caught_up() -> bool:
            lags = [lag for s in group.stats() for lag in s["lag"].values()]
            return len(lags) == PARTITIONS and not any(lags)

        await wait_for(caught_up, 60, "every partition to be processed to its end")
        group.stop()
        # The members that stopped committed their offsets to the group: all of the input.
        async with OffsetReader(settings) as offsets:
            topic = topics.transactions.name
            committed = await offsets.committed(GROUP_IDS["fraud"], topic)
            assert committed == await offsets.end_offsets(topic, PARTITIONS)
    finally:
        group.stop()


async def test_a_restore_longer_than_the_session_timeout_does_not_lock_the_member_out(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, monkeypatch
) -> None:
    """A member whose state takes longer to restore than the session timeout stays in the
    group and processes everything, without a rejoin or a recovery."""
    import consumers.partition_session as partition_session

    slow_restore = 12.0  # the consumers' session timeout is 10 s
    restore = partition_session.restore_changelog

    async def slow(*args, **kwargs):
        await asyncio.sleep(slow_restore)
        return await restore(*args, **kwargs)

    monkeypatch.setattr(partition_session, "restore_changelog", slow)
    settings = await pipeline_settings(stack_settings, new_topic)
    records, _ = transactions(1_000, seed=5)
    await produce(producer, settings.rtml_topics.transactions.name, records)
    runner = ConsumerRunner(
        settings,
        FraudFeaturesPipeline(settings, group_id=f"test-slow-{uuid.uuid4().hex[:8]}"),
        max_poll_records=500,
    )
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(lambda: runner.stats.records >= 1_000, 90, "every record")
        assert runner.stats.recoveries == 0 and runner.stats.failures == 0
        assert min(runner.stats.restore_seconds.values()) >= slow_restore
    finally:
        runner.stop()
        await task


async def test_members_that_join_during_a_long_restore_form_the_group(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, monkeypatch
) -> None:
    """A rebalance waits for a member whose listener is busy (a restore, a batch) longer than
    the session timeout: with aiokafka's default (the rebalance timeout is the session
    timeout) such a member was dropped, its successor's restore delayed the next rejoin in
    turn, and the group never formed ("local member_id was not recognized", over and over)."""
    import consumers.partition_session as partition_session

    restore = partition_session.restore_changelog

    async def slow(*args, **kwargs):
        await asyncio.sleep(12.0)  # longer than the 10 s session timeout
        return await restore(*args, **kwargs)

    monkeypatch.setattr(partition_session, "restore_changelog", slow)
    settings = await pipeline_settings(stack_settings, new_topic)
    records, _ = transactions(2_000, seed=6)
    await produce(producer, settings.rtml_topics.transactions.name, records)
    group = f"test-storm-{uuid.uuid4().hex[:8]}"
    runners = [
        ConsumerRunner(settings, FraudFeaturesPipeline(settings, group_id=group)) for _ in range(2)
    ]
    first = asyncio.create_task(runners[0].run())
    await wait_for(lambda: runners[0].assigned, 60, "the first member's assignment")
    second = asyncio.create_task(runners[1].run())  # joins while the first restores
    try:
        await wait_for(lambda: sum(r.stats.records for r in runners) >= 2_000, 120, "every record")
        assert all(r.ready for r in runners), "both members own partitions"
    finally:
        for runner in runners:
            runner.stop()
        await asyncio.gather(first, second)
