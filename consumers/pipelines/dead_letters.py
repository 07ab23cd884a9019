"""Dead-letter records: a failed input becomes an output, in the same transaction as the
batch's other outputs and offsets, so nothing is lost and nothing is dead-lettered twice."""

from __future__ import annotations

from collections import Counter

from aiokafka import ConsumerRecord

from consumers.partition_session import OutRecord
from contracts.codec import dead_letter, encode, now_ms
from rtml.errors import InvalidEvent


class DeadLetters:
    """Builds dead-letter outputs and counts them per reason."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.counts: Counter[str] = Counter()

    def of(self, record: ConsumerRecord, error: InvalidEvent) -> OutRecord:
        self.counts[error.reason] += 1
        failed_at = now_ms()
        value = dead_letter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            error=error,
            failed_at=failed_at,
        )
        # Keyed by source partition so one partition's dead letters stay in order.
        key = f"{record.topic}:{record.partition}".encode()
        return OutRecord(self.topic, key, encode(value), failed_at)
