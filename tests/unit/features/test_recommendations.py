"""Recommendation features and global aggregates against a brute-force reference.

The reference keeps every processed event of every partition. Global counts are recomputed from
scratch from all partitions' accepted views; per-user features scan the user's processed events.
Interest weights are compared exactly: the engine's float operations are the definition's.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import UserEvent
from features.aggregates import GlobalViews, IdfTable, ViewSliceDelta
from features.config import FeatureConfig
from features.definitions import RECOMMENDATION_FEATURE_NAMES
from features.partitioner import partition_for_key
from features.recommendations import RecommendationFeatureEngine, recommendation_row_dict

T0 = 1_700_000_040_000  # a minute boundary
MIN = 60_000


def accepted(events: Sequence[UserEvent], lateness: int) -> list[bool]:
    clock: int | None = None
    out = []
    for e in events:
        ok = clock is None or e.event_time >= clock - lateness
        if ok:
            clock = e.event_time if clock is None else max(clock, e.event_time)
        out.append(ok)
    return out


def global_counts(parts: Sequence[Sequence[UserEvent]], lateness: int) -> list[UserEvent]:
    """All accepted views of all partitions."""
    views = []
    for events in parts:
        for e, ok in zip(events, accepted(events, lateness), strict=True):
            if ok and e.event_type == "view":
                views.append(e)
    return views


def reference(
    events: Sequence[UserEvent], all_views: Sequence[UserEvent], config: FeatureConfig
) -> list[dict[str, Any] | None]:
    processed: list[UserEvent] = []
    out: list[dict[str, Any] | None] = []
    history = config.history_horizon_ms
    for e, ok in zip(events, accepted(events, config.allowed_lateness_ms), strict=True):
        if not ok:
            out.append(None)
            continue
        t = e.event_time
        mine = [p for p in processed if p.user_id == e.user_id and p.event_time <= t] + [e]
        views = [p for p in mine if p.event_type == "view" and p.event_time > t - 30 * MIN]
        h = t - t % MIN
        window = [v for v in all_views if h - 60 * MIN <= v.event_time < h]
        n_total = len(window)
        per_cat = Counter(v.category for v in window)
        tf = Counter(v.category for v in views)
        weights = {
            c: (n / len(views)) * (math.log((1 + n_total) / (1 + per_cat[c])) + 1.0)
            for c, n in tf.items()
        }
        norm = math.sqrt(math.fsum(w * w for w in weights.values()))
        interest = {c: w / norm for c, w in weights.items()}
        clicks = [
            p for p in mine[:-1] if p.event_type == "click" and h - 5 * MIN <= p.event_time < h
        ]

        def last_distinct(
            kinds: tuple[str, ...], limit: int, mine: list[UserEvent] = mine, t: int = t
        ) -> list[str]:
            ranked = sorted(
                (
                    (p.event_time, i, p.item_id)
                    for i, p in enumerate(mine)
                    if p.event_type in kinds and p.event_time > t - history
                ),
                reverse=True,
            )
            items: list[str] = []
            for _, _, item in ranked:
                if item not in items:
                    items.append(item)
            return items[:limit]

        out.append(
            {
                "category_interest": interest,
                "view_count_30m": len(views),
                "click_count_5m": len(clicks),
                "recent_items": last_distinct(("view", "click"), 20),
                "purchased_items": last_distinct(("purchase",), 200),
            }
        )
        processed.append(e)
    return out


def split(events: Sequence[UserEvent], partitions: int) -> dict[int, list[UserEvent]]:
    parts: dict[int, list[UserEvent]] = {p: [] for p in range(partitions)}
    for e in events:
        parts[partition_for_key(e.user_id.encode(), partitions)].append(e)
    return parts


def run(
    events: Sequence[UserEvent], config: FeatureConfig, partitions: int, batch: int = 5
) -> tuple[dict[int, list[Any]], list[ViewSliceDelta], dict[int, list[UserEvent]]]:
    parts = split(events, partitions)
    # Global counts: exact, from the reference's accepted views.
    views = GlobalViews()
    for v in global_counts(list(parts.values()), config.allowed_lateness_ms):
        views.add_view(v.event_time, v.category, v.item_id)
    engine = RecommendationFeatureEngine(config)
    rows: dict[int, list[Any]] = {}
    deltas: list[ViewSliceDelta] = []
    for p, evs in parts.items():
        engine.assign(p)
        rows[p] = []
        for i in range(0, len(evs), batch):
            rows[p].extend(engine.process_batch(p, evs[i : i + batch], views).rows)
            deltas.extend(engine.drain_view_deltas(p))
    return rows, deltas, parts


def assert_rows_match(got: list[Any], want: list[dict[str, Any] | None]) -> None:
    assert len(got) == len(want)
    for i, (row, expected) in enumerate(zip(got, want, strict=True)):
        if expected is None:
            assert row is None, f"event {i} should be late"
            continue
        assert row is not None, f"event {i} should not be late"
        actual = recommendation_row_dict(row)
        assert list(actual) == list(RECOMMENDATION_FEATURE_NAMES)
        assert actual == expected, i


CONFIGS = [
    FeatureConfig(allowed_lateness_ms=10 * MIN, history_horizon_ms=2 * 60 * MIN),
    FeatureConfig(),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("partitions", [1, 3])
def test_engine_equals_reference(streams: Any, seed: int, partitions: int) -> None:
    config = CONFIGS[seed % 2]
    rng = random.Random(seed)
    events = streams.user_events(rng, 350, lateness=config.allowed_lateness_ms)
    rows, deltas, parts = run(events, config, partitions)
    all_views = global_counts(list(parts.values()), config.allowed_lateness_ms)
    late = 0
    for p, evs in parts.items():
        assert_rows_match(rows[p], reference(evs, all_views, config))
        late += rows[p].count(None)
    assert late > 0
    # The engines' published slice deltas add up to the exact global counts.
    published: Counter[tuple[int, str]] = Counter()
    items: Counter[tuple[int, str]] = Counter()
    for d in deltas:
        published.update({(d.slice_start_ms, c): n for c, n in d.categories.items()})
        items.update({(d.slice_start_ms, i): n for i, n in d.items.items()})
    assert published == Counter((v.event_time - v.event_time % MIN, v.category) for v in all_views)
    assert items == Counter((v.event_time - v.event_time % MIN, v.item_id) for v in all_views)


def test_long_histories_are_capped() -> None:
    """Many distinct items: recent_items stops at 20 and purchased_items at 200."""
    config = FeatureConfig(allowed_lateness_ms=10 * MIN, history_horizon_ms=2 * 60 * MIN)
    rng = random.Random(99)
    events = []
    t = T0
    for i in range(1500):
        t += rng.randrange(10_000)
        item = rng.randrange(600)
        kind = rng.choice(["view", "click", "purchase", "purchase"])
        back = rng.randrange(15 * MIN) if rng.random() < 0.1 else 0
        events.append(
            ev(t - back, kind, item=f"i{item}", category=f"c{item % 7}", user=f"u{i % 2}")
        )
    rows, _, parts = run(events, config, 1, batch=50)
    all_views = global_counts(list(parts.values()), config.allowed_lateness_ms)
    assert_rows_match(rows[0], reference(parts[0], all_views, config))
    lengths = [(len(r[3]), len(r[4])) for r in rows[0] if r is not None]
    assert max(a for a, _ in lengths) == 20
    assert max(b for _, b in lengths) == 200


_event = st.tuples(
    st.integers(0, 1),  # user
    st.sampled_from([0, 1, 59_999, 60_000, 120_001, 30 * MIN, 60 * MIN, 61 * MIN, 120 * MIN]),
    st.booleans(),  # out of order
    st.integers(0, 15 * MIN),
    st.integers(0, 5),  # item (category = item % 3)
    st.sampled_from(["view", "click", "purchase"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_event, min_size=1, max_size=40))
def test_engine_equals_reference_hypothesis(spec: list[tuple[Any, ...]]) -> None:
    config = FeatureConfig(allowed_lateness_ms=10 * MIN, history_horizon_ms=2 * 60 * MIN)
    clock = T0
    events = []
    for i, (user, gap, ooo, back, item, kind) in enumerate(spec):
        clock += gap
        events.append(
            UserEvent(
                event_id=f"e{i}",
                user_id=f"u{user}",
                item_id=f"i{item}",
                category=f"c{item % 3}",
                event_type=kind,
                event_time=clock - back if ooo else clock,
            )
        )
    rows, _, parts = run(events, config, 1, batch=4)
    all_views = global_counts(list(parts.values()), config.allowed_lateness_ms)
    assert_rows_match(rows[0], reference(parts[0], all_views, config))


def ev(
    t: int, kind: str = "view", item: str = "i1", category: str = "a", user: str = "u"
) -> UserEvent:
    return UserEvent(
        event_id=f"{user}-{t}-{item}",
        user_id=user,
        item_id=item,
        category=category,
        event_type=kind,  # type: ignore[arg-type]
        event_time=t,
    )


def features(
    engine: RecommendationFeatureEngine, event: UserEvent, views: GlobalViews
) -> dict[str, Any]:
    row = engine.process(0, event, views)
    assert row is not None
    return recommendation_row_dict(row)


def test_tfidf_by_hand() -> None:
    views = GlobalViews()
    h = T0 - T0 % MIN + 60 * MIN
    # Global window [h - 60 min, h): 6 views of "a", 2 of "b".
    views.apply(
        [
            ViewSliceDelta(h - 60 * MIN, {"a": 4, "b": 1}, {"x": 5}),
            ViewSliceDelta(h - MIN, {"a": 2, "b": 1}, {}),
        ]
    )
    views.apply([ViewSliceDelta(h, {"b": 100}, {})])  # the current minute is not read
    engine = RecommendationFeatureEngine()
    engine.assign(0)
    features(engine, ev(h + 1, category="a"), views)
    f = features(engine, ev(h + 2, category="b"), views)
    idf_a = math.log(9 / 7) + 1
    idf_b = math.log(9 / 3) + 1
    wa, wb = 0.5 * idf_a, 0.5 * idf_b
    norm = math.hypot(wa, wb)
    assert f["category_interest"] == pytest.approx({"a": wa / norm, "b": wb / norm}, rel=1e-15)
    assert f["view_count_30m"] == 2
    assert views.idf_table(h).total == 8


def test_click_count_is_a_5_minute_window_hopping_every_minute() -> None:
    views = GlobalViews()
    engine = RecommendationFeatureEngine()
    engine.assign(0)
    base = T0 - T0 % MIN
    features(engine, ev(base, "click"), views)
    features(engine, ev(base + 10, "click"), views)
    same_minute = features(engine, ev(base + 59_999, "view"), views)
    assert same_minute["click_count_5m"] == 0  # not before the minute closes
    next_minute = features(engine, ev(base + 60_000, "view"), views)
    assert next_minute["click_count_5m"] == 2  # visible at the next minute boundary
    assert features(engine, ev(base + 5 * MIN + 59_999, "view"), views)["click_count_5m"] == 2
    assert features(engine, ev(base + 6 * MIN, "view"), views)["click_count_5m"] == 0


def test_recent_items_are_distinct_newest_first_and_exclude_purchases() -> None:
    views = GlobalViews()
    engine = RecommendationFeatureEngine()
    engine.assign(0)
    features(engine, ev(T0, item="a"), views)
    features(engine, ev(T0 + 1, "click", item="b"), views)
    features(engine, ev(T0 + 2, item="a"), views)
    f = features(engine, ev(T0 + 3, "purchase", item="c"), views)
    assert f["recent_items"] == ["a", "b"]
    assert f["purchased_items"] == ["c"]
    early = features(engine, ev(T0 + 1, item="d"), views)  # out of order: ties go newest first
    assert early["recent_items"] == ["d", "b", "a"]
    assert early["purchased_items"] == []


def test_global_views_window_and_popularity() -> None:
    views = GlobalViews()
    h = 120 * MIN
    views.add_view(h - 61 * MIN, "a", "old")  # outside [h - 60, h)
    views.add_view(h - 60 * MIN, "a", "x")
    views.add_view(h - 1, "b", "y")
    views.add_view(h - 2, "b", "y")
    views.add_view(h, "b", "z")  # current minute: not read
    assert views.item_views(h) == {"x": 1, "y": 2}
    assert views.top_items(h, 5) == [("y", 2), ("x", 1)]
    table = views.idf_table(h)
    assert isinstance(table, IdfTable) and table.total == 3 and table.counts == {"a": 1, "b": 2}
    assert table.idf("unseen") == math.log(4) + 1
    with pytest.raises(ValueError, match="multiple of 60000"):
        views.idf_table(h + 1)
    views.evict_before(h - 60 * MIN)
    assert len(views.categories) == 3  # h - 60 min, h - 1 min, h
    assert views.categories.slice(h - 61 * MIN) == {}


def test_item_history_horizon_is_exact_for_settled_items() -> None:
    config = FeatureConfig(allowed_lateness_ms=10 * MIN, history_horizon_ms=120 * MIN)
    views = GlobalViews()
    engine = RecommendationFeatureEngine(config)
    engine.assign(0)
    features(engine, ev(T0, item="old"), views)
    features(engine, ev(T0, "purchase", item="bought"), views)
    inside = features(engine, ev(T0 + 120 * MIN - 1, "click", item="new"), views)
    assert inside["recent_items"] == ["new", "old"]  # "old" is settled (older than wm - 30 min)
    assert inside["purchased_items"] == ["bought"]
    edge = features(engine, ev(T0 + 120 * MIN, "click", item="new"), views)
    assert edge["recent_items"] == ["new"]  # T0 is not in (t - 2 h, t]
    assert edge["purchased_items"] == []


def test_global_views_tables_follow_changes_to_their_window() -> None:
    views = GlobalViews()
    h = 120 * MIN
    views.add_view(h - 30 * MIN, "a", "x")
    before = views.idf_table(h)
    assert views.idf_table(h) is before  # memoized
    views.apply([ViewSliceDelta(h, {"a": 5}, {})])  # outside [h - 60 min, h)
    assert views.idf_table(h) is before
    views.apply([ViewSliceDelta(h - MIN, {"a": 2}, {})])
    after = views.idf_table(h)
    assert after is not before and after.total == 3
