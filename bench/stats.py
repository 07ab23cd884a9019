"""Statistics for noisy machines: medians, the min-max spread, and paired ratios.

A 2-core machine shared with other jobs gives samples that differ by tens of percent, so every
number the harness reports is a median over repeats together with its minimum and maximum, and
every comparison is a ratio of samples measured side by side in the same round (the same
background load), summarized the same way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """The median of ``n`` samples and their range."""

    n: int
    median: float
    min: float
    max: float

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 means the samples span 10% of the median."""
        return (self.max - self.min) / self.median if self.median else math.inf

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "spread": self.spread,
        }


def summarize(values: Iterable[float]) -> Summary:
    """Median, min and max of finite values; ValueError names the problem otherwise."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("cannot summarize no samples")
    bad = [v for v in data if not math.isfinite(v)]
    if bad:
        raise ValueError(f"samples must be finite numbers, got {bad[0]!r}")
    return Summary(len(data), statistics.median(data), min(data), max(data))


def paired_ratios(
    numerators: Sequence[tuple[int, float]], denominators: Sequence[tuple[int, float]]
) -> list[float]:
    """``numerator / denominator`` for every round that has both, in round order.

    Samples are ``(round, value)``. Pairing by round compares runs made under the same
    background load, which is what makes a ratio steadier than a ratio of medians.
    """
    by_round: dict[int, float] = {}
    for round_, value in denominators:
        if value <= 0:
            raise ValueError(f"a denominator sample must be positive, got {value} (round {round_})")
        by_round[round_] = value
    return [value / by_round[r] for r, value in sorted(numerators) if r in by_round]


def ratio_summary(
    numerators: Sequence[tuple[int, float]], denominators: Sequence[tuple[int, float]]
) -> Summary | None:
    """Summary of the paired ratios; None when no round has both samples."""
    ratios = paired_ratios(numerators, denominators)
    return summarize(ratios) if ratios else None


def rate(events: int, seconds: float) -> float:
    """Events per second; ValueError for a non-positive duration (a measurement bug)."""
    if not seconds > 0:
        raise ValueError(f"duration must be positive, got {seconds}")
    return events / seconds
