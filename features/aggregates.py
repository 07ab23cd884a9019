"""Global view aggregates (all partitions): per 1-minute slice counts, mergeable by addition.

Each engine counts the views it processes per slice (``ViewSliceDelta``); consumers publish the
deltas (e.g. HINCRBY per slice hash in one Redis pipeline) and readers sum the last 60 complete
slices. ``GlobalViews`` is that sum in memory: online it is filled from Redis, offline (replay)
from every partition's views, which makes it exact.

Window: for an event at time t, with h = floor(t / 1 min) * 1 min, the global window is the 60
complete slices [h - 60 min, h). The current, partial minute is never read, so every reader sees
the same numbers once all partitions have published the minute.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from heapq import nsmallest
from math import log
from typing import Protocol

from features.definitions import GLOBAL_WINDOW_SLICES, SLICE_MS

WINDOW_MS = GLOBAL_WINDOW_SLICES * SLICE_MS


def slice_start(event_time_ms: int) -> int:
    """Start of the 1-minute slice holding ``event_time_ms``."""
    return event_time_ms - event_time_ms % SLICE_MS


@dataclass(slots=True)
class ViewSliceDelta:
    """Views counted by one partition in one slice since its last drain (add to the totals)."""

    slice_start_ms: int
    categories: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)


class IdfTable:
    """Global category view counts of one window and the smoothed IDF derived from them.

    idf(c) = ln((1 + N) / (1 + N_c)) + 1, N = total views in the window, N_c those of c.
    """

    __slots__ = ("_idf", "counts", "total", "window_end_ms")

    def __init__(self, window_end_ms: int, total: int, counts: Mapping[str, int]) -> None:
        self.window_end_ms = window_end_ms
        self.total = total
        self.counts = counts
        self._idf: dict[str, float] = {}

    def idf(self, category: str) -> float:
        value = self._idf.get(category)
        if value is None:
            value = log((1 + self.total) / (1 + self.counts.get(category, 0))) + 1.0
            self._idf[category] = value
        return value


class IdfSource(Protocol):
    """Where the recommendation engine gets global category counts for a window."""

    def idf_table(self, window_end_ms: int) -> IdfTable:
        """Counts over the slices [window_end_ms - 60 min, window_end_ms)."""
        ...


class SliceCounts:
    """Counts per key per slice; sums over any 60-slice window."""

    __slots__ = ("_slices",)

    def __init__(self) -> None:
        self._slices: dict[int, dict[str, int]] = {}

    def add(self, slice_start_ms: int, counts: Mapping[str, int]) -> None:
        target = self._slices.get(slice_start_ms)
        if target is None:
            self._slices[slice_start_ms] = target = {}
        for key, n in counts.items():
            target[key] = target.get(key, 0) + n

    def slice(self, slice_start_ms: int) -> Mapping[str, int]:
        return self._slices.get(slice_start_ms, {})

    def window(self, window_end_ms: int) -> tuple[int, dict[str, int]]:
        """(total, per-key counts) over the slices [window_end_ms - 60 min, window_end_ms)."""
        _check_aligned(window_end_ms)
        totals: dict[str, int] = {}
        total = 0
        for start in range(window_end_ms - WINDOW_MS, window_end_ms, SLICE_MS):
            counts = self._slices.get(start)
            if counts:
                for key, n in counts.items():
                    totals[key] = totals.get(key, 0) + n
                    total += n
        return total, totals

    def evict_before(self, ms: int) -> None:
        """Forget slices that start before ``ms``."""
        for start in [s for s in self._slices if s < ms]:
            del self._slices[start]

    def __len__(self) -> int:
        return len(self._slices)


class GlobalViews:
    """The global (all-partition) view counts per category and per item, by slice.

    Implements ``IdfSource``. Tables are memoized per window end (at most ``cache_size``); a
    change to a slice forgets the tables whose window holds it.
    """

    def __init__(self, cache_size: int = 4096) -> None:
        self.categories = SliceCounts()
        self.items = SliceCounts()
        self._tables: OrderedDict[int, IdfTable] = OrderedDict()
        self._cache_size = cache_size

    def apply(self, deltas: Iterable[ViewSliceDelta]) -> None:
        changed = set()
        for delta in deltas:
            self.categories.add(delta.slice_start_ms, delta.categories)
            self.items.add(delta.slice_start_ms, delta.items)
            changed.add(delta.slice_start_ms)
        self._invalidate(changed)

    def add_view(self, event_time_ms: int, category: str, item_id: str) -> None:
        start = slice_start(event_time_ms)
        self.categories.add(start, {category: 1})
        self.items.add(start, {item_id: 1})
        self._invalidate((start,))

    def _invalidate(self, slices: Iterable[int]) -> None:
        """Forget the memoized tables whose window [end - 60 min, end) holds a changed slice."""
        if not self._tables:
            return
        for start in slices:
            for end in [e for e in self._tables if start < e <= start + WINDOW_MS]:
                del self._tables[end]

    def idf_table(self, window_end_ms: int) -> IdfTable:
        table = self._tables.get(window_end_ms)
        if table is None:
            total, counts = self.categories.window(window_end_ms)
            table = IdfTable(window_end_ms, total, counts)
            self._tables[window_end_ms] = table
            if len(self._tables) > self._cache_size:
                self._tables.popitem(last=False)
        return table

    def item_views(self, window_end_ms: int) -> dict[str, int]:
        """Item popularity: global views per item over [window_end_ms - 60 min, window_end_ms)."""
        return self.items.window(window_end_ms)[1]

    def top_items(self, window_end_ms: int, n: int) -> list[tuple[str, int]]:
        """The ``n`` most viewed items of the window, most viewed first (ties by item_id)."""
        views = self.item_views(window_end_ms)
        return nsmallest(n, views.items(), key=lambda kv: (-kv[1], kv[0]))

    def evict_before(self, ms: int) -> None:
        self.categories.evict_before(ms)
        self.items.evict_before(ms)
        self._tables.clear()


def _check_aligned(window_end_ms: int) -> None:
    if window_end_ms % SLICE_MS:
        raise ValueError(
            f"window_end_ms must be a multiple of {SLICE_MS} (a slice boundary), "
            f"got {window_end_ms}"
        )
