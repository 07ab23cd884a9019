"""The profiles materializer: the compacted user-profiles topic, kept in the online store.

Stateless (no changelog). The topic is compacted, so its truth is log order: the last valid
record of a user wins (as in the in-memory ``ProfileTable`` the fraud join reads), whatever its
``updated_at``; a tombstone deletes the profile; an invalid record is dead-lettered exactly once
and leaves the previous profile in place.
"""

from __future__ import annotations

from collections.abc import Iterator

from consumers.partition_session import OutRecord, PartitionProcessor
from consumers.pipelines.dead_letters import DeadLetters
from consumers.runner import PartitionBatch
from contracts.codec import EventDecoder
from contracts.events import UserProfile
from monitoring.pipeline_metrics import BatchStats
from rtml.errors import InvalidEvent
from rtml.settings import Settings
from store.online import PROFILE_GROUP, OnlineStore

DELETE_ALWAYS = 2**62  # a tombstone has no time: it deletes whatever is stored


class _Stateless:
    def restore(self, key: bytes, value: bytes | None) -> None:
        raise AssertionError("the profiles materializer has no changelog")

    def finish_restore(self) -> Iterator[int]:
        raise AssertionError("the profiles materializer has no changelog")

    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        return []


class ProfilesPipeline:
    name = "profiles"
    feature_group = PROFILE_GROUP

    def __init__(
        self,
        settings: Settings,
        *,
        store: OnlineStore | None = None,
        group_id: str = "rtml-profiles",
    ) -> None:
        topics = settings.rtml_topics
        self.group_id = group_id
        self.input_topic = topics.user_profiles.name
        self.changelog_topic = None
        self._settings = settings
        self._store = store
        self._decoder = EventDecoder(UserProfile, max_bytes=settings.rtml_max_record_bytes)
        self.dead_letters = DeadLetters(topics.dead_letter.name)
        self._partitions = {topics.dead_letter.name: topics.dead_letter.partitions}
        self.batch_stats = BatchStats()

    def new_processor(self, partition: int) -> PartitionProcessor:
        return _Stateless()

    async def start(self) -> None:
        if self._store is None:
            self._store = OnlineStore.from_settings(self._settings)
        await self._store.ping()

    async def stop(self) -> None:
        if self._store is not None:
            await self._store.close()

    def on_idle(self, processors: dict[int, PartitionProcessor], now_ms: int) -> None:
        return None

    def output_partitions(self) -> dict[str, int]:
        return self._partitions

    def stats(self) -> dict[str, object]:
        return {"dead_letters": dict(self.dead_letters.counts)}

    async def process(self, batches: list[PartitionBatch]) -> dict[int, list[OutRecord]]:
        assert self._store is not None
        writes: dict[str, tuple[str, int, bytes]] = {}
        deletes: dict[str, tuple[str, int]] = {}
        outputs: dict[int, list[OutRecord]] = {}
        for batch in batches:
            dead = outputs.setdefault(batch.partition, [])
            for record in batch.records:
                if record.key is None:
                    error = InvalidEvent("missing_field", "record has no key")
                    dead.append(self.dead_letters.of(record, error))
                    continue
                user_id = record.key.decode("utf-8", "replace")
                if record.value is None:
                    writes.pop(user_id, None)
                    deletes[user_id] = (user_id, DELETE_ALWAYS)
                    continue
                try:
                    profile = self._decoder.decode(record.value).event
                except InvalidEvent as exc:
                    dead.append(self.dead_letters.of(record, exc))
                    continue
                deletes.pop(profile.user_id, None)
                writes[profile.user_id] = (profile.user_id, profile.updated_at, record.value)
        # Deletes first: a key is in at most one of the two maps (the later record wins).
        await self._store.delete(PROFILE_GROUP, list(deletes.values()))
        await self._store.write(PROFILE_GROUP, list(writes.values()), guarded=False)
        self.batch_stats.store_written = bool(writes or deletes)
        return outputs
