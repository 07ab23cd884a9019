"""Is Kafka / Redis answering? One bounded attempt each, errors translated to rtml's.

Both are coroutines that do network I/O only through asyncio clients (aiokafka, redis.asyncio);
the synchronous lifecycle code runs them with ``asyncio.run`` and polls.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rtml.errors import ServiceError, ServiceUnavailable
from rtml.settings import Settings


async def probe_kafka(settings: Settings, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Fetch cluster metadata once; returns ``describe_cluster()`` (brokers, controller id).

    ServiceUnavailable when nothing answers within ``timeout_s`` or no broker is registered yet;
    ServiceError for an answer that will not change by waiting (authentication, say).
    """
    kwargs = settings.kafka_client_kwargs()
    kwargs["request_timeout_ms"] = max(1000, int(timeout_s * 1000))
    admin = AIOKafkaAdminClient(**kwargs)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster = await admin.describe_cluster()
    except TimeoutError as exc:
        raise ServiceUnavailable(
            "kafka", f"no answer from {settings.kafka_bootstrap_servers} within {timeout_s:g} s"
        ) from exc
    except KafkaError as exc:
        if (
            isinstance(exc, KafkaConnectionError)
            and settings.kafka_security_protocol != "PLAINTEXT"
        ):
            await _raise_if_refused(settings, timeout_s)
        error = ServiceUnavailable if exc.retriable or _is_connection_error(exc) else ServiceError
        raise error("kafka", f"{settings.kafka_bootstrap_servers}: {_describe(exc)}") from exc
    finally:
        await admin.close()
    if not cluster.get("brokers"):
        raise ServiceUnavailable(
            "kafka", f"{settings.kafka_bootstrap_servers} answered but lists no broker yet"
        )
    return cluster


async def _raise_if_refused(settings: Settings, timeout_s: float) -> None:
    """aiokafka reports a failed SASL handshake (or TLS) at bootstrap as "Unable to bootstrap",
    retriable; connect to one server directly to tell a refusal (wrong credentials: waiting will
    not help) from an outage. Raises ServiceError for a refusal, returns otherwise."""
    kwargs = settings.kafka_client_kwargs()
    host, _, port = kwargs.pop("bootstrap_servers").split(",")[0].rpartition(":")
    kwargs.pop("request_timeout_ms")
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(
                host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs
            )
    except (TimeoutError, OSError, KafkaConnectionError):
        return  # not reachable: an outage, as reported
    except KafkaError as exc:
        raise ServiceError(
            "kafka", f"{settings.kafka_bootstrap_servers} refused us: {_describe(exc)}"
        ) from exc
    conn.close()


def _is_connection_error(exc: KafkaError) -> bool:
    return isinstance(exc, KafkaConnectionError | NodeNotReadyError | RequestTimedOutError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def redis_client(settings: Settings, **overrides: Any) -> aioredis.Redis:
    """An asyncio Redis client for ``settings.redis_url`` with the password/TLS settings."""
    return aioredis.Redis.from_url(
        settings.redis_url, **(settings.redis_client_kwargs() | overrides)
    )


async def probe_redis(settings: Settings, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """PING, then ``INFO server``; returns the INFO dict (redis_version, process_id, tcp_port).

    ServiceUnavailable when nothing answers within ``timeout_s``; ServiceError when Redis
    refuses us (wrong password, say).
    """
    # One attempt: the caller polls, and a refused connection should say so, not time out.
    client = redis_client(
        settings,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await client.ping()
            info: dict[str, Any] = await client.info("server")
    except TimeoutError as exc:
        raise ServiceUnavailable(
            "redis", f"no answer from {redis_address(settings)} within {timeout_s:g} s"
        ) from exc
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as exc:
        raise ServiceError("redis", f"{redis_address(settings)}: {exc}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ServiceUnavailable("redis", f"cannot reach {redis_address(settings)}: {exc}") from exc
    finally:
        await client.aclose()
    return info


def redis_address(settings: Settings) -> str:
    """``redis_url`` without a password, for messages."""
    parsed = urlsplit(settings.redis_url)
    host = parsed.hostname or parsed.path
    return f"{parsed.scheme}://{host}:{parsed.port or 6379}" if parsed.hostname else str(host)
