"""Recommendation features per user: category interest (TF-IDF), clicks, recent and purchased items.

Per user the engine keeps, sorted by event_time (ties in processing order):

- the views and clicks of the last 30 min + allowed lateness (``times``/``kinds``/``items``/
  ``categories``), with the views' and clicks' times also in their own lists (``view_times``,
  ``view_categories``, ``click_times``) so each window is two bisects, and ``view_counts``:
  category -> views in the 30 min window, slid forward by in-order events (O(1) amortized; an
  out-of-order event counts its window directly);
- the purchases of the last 30 min + allowed lateness;
- the settled item lists: events older than the buffer folded into the newest 20 distinct
  viewed/clicked items and the newest 200 distinct purchased items, each with its event time.

An event at t >= watermark can only see settled events that are older than it, so the item
lists of any event are "walk the buffer back from t, then the settled list", exact for
out-of-order events too. IDF comes from an ``IdfSource`` (global counts, see aggregates.py);
the engine also counts the views it processes per 1-minute slice for publishing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from math import fsum, sqrt

from contracts.events import UserEvent
from features._engine import NO_TIME, BatchResult, KeyedEngine, KeyState, Partition
from features.aggregates import IdfSource, IdfTable, ViewSliceDelta
from features.config import FeatureConfig
from features.definitions import (
    CLICK_WINDOW_MS,
    INTEREST_WINDOW_MS,
    PURCHASED_ITEMS,
    RECENT_ITEMS,
    RECOMMENDATION,
    SLICE_MS,
    RecommendationRow,
)
from features.state import UserStateV1, encoder, user_state_decoder

VIEW, CLICK = 0, 1
_KINDS = {"view": VIEW, "click": CLICK}
_EMPTY = ()


class UserState(KeyState):
    __slots__ = (
        "categories",
        "click_times",
        "items",
        "kinds",
        "purchase_items",
        "purchase_times",
        "purchased",
        "purchased_times",
        "recent",
        "recent_times",
        "times",
        "view_categories",
        "view_counts",
        "view_lo",
        "view_slid",
        "view_times",
    )

    def __init__(self) -> None:
        super().__init__()
        self.times: list[int] = []  # views and clicks
        self.kinds: list[int] = []
        self.items: list[str] = []
        self.categories: list[str] = []
        self.view_times: list[int] = []
        self.view_categories: list[str] = []
        # view_counts counts view_categories[view_lo:]. The counts were last slid to the window
        # ending at view_slid (>= every view time): the views before view_lo are out of the
        # window of every event at t >= view_slid.
        self.view_counts: dict[str, int] = {}
        self.view_lo = 0
        self.view_slid = NO_TIME
        self.click_times: list[int] = []
        self.purchase_times: list[int] = []
        self.purchase_items: list[str] = []
        # Settled lists, newest first, distinct. Most users never settle anything, so they start
        # as the shared empty tuple (no per-user allocation); settling assigns new lists.
        self.recent: list[str] = _EMPTY  # type: ignore[assignment]
        self.recent_times: list[int] = _EMPTY  # type: ignore[assignment]
        self.purchased: list[str] = _EMPTY  # type: ignore[assignment]
        self.purchased_times: list[int] = _EMPTY  # type: ignore[assignment]


class RecommendationFeatureEngine(KeyedEngine[UserState]):
    """Recommendation features of user events, keyed by user_id, for its assigned partitions.

    Not thread-safe; one engine per consumer actor. Rows follow
    ``features.definitions.RECOMMENDATION``.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__(config)
        self._history = self.config.history_horizon_ms
        self._set_horizon(self._history)  # >= 30 min + lateness, checked by FeatureConfig
        self._cap = self.config.max_events_per_key

    def assign(self, partition: int, *, now_ms: int | None = None, changelog: bool = False) -> None:
        super().assign(partition, now_ms=now_ms, changelog=changelog)
        part = self._parts[partition]
        if part.extra is None:
            part.extra = {}  # slice start -> (category counts, item counts) since last drain

    def process(self, partition: int, event: UserEvent, idf: IdfSource) -> RecommendationRow | None:
        """Features of one event, or None when it is late. Prefer ``process_batch``."""
        return self.process_batch(partition, (event,), idf).rows[0]

    def process_batch(
        self,
        partition: int,
        events: Sequence[UserEvent],
        idf: IdfSource,
        *,
        now_ms: int | None = None,
    ) -> BatchResult:
        """Process ``events`` of one partition in partition order.

        ``idf`` gives the global category counts (online: the last published slices; offline:
        exact). ``now_ms`` is the processing time, for ``advance_idle``; None offline.
        Returns one row per event, None for late ones (also listed in ``late``).
        """
        part = self._partition(partition)
        keys = part.keys
        touched = part.touched
        deltas = part.extra
        rebucket = self._rebucket
        bucket_ms = self._bucket_ms  # the expiry wheel's: rebucket only when it changes
        lateness = self._lateness
        history = self._history
        cap = self._cap
        max_time = part.max_time
        wm = part.watermark
        rows: list[RecommendationRow | None] = []
        late: list[int] = []
        add_row = rows.append
        table_end = None
        table: IdfTable | None = None

        for index, ev in enumerate(events):
            t = ev.event_time
            if t < wm:
                late.append(index)
                add_row(None)
                continue
            if t > max_time:
                max_time = t
                wm = t - lateness
            key = ev.user_id
            st = keys.get(key)
            if st is None:
                st = keys[key] = UserState()
            cut = wm - INTEREST_WINDOW_MS
            times = st.times
            ptimes = st.purchase_times
            if (times and times[0] <= cut) or (ptimes and ptimes[0] <= cut):
                self._trim(st, wm)
            elif len(times) >= cap:
                _settle(st, times[len(times) - cap], wm - history)
            elif len(ptimes) >= cap:
                _settle(st, ptimes[len(ptimes) - cap], wm - history)

            kind = ev.event_type
            item = ev.item_id
            category = ev.category
            is_view = kind == "view"
            minute = t - t % SLICE_MS

            # Category interest: TF over the user's views in (t - 30 min, t], IDF global.
            vtimes = st.view_times
            nv = len(vtimes)
            if t >= st.view_slid:
                # Slide the category counts to (t - 30 min, t].
                st.view_slid = t
                vpos = nv
                vlo = st.view_lo
                cut = t - INTEREST_WINDOW_MS
                vcounts = st.view_counts
                if vlo < nv and vtimes[vlo] <= cut:
                    vcats = st.view_categories
                    while vlo < nv and vtimes[vlo] <= cut:
                        c = vcats[vlo]
                        left = vcounts[c] - 1
                        if left:
                            vcounts[c] = left
                        else:
                            del vcounts[c]
                        vlo += 1
                    st.view_lo = vlo
                counts = dict(vcounts)
            else:  # out of order: count the window itself
                vpos = bisect_right(vtimes, t)
                vlo = bisect_right(vtimes, t - INTEREST_WINDOW_MS, 0, vpos)
                counts = {}
                for c in st.view_categories[vlo:vpos]:
                    counts[c] = counts.get(c, 0) + 1
            if is_view:
                counts[category] = counts.get(category, 0) + 1
            views = vpos - vlo + is_view
            if views:
                if minute != table_end:
                    table = idf.idf_table(minute)
                    table_end = minute
                assert table is not None
                idf_of = table.idf
                weights = {c: (counts[c] / views) * idf_of(c) for c in sorted(counts)}
                norm = sqrt(fsum([w * w for w in weights.values()]))
                interest = {c: w / norm for c, w in weights.items()}
            else:
                interest = {}

            # Clicks in the hopping window [h - 5 min, h), h = t floored to the minute.
            ctimes = st.click_times
            clicks = bisect_left(ctimes, minute) - bisect_left(ctimes, minute - CLICK_WINDOW_MS)

            # Recent items: walk views/clicks back from t, then the settled list.
            n = len(times)
            pos = n if not n or t >= times[-1] else bisect_right(times, t)
            recent = [] if kind == "purchase" else [item]
            seen = set(recent)
            items = st.items
            i = pos - 1
            while i >= 0 and len(recent) < RECENT_ITEMS:
                it = items[i]
                if it not in seen:
                    seen.add(it)
                    recent.append(it)
                i -= 1
            if len(recent) < RECENT_ITEMS and st.recent:
                _extend_settled(recent, seen, st.recent, st.recent_times, t - history, RECENT_ITEMS)

            # Purchased items: the same over purchases.
            np_ = len(ptimes)
            ppos = np_ if not np_ or t >= ptimes[-1] else bisect_right(ptimes, t)
            purchased = [item] if kind == "purchase" else []
            pseen = set(purchased)
            pitems = st.purchase_items
            i = ppos - 1
            while i >= 0 and len(purchased) < PURCHASED_ITEMS:
                it = pitems[i]
                if it not in pseen:
                    pseen.add(it)
                    purchased.append(it)
                i -= 1
            if len(purchased) < PURCHASED_ITEMS and st.purchased:
                _extend_settled(
                    purchased, pseen, st.purchased, st.purchased_times, t - history, PURCHASED_ITEMS
                )

            # Insert the event.
            if kind == "purchase":
                if ppos == np_:
                    ptimes.append(t)
                    pitems.append(item)
                else:
                    ptimes.insert(ppos, t)
                    pitems.insert(ppos, item)
            else:
                if pos == n:
                    times.append(t)
                    st.kinds.append(_KINDS[kind])
                    items.append(item)
                    st.categories.append(category)
                else:
                    times.insert(pos, t)
                    st.kinds.insert(pos, _KINDS[kind])
                    items.insert(pos, item)
                    st.categories.insert(pos, category)
                if is_view:
                    vtimes.insert(vpos, t)
                    st.view_categories.insert(vpos, category)
                    if vpos < st.view_lo:
                        st.view_lo += 1  # before the counted window
                    else:
                        vcounts = st.view_counts
                        vcounts[category] = vcounts.get(category, 0) + 1
                    delta = deltas.get(minute)
                    if delta is None:
                        deltas[minute] = delta = ({}, {})
                    dc, di = delta
                    dc[category] = dc.get(category, 0) + 1
                    di[item] = di.get(item, 0) + 1
                else:
                    insort(ctimes, t)
            if t > st.last:
                st.last = t
                if t // bucket_ms != st.bucket:
                    rebucket(part, key, st)
            touched.add(key)
            add_row((interest, views, clicks, recent, purchased))

        self._end_batch(part, max_time, wm, now_ms if events else None)
        return BatchResult(rows, late)

    def drain_view_deltas(self, partition: int) -> list[ViewSliceDelta]:
        """Views processed in ``partition`` since the last drain, per slice, oldest first.

        Publish them (add to the global per-slice counts) when the batch's outputs are flushed.
        """
        part: Partition[UserState] = self._partition(partition)
        deltas = part.extra
        out = [ViewSliceDelta(s, dict(c), dict(i)) for s, (c, i) in sorted(deltas.items())]
        deltas.clear()
        return out

    # -- state hooks ------------------------------------------------------------------------

    def _trim(self, st: UserState, watermark: int) -> bool:
        _settle(st, watermark - INTEREST_WINDOW_MS, watermark - self._history)
        return not (st.times or st.purchase_times or st.recent or st.purchased)

    def _encode(self, st: UserState) -> bytes:
        last = st.last
        return encoder.encode(
            UserStateV1(
                last=last,
                ages=[last - t for t in st.times],
                kinds=st.kinds,
                items=st.items,
                categories=st.categories,
                purchase_ages=[last - t for t in st.purchase_times],
                purchase_items=st.purchase_items,
                recent_items=st.recent,
                recent_ages=[last - t for t in st.recent_times],
                purchased_items=st.purchased,
                purchased_ages=[last - t for t in st.purchased_times],
            )
        )

    def _decode(self, data: bytes) -> UserState:
        rec = user_state_decoder.decode(data)
        n = len(rec.ages)
        if not len(rec.kinds) == len(rec.items) == len(rec.categories) == n:
            raise ValueError("user state columns have different lengths")
        if len(rec.purchase_ages) != len(rec.purchase_items):
            raise ValueError("user state purchase columns have different lengths")
        if len(rec.recent_items) != len(rec.recent_ages) or len(rec.purchased_items) != len(
            rec.purchased_ages
        ):
            raise ValueError("user state settled columns have different lengths")
        for ages in (rec.ages, rec.purchase_ages):
            if any(a < 0 for a in ages) or any(ages[i] < ages[i + 1] for i in range(len(ages) - 1)):
                raise ValueError("user state buffer ages must be >= 0 and non-increasing")
        if any(k not in (VIEW, CLICK) for k in rec.kinds):
            raise ValueError("user state kinds must be 0 (view) or 1 (click)")
        st = UserState()
        last = st.last = rec.last
        st.times = [last - a for a in rec.ages]
        st.kinds = list(rec.kinds)
        st.items = list(rec.items)
        st.categories = list(rec.categories)
        for t, k, c in zip(st.times, st.kinds, st.categories, strict=True):
            if k == VIEW:
                st.view_times.append(t)
                st.view_categories.append(c)
            else:
                st.click_times.append(t)
        if st.view_times:
            st.view_slid = st.view_times[-1]
            st.view_lo = bisect_right(st.view_times, st.view_slid - INTEREST_WINDOW_MS)
            for c in st.view_categories[st.view_lo :]:
                st.view_counts[c] = st.view_counts.get(c, 0) + 1
        st.purchase_times = [last - a for a in rec.purchase_ages]
        st.purchase_items = list(rec.purchase_items)
        st.recent = list(rec.recent_items)[:RECENT_ITEMS]
        st.recent_times = [last - a for a in rec.recent_ages][:RECENT_ITEMS]
        st.purchased = list(rec.purchased_items)[:PURCHASED_ITEMS]
        st.purchased_times = [last - a for a in rec.purchased_ages][:PURCHASED_ITEMS]
        return st


def _extend_settled(
    out: list[str], seen: set[str], items: list[str], times: list[int], after: int, limit: int
) -> None:
    """Append settled items (newest first) with event time > ``after`` until ``limit``."""
    for it, tt in zip(items, times, strict=True):
        if tt <= after:
            break
        if it not in seen:
            seen.add(it)
            out.append(it)
            if len(out) >= limit:
                break


def _fold(
    new_items: list[str], new_times: list[int], items: list[str], times: list[int], limit: int
) -> tuple[list[str], list[int]]:
    """Settle ``new_*`` (oldest first, all newer than the settled list) into ``items/times``
    (newest first): the newest ``limit`` distinct items, each at its newest time."""
    out_items: list[str] = []
    out_times: list[int] = []
    seen: set[str] = set()
    for it, tt in zip(reversed(new_items), reversed(new_times), strict=True):
        if it not in seen:
            seen.add(it)
            out_items.append(it)
            out_times.append(tt)
            if len(out_items) >= limit:
                return out_items, out_times
    for it, tt in zip(items, times, strict=True):
        if it not in seen:
            seen.add(it)
            out_items.append(it)
            out_times.append(tt)
            if len(out_items) >= limit:
                break
    return out_items, out_times


def _settle(st: UserState, cut: int, history_cut: int) -> None:
    """Move buffered events with event_time <= ``cut`` into the settled lists; expire settled
    items with event_time <= ``history_cut``."""
    times = st.times
    k = bisect_right(times, cut)
    if k:
        st.recent, st.recent_times = _fold(
            st.items[:k], times[:k], st.recent, st.recent_times, RECENT_ITEMS
        )
        del times[:k]
        del st.kinds[:k]
        del st.items[:k]
        del st.categories[:k]
        kv = bisect_right(st.view_times, cut)
        if kv:
            vlo = st.view_lo
            if vlo < kv:  # dropping views the category counts still hold
                vcounts = st.view_counts
                for c in st.view_categories[vlo:kv]:
                    left = vcounts[c] - 1
                    if left:
                        vcounts[c] = left
                    else:
                        del vcounts[c]
                st.view_lo = 0
            else:
                st.view_lo = vlo - kv
            del st.view_times[:kv]
            del st.view_categories[:kv]
        del st.click_times[: bisect_right(st.click_times, cut)]
    ptimes = st.purchase_times
    k = bisect_right(ptimes, cut)
    if k:
        st.purchased, st.purchased_times = _fold(
            st.purchase_items[:k], ptimes[:k], st.purchased, st.purchased_times, PURCHASED_ITEMS
        )
        del ptimes[:k]
        del st.purchase_items[:k]
    for items, item_times in ((st.recent, st.recent_times), (st.purchased, st.purchased_times)):
        while item_times and item_times[-1] <= history_cut:
            item_times.pop()
            items.pop()


def recommendation_row_dict(row: RecommendationRow) -> dict[str, object]:
    """A recommendation row as ``{feature: value}``."""
    return RECOMMENDATION.as_dict(row)


__all__ = ["RecommendationFeatureEngine", "UserState", "recommendation_row_dict"]
