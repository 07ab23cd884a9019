"""SIGTERM to `rtml consume` while input keeps arriving: the actors finish their in-flight batch,
commit it and leave the group; the process exits 0. Afterwards the committed offsets and the
outputs describe the same prefix of the input: every input below the committed offset has
exactly one feature row (read_committed), none above it has any, and the group is empty (the
next member takes over at once, not after a session timeout)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.pipelines.fraud_features import FeatureRow
from infra.topics import ensure_topics
from rtml.settings import Settings, TopicSpec
from tests.integration.faults.harness import PARTITIONS, profiles, transactions

GROUP = "rtml-fraud-features"  # the fraud pipeline's default group (what `rtml consume` runs)


def rtml_command() -> list[str]:
    return [str(Path(sys.executable).with_name("rtml"))]


async def committed_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=GROUP)
    await consumer.start()
    try:
        return {
            p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(PARTITIONS)
        }
    finally:
        await consumer.stop()


async def group_state(settings: Settings) -> tuple[str, int]:
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        [description] = await admin.describe_consumer_groups([GROUP])
    finally:
        await admin.close()
    # DescribeGroupsResponse: (error_code, group_id, state, protocol_type, protocol, members..)
    group = description.groups[0]
    return str(group[2]), len(group[5])


async def read(settings: Settings, topic: str) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list = []
    try:
        async with asyncio.timeout(60):
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while not all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return records


async def test_sigterm_commits_the_in_flight_batch_and_leaves_the_group(
    stack_settings: Settings, producer, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    specs = {
        "TRANSACTIONS": TopicSpec(name=f"tx-term-{suffix}", partitions=PARTITIONS),
        "USER_PROFILES": TopicSpec(
            name=f"profiles-term-{suffix}", config={"cleanup.policy": "compact"}
        ),
        "DEAD_LETTER": TopicSpec(name=f"dead-term-{suffix}"),
        "FRAUD_FEATURES": TopicSpec(name=f"features-term-{suffix}", partitions=PARTITIONS),
    }
    await ensure_topics(stack_settings, list(specs.values()))
    for key, value in profiles():
        await producer.send(specs["USER_PROFILES"].name, value, key=key)
    records, _ = transactions(40_000, seed=31)
    tx_topic = specs["TRANSACTIONS"].name

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTML_", "RAY_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_bootstrap_servers,
        "REDIS_URL": stack_settings.redis_url,
        "RTML_STATE_DIR": str(tmp_path),
        "RTML_FRAUD_SCORING": "false",
        "RTML_EMIT_FEATURE_ROWS": "true",
        "RAY_NUM_CPUS": "2",
    }
    for name, spec in specs.items():
        env[f"RTML_TOPICS__{name}__NAME"] = spec.name
        env[f"RTML_TOPICS__{name}__PARTITIONS"] = str(spec.partitions)
    log_path = tmp_path / "consume.log"
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *rtml_command(),
            "consume",
            "--pipelines",
            "fraud",
            "--interval",
            "0.5",
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
    sent = 0
    try:
        deadline = time.monotonic() + 120
        while not re.search(r"records=[1-9]", text := await asyncio.to_thread(log_path.read_text)):
            assert process.returncode is None, f"rtml consume exited early:\n{text[-2000:]}"
            assert time.monotonic() < deadline, f"rtml consume did not start:\n{text[-2000:]}"
            if sent < 2_000:
                for key, value in records[sent : sent + 200]:
                    await producer.send(tx_topic, value, key=key)
                sent += 200
            await asyncio.sleep(0.2)
        # Input keeps arriving while SIGTERM lands: there is a batch in flight.
        for key, value in records[sent : sent + 5_000]:
            await producer.send(tx_topic, value, key=key)
        sent += 5_000
        await producer.flush()
        process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        for key, value in records[sent:]:
            await producer.send(tx_topic, value, key=key)
        sent = len(records)
        await producer.flush()
        rc = await asyncio.wait_for(process.wait(), 90)
        took = time.monotonic() - terminated
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = await asyncio.to_thread(log_path.read_text)
    assert rc == 0, f"rtml consume exited {rc}:\n{output[-3000:]}"
    print(f"\nRECOVERY SIGTERM graceful stop: exited_in={took:.2f}s", flush=True)

    committed = await committed_offsets(stack_settings, tx_topic)
    assert sum(committed.values()) > 0, "the actors committed nothing"
    inputs = await read(stack_settings, tx_topic)
    assert sum(committed.values()) < len(inputs), "SIGTERM should land before the end"
    expected = {
        msgspec.json.decode(r.value)["event_id"]
        for r in inputs
        if r.offset < committed[r.partition] and r.value.endswith(b"}")
    }
    rows = [
        msgspec.json.decode(r.value, type=FeatureRow)
        for r in await read(stack_settings, specs["FRAUD_FEATURES"].name)
    ]
    counts = Counter(row.event_id for row in rows)
    assert not [e for e, c in counts.items() if c > 1], "an input has two feature rows"
    assert set(counts) == expected, "outputs and committed offsets differ"
    state, members = await group_state(stack_settings)
    assert members == 0 and state == "Empty", f"the group is {state} with {members} members"
