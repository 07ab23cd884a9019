"""The user-profiles topic materialized in memory: the table side of the fraud stream-table join.

Transactions are keyed by card and profiles by user, so they are not co-partitioned; every
fraud actor therefore keeps the whole (compacted, small) profiles table, like a Kafka Streams
GlobalKTable: read from the beginning to the end offsets on start, then followed in the
background. The join is "as of processing time": a transaction sees the profile the table holds
when its batch is processed. A tombstone (null value) deletes the profile; log order wins.

Invalid profile records are counted and skipped here; the profiles materializer (which
commits offsets) is the one that dead-letters them, so a restart does not dead-letter them again.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import ConsumerRecord

from consumers.topic_follower import TopicFollower
from contracts.codec import EventDecoder
from contracts.events import UserProfile
from rtml.errors import InvalidEvent
from rtml.settings import Settings


class ProfileTable(TopicFollower):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.rtml_topics.user_profiles.name)
        self._decoder = EventDecoder(UserProfile, max_bytes=settings.rtml_max_record_bytes)
        self._profiles: dict[str, UserProfile] = {}
        self.invalid = 0
        self.updates = 0
        self.last_update_ms = 0

    def get(self, user_id: str) -> UserProfile | None:
        return self._profiles.get(user_id)

    def __len__(self) -> int:
        return len(self._profiles)

    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        for record in records:
            if record.key is None:
                self.invalid += 1
                continue
            user_id = record.key.decode("utf-8", "replace")
            if record.value is None:
                self._profiles.pop(user_id, None)
            else:
                try:
                    profile = self._decoder.decode(record.value).event
                except InvalidEvent:
                    self.invalid += 1
                    continue
                self._profiles[user_id] = profile
            self.updates += 1
            self.last_update_ms = record.timestamp
