"""Topics: create the configured ones idempotently, and describe what a cluster holds.

``ensure_topics`` is the call other packages and tests use. It creates the missing topics with
their partition count and configs, and leaves existing topics alone, *including* their partition
count: a topic with fewer (or more) partitions than configured is reported as a mismatch (a
warning), never changed. Adding partitions would move keys to other partitions, which breaks
per-key ordering and the one-value-per-key view of a compacted topic; fixing a mismatch is a
deliberate operator decision (``kafka-topics --alter``, or a new topic).

All functions are coroutines doing network I/O through aiokafka only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from rtml.errors import ConfigError, ServiceError, ServiceUnavailable
from rtml.settings import Settings, TopicSpec

log = logging.getLogger(__name__)

# Errors in a CreateTopics answer that mean "your topic spec is wrong", not "Kafka is unwell".
_SPEC_ERRORS = (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
)


@dataclass(frozen=True)
class TopicPlan:
    """What ``ensure_topics`` will do, given the topics that exist (name -> partitions)."""

    to_create: tuple[TopicSpec, ...]
    mismatches: tuple[str, ...]


@dataclass(frozen=True)
class TopicReport:
    created: tuple[str, ...]
    mismatches: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the cluster has it: partitions and each partition's end offset."""

    name: str
    end_offsets: tuple[int, ...] = field(default=())

    @property
    def partitions(self) -> int:
        return len(self.end_offsets)

    @property
    def total_end_offset(self) -> int:
        """Sum of the end offsets: records ever written (more than held, after compaction)."""
        return sum(self.end_offsets)


def plan_topics(existing: Mapping[str, int], specs: Sequence[TopicSpec]) -> TopicPlan:
    """Which specs to create, and a warning line for each existing topic that differs."""
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"topic names must be unique, but {', '.join(duplicates)} repeat")
    to_create = tuple(spec for spec in specs if spec.name not in existing)
    mismatches = tuple(
        f"topic {spec.name} has {existing[spec.name]} partitions, but the settings say "
        f"{spec.partitions}; left as it is (changing partitions moves keys)"
        for spec in specs
        if spec.name in existing and existing[spec.name] != spec.partitions
    )
    return TopicPlan(to_create, mismatches)


@contextlib.asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client on the configured cluster; Kafka errors become rtml's."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    try:
        await admin.start()
        yield admin
    except KafkaError as exc:
        raise _translate(settings, exc) from exc
    finally:
        await admin.close()


def _translate(settings: Settings, exc: KafkaError) -> ServiceError:
    retriable = exc.retriable or isinstance(exc, KafkaConnectionError)
    error = ServiceUnavailable if retriable else ServiceError
    detail = str(exc).strip() or type(exc).__name__
    return error("kafka", f"{settings.kafka_bootstrap_servers}: {detail}")


async def existing_topics(admin: AIOKafkaAdminClient) -> dict[str, int]:
    """Every topic (internal ones too) with its partition count."""
    described = await admin.describe_topics()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def reconcile_topics(settings: Settings, specs: Iterable[TopicSpec]) -> TopicReport:
    """Create the missing topics; report (never change) partition mismatches of existing ones."""
    specs = list(specs)
    async with admin_client(settings) as admin:
        plan = plan_topics(await existing_topics(admin), specs)
        created: list[str] = []
        if plan.to_create:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        spec.replication_factor,
                        topic_configs=dict(spec.config),
                    )
                    for spec in plan.to_create
                ]
            )
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else None
                if code == 0:
                    created.append(name)
                    continue
                error_type = for_code(code)
                if error_type is TopicAlreadyExistsError:
                    continue  # created by someone else since we listed: fine
                detail = message or error_type.__name__
                if issubclass(error_type, _SPEC_ERRORS):
                    raise ConfigError(f"Kafka refused to create topic {name}: {detail}")
                raise ServiceError("kafka", f"could not create topic {name}: {detail}")
        if created:
            await _wait_for_leaders(admin, created)
    for line in plan.mismatches:
        log.warning("%s", line)
    if created:
        log.info("created topics %s", ", ".join(created))
    return TopicReport(tuple(created), plan.mismatches)


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: Sequence[str], timeout_s: float = 30.0
) -> None:
    """Wait until every partition of the new topics has a leader, so a producer or consumer
    that starts right after ``ensure_topics`` finds them ready."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                described = await admin.describe_topics(list(names))
                if all(
                    not topic["error_code"]
                    and topic["partitions"]
                    and all(p["leader"] >= 0 and not p["error_code"] for p in topic["partitions"])
                    for topic in described
                ):
                    return
                await asyncio.sleep(0.05)
    except TimeoutError as exc:
        raise ServiceUnavailable(
            "kafka", f"topics {', '.join(names)} got no partition leaders within {timeout_s:g} s"
        ) from exc


async def ensure_topics(settings: Settings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created now.

    Idempotent: existing topics are left alone (a partition-count mismatch is logged as a
    warning). Raises ConfigError for a spec Kafka rejects, ServiceError/ServiceUnavailable when
    the cluster cannot be reached.
    """
    return list((await reconcile_topics(settings, specs)).created)


async def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Delete topics; ones that do not exist are ignored."""
    names = list(names)
    if not names:
        return
    async with admin_client(settings) as admin:
        response = await admin.delete_topics(names)
        for name, code in (entry[:2] for entry in response.topic_error_codes):
            if code and for_code(code) is not UnknownTopicOrPartitionError:
                raise ServiceError("kafka", f"could not delete topic {name}: error code {code}")


async def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """A topic's effective configs (defaults included), as the broker reports them."""
    async with admin_client(settings) as admin:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    configs: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            code, message = resource[0], resource[1]
            if code:
                raise ServiceError("kafka", f"cannot describe topic {name}: {message or code}")
            for entry in resource[4]:
                configs[entry[0]] = entry[1]
    return configs


async def describe_topics(
    settings: Settings, names: Sequence[str] | None = None, *, internal: bool = False
) -> list[TopicInfo]:
    """The topics (all, or ``names``) with their end offsets per partition, sorted by name."""
    async with admin_client(settings) as admin:
        described = await admin.describe_topics(list(names) if names else None)
    partitions: dict[str, list[int]] = {}
    for topic in described:
        if topic["error_code"] == UnknownTopicOrPartitionError.errno:
            continue
        if not internal and (topic.get("is_internal") or topic["topic"].startswith("__")):
            continue
        partitions[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
    wanted = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
    offsets = await end_offsets(settings, wanted) if wanted else {}
    return [
        TopicInfo(name, tuple(offsets[TopicPartition(name, p)] for p in ps))
        for name, ps in sorted(partitions.items())
    ]


async def end_offsets(
    settings: Settings, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The end offset (next offset to be written) of each partition."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), enable_auto_commit=False, group_id=None
    )
    try:
        await consumer.start()
        return await consumer.end_offsets(list(partitions))
    except KafkaError as exc:
        raise _translate(settings, exc) from exc
    finally:
        await consumer.stop()


async def read_topic(
    settings: Settings, topic: str, *, timeout_s: float = 10.0
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning up to its end offsets at the time of the
    call, partition by partition, each in offset order (a group-less consumer; for tests and
    inspection, not for processing). LookupError when the topic does not exist."""
    described = await describe_topics(settings, [topic], internal=True)
    if not described:
        raise LookupError(f"topic {topic} does not exist")
    ends = {TopicPartition(topic, p): end for p, end in enumerate(described[0].end_offsets)}
    records: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in ends}
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            consumer.assign(list(ends))
            await consumer.seek_to_beginning(*ends)
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                batch = await consumer.getmany(timeout_ms=200)
                for tp, batch_records in batch.items():
                    records[tp].extend(r for r in batch_records if r.offset < ends[tp])
    except KafkaError as exc:
        raise _translate(settings, exc) from exc
    finally:
        await consumer.stop()
    return [record for tp in sorted(records) for record in records[tp]]
