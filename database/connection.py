"""Connecting to PostgreSQL from the settings (asyncpg), with errors translated at the boundary."""

from __future__ import annotations

import asyncio

import asyncpg

from rtml.errors import ServiceError, ServiceUnavailable
from rtml.settings import Settings

SERVICE = "postgres"

Connection = asyncpg.Connection
Pool = asyncpg.Pool


def connect_kwargs(settings: Settings, *, database: str | None = None) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "host": settings.database_host,
        "port": settings.database_port,
        "user": settings.database_user,
        "database": database or settings.database_name,
    }
    if settings.database_password is not None:
        kwargs["password"] = settings.database_password.get_secret_value()
    return kwargs


_UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError)


async def connect(
    settings: Settings, *, database: str | None = None, timeout_s: float = 10.0
) -> Connection:
    """One connection; ServiceUnavailable when nothing answers, ServiceError when refused."""
    try:
        return await asyncpg.connect(
            **connect_kwargs(settings, database=database), timeout=timeout_s
        )  # type: ignore[arg-type]
    except _UNAVAILABLE as exc:
        raise ServiceUnavailable(
            SERVICE, f"no answer at {settings.database_host}:{settings.database_port}: {exc}"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise ServiceError(SERVICE, f"connecting to {_where(settings, database)}: {exc}") from exc


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 4) -> Pool:
    try:
        pool = await asyncpg.create_pool(
            **connect_kwargs(settings),  # type: ignore[arg-type]
            min_size=min_size,
            max_size=max_size,
        )
    except _UNAVAILABLE as exc:
        raise ServiceUnavailable(
            SERVICE, f"no answer at {settings.database_host}:{settings.database_port}: {exc}"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise ServiceError(SERVICE, f"connecting to {_where(settings, None)}: {exc}") from exc
    assert pool is not None
    return pool


def _where(settings: Settings, database: str | None) -> str:
    return (
        f"{settings.database_user}@{settings.database_host}:{settings.database_port}/"
        f"{database or settings.database_name}"
    )
