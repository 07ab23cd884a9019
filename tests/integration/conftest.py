"""Integration tests: the real Kafka broker and Redis, started once per session.

Every test under ``tests/integration`` gets the ``integration`` marker (deselect them with
``-m "not integration"``).

Fixtures for every integration test:

``stack_settings`` (session)
    The ``Settings`` of a *test* stack, isolated from a developer's dev stack: Kafka on
    127.0.0.1:19092 (controller 19093), Redis on redis://127.0.0.1:16379/0, state (data, pid
    files, logs) under a session temp dir. The Kafka jars come from the shared cache in
    ``~/.cache/rtml``, so only the very first session downloads them. Each port is claimed
    with a lock file in the temp dir; if one is taken (another session's test stack, say), a
    free port is used instead, so parallel sessions coexist: read the ports from the settings,
    never hard-code them. The stack is started once (``infra.stack.up``, which also creates
    ``settings.rtml_topics``) and stopped at the end of the session.
    Set ``RTML_TEST_KAFKA=host:port`` and/or ``RTML_TEST_REDIS=redis://...`` to test against
    services that already run instead; nothing local is started for those, and tests that
    must restart a service skip.

``new_topic`` (function)
    An async factory: ``name = await new_topic(partitions=1, config=None)`` creates a topic with
    a unique name for this test (and deletes it after the test).

``redis_client`` (function)
    A ``redis.asyncio.Redis`` on the test Redis. Nothing global is flushed: use
    ``redis_prefix`` (a unique ``"test:<test-name>-<hex>:"``) for your keys; they are deleted
    after the test.

``producer`` (function)
    A started ``AIOKafkaProducer`` on the test broker (acks=all, idempotent).

``ray_session`` (session)
    A local Ray instance (8 logical CPUs, no dashboard) shared by every test that needs Ray;
    shut down at the end of the session. Use fractional ``num_cpus`` for actors.

``cdc_settings`` (session)
    ``stack_settings`` with ``rtml_cdc`` on: a private PostgreSQL (data dir under the session
    temp dir, ports claimed like the others) and a Kafka Connect worker on the session broker,
    with the schema applied and the users connector registered (``infra.stack.up``). Started
    only by the tests that ask for it (the Connect JVM takes ~20 s); stopped at the end.

``read_topic`` (function)
    ``records = await read_topic(topic, timeout_s=10.0)``: every record of the topic from the
    beginning up to its end offsets at the time of the call, in offset order per partition
    (partition by partition), with a new group-less consumer.

Lifecycle calls are synchronous; from an async test, run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer, ConsumerRecord

from infra import processes, stack
from infra.probes import redis_client as make_redis_client
from infra.topics import delete_topics, ensure_topics
from infra.topics import read_topic as read_topic_records
from rtml.errors import ServiceError
from rtml.settings import Settings, TopicSpec, load_settings

TEST_KAFKA_PORT = 19092
TEST_CONTROLLER_PORT = 19093
TEST_REDIS_PORT = 16379
TEST_POSTGRES_PORT = 15432
TEST_CONNECT_PORT = 18083
_HERE = Path(__file__).parent

NewTopic = Callable[..., Awaitable[str]]
ReadTopic = Callable[..., Awaitable[list[ConsumerRecord]]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


class _PortClaims:
    """Ports for this session's stack, claimed with a machine-wide lock file per port, so two
    test sessions started at the same moment never pick the same ones."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.gettempdir()) / "rtml-test-ports"
        self._dir.mkdir(exist_ok=True)
        self._held: list[TextIO] = []

    def claim(self, preferred: int) -> int:
        """``preferred`` unless another session or process holds it; then a free port."""
        port = preferred
        while True:
            handle = (self._dir / f"{port}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
            else:
                if not processes.port_in_use("127.0.0.1", port):
                    self._held.append(handle)
                    return port
                handle.close()
            port = processes.free_port()

    def release(self) -> None:
        for handle in self._held:
            handle.close()  # closing drops the lock
        self._held.clear()


def _test_stack_overrides(state_dir: Path, ports: _PortClaims) -> dict[str, object]:
    overrides: dict[str, object] = {"rtml_state_dir": state_dir}
    external_kafka = os.environ.get("RTML_TEST_KAFKA")
    if external_kafka:
        overrides |= {"kafka_bootstrap_servers": external_kafka, "kafka_managed": False}
    else:
        kafka, controller = ports.claim(TEST_KAFKA_PORT), ports.claim(TEST_CONTROLLER_PORT)
        overrides |= {
            "kafka_bootstrap_servers": f"127.0.0.1:{kafka}",
            "kafka_controller_port": controller,
            "kafka_managed": True,
        }
    external_redis = os.environ.get("RTML_TEST_REDIS")
    if external_redis:
        overrides |= {"redis_url": external_redis, "redis_managed": False}
    else:
        port = ports.claim(TEST_REDIS_PORT)
        overrides |= {"redis_url": f"redis://127.0.0.1:{port}/0", "redis_managed": True}
    return overrides


_ports: _PortClaims | None = None


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    global _ports
    ports = _ports = _PortClaims()
    try:
        state_dir = tmp_path_factory.mktemp("rtml-state")
        settings = load_settings(**_test_stack_overrides(state_dir, ports))
        try:
            stack.up(settings, timeout_s=90.0)
        except ServiceError:
            stack.down(settings, timeout_s=10.0)  # whatever did start
            raise
        yield settings
        stack.down(settings, timeout_s=20.0)
    finally:
        ports.release()


@pytest.fixture(scope="session")
def cdc_settings(stack_settings: Settings) -> Iterator[Settings]:
    from infra import kafka_connect, postgres_server

    assert _ports is not None
    postgres, connect = _ports.claim(TEST_POSTGRES_PORT), _ports.claim(TEST_CONNECT_PORT)
    settings = stack_settings.model_copy(
        update={
            "rtml_cdc": True,
            "database_url": f"postgresql://rtml@127.0.0.1:{postgres}/rtml",
            "database_managed": True,
            "kafka_connect_url": f"http://127.0.0.1:{connect}",
            "kafka_connect_managed": True,
        }
    )
    try:
        stack.up(settings, timeout_s=120.0)
        yield settings
    finally:
        kafka_connect.stop(settings, timeout_s=20.0)
        postgres_server.stop(settings, timeout_s=20.0)


def _unique(request: pytest.FixtureRequest, prefix: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:80]
    return f"{prefix}-{slug}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def new_topic(
    stack_settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[NewTopic]:
    created: list[str] = []

    async def factory(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        spec = TopicSpec(
            name=_unique(request, "test"), partitions=partitions, config=dict(config or {})
        )
        await ensure_topics(stack_settings, [spec])
        created.append(spec.name)
        return spec.name

    yield factory
    await delete_topics(stack_settings, created)


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    return _unique(request, "test").replace("-", ":", 1) + ":"


@pytest.fixture
async def redis_client(
    stack_settings: Settings, redis_prefix: str
) -> AsyncIterator[aioredis.Redis]:
    client = make_redis_client(stack_settings)
    try:
        yield client
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def producer(stack_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(
        **stack_settings.kafka_client_kwargs(), acks="all", enable_idempotence=True
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest.fixture
def read_topic(stack_settings: Settings) -> ReadTopic:
    async def read(topic: str, *, timeout_s: float = 10.0) -> list[ConsumerRecord]:
        return await read_topic_records(stack_settings, topic, timeout_s=timeout_s)

    return read


@pytest.fixture(scope="session")
def ray_session(stack_settings: Settings) -> Iterator[None]:
    from rtml.ray_runtime import init_ray, shutdown_ray

    init_ray(stack_settings.model_copy(update={"ray_num_cpus": 8}))
    yield
    shutdown_ray()
