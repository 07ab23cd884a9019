"""Consumer lag per group/topic/partition, time to drain, and Burrow-style consumer status.

Lag is read from Kafka alone (end offsets minus the group's committed offsets, see
``topic_rates.OffsetMonitor``), so it is right even when the consumers are dead. A
``LagTracker`` keeps a sliding window of snapshots and judges each partition as Burrow does
(https://github.com/linkedin/Burrow/wiki/Consumer-Lag-Evaluation-Rules), simplified:

- ``ok``: the lag was zero at some point in the window, or the committed offset moved and the
  lag did not grow over the window;
- ``stalled``: lag above zero and the committed offset has not moved for the whole window (the
  consumer is dead, stuck or not committing);
- ``not_draining``: the committed offset moves but the lag grew at every step of the window (the
  consumer is alive and falling behind);
- ``unknown``: the window does not cover ``window_s`` yet.

``group_lag`` is the one-shot reader (an autoscaler can call it, or keep a ``LagTracker``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from monitoring.topic_rates import OffsetMonitor, Snapshot
from rtml.settings import Settings

Status = Literal["ok", "stalled", "not_draining", "unknown"]


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end_offset: int
    committed: int | None  # None: the group has never committed this partition
    lag: int


def partition_lags(snapshot: Snapshot, group: str, topic: str) -> list[PartitionLag]:
    """Lag of every partition of ``topic`` for ``group`` (uncommitted: everything is lag)."""
    done = snapshot.committed.get(group, {}).get(topic, {})
    return [
        PartitionLag(group, topic, p, end, done.get(p), max(0, end - done.get(p, 0)))
        for p, end in sorted(snapshot.end_offsets.get(topic, {}).items())
    ]


async def group_lag(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """One-shot: the lag of ``group`` on each partition of ``topic``, from the broker."""
    monitor = OffsetMonitor(settings, [topic], [group])
    await monitor.start()
    try:
        snapshot = await monitor.snapshot()
    finally:
        await monitor.stop()
    return {p.partition: p.lag for p in partition_lags(snapshot, group, topic)}


@dataclass(frozen=True)
class _Point:
    at: float
    end: int
    committed: int
    lag: int


class LagTracker:
    """Lag, drain rate and status per group/topic from a window of offset snapshots."""

    def __init__(self, group_topics: dict[str, str], *, window_s: float = 60.0) -> None:
        self.group_topics = dict(group_topics)
        self.window_s = window_s
        self._points: dict[tuple[str, str, int], deque[_Point]] = {}
        self._latest: Snapshot | None = None

    def observe(self, snapshot: Snapshot) -> None:
        self._latest = snapshot
        horizon = snapshot.taken_at - self.window_s
        for group, topic in self.group_topics.items():
            for p in partition_lags(snapshot, group, topic):
                points = self._points.setdefault((group, topic, p.partition), deque())
                points.append(_Point(snapshot.taken_at, p.end_offset, p.committed or 0, p.lag))
                # Keep one point at or before the horizon: the window's start.
                while len(points) > 2 and points[1].at <= horizon:
                    points.popleft()

    def partitions(self, group: str) -> list[PartitionLag]:
        if self._latest is None:
            return []
        return partition_lags(self._latest, group, self.group_topics[group])

    def total(self, group: str) -> int:
        return sum(p.lag for p in self.partitions(group))

    def status(self, group: str, partition: int) -> Status:
        points = self._points.get((group, self.group_topics[group], partition))
        if not points or points[-1].at - points[0].at < self.window_s:
            return "unknown"
        return judge(list(points))

    def group_status(self, group: str) -> Status:
        """The worst partition status of the group: stalled > not_draining > unknown > ok."""
        order: dict[Status, int] = {"stalled": 3, "not_draining": 2, "unknown": 1, "ok": 0}
        statuses = [self.status(group, p.partition) for p in self.partitions(group)]
        return max(statuses, key=order.__getitem__, default="unknown")

    def time_to_drain(self, group: str) -> float | None:
        """Seconds to work off the group's lag: while the consumer keeps up (lag below one
        second of its consumption: the lag between two polls), the lag over its consume rate;
        with a real backlog, the lag over the window's net drain rate; 0 without lag; None when
        a backlog is not shrinking (falling behind, or stopped)."""
        topic = self.group_topics[group]
        first: list[_Point] = []
        last: list[_Point] = []
        for (g, t, _), points in self._points.items():
            if g == group and t == topic and points:
                first.append(points[0])
                last.append(points[-1])
        lag = sum(p.lag for p in last)
        if lag == 0:
            return 0.0
        elapsed = max((p.at for p in last), default=0.0) - min((p.at for p in first), default=0.0)
        if elapsed <= 0:
            return None
        consumed = (sum(p.committed for p in last) - sum(p.committed for p in first)) / elapsed
        if 0 < lag <= consumed:
            return lag / consumed
        drained = (sum(p.lag for p in first) - lag) / elapsed
        return lag / drained if drained > 0 else None


def judge(points: list[_Point]) -> Status:
    """Burrow's evaluation of one partition's window of points (oldest first)."""
    if any(p.lag == 0 for p in points):
        return "ok"
    if points[-1].committed == points[0].committed:
        return "stalled"
    lags = [p.lag for p in points]
    if len(lags) >= 3 and all(b > a for a, b in pairwise(lags)):
        return "not_draining"
    return "ok"
