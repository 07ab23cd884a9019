"""The live send schedule: pure arithmetic, so it can be tested without a clock.

Record ``k`` (from 0) is due ``k / rate`` seconds after the start. The schedule is absolute: the
sender asks how many records are due at the elapsed time it reads and sends the difference, in
batches of at most ``max_batch``. Falling behind (a slow tick, a GC pause, a busy broker) only
makes the next batches bigger until the sender is back on schedule; nothing accumulates, so the
rate over any long window is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PacingSchedule:
    rate: float  # records per second, across all streams
    max_batch: int = 1_000  # most records handed to the producer per tick
    tick_s: float = 0.005  # longest sleep between ticks when on schedule

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(
                f"rate must be a positive number of records per second, got {self.rate}"
            )
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if not self.tick_s > 0:
            raise ValueError(f"tick_s must be positive, got {self.tick_s}")

    def due_at(self, k: int) -> float:
        """Seconds after the start when record ``k`` is due."""
        return k / self.rate

    def offset_ms(self, k: int) -> int:
        """Milliseconds after the start when record ``k`` is due (its live event time)."""
        return int(k * 1000.0 / self.rate)

    def due(self, elapsed_s: float) -> int:
        """How many records are due by ``elapsed_s`` (record ``k`` is due when ``k/rate <= t``)."""
        if elapsed_s < 0:
            return 0
        return math.floor(elapsed_s * self.rate) + 1

    def count_for(self, duration_s: float) -> int:
        """Records due strictly within the first ``duration_s`` seconds."""
        return max(math.ceil(duration_s * self.rate), 0)

    def next_step(self, sent: int, elapsed_s: float, limit: int | None = None) -> tuple[int, float]:
        """(records to send now, seconds to sleep after sending them).

        Sends what is due, capped by ``max_batch`` and ``limit``. Sleeps 0 while still behind
        (the next call sends more), else until the next record is due but at least a tick, so
        records go out in batches of about ``rate * tick_s``.
        """
        due = self.due(elapsed_s)
        if limit is not None:
            due = min(due, limit)
        n = max(min(due - sent, self.max_batch), 0)
        after = sent + n
        if (limit is not None and after >= limit) or after < due:
            return n, 0.0
        return n, max(self.due_at(after) - elapsed_s, self.tick_s)
