"""fraud-alerts -> the cases table, exactly once per alert.

The intake reads the alerts topic without a consumer group: its position lives in PostgreSQL
(``case_intake_offsets``) and is written in the same database transaction as the cases of the
batch (``CaseStore.add_alerts``). After a crash it resumes from the last committed batch, so no
alert is skipped, and the cases' primary key (the alert's event id) makes an alert that is
read again, or published twice upstream, a no-op. It reads read_committed: an alert of an
aborted scoring transaction never becomes a case.

Invalid records are dead-lettered (once: the dead letter is sent before the batch's offsets are
stored; a crash in between may repeat a dead letter, never lose one).

Pattern alerts (``PatternAlert``, ``alert_type`` "pattern", docs/patterns.md) share the topic;
they are not scored transactions, so they open no case: they are counted
(``pattern_alerts_skipped``) and passed over, not dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition

from cases.store import CaseStore, IncomingAlert
from consumers.kafka_io import make_consumer, start_client
from contracts.codec import EventDecoder, dead_letter, encode
from contracts.events import FraudAlert, fraud_alert_type
from infra.topics import describe_topics
from rtml.errors import InvalidEvent, ServiceUnavailable
from rtml.settings import Settings

log = logging.getLogger(__name__)


class AlertIntake:
    def __init__(self, settings: Settings, store: CaseStore, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._store = store
        self._producer = producer
        self._topic = settings.rtml_topics.fraud_alerts.name
        self._decoder = EventDecoder(FraudAlert, max_bytes=settings.rtml_max_record_bytes)
        self._stopping = asyncio.Event()
        self.cases_opened = 0
        self.invalid = 0
        self.pattern_alerts_skipped = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        consumer = await start_client(
            make_consumer(self._settings, group_id=None, read_committed=True, max_poll_records=500)
        )
        try:
            described = await describe_topics(self._settings, [self._topic])
            if not described:
                raise ServiceUnavailable("kafka", f"topic {self._topic} does not exist")
            tps = [TopicPartition(self._topic, p) for p in range(described[0].partitions)]
            consumer.assign(tps)
            stored = await self._store.intake_offsets(self._topic)
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                if batch:
                    await self._handle(batch)
        finally:
            await consumer.stop()

    async def _handle(self, batch: dict[TopicPartition, list]) -> None:
        alerts: list[IncomingAlert] = []
        next_offsets: dict[tuple[str, int], int] = {}
        dead_topic = self._settings.rtml_topics.dead_letter.name
        for tp, records in batch.items():
            for record in records:
                if _is_pattern_alert(record.value, self._settings.rtml_max_record_bytes):
                    self.pattern_alerts_skipped += 1
                    continue
                try:
                    alert = self._decoder.decode(record.value).event
                except InvalidEvent as exc:
                    self.invalid += 1
                    letter = dead_letter(
                        source_topic=tp.topic,
                        partition=tp.partition,
                        offset=record.offset,
                        key=record.key,
                        value=record.value,
                        error=exc,
                    )
                    await self._producer.send(dead_topic, encode(letter), key=record.key)
                    continue
                alerts.append(IncomingAlert(alert, tp.topic, tp.partition, record.offset))
            next_offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        if self.invalid:
            await self._producer.flush()
        self.cases_opened += await self._store.add_alerts(alerts, next_offsets)


def _is_pattern_alert(value: bytes | None, max_bytes: int) -> bool:
    """Whether a record is a ``PatternAlert``; anything unreadable is left to the decoder."""
    if value is None or len(value) > max_bytes:
        return False
    try:
        return fraud_alert_type(value) == "pattern"
    except msgspec.DecodeError:
        return False
