"""A partition's records decoded into contract events; bad ones become dead letters.

Shared by the pipelines so every one of them treats bad input the same way: the failed record
is dead-lettered with its reason (in the batch's transaction), unknown fields are counted as
schema drift, and the event keeps its source record (offset, Kafka timestamp).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Generic, TypeVar

from aiokafka import ConsumerRecord

from consumers.partition_session import OutRecord
from consumers.pipelines.dead_letters import DeadLetters
from contracts.codec import EventDecoder
from contracts.events import Transaction, UserEvent, UserProfile
from rtml.errors import InvalidEvent
from rtml.settings import Settings

E = TypeVar("E", Transaction, UserEvent, UserProfile)


class Intake(Generic[E]):
    def __init__(self, event_type: type[E], settings: Settings) -> None:
        self._decoder = EventDecoder(event_type, max_bytes=settings.rtml_max_record_bytes)
        self.dead_letters = DeadLetters(settings.rtml_topics.dead_letter.name)
        self.unknown_fields: Counter[str] = Counter()

    def decode(
        self, records: Sequence[ConsumerRecord], out: list[OutRecord]
    ) -> tuple[list[E], list[ConsumerRecord]]:
        """The valid events and their source records; dead letters are appended to ``out``."""
        decode = self._decoder.decode
        events: list[E] = []
        sources: list[ConsumerRecord] = []
        for record in records:
            try:
                decoded = decode(record.value)
            except InvalidEvent as exc:
                out.append(self.dead_letters.of(record, exc))
                continue
            if decoded.unknown_fields:
                self.unknown_fields.update(decoded.unknown_fields)
            events.append(decoded.event)
            sources.append(record)
        return events, sources
