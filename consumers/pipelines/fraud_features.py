"""The fraud feature pipeline: transactions joined with user profiles -> fraud feature rows.

Per poll batch: decode every record (bad ones are dead-lettered), compute the features of each
partition's transactions in partition order with the shared ``FraudFeatureEngine`` (late ones
are dead-lettered with reason "late"), the ``PatternEngine`` and the merchant risk of the fraud
labels (``consumers.label_table``), write the newest features of every touched card to the
online store (one round trip per partition, started as soon as the partition's rows exist, so
Redis stores them while the next partition is computed; all must succeed before the batch
commits), and hand the outputs back to the runner, which commits them with the changelog and
offsets in one transaction per partition.

Outputs: dead letters; with a scorer (``rtml_fraud_scoring``, the default) one
``fraud-scores`` record per transaction and ``fraud-alerts`` above the threshold, from exactly
one FraudScorer call per poll batch (see ``consumers.scoring``); a ``PatternAlert`` on
``fraud-alerts`` for each match of a pattern rule with ``alert: true`` (``features.patterns``,
docs/patterns.md); and optionally
(``emit_feature_rows``) one ``fraud-features`` record per transaction holding exactly the
values computed for it — the feature log that skew checks and the exactly-once tests read.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import msgspec
import numpy as np

from consumers.label_table import LabelTable
from consumers.partition_session import OutRecord
from consumers.pipelines.fraud_partition import FraudPartition
from consumers.pipelines.intake import Intake
from consumers.profile_table import ProfileTable
from consumers.runner import PartitionBatch
from consumers.scoring import (
    FraudScorerClient,
    PendingScore,
    ServeFraudScorer,
    features_json,
    score_isolating_poison,
    score_outputs,
)
from contracts.codec import encode
from contracts.events import PatternAlert, Transaction, UserProfile
from features.fraud import FraudFeatureEngine
from features.merchant_risk import append_merchant_risk
from features.patterns import PatternEngine, load_rules
from monitoring.pipeline_metrics import BatchStats
from rtml.errors import InvalidEvent
from rtml.settings import Settings, TopicSpec
from store.online import FRAUD_GROUP, OnlineStore


class FeatureRow(msgspec.Struct, frozen=True):
    """One transaction's features as computed online (topic ``fraud-features``)."""

    event_id: str
    card_id: str
    event_time: int
    features: dict[str, float | None]
    computed_at: int


class _FeatureRowOut(msgspec.Struct, frozen=True):
    """The writer's side of ``FeatureRow``: the same JSON, the features their JSON
    (``features_json``, shared with the score record) instead of a dict."""

    event_id: str
    card_id: str
    event_time: int
    features: msgspec.Raw  # the JSON of a FraudFeatureValues
    computed_at: int


def feature_row_payload(
    event_id: str, card_id: str, event_time: int, features: msgspec.Raw, computed_at: int
) -> bytes:
    """The JSON of ``FeatureRow`` for the features of a FRAUD row (``features_json``)."""
    return encode(_FeatureRowOut(event_id, card_id, event_time, features, computed_at))


class StoreWrites:
    """A batch's online-store writes, one per partition, in flight while the batch goes on.

    ``wait`` returns once all are stored and raises the first failure (the batch then fails
    and is retried: the guarded writes make the repeat harmless). The ``store_write`` stage is
    the wall time from the first write's start to the last one's end.
    """

    def __init__(self, store: OnlineStore, group: str, stats: BatchStats) -> None:
        self._store = store
        self._group = group
        self._stats = stats
        self._tasks: list[asyncio.Task[int]] = []
        self._started = 0.0

    def start(self, rows: list[tuple[str, int, bytes]]) -> None:
        if not self._tasks:
            self._started = time.perf_counter()
            self._stats.store_written = True
        self._tasks.append(asyncio.ensure_future(self._store.write(self._group, rows)))

    async def wait(self) -> None:
        if not self._tasks:
            return
        try:
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            stages = self._stats.stages
            stages["store_write"] = stages.get("store_write", 0.0) + (
                time.perf_counter() - self._started
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def abandon(self) -> None:
        """The batch failed before ``wait``: settle the writes in flight, ignoring their end."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class FraudFeaturesPipeline:
    name = "fraud"
    feature_group = FRAUD_GROUP

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = "rtml-fraud-features",
        store: OnlineStore | None = None,
        emit_feature_rows: bool | None = None,
        scorer: FraudScorerClient | Literal["default"] | None = "default",
    ) -> None:
        topics = settings.rtml_topics
        self.group_id = group_id
        self.input_topic = topics.transactions.name
        # Derived from the input too: state belongs to one group reading one topic.
        self.changelog_topic = f"{group_id}-{self.input_topic}-changelog"
        self._settings = settings
        self._store = store
        self._owns_store = store is None
        self._engine = FraudFeatureEngine(settings.rtml_features)
        rules = load_rules(settings.rtml_pattern_rules)  # a bad rule set fails here, clearly
        self._rules_version = rules.version
        self._patterns = PatternEngine(rules, settings.rtml_features)
        self._profiles = ProfileTable(settings)
        self._labels = LabelTable(settings)
        self._intake = Intake(Transaction, settings)
        self.dead_letters = self._intake.dead_letters
        self._emit = (
            settings.rtml_emit_feature_rows if emit_feature_rows is None else emit_feature_rows
        )
        self._features_topic = topics.fraud_features.name
        if scorer == "default":
            scorer = None
            if settings.rtml_fraud_scoring:
                scorer = ServeFraudScorer(settings.rtml_serve_app)
        self._scorer = scorer
        self._threshold = settings.rtml_fraud_alert_threshold
        self._scores_topic = topics.fraud_scores.name
        self._alerts_topic = topics.fraud_alerts.name
        self._partitions = {
            spec.name: spec.partitions
            for spec in (
                topics.dead_letter,
                topics.fraud_features,
                topics.fraud_scores,
                topics.fraud_alerts,
            )
        }
        self.late = 0
        self.pattern_alerts = 0
        self.batch_stats = BatchStats()

    def changelog_spec(self) -> TopicSpec:
        return TopicSpec(
            name=self.changelog_topic,
            partitions=self._settings.rtml_topics.transactions.partitions,
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        )

    def new_processor(self, partition: int) -> FraudPartition:
        return FraudPartition(self._engine, self._patterns, partition)

    async def start(self) -> None:
        from infra.topics import ensure_topics

        await ensure_topics(self._settings, [self.changelog_spec()])
        if self._store is None:
            self._store = OnlineStore.from_settings(self._settings)
        await self._store.ping()
        await self._profiles.start()
        await self._labels.start()

    async def stop(self) -> None:
        await self._labels.stop()
        await self._profiles.stop()
        if self._owns_store and self._store is not None:
            await self._store.close()

    def on_idle(self, processors: dict[int, object], now_ms: int) -> None:
        self._engine.advance_idle(now_ms)
        self._patterns.advance_idle(now_ms)

    def output_partitions(self) -> dict[str, int]:
        return self._partitions

    def stats(self) -> dict[str, object]:
        return {
            "dead_letters": dict(self.dead_letters.counts),
            "late": self.late,
            "pattern_alerts": self.pattern_alerts,
            "pattern_state_resets": self._patterns.reset_keys,
            "unknown_fields": dict(self._intake.unknown_fields),
            "fraud_labels": len(self._labels.risk),
            "invalid_fraud_labels": self._labels.invalid,
        }

    async def process(self, batches: list[PartitionBatch]) -> dict[int, list[OutRecord]]:
        assert self._store is not None
        now_ms = time.time_ns() // 1_000_000
        outputs: dict[int, list[OutRecord]] = {}
        pending: list[PendingScore] = []
        stats = self.batch_stats
        writes = StoreWrites(self._store, FRAUD_GROUP, stats)
        try:
            await self._features(batches, now_ms, outputs, pending, writes)
        except BaseException:
            await writes.abandon()
            raise
        if self._scorer is None or not pending:
            await writes.wait()
            return outputs
        # The online-store writes and the model call are independent: overlap them.
        _, (chunks, poisoned) = await asyncio.gather(
            writes.wait(),
            stats.timed(
                "model_call", score_isolating_poison(self._scorer, pending, self._threshold)
            ),
        )
        scored_at = time.time_ns() // 1_000_000
        if chunks:
            scores = np.concatenate(
                [np.asarray(scored.scores, dtype=np.float64) for _, scored in chunks]
            )
            alerts = int((scores >= self._threshold).sum())
            stats.scored(chunks[0][1].model_version, scores, alerts)
        for chunk, scored in chunks:
            scored_outputs = score_outputs(
                chunk,
                scored,
                threshold=self._threshold,
                scores_topic=self._scores_topic,
                alerts_topic=self._alerts_topic,
                scored_at=scored_at,
            )
            for partition, records in scored_outputs.items():
                outputs.setdefault(partition, []).extend(records)
        for item, error in poisoned:  # the model raises on it: dead-lettered, not retried
            failure = InvalidEvent("processing_error", f"model failed: {error.message}")
            outputs[item.partition].append(self.dead_letters.of(item.source, failure))
        return outputs

    async def _features(
        self,
        batches: list[PartitionBatch],
        now_ms: int,
        outputs: dict[int, list[OutRecord]],
        pending: list[PendingScore],
        writes: StoreWrites,
    ) -> None:
        """Decode, compute and encode each partition's records in partition order; each
        partition's online-store write starts as soon as its rows exist, so Redis stores them
        while the next partition is computed (a card belongs to one partition)."""
        stats = self.batch_stats
        scoring = self._scorer is not None
        lap = time.perf_counter()
        for batch in batches:
            out = outputs.setdefault(batch.partition, [])
            transactions, sources = self._intake.decode(batch.records, out)
            lap = stats.lap("decode", lap)
            if not transactions:
                continue
            profiles = self._profiles_of(transactions)
            result = self._engine.process_batch(
                batch.partition, transactions, profiles, now_ms=now_ms
            )
            # Card rows + pattern features, and the rules' matches; then the merchant risk
            # from the fraud labels completes the FRAUD rows.
            patterns = self._patterns.process_batch(
                batch.partition, transactions, result.rows, profiles, now_ms=now_ms
            )
            rows = append_merchant_risk(transactions, patterns.rows, self._labels.risk)
            for match in patterns.matches:
                tx = transactions[match.index]
                alert = PatternAlert(
                    rule=match.rule,
                    rules_version=self._rules_version,
                    event_id=tx.event_id,
                    card_id=tx.card_id,
                    event_ids=list(match.event_ids),
                    matches=match.matches,
                    event_time=tx.event_time,
                    ingested_at=sources[match.index].timestamp,
                    detected_at=now_ms,
                )
                out.append(
                    OutRecord(self._alerts_topic, tx.card_id.encode(), encode(alert), now_ms)
                )
                self.pattern_alerts += 1
            for index in result.late:
                self.late += 1
                error = InvalidEvent("late", "event_time is older than the partition's watermark")
                out.append(self.dead_letters.of(sources[index], error))
            newest: dict[str, tuple[str, int, bytes]] = {}
            for tx, row, source in zip(transactions, rows, sources, strict=True):
                if row is None:
                    continue
                features = features_json(row)
                if scoring:
                    pending.append(
                        PendingScore(batch.partition, tx, row, source.timestamp, features, source)
                    )
                payload = feature_row_payload(
                    tx.event_id, tx.card_id, tx.event_time, features, now_ms
                )
                known = newest.get(tx.card_id)
                if known is None or known[1] <= tx.event_time:
                    newest[tx.card_id] = (tx.card_id, tx.event_time, payload)
                if self._emit:
                    key = tx.card_id.encode()
                    out.append(OutRecord(self._features_topic, key, payload, now_ms))
            lap = stats.lap("features", lap)
            if newest:
                writes.start(list(newest.values()))
                # Two loop turns let the write go out (one takes a pooled connection, one
                # sends) before the next partition's CPU: Redis stores it meanwhile.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                lap = time.perf_counter()

    def _profiles_of(self, transactions: list[Transaction]) -> dict[str, UserProfile]:
        get = self._profiles.get
        profiles = {}
        for tx in transactions:
            profile = get(tx.user_id)
            if profile is not None:
                profiles[tx.user_id] = profile
        return profiles
