"""The local stack as a whole: ``up``, ``down`` and ``status``, each returning data to print.

``up`` starts what the settings say is managed (``settings.kafka_is_managed``,
``settings.redis_is_managed``), checks that what is not managed answers, then creates the
configured topics. Everything is idempotent: a second ``up`` finds the running processes by
their pid files and only re-checks them and the topics.

Synchronous (a CLI's lifecycle); from async code, call these through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from infra import kafka_broker, kafka_connect, postgres_server, processes, redis_server
from infra.probes import redis_address
from infra.topics import TopicInfo, describe_topics, reconcile_topics
from rtml.errors import ServiceError
from rtml.settings import Settings, TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the stack as seen by ``up``, ``down`` or ``status``."""

    name: str  # "kafka", "redis", "postgres" or "kafka-connect"
    address: str
    managed: bool  # run by rtml from the state dir (else external: only checked)
    running: bool  # answers requests (after ``down``: False)
    pid: int | None = None  # our process (managed only); after ``down``: the pid stopped
    started: bool = False  # ``up`` started it just now
    detail: str = ""  # why it is down, or extra facts (controller port, data dir)


@dataclass(frozen=True)
class StackStatus:
    kafka: ServiceStatus
    redis: ServiceStatus
    topics: tuple[TopicInfo, ...] = ()
    created_topics: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # PostgreSQL and Kafka Connect, when settings.rtml_cdc is on.
    extras: tuple[ServiceStatus, ...] = ()

    @property
    def services(self) -> tuple[ServiceStatus, ...]:
        return (self.kafka, self.redis, *self.extras)

    @property
    def running(self) -> bool:
        return all(service.running for service in self.services)


def _kafka_detail(settings: Settings) -> str:
    if not settings.kafka_is_managed:
        return "external"
    return (
        f"controller {kafka_broker.LISTEN_HOST}:{settings.kafka_controller_port}, "
        f"data {settings.kafka_data_dir}"
    )


def _redis_detail(settings: Settings) -> str:
    return f"data {settings.redis_data_dir}" if settings.redis_is_managed else "external"


def up(
    settings: Settings,
    *,
    timeout_s: float = 60.0,
    external_timeout_s: float = 10.0,
    topics: Sequence[TopicSpec] | None = None,
) -> StackStatus:
    """Start (or find) Kafka and Redis, wait until both answer, create the topics.

    ``topics`` defaults to ``settings.rtml_topics``. Waits up to ``timeout_s`` for a broker we
    start and ``external_timeout_s`` for external services. Raises ServiceError /
    ServiceUnavailable (ConfigError for impossible settings) with one clear sentence.
    """
    kafka_pid: int | None = None
    kafka_started = False
    if settings.kafka_is_managed:
        # Launch the JVM first and start Redis while it boots.
        kafka_pid, kafka_started = kafka_broker.ensure_launched(settings)
    postgres_launch = _launch_postgres(settings) if settings.rtml_cdc else None

    redis_pid: int | None = None
    redis_started = False
    if settings.redis_is_managed:
        redis_pid, redis_started = redis_server.start(settings, timeout_s=min(timeout_s, 30.0))
    else:
        redis_server.wait_ready(settings, None, external_timeout_s)

    kafka_broker.wait_ready(
        settings, kafka_pid, timeout_s if settings.kafka_is_managed else external_timeout_s
    )
    specs = list(settings.rtml_topics.all() if topics is None else topics)
    report = asyncio.run(reconcile_topics(settings, specs))
    extras: tuple[ServiceStatus, ...] = ()
    if postgres_launch is not None:
        extras = _up_cdc(settings, postgres_launch, timeout_s, external_timeout_s)
    return StackStatus(
        kafka=ServiceStatus(
            "kafka",
            settings.kafka_bootstrap_servers,
            settings.kafka_is_managed,
            running=True,
            pid=kafka_pid,
            started=kafka_started,
            detail=_kafka_detail(settings),
        ),
        redis=ServiceStatus(
            "redis",
            redis_address(settings),
            settings.redis_is_managed,
            running=True,
            pid=redis_pid,
            started=redis_started,
            detail=_redis_detail(settings),
        ),
        created_topics=report.created,
        warnings=report.mismatches,
        extras=extras,
    )


def _launch_postgres(settings: Settings) -> tuple[int | None, bool]:
    if not settings.database_is_managed:
        return None, False
    return postgres_server.ensure_launched(settings)


def _up_cdc(
    settings: Settings,
    postgres_launch: tuple[int | None, bool],
    timeout_s: float,
    external_timeout_s: float,
) -> tuple[ServiceStatus, ServiceStatus]:
    """PostgreSQL ready with the schema, the Connect worker up, the users connector registered.

    Runs after the topics exist: the connector writes into user-profiles.
    """
    pg_pid, pg_started = postgres_launch
    connect_pid: int | None = None
    connect_started = False
    if settings.kafka_connect_is_managed:
        connect_pid, connect_started = kafka_connect.ensure_launched(settings)
    postgres_server.wait_ready(
        settings, pg_pid, timeout_s if settings.database_is_managed else external_timeout_s
    )
    postgres_server.ensure_database(settings)
    kafka_connect.wait_ready(
        settings,
        connect_pid,
        max(timeout_s, 90.0) if settings.kafka_connect_is_managed else external_timeout_s,
    )
    changed = kafka_connect.register_users_connector(settings)
    kafka_connect.wait_connector_running(settings, timeout_s=max(timeout_s, 60.0))
    return (
        ServiceStatus(
            "postgres",
            _postgres_address(settings),
            settings.database_is_managed,
            running=True,
            pid=pg_pid,
            started=pg_started,
            detail=_postgres_detail(settings),
        ),
        ServiceStatus(
            "kafka-connect",
            settings.kafka_connect_url,
            settings.kafka_connect_is_managed,
            running=True,
            pid=connect_pid,
            started=connect_started,
            detail=f"connector {settings.rtml_cdc_connector} "
            + ("registered" if changed else "up to date"),
        ),
    )


def _postgres_address(settings: Settings) -> str:
    return f"{settings.database_host}:{settings.database_port}/{settings.database_name}"


def _postgres_detail(settings: Settings) -> str:
    return (
        f"data {settings.postgres_data_dir}, wal_level=logical"
        if settings.database_is_managed
        else "external"
    )


def down(settings: Settings, *, timeout_s: float = 30.0) -> StackStatus:
    """Stop our Kafka and Redis (SIGTERM, then SIGKILL after ``timeout_s``). Idempotent.

    External services are left alone. ``pid`` in the result is the process stopped now, None
    when it was not running.
    """
    extras: tuple[ServiceStatus, ...] = ()
    if settings.rtml_cdc:
        # Connect first: it holds the replication slot and writes to Kafka.
        connect_pid = (
            kafka_connect.stop(settings, timeout_s=timeout_s)
            if settings.kafka_connect_is_managed
            else None
        )
        pg_pid = (
            postgres_server.stop(settings, timeout_s=timeout_s)
            if settings.database_is_managed
            else None
        )
        extras = (
            ServiceStatus(
                "postgres",
                _postgres_address(settings),
                settings.database_is_managed,
                running=False,
                pid=pg_pid,
            ),
            ServiceStatus(
                "kafka-connect",
                settings.kafka_connect_url,
                settings.kafka_connect_is_managed,
                running=False,
                pid=connect_pid,
            ),
        )
    kafka_pid = (
        kafka_broker.stop(settings, timeout_s=timeout_s) if settings.kafka_is_managed else None
    )
    redis_pid = (
        redis_server.stop(settings, timeout_s=timeout_s) if settings.redis_is_managed else None
    )
    return StackStatus(
        kafka=ServiceStatus(
            "kafka",
            settings.kafka_bootstrap_servers,
            settings.kafka_is_managed,
            running=False,
            pid=kafka_pid,
            detail="external, left running" if not settings.kafka_is_managed else "",
        ),
        redis=ServiceStatus(
            "redis",
            redis_address(settings),
            settings.redis_is_managed,
            running=False,
            pid=redis_pid,
            detail="external, left running" if not settings.redis_is_managed else "",
        ),
        extras=extras,
    )


def status(settings: Settings, *, timeout_s: float = 5.0) -> StackStatus:
    """What runs now: our pids, whether each service answers, and the topics with end offsets."""
    kafka = _service_status(
        "kafka",
        settings.kafka_bootstrap_servers,
        settings.kafka_is_managed,
        kafka_broker.running_pid(settings) if settings.kafka_is_managed else None,
        kafka_broker.answers(settings, timeout_s=timeout_s),
        _kafka_detail(settings),
        ports=[settings.kafka_port, settings.kafka_controller_port],
    )
    redis = _service_status(
        "redis",
        redis_address(settings),
        settings.redis_is_managed,
        redis_server.running_pid(settings) if settings.redis_is_managed else None,
        redis_server.answers(settings, timeout_s=timeout_s),
        _redis_detail(settings),
        ports=[settings.redis_port],
    )
    extras: tuple[ServiceStatus, ...] = ()
    if settings.rtml_cdc:
        extras = _cdc_status(settings, timeout_s)
    topics: tuple[TopicInfo, ...] = ()
    warnings: list[str] = []
    if kafka.running:
        try:
            topics = tuple(asyncio.run(describe_topics(settings)))
        except ServiceError as exc:
            warnings.append(f"could not list topics: {exc}")
    return StackStatus(kafka, redis, topics=topics, warnings=tuple(warnings), extras=extras)


def _cdc_status(settings: Settings, timeout_s: float) -> tuple[ServiceStatus, ServiceStatus]:
    postgres = _service_status(
        "postgres",
        _postgres_address(settings),
        settings.database_is_managed,
        postgres_server.running_pid(settings) if settings.database_is_managed else None,
        postgres_server.answers(settings, timeout_s=timeout_s),
        _postgres_detail(settings),
        ports=[settings.database_port],
    )
    problem = kafka_connect.answers(settings, timeout_s=timeout_s)
    detail = "external" if not settings.kafka_connect_is_managed else ""
    if problem is None:
        state, tasks = kafka_connect.connector_state(settings)
        detail = f"connector {settings.rtml_cdc_connector} {state}, tasks {tasks}"
    connect = _service_status(
        "kafka-connect",
        settings.kafka_connect_url,
        settings.kafka_connect_is_managed,
        kafka_connect.running_pid(settings) if settings.kafka_connect_is_managed else None,
        problem,
        detail,
        ports=[settings.kafka_connect_port],
    )
    return postgres, connect


def _service_status(
    name: str,
    address: str,
    managed: bool,
    pid: int | None,
    problem: str | None,
    detail: str,
    *,
    ports: Sequence[int],
) -> ServiceStatus:
    if problem is not None:
        if managed and pid is None:
            busy = [port for port in ports if processes.port_in_use("127.0.0.1", port)]
            problem = (
                f"port {', '.join(map(str, busy))} held by a process rtml did not start here"
                if busy
                else "not running"
            )
        detail = problem if not managed or pid is None else f"{problem}; {detail}"
    return ServiceStatus(name, address, managed, running=problem is None, pid=pid, detail=detail)
