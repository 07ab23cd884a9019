"""The world the stream comes from: users, cards, shops, catalog; and the sessions over it."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from producers.geography import CITY_SPREAD_DEG, PLACES, haversine_km, place_arrays
from producers.records import Stream
from producers.world import CATEGORY_NAMES, ITEM_CATEGORIES, POS_CATEGORIES


def test_users_live_near_cities_and_have_one_or_two_cards(generated) -> None:
    pop = generated.generator.world.population
    assert set(np.unique(pop.card_count)) == {1, 2}
    assert len(pop.card_ids) == pop.card_count.sum() == len(pop.card_user)
    lat, lon, _ = place_arrays()
    spread_km = haversine_km(lat[pop.home_place], lon[pop.home_place], pop.home_lat, pop.home_lon)
    assert np.percentile(spread_km, 99) < 5 * CITY_SPREAD_DEG * 111
    assert all(PLACES[p].residents > 0 for p in np.unique(pop.home_place))


def test_every_place_has_every_kind_of_shop(generated) -> None:
    merchants = generated.generator.world.merchants
    assert (merchants.pos_count[:, POS_CATEGORIES] >= 1).all()
    place, category = 3, int(POS_CATEGORIES[0])
    for index in range(10):
        m = merchants.pick_pos(place, category, index)
        assert merchants.place[m] == place and merchants.category[m] == category
        assert not merchants.online[m]


def test_transactions_match_their_merchants(generated) -> None:
    merchants = generated.generator.world.merchants
    index = {m: i for i, m in enumerate(merchants.ids)}
    channels = Counter()
    for t in generated.valid(Stream.TRANSACTIONS):
        i = index[t.merchant_id]
        assert t.merchant_category == CATEGORY_NAMES[merchants.category[i]]
        assert t.channel == ("online" if merchants.online[i] else "pos")
        if t.channel == "pos":
            assert (t.lat, t.lon) == (merchants.lat[i], merchants.lon[i])
        channels[t.channel] += 1
    assert 0.15 < channels["online"] / sum(channels.values()) < 0.6


def test_spending_follows_the_day(generated) -> None:
    """More transactions in each user's daytime than at night (local solar time)."""
    pop = generated.generator.world.population
    user_index = {u: i for i, u in enumerate(pop.user_ids)}
    _, _lon, offset = place_arrays()
    hours = Counter()
    for t in generated.valid(Stream.TRANSACTIONS):
        local = (t.event_time // 3_600_000 + offset[pop.home_place[user_index[t.user_id]]]) % 24
        hours[local] += 1
    day = sum(hours[h] for h in range(10, 20))
    night = sum(hours[h] for h in range(0, 6))
    assert day > 4 * night


def test_sessions_mostly_view_then_click_then_buy(generated) -> None:
    kinds = Counter(e.event_type for e in generated.valid(Stream.USER_EVENTS))
    total = sum(kinds.values())
    assert kinds["view"] / total > 0.65
    assert kinds["view"] > kinds["click"] > kinds["purchase"] > 0
    assert set(e.category for e in generated.valid(Stream.USER_EVENTS)) <= set(ITEM_CATEGORIES)


def test_recent_categories_predict_the_next_item_better_than_popularity(generated) -> None:
    """Recall@10 of the next different item: the most popular items of the category of the
    user's latest event beat the globally most popular items by far (the recommender needs
    this headroom to reach twice the popularity baseline)."""
    events = sorted(generated.valid(Stream.USER_EVENTS), key=lambda e: e.event_time)
    split = events[len(events) * 2 // 3].event_time
    popular = Counter(e.item_id for e in events if e.event_time < split)
    by_category = defaultdict(Counter)
    for e in events:
        if e.event_time < split:
            by_category[e.category][e.item_id] += 1
    top = {item for item, _ in popular.most_common(10)}
    top_of = {c: {i for i, _ in counts.most_common(10)} for c, counts in by_category.items()}
    per_user = defaultdict(list)
    for e in events:
        per_user[e.user_id].append(e)
    hits = Counter()
    for user_events in per_user.values():
        for i, e in enumerate(user_events):
            if e.event_time < split:
                continue
            following = next((f for f in user_events[i + 1 :] if f.item_id != e.item_id), None)
            if following is None:
                continue
            hits["n"] += 1
            hits["popularity"] += following.item_id in top
            hits["recent_category"] += following.item_id in top_of.get(e.category, set())
    popularity = hits["popularity"] / hits["n"]
    recent = hits["recent_category"] / hits["n"]
    assert 0.02 < popularity < 0.15
    assert recent > 2.5 * popularity
    assert recent < 0.6  # not trivially predictable either
    assert hits["n"] > 5_000


@pytest.mark.parametrize("seed", [1, 2])
def test_world_build_is_deterministic(seed: int) -> None:
    from producers.config import GeneratorConfig
    from producers.world import World

    config = GeneratorConfig(seed=seed, users=100, merchants=800, items=100)
    a = World.build(config, np.random.default_rng(seed))
    b = World.build(config, np.random.default_rng(seed))
    assert np.array_equal(a.population.home_lat, b.population.home_lat)
    assert np.array_equal(a.merchants.pos_table, b.merchants.pos_table)
    assert a.catalog.niche_items == b.catalog.niche_items
