"""The case service: the alert intake, the label relay and the web page in one process.

async with CaseService(settings) as service:   # connects, applies the schema
    await service.serve()                       # until stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import uvicorn
from aiokafka import AIOKafkaProducer

from cases.intake import AlertIntake
from cases.labels import LabelRelay
from cases.store import CaseStore
from cases.web import create_app
from consumers.kafka_io import start_client
from database.connection import Pool, connect, create_pool
from database.schema import apply_schema
from rtml.settings import Settings

log = logging.getLogger(__name__)


class CaseService:
    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None):
        self._settings = settings
        self.host = host or settings.rtml_cases_host
        self.port = settings.rtml_cases_port if port is None else port
        self._pool: Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self.store: CaseStore | None = None
        self.intake: AlertIntake | None = None
        self.relay: LabelRelay | None = None
        self._server: uvicorn.Server | None = None

    async def __aenter__(self) -> CaseService:
        connection = await connect(self._settings)
        try:
            await apply_schema(connection)
        finally:
            await connection.close()
        self._pool = await create_pool(self._settings)
        try:
            self._producer = await start_client(
                AIOKafkaProducer(
                    **self._settings.kafka_client_kwargs(), acks="all", enable_idempotence=True
                )
            )
        except BaseException:
            await self._pool.close()  # __aexit__ does not run when __aenter__ raises
            self._pool = None
            raise
        self.store = CaseStore(self._pool)
        self.intake = AlertIntake(self._settings, self.store, self._producer)
        self.relay = LabelRelay(self._settings, self.store, self._producer)
        app = create_app(self.store, on_decision=self.relay.notify)
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()

    @property
    def started(self) -> bool:
        return self._server is not None and self._server.started

    def stop(self) -> None:
        assert self._server is not None and self.intake and self.relay
        self.intake.stop()
        self.relay.stop()
        self._server.should_exit = True

    async def serve(self) -> None:
        """Run the intake, the relay and the page until ``stop``; the first failure stops all."""
        assert self._server is not None and self.intake and self.relay
        tasks = [
            asyncio.create_task(self.intake.run(), name="case-intake"),
            asyncio.create_task(self.relay.run(), name="label-relay"),
            asyncio.create_task(self._server.serve(), name="case-page"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stop()
            for task in tasks:
                if not task.done():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(task), 10.0)
            for task in tasks:
                if not task.done():
                    task.cancel()
