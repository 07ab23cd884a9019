"""The local stack on the real Kafka broker and Redis: `rtml infra up|down|status` and topics."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import SecretStr

from infra import cli, kafka_broker, processes, redis_server, stack
from infra.probes import redis_client
from infra.topics import (
    delete_topics,
    describe_topics,
    ensure_topics,
    read_topic,
    reconcile_topics,
    topic_configs,
)
from rtml.errors import ServiceError, ServiceUnavailable
from rtml.settings import Settings, TopicSpec, load_settings

NewTopic = Callable[..., Awaitable[str]]
ReadTopic = Callable[..., Awaitable[list[ConsumerRecord]]]

needs_local_kafka = pytest.mark.skipif(
    bool(os.environ.get("RTML_TEST_KAFKA")), reason="restarts the broker: needs a managed one"
)
needs_local_redis = pytest.mark.skipif(
    bool(os.environ.get("RTML_TEST_REDIS")), reason="restarts Redis: needs a managed one"
)


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A port held by a process that is not ours (this test), listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


async def test_produce_consume_round_trip(
    producer: AIOKafkaProducer, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = await new_topic(partitions=3)
    sent = [(f"user-{i % 5}".encode(), f"event-{i}".encode()) for i in range(30)]
    for key, value in sent:
        await producer.send(topic, value, key=key)
    await producer.flush()

    records = await read_topic(topic)

    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    for key in {key for key, _ in sent}:  # per key: one partition, order kept
        got = [r for r in records if r.key == key]
        assert len({r.partition for r in got}) == 1
        assert [r.value for r in got] == [v for k, v in sent if k == key]


async def test_ensure_topics_is_idempotent(stack_settings: Settings) -> None:
    name = f"test-ensure-{os.urandom(4).hex()}"
    config = {"cleanup.policy": "compact", "retention.ms": "3600000"}
    spec = TopicSpec(name=name, partitions=3, config=config)
    try:
        assert await ensure_topics(stack_settings, [spec]) == [name]
        assert await ensure_topics(stack_settings, [spec]) == []

        [info] = await describe_topics(stack_settings, [name])
        assert info.partitions == 3
        configs = await topic_configs(stack_settings, name)
        assert {key: configs[key] for key in config} == config

        # A different partition count is reported, never applied.
        report = await reconcile_topics(stack_settings, [spec.model_copy(update={"partitions": 5})])
        assert report.created == ()
        assert len(report.mismatches) == 1
        assert name in report.mismatches[0] and "3 partitions" in report.mismatches[0]
        [info] = await describe_topics(stack_settings, [name])
        assert info.partitions == 3
    finally:
        await delete_topics(stack_settings, [name])


async def test_up_created_the_configured_topics(stack_settings: Settings) -> None:
    infos = {info.name: info for info in await describe_topics(stack_settings)}
    for spec in stack_settings.rtml_topics.all():
        assert infos[spec.name].partitions == spec.partitions
    profiles = stack_settings.rtml_topics.user_profiles.name
    assert (await topic_configs(stack_settings, profiles))["cleanup.policy"] == "compact"


async def test_status_names_every_topic(
    stack_settings: Settings, new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=2)
    for i in range(4):
        await producer.send(topic, b"x", partition=i % 2)
    await producer.flush()
    out = io.StringIO()  # capsys would not see the worker thread's prints

    code = await asyncio.to_thread(cli.status_command, stack_settings, argparse.Namespace(), out)

    text = out.getvalue()
    assert code == 0
    assert text.startswith("kafka up ") and "\nredis up " in text
    for spec in stack_settings.rtml_topics.all():
        assert f"  {spec.name} " in text
    [line] = [line for line in text.splitlines() if f" {topic} " in line]
    assert "2 partitions" in line and "end offsets 4 [2 2]" in line


async def test_up_twice_is_idempotent(stack_settings: Settings) -> None:
    kafka_pid = kafka_broker.running_pid(stack_settings)
    redis_pid = redis_server.running_pid(stack_settings)
    started = time.monotonic()

    report = await asyncio.to_thread(stack.up, stack_settings)

    elapsed = time.monotonic() - started
    assert not report.kafka.started and not report.redis.started
    assert report.kafka.pid == kafka_pid and report.redis.pid == redis_pid
    assert report.created_topics == ()
    assert elapsed < 10, f"a second up took {elapsed:.1f} s"


@needs_local_kafka
@pytest.mark.timeout(120)
async def test_broker_restart_keeps_records(
    stack_settings: Settings, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = await new_topic(partitions=2)
    producer = AIOKafkaProducer(**stack_settings.kafka_client_kwargs(), acks="all")
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topic, f"v{i}".encode(), key=f"k{i % 7}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    before = [(r.partition, r.offset, r.key, r.value) for r in await read_topic(topic)]
    old_pid = kafka_broker.running_pid(stack_settings)

    stopped = await asyncio.to_thread(kafka_broker.stop, stack_settings)
    assert stopped == old_pid
    assert kafka_broker.running_pid(stack_settings) is None
    assert not processes.port_accepts("127.0.0.1", stack_settings.kafka_port)
    new_pid, started = await asyncio.to_thread(kafka_broker.start, stack_settings)
    assert started and new_pid != old_pid

    after = [(r.partition, r.offset, r.key, r.value) for r in await read_topic(topic)]
    assert len(before) == 50
    assert after == before


@pytest.mark.timeout(120)
async def test_compacted_topic_keeps_latest_value_per_key_and_drops_tombstones(
    producer: AIOKafkaProducer, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    # Small segments and retention so the cleaner (log.cleaner.backoff.ms=1000 in the generated
    # broker config) compacts within seconds; the active segment is never cleaned, so filler
    # records keep rolling it.
    topic = await new_topic(
        partitions=1,
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
            "min.compaction.lag.ms": "0",
        },
    )
    latest = {}
    for round_ in range(5):
        for key in (b"a", b"b", b"c"):
            latest[key] = f"{key.decode()}{round_}".encode()
            await producer.send(topic, latest[key], key=key)
    await producer.send(topic, b"doomed", key=b"gone")
    await producer.send(topic, None, key=b"gone")  # tombstone
    await producer.flush()

    deadline = time.monotonic() + 90
    while True:
        await asyncio.sleep(0.3)
        await producer.send_and_wait(topic, b"roll", key=b"filler")  # rolls the active segment
        records = [r for r in await read_topic(topic) if r.key != b"filler"]
        by_key: dict[bytes, list[bytes | None]] = {}
        for record in records:
            by_key.setdefault(record.key, []).append(record.value)
        if by_key == {key: [value] for key, value in latest.items()}:
            break
        assert time.monotonic() < deadline, f"not compacted after 90 s: {by_key}"
    assert b"gone" not in by_key


@needs_local_redis
@pytest.mark.timeout(60)
async def test_redis_aof_survives_restart(stack_settings: Settings, redis_prefix: str) -> None:
    client = redis_client(stack_settings)
    try:
        await client.set(f"{redis_prefix}plain", "1")
        await client.hset(f"{redis_prefix}hash", mapping={"f1": "a", "f2": "b"})
        await client.rpush(f"{redis_prefix}list", "x", "y", "z")
    finally:
        await client.aclose()
    old_pid = redis_server.running_pid(stack_settings)

    assert await asyncio.to_thread(redis_server.stop, stack_settings) == old_pid
    assert redis_server.running_pid(stack_settings) is None
    _, started = await asyncio.to_thread(redis_server.start, stack_settings)
    assert started

    client = redis_client(stack_settings)
    try:
        assert await client.get(f"{redis_prefix}plain") == b"1"
        assert await client.hgetall(f"{redis_prefix}hash") == {b"f1": b"a", b"f2": b"b"}
        assert await client.lrange(f"{redis_prefix}list", 0, -1) == [b"x", b"y", b"z"]
        await client.delete(f"{redis_prefix}plain", f"{redis_prefix}hash", f"{redis_prefix}list")
    finally:
        await client.aclose()


def test_second_stack_lifecycle_next_to_the_test_stack(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """A whole up/status/down cycle on other ports while the session's stack runs; a stale
    pid file (naming a live process that is not a broker: this test) is ignored, not killed."""
    ports = {processes.free_port() for _ in range(3)}
    assert len(ports) == 3
    kafka_port, controller_port, redis_port = sorted(ports)
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
        kafka_controller_port=controller_port,
        kafka_managed=True,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_managed=True,
        rtml_state_dir=tmp_path / "state",
    )
    stale = kafka_broker.BrokerPaths.of(settings).pid_file
    processes.write_pid(stale, os.getpid())
    try:
        report = stack.up(settings, timeout_s=60)
        assert report.kafka.started and report.redis.started
        assert report.kafka.pid != os.getpid()
        assert set(report.created_topics) == {s.name for s in settings.rtml_topics.all()}

        status = stack.status(settings)
        assert status.running
        assert status.kafka.pid == report.kafka.pid and status.redis.pid == report.redis.pid
        assert {t.name for t in status.topics} == set(report.created_topics)
        # The session's stack is untouched and still answers.
        assert kafka_broker.answers(stack_settings) is None
    finally:
        down = stack.down(settings)
    assert down.kafka.pid == report.kafka.pid and down.redis.pid == report.redis.pid
    assert stack.down(settings).kafka.pid is None  # idempotent
    after = stack.status(settings)
    assert not after.kafka.running and not after.redis.running
    assert cli.format_status(after)[0].startswith("kafka down")
    assert kafka_broker.answers(stack_settings) is None


def _lone_settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "kafka_bootstrap_servers": f"127.0.0.1:{processes.free_port()}",
        "kafka_controller_port": processes.free_port(),
        "redis_url": f"redis://127.0.0.1:{processes.free_port()}/0",
        "rtml_state_dir": tmp_path / "state",
    }
    return load_settings(**(base | overrides))


def test_kafka_port_taken_is_a_clear_service_error(listening_socket: int, tmp_path: Path) -> None:
    settings = _lone_settings(tmp_path, kafka_bootstrap_servers=f"127.0.0.1:{listening_socket}")

    with pytest.raises(ServiceError) as caught:
        kafka_broker.start(settings, timeout_s=5)

    message = str(caught.value)
    assert f"127.0.0.1:{listening_socket}" in message and "already in use" in message
    assert "\n" not in message
    assert kafka_broker.running_pid(settings) is None


def test_redis_port_taken_is_a_clear_service_error(listening_socket: int, tmp_path: Path) -> None:
    settings = _lone_settings(tmp_path, redis_url=f"redis://127.0.0.1:{listening_socket}/0")

    with pytest.raises(ServiceError, match=f"127.0.0.1:{listening_socket} is already in use"):
        redis_server.start(settings, timeout_s=5)


def test_unreachable_external_kafka_is_unavailable_quickly(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = _lone_settings(
        tmp_path,
        kafka_managed=False,
        redis_url=stack_settings.redis_url,
        redis_managed=False,
    )
    started = time.monotonic()

    with pytest.raises(ServiceUnavailable) as caught:
        stack.up(settings, external_timeout_s=2)

    assert time.monotonic() - started < 10
    assert caught.value.retriable
    assert settings.kafka_bootstrap_servers in str(caught.value)
    assert not (tmp_path / "state" / "kafka").exists()  # nothing local was started


def test_unreachable_external_redis_is_unavailable_quickly(tmp_path: Path) -> None:
    settings = _lone_settings(tmp_path, redis_managed=False, kafka_managed=False)

    with pytest.raises(ServiceUnavailable, match="redis"):
        stack.up(settings, external_timeout_s=1)


@pytest.mark.skipif(
    importlib.util.find_spec("producers.cli") is None, reason="rtml.cli also needs producers.cli"
)
def test_cli_prints_one_line_on_an_expected_failure(listening_socket: int, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listening_socket}",
        "KAFKA_MANAGED": "true",
        "KAFKA_CONTROLLER_PORT": str(processes.free_port()),
        "REDIS_URL": f"redis://127.0.0.1:{processes.free_port()}/0",
        "RTML_STATE_DIR": str(tmp_path / "state"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "rtml.cli", "infra", "up"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("rtml: error: kafka: ") and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


async def test_read_topic_of_a_missing_topic_is_a_lookup_error(stack_settings: Settings) -> None:
    with pytest.raises(LookupError):
        await read_topic(stack_settings, f"test-missing-{os.urandom(4).hex()}")


@pytest.mark.timeout(180)
def test_jar_download_failure_is_a_clear_service_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom = kafka_broker._pom_text().replace(
        "<artifactId>kafka_2.13</artifactId>",
        "<artifactId>kafka_2.13-no-such-artifact</artifactId>",
    )
    monkeypatch.setattr(kafka_broker, "_pom_text", lambda: pom)
    settings = _lone_settings(tmp_path, rtml_cache_dir=tmp_path / "cache")

    with pytest.raises(ServiceUnavailable) as caught:
        kafka_broker.ensure_jars(settings)

    message = str(caught.value)
    assert message.startswith("maven: could not download the Kafka jars from Maven Central: ")
    assert "kafka_2.13-no-such-artifact" in message
    assert not kafka_broker.jars_ready(settings)
    assert not settings.kafka_libs_dir.exists()


@pytest.mark.timeout(120)
def test_a_broker_that_dies_on_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    settings = _lone_settings(tmp_path)
    paths = kafka_broker.BrokerPaths.of(settings)
    kafka_broker.write_config(settings, paths)
    kafka_broker.format_storage(settings, paths)
    meta = paths.data / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=2"))

    with pytest.raises(ServiceError) as caught:
        kafka_broker.start(settings, timeout_s=60)

    first_line = str(caught.value).splitlines()[0]
    assert first_line.startswith("kafka: the broker exited during startup: Stored node id 2")
    assert str(paths.server_log) in first_line
    assert not paths.pid_file.exists()


def test_up_with_changed_settings_asks_for_down_first(stack_settings: Settings) -> None:
    if not (stack_settings.kafka_is_managed and stack_settings.redis_is_managed):
        pytest.skip("needs the managed test stack")
    moved_kafka = stack_settings.model_copy(update={"rtml_max_record_bytes": 2 * 1024 * 1024})
    with pytest.raises(ServiceError, match="run `rtml infra down` first"):
        kafka_broker.ensure_launched(moved_kafka)
    with_password = stack_settings.model_copy(update={"redis_password": SecretStr("changed")})
    with pytest.raises(ServiceError, match="run `rtml infra down` first"):
        redis_server.ensure_launched(with_password)
    # Nothing was restarted.
    assert kafka_broker.answers(stack_settings) is None
    assert redis_server.answers(stack_settings) is None
