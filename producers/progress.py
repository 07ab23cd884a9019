"""What a produce run reports: a line per second while it runs, and a summary at the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class RateMeter:
    """Per-topic records/s between two snapshots of the cumulative per-topic counts.

    ``topics`` make the total; ``side_topics`` (the labels) are shown but not counted in it.
    """

    topics: list[str]
    side_topics: list[str] = field(default_factory=list)
    _last_counts: Counter[str] = field(default_factory=Counter)
    _last_time: float = 0.0

    def line(self, elapsed_s: float, counts: Mapping[str, int], failed: int) -> str:
        """One progress line; ``counts`` are cumulative records sent per topic."""
        span = max(elapsed_s - self._last_time, 1e-9)
        parts = [f"{elapsed_s:7.1f}s"]
        for topic in (*self.topics, *self.side_topics):
            rate = (counts.get(topic, 0) - self._last_counts.get(topic, 0)) / span
            parts.append(f"{topic} {rate:,.0f}/s")
        total = sum(counts.get(topic, 0) for topic in self.topics)
        overall = total / elapsed_s if elapsed_s > 0 else 0.0
        parts.append(f"| total {total:,} ({overall:,.0f}/s), errors {failed}")
        self._last_counts = Counter(counts)
        self._last_time = elapsed_s
        return "  ".join(parts)


@dataclass
class ProduceSummary:
    """The outcome of one produce run."""

    records: dict[str, int]  # per topic (or file): records written or handed to Kafka
    elapsed_s: float  # from the first record to the last one handed over
    labels: int = 0  # fraud labels of the records (not in the rate)
    labels_sent: bool = True  # False: Kafka without --labels-topic; they went nowhere
    delivered: int | None = None  # Kafka only: acknowledged records and labels
    failed: int = 0
    first_error: str | None = None
    target_rate: float | None = None
    destination: str = ""

    @property
    def total(self) -> int:
        return sum(self.records.values())

    @property
    def rate(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def describe(self) -> str:
        per_topic = ", ".join(f"{topic} {count:,}" for topic, count in self.records.items())
        target = f", target {self.target_rate:,.0f}/s" if self.target_rate else ""
        text = (
            f"produced {self.total:,} records to {self.destination} in {self.elapsed_s:.2f} s "
            f"({self.rate:,.0f}/s{target}): {per_topic}; labels {self.labels:,}"
        )
        if not self.labels_sent and self.labels:
            text += " (not sent: --labels-topic sends them)"
        if self.delivered is not None:
            text += f"; delivered {self.delivered:,}, failed {self.failed:,}"
        if self.first_error:
            text += f"; first error: {self.first_error}"
        return text
