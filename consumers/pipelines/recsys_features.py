"""The recommendation feature pipeline: user-events -> per-user interest features.

Per poll batch: decode (bad records are dead-lettered), compute each partition's rows with the
shared ``RecommendationFeatureEngine`` against the global view counts followed from Kafka (see
``consumers.global_views``), write every touched user's newest features to the online store in
one round trip, and return the outputs for the per-partition transaction: dead letters and the
partition's view-slice deltas (published exactly once, with the offsets).

Item popularity (global views per item over the last complete hour) is written to the online
store as one sorted set every ``popularity_interval_s`` for the recommender to read.

On activity (``rtml_recommend_on_activity``), the users of the batch whose top-K was not
refreshed in the last ``rtml_recommend_interval_s`` seconds get a new one from the Recommender
deployment, one call per poll batch: it goes to the ``recommendations`` topic (in the batch's
transaction) and to the online store (``recs`` group), guarded by event time.
"""

from __future__ import annotations

import math
import time

import msgspec

from consumers.global_views import GlobalViewsFollower, encode_delta, topic_spec
from consumers.partition_session import OutRecord
from consumers.pipelines.engine_partition import EnginePartition
from consumers.pipelines.intake import Intake
from consumers.runner import PartitionBatch
from consumers.scoring import ServeDeployment
from contracts.codec import encode
from contracts.events import Recommendation, UserEvent
from features.definitions import RECOMMENDATION_FEATURE_NAMES
from features.recommendations import RecommendationFeatureEngine
from monitoring.pipeline_metrics import BatchStats
from rtml.errors import InvalidEvent
from rtml.settings import Settings, TopicSpec
from store.online import RECS_GROUP, RECSYS_GROUP, OnlineStore


class UserFeatureRow(msgspec.Struct, frozen=True):
    user_id: str
    event_id: str
    event_time: int
    features: dict[str, object]
    computed_at: int


class RecsysFeaturesPipeline:
    name = "recsys"
    feature_group = RECSYS_GROUP

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = "rtml-recsys-features",
        store: OnlineStore | None = None,
        popularity_interval_s: float = 10.0,
    ) -> None:
        topics = settings.rtml_topics
        self.group_id = group_id
        self.input_topic = topics.user_events.name
        # Derived from the input too: state belongs to one group reading one topic.
        self.changelog_topic = f"{group_id}-{self.input_topic}-changelog"
        self.slices_topic = f"{group_id}-{self.input_topic}-view-slices"
        self._settings = settings
        self._store = store
        self._owns_store = store is None
        self._engine = RecommendationFeatureEngine(settings.rtml_features)
        self.global_views = GlobalViewsFollower(settings, self.slices_topic)
        self._intake = Intake(UserEvent, settings)
        self.dead_letters = self._intake.dead_letters
        self._partitions = {topics.dead_letter.name: topics.dead_letter.partitions}
        self._popularity_interval_s = popularity_interval_s
        self._popularity_written = 0.0
        self.late = 0
        self.batch_stats = BatchStats()
        self._recommender = (
            ServeDeployment("Recommender", settings.rtml_serve_app)
            if settings.rtml_recommend_on_activity
            else None
        )
        self._recs_topic = topics.recommendations.name
        self._partitions[self._recs_topic] = topics.recommendations.partitions
        self._refreshed: dict[str, float] = {}  # user -> monotonic time of the last refresh
        self.refreshes = 0

    def topic_specs(self) -> list[TopicSpec]:
        changelog = TopicSpec(
            name=self.changelog_topic,
            partitions=self._settings.rtml_topics.user_events.partitions,
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        )
        return [changelog, topic_spec(self.slices_topic)]

    def new_processor(self, partition: int) -> EnginePartition:
        return EnginePartition(self._engine, partition)

    async def start(self) -> None:
        from infra.topics import ensure_topics

        await ensure_topics(self._settings, self.topic_specs())
        if self._store is None:
            self._store = OnlineStore.from_settings(self._settings)
        await self._store.ping()
        await self.global_views.start()

    async def stop(self) -> None:
        await self.global_views.stop()
        if self._owns_store and self._store is not None:
            await self._store.close()

    def on_idle(self, processors: dict[int, object], now_ms: int) -> None:
        self._engine.advance_idle(now_ms)

    def output_partitions(self) -> dict[str, int]:
        return self._partitions

    def stats(self) -> dict[str, object]:
        return {
            "dead_letters": dict(self.dead_letters.counts),
            "late": self.late,
            "unknown_fields": dict(self._intake.unknown_fields),
            "recommendation_refreshes": self.refreshes,
        }

    async def process(self, batches: list[PartitionBatch]) -> dict[int, list[OutRecord]]:
        assert self._store is not None
        now_ms = time.time_ns() // 1_000_000
        outputs: dict[int, list[OutRecord]] = {}
        newest: dict[str, tuple[str, int, bytes]] = {}
        refresh: dict[str, tuple[int, UserEvent, tuple[object, ...], int]] = {}
        views = self.global_views.views
        stats = self.batch_stats
        lap = time.perf_counter()
        for batch in batches:
            out = outputs.setdefault(batch.partition, [])
            events, sources = self._intake.decode(batch.records, out)
            lap = stats.lap("decode", lap)
            if events:
                result = self._engine.process_batch(batch.partition, events, views, now_ms=now_ms)
                for index in result.late:
                    self.late += 1
                    error = InvalidEvent("late", "event_time is older than the watermark")
                    out.append(self.dead_letters.of(sources[index], error))
                for event, row, source in zip(events, result.rows, sources, strict=True):
                    if row is None:
                        continue
                    if self._recommender is not None:
                        refresh[event.user_id] = (batch.partition, event, row, source.timestamp)
                    known = newest.get(event.user_id)
                    if known is None or known[1] <= event.event_time:
                        features = dict(zip(RECOMMENDATION_FEATURE_NAMES, row, strict=True))
                        payload = encode(
                            UserFeatureRow(
                                event.user_id, event.event_id, event.event_time, features, now_ms
                            )
                        )
                        newest[event.user_id] = (event.user_id, event.event_time, payload)
            for delta in self._engine.drain_view_deltas(batch.partition):
                key = f"{batch.partition}:{delta.slice_start_ms}".encode()
                out.append(OutRecord(self.slices_topic, key, encode_delta(delta), now_ms, 0))
            lap = stats.lap("features", lap)
        await stats.timed("store_write", self._store.write(RECSYS_GROUP, list(newest.values())))
        await stats.timed("store_write", self._maybe_write_popularity())
        stats.store_written = bool(newest)
        if refresh:
            await stats.timed("model_call", self._refresh_recommendations(refresh, outputs))
        return outputs

    async def _refresh_recommendations(
        self,
        candidates: dict[str, tuple[int, UserEvent, tuple[object, ...], int]],
        outputs: dict[int, list[OutRecord]],
    ) -> None:
        """One Recommender call for the batch's users that are due; outputs per partition."""
        from serving.protocol import RecommendRequest

        assert self._recommender is not None and self._store is not None
        now = time.monotonic()
        interval = self._settings.rtml_recommend_interval_s
        due = [
            item
            for user, item in candidates.items()
            if now - self._refreshed.get(user, -math.inf) >= interval
        ]
        if not due:
            return
        request = RecommendRequest([row for _, _, row, _ in due], k=self._settings.rtml_recommend_k)
        response = await self._recommender.call("recommend", request)
        produced_at = time.time_ns() // 1_000_000
        rows = []
        for (partition, event, _, ingested_at), items in zip(due, response.items, strict=True):
            record = Recommendation(
                user_id=event.user_id,
                items=items,
                model_version=response.model_version,
                event_time=event.event_time,
                ingested_at=ingested_at,
                produced_at=produced_at,
            )
            payload = encode(record)
            key = event.user_id.encode()
            outputs.setdefault(partition, []).append(
                OutRecord(self._recs_topic, key, payload, produced_at)
            )
            rows.append((event.user_id, event.event_time, payload))
            self._refreshed[event.user_id] = now
        await self._store.write(RECS_GROUP, rows)
        self.refreshes += len(due)
        if len(self._refreshed) > 1_000_000:  # bounded: forget users not seen for an interval
            horizon = now - interval
            self._refreshed = {u: t for u, t in self._refreshed.items() if t >= horizon}

    async def _maybe_write_popularity(self) -> None:
        """Item views over the last complete hour of event time (the newest slice may be open)."""
        newest = self.global_views.newest_slice_ms
        if newest is None:
            return
        if time.monotonic() - self._popularity_written < self._popularity_interval_s:
            return
        assert self._store is not None
        popularity = self.global_views.views.item_views(newest)
        await self._store.replace_counts("item_views_1h", popularity)
        self._popularity_written = time.monotonic()
