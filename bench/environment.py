"""The bench's own stack: Kafka, Redis and Ray that no developer or test session shares.

By default the state lives in a fresh temporary directory and the services listen on their own
ports (Kafka 39092/39093, Redis 36379; a free port replaces one that is taken), so a bench run
never touches ``make demo``'s data or ``make test``'s stack. Ray is a new local instance.

Also here: the Kafka and Redis chores between measurements (topics, a group's offsets, end
offsets, flushing the online store), as coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.options import BenchOptions
from infra import kafka_broker, processes, redis_server, stack
from infra.probes import redis_client
from infra.topics import delete_topics, describe_topics, ensure_topics
from rtml.errors import ServiceError, ServiceUnavailable
from rtml.settings import Settings, Topics, TopicSpec, load_settings

log = logging.getLogger(__name__)


@dataclass
class BenchStack:
    settings: Settings
    state_dir: Path
    temporary: bool
    notes: list[str] = field(default_factory=list)
    ray_started: bool = False
    # The bench started these Kafka/Redis for itself: it may flush Redis between runs and count
    # its keys. False on a shared stack (the integration tests'), where it must not.
    owns_services: bool = True

    @property
    def broker_pid(self) -> int | None:
        return kafka_broker.running_pid(self.settings)

    @property
    def redis_pid(self) -> int | None:
        return redis_server.running_pid(self.settings)


def _port(preferred: int, fixed: bool, notes: list[str], what: str) -> int:
    if fixed or not processes.port_in_use("127.0.0.1", preferred):
        return preferred
    port = processes.free_port()
    notes.append(f"{what} port {preferred} was taken; used {port}")
    return port


def bench_settings(
    options: BenchOptions, state_dir: Path, notes: list[str], cache_dir: Path | None = None
) -> Settings:
    """Settings of the isolated stack. A given ``--state-dir`` keeps the given ports (a kept
    stack is found again there); a temporary one moves off ports that are taken. ``cache_dir``
    is where the Kafka jars are cached (the caller's, so nothing is downloaded twice)."""
    fixed = options.state_dir is not None
    kafka = _port(options.kafka_port, fixed, notes, "Kafka")
    controller = _port(options.controller_port, fixed, notes, "Kafka controller")
    redis = _port(options.redis_port, fixed, notes, "Redis")
    extra: dict[str, object] = {"rtml_cache_dir": cache_dir} if cache_dir is not None else {}
    return load_settings(
        **extra,
        kafka_bootstrap_servers=f"127.0.0.1:{kafka}",
        kafka_controller_port=controller,
        kafka_managed=True,
        redis_url=f"redis://127.0.0.1:{redis}/0",
        redis_managed=True,
        rtml_state_dir=state_dir,
        ray_address=None,
        ray_num_cpus=8,
        rtml_delivery="exactly_once",
        rtml_fraud_scoring=False,  # the feature stage alone
        rtml_recommend_on_activity=False,
        rtml_emit_feature_rows=False,
        rtml_log_level="WARNING",
    )


def start_stack(options: BenchOptions, *, cache_dir: Path | None = None) -> BenchStack:
    """Start (or find, with ``--state-dir``) the bench's Kafka and Redis. Synchronous."""
    temporary = options.state_dir is None
    state_dir = (
        Path(tempfile.mkdtemp(prefix="rtml-bench-"))
        if options.state_dir is None
        else options.state_dir.resolve()
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    settings = bench_settings(options, state_dir, notes, cache_dir)
    try:
        stack.up(settings, timeout_s=120.0, topics=[])
    except ServiceError:
        stack.down(settings, timeout_s=10.0)  # whatever did start
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
        raise
    return BenchStack(settings, state_dir, temporary, notes)


def start_ray(bench: BenchStack) -> None:
    """A new local Ray instance for the actors, whatever RAY_ADDRESS says."""
    from rtml.ray_runtime import init_ray

    if os.environ.pop("RAY_ADDRESS", None):
        bench.notes.append("RAY_ADDRESS was ignored: the bench runs its own local Ray")
    init_ray(bench.settings, address="local")
    bench.ray_started = True


def stop_stack(bench: BenchStack, *, keep: bool) -> None:
    """Stop Ray, then Kafka and Redis (unless ``keep``), and remove a temporary state dir."""
    if bench.ray_started:
        from rtml.ray_runtime import shutdown_ray

        shutdown_ray()
        bench.ray_started = False
    if keep:
        return
    stack.down(bench.settings, timeout_s=30.0)
    if bench.temporary:
        shutil.rmtree(bench.state_dir, ignore_errors=True)


# --- topics and offsets ----------------------------------------------------------------------


def scenario_topics(prefix: str, partitions: int) -> Topics:
    """Every rtml topic, renamed ``<prefix>.<name>``, the partitioned ones with ``partitions``."""
    defaults = Topics()
    overrides: dict[str, dict[str, object]] = {}
    for name in Topics.model_fields:
        spec: TopicSpec = getattr(defaults, name)
        overrides[name] = {"name": f"{prefix}.{spec.name}"}
        if spec.partitions > 1:
            overrides[name]["partitions"] = partitions
    return Topics(**overrides)  # type: ignore[arg-type]


async def create_topics(settings: Settings, specs: Sequence[TopicSpec]) -> None:
    await ensure_topics(settings, specs)


async def delete_topic(settings: Settings, name: str, *, timeout_s: float = 30.0) -> None:
    """Delete a topic and wait until the cluster no longer lists it (so it can be recreated)."""
    await delete_topics(settings, [name])
    deadline = time.monotonic() + timeout_s
    while await describe_topics(settings, [name], internal=True):
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                "kafka", f"topic {name} still exists {timeout_s:g} s after delete"
            )
        await asyncio.sleep(0.2)


class OffsetReader:
    """One admin client and one group-less consumer for end and committed offsets."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
        self._consumer = AIOKafkaConsumer(
            **settings.kafka_client_kwargs(), group_id=None, enable_auto_commit=False
        )

    async def __aenter__(self) -> OffsetReader:
        try:
            await self._admin.start()
            await self._consumer.start()
        except KafkaError as exc:
            await self.__aexit__(None, None, None)
            raise ServiceUnavailable("kafka", f"cannot read offsets: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await self._consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        offsets = await self._admin.list_consumer_group_offsets(group)
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset >= 0
        }


async def set_group_offsets(
    settings: Settings, group: str, offsets: dict[TopicPartition, int]
) -> None:
    """Commit ``offsets`` for an empty group (no member runs): where its next run starts."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), group_id=group, enable_auto_commit=False
    )
    try:
        await consumer.start()
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    except KafkaError as exc:
        raise ServiceError("kafka", f"cannot reset group {group}: {exc}") from exc
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def redis(settings: Settings) -> AsyncIterator[object]:
    client = redis_client(settings)
    try:
        yield client
    finally:
        await client.aclose()


async def flush_redis(settings: Settings) -> None:
    """Empty the bench's Redis (its own instance: nothing else lives there)."""
    async with redis(settings) as client:
        await client.flushdb()  # type: ignore[attr-defined]


async def redis_keys(settings: Settings) -> int:
    async with redis(settings) as client:
        return int(await client.dbsize())  # type: ignore[attr-defined]
