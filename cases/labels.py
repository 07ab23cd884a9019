"""The label outbox relay: decisions queued in PostgreSQL -> the fraud-labels topic.

A decision and its label are written in one database transaction (``CaseStore.decide``); this
relay publishes queued labels with an idempotent producer and then marks them published. A
crash between the two publishes them again on restart: at least once on the topic, each copy
identical and carrying the transaction's event id, which the merchant-risk state counts once
(``features/merchant_risk.py``). So a decision is never lost and never counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cases.store import CaseStore
from rtml.settings import Settings

log = logging.getLogger(__name__)


class LabelRelay:
    def __init__(
        self,
        settings: Settings,
        store: CaseStore,
        producer: AIOKafkaProducer,
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic = settings.rtml_topics.fraud_labels.name
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0

    def notify(self) -> None:
        """A decision was queued: publish now instead of at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every queued label; returns how many."""
        total = 0
        while True:
            pending = await self._store.pending_labels()
            if not pending:
                return total
            futures = [
                await self._producer.send(self._topic, payload, key=key.encode())
                for _, key, payload in pending
            ]
            await asyncio.gather(*futures)
            await self._store.mark_published([row_id for row_id, _, _ in pending])
            total += len(pending)
            self.published += len(pending)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.publish_pending()
            except KafkaError as exc:  # the broker is away: the outbox keeps the labels
                log.warning("publishing fraud labels failed, retrying: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
