"""End-to-end latency as a reader of the output topics sees it, and the alert rate.

For each fraud-scores record read (read_committed, so only committed outputs count) the latency
is the time it was read minus its ``ingested_at`` (the input record's Kafka timestamp): the
whole path from the producer's append to a consumer of scores, commit included. Percentiles are
over the records read in the last ``window_s`` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumers.topic_follower import TopicFollower
from rtml.settings import Settings


class _ScoreTimes(msgspec.Struct):
    ingested_at: int
    score: float


_decoder = msgspec.json.Decoder(_ScoreTimes)


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    alerts: int
    window_count: int = 0  # scores in the window the percentiles are over


class ScoreLatency(TopicFollower):
    """Follows fraud-scores from its current end; ``summary()`` is cheap."""

    def __init__(
        self,
        settings: Settings,
        *,
        window_s: float = 30.0,
        threshold: float,
        topic: str | None = None,
    ) -> None:
        super().__init__(settings, topic or settings.rtml_topics.fraud_scores.name)
        self._window_s = window_s
        self._threshold = threshold
        self._samples: deque[tuple[float, float]] = deque()  # (read at, latency ms)
        self.alerts = 0
        self.count = 0

    async def seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        await consumer.seek_to_end(*partitions)

    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        now = time.time()
        now_ms = now * 1000.0
        for record in records:
            score = _decoder.decode(record.value)
            self._samples.append((now, now_ms - score.ingested_at))
            self.count += 1
            self.alerts += score.score >= self._threshold
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon = now - self._window_s
        samples = self._samples
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def summary(self) -> LatencySummary:
        self._trim(time.time())
        if not self._samples:
            return LatencySummary(self.count, None, None, None, self.alerts)
        values = np.fromiter((lat for _, lat in self._samples), dtype=np.float64)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return LatencySummary(
            self.count, float(p50), float(p95), float(p99), self.alerts, values.size
        )


def format_latency(summary: LatencySummary) -> str:
    if summary.p50_ms is None:
        return f"{'':10}fraud-scores: none read yet; alerts {summary.alerts:,}"
    return (
        f"{'':10}end-to-end latency p50 {summary.p50_ms:,.0f} ms  p95 {summary.p95_ms:,.0f} ms  "
        f"p99 {summary.p99_ms:,.0f} ms  ({summary.count:,} scores, {summary.alerts:,} alerts)"
    )
