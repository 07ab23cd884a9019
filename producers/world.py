"""The synthetic world: users and their cards, merchants, and the item catalog.

Everything is numpy arrays indexed by user, merchant or item number, built from one seeded
generator. ``Population`` also holds each user's *current* state (where they are, whether they
are travelling, deleted or already announced on the profiles topic); the stream mutates it as
simulated time passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from producers.config import DAY_MS, HOUR_MS, GeneratorConfig
from producers.geography import CITY_SPREAD_DEG, DIURNAL, PLACES, place_arrays
from rtml.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MerchantCategory:
    name: str
    share: float  # share of a typical user's transactions
    amount_multiplier: float  # median amount relative to the user's typical amount
    amount_sigma: float  # log-normal spread of amounts
    online_share: float  # share paid online (card not present)


MERCHANT_CATEGORIES: tuple[MerchantCategory, ...] = (
    MerchantCategory("grocery", 0.22, 1.6, 0.6, 0.05),
    MerchantCategory("restaurants", 0.16, 1.0, 0.6, 0.10),
    MerchantCategory("coffee", 0.10, 0.18, 0.4, 0.0),
    MerchantCategory("fuel", 0.09, 1.5, 0.35, 0.0),
    MerchantCategory("transit", 0.06, 0.12, 0.5, 0.2),
    MerchantCategory("pharmacy", 0.05, 0.8, 0.6, 0.1),
    MerchantCategory("clothing", 0.05, 2.2, 0.7, 0.35),
    MerchantCategory("electronics", 0.03, 4.0, 0.9, 0.45),
    MerchantCategory("online_retail", 0.09, 1.5, 0.8, 1.0),
    MerchantCategory("digital_goods", 0.05, 0.4, 0.7, 1.0),
    MerchantCategory("subscriptions", 0.03, 0.5, 0.4, 1.0),
    MerchantCategory("entertainment", 0.04, 1.3, 0.6, 0.3),
    MerchantCategory("travel", 0.02, 8.0, 0.8, 0.75),
    MerchantCategory("jewelry", 0.005, 6.0, 0.9, 0.15),
    MerchantCategory("utilities", 0.025, 3.0, 0.5, 1.0),
)
CATEGORY_INDEX = {c.name: i for i, c in enumerate(MERCHANT_CATEGORIES)}
CATEGORY_NAMES = tuple(c.name for c in MERCHANT_CATEGORIES)
AMOUNT_MULTIPLIER = np.array([c.amount_multiplier for c in MERCHANT_CATEGORIES])
AMOUNT_SIGMA = np.array([c.amount_sigma for c in MERCHANT_CATEGORIES])
ONLINE_SHARE = np.array([c.online_share for c in MERCHANT_CATEGORIES])
POS_CATEGORIES = np.flatnonzero(ONLINE_SHARE < 1.0)
ONLINE_CATEGORIES = np.flatnonzero(ONLINE_SHARE > 0.0)
TYPICAL_AMOUNT = 30.0  # median of users' typical amounts (billing currency)


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    share: float
    spend: float  # multiplies the typical amount
    activity: float  # multiplies the transaction and session rates
    travel: float  # multiplies the trip rate


SEGMENTS: tuple[Segment, ...] = (
    Segment("student", 0.12, 0.55, 0.9, 0.6),
    Segment("standard", 0.60, 1.0, 1.0, 1.0),
    Segment("premium", 0.20, 2.2, 1.2, 1.8),
    Segment("business", 0.08, 1.8, 1.1, 3.0),
)
SEGMENT_NAMES = tuple(s.name for s in SEGMENTS)

ITEM_CATEGORIES = (
    "books", "electronics", "fashion", "home", "beauty", "sports", "toys", "grocery", "music",
    "movies", "games", "garden", "automotive", "pets", "health", "jewelry", "office", "baby",
    "outdoor", "kitchen",
)  # fmt: skip
NICHES_PER_CATEGORY = 6
ITEM_ZIPF_EXPONENT = 1.1
_PLACE_UTC_OFFSET = place_arrays()[2]


def id_format(prefix: str, count: int) -> list[str]:
    """``count`` ids like ``u00042``: a prefix and a zero-padded number, as wide as needed."""
    width = len(str(max(count - 1, 0)))
    return [f"{prefix}{i:0{width}d}" for i in range(count)]


_HABIT_A, _HABIT_B, _HABIT_M = 2_654_435_761, 40_503, 1_000_003


def habit_index(entity: Any, salt: Any) -> Any:
    """A stable pseudo-random index per (entity, salt), e.g. a user's usual shop of a kind.
    Vectorized; ``habit_of`` is the same for plain ints."""
    return (np.asarray(entity, dtype=np.int64) * _HABIT_A + np.asarray(salt) * _HABIT_B) % _HABIT_M


def habit_of(entity: int, salt: int) -> int:
    return (entity * _HABIT_A + salt * _HABIT_B) % _HABIT_M


@dataclass
class Population:
    """Users, their cards and their habits. The ``current_*`` arrays, ``away``, ``deleted``,
    ``announced`` and the home and segment arrays change as the simulation runs."""

    user_ids: list[str]
    card_ids: list[str]
    card_start: np.ndarray  # (U,) first card of each user; cards are contiguous
    card_count: np.ndarray  # (U,) 1 or 2
    card_user: np.ndarray  # (C,) owner of each card
    home_place: np.ndarray  # (U,)
    home_lat: np.ndarray
    home_lon: np.ndarray
    currency: np.ndarray  # (U,) index into ``currencies``
    currencies: list[str]
    segment: np.ndarray  # (U,) index into SEGMENTS
    account_age_days: np.ndarray  # (U,) at the start of the stream
    typical_amount: np.ndarray  # (U,) median amount
    activity: np.ndarray  # (U,) relative activity, mean 1
    activity_cdf: np.ndarray  # (U,) cumulative activity, for sampling users
    online_affinity: np.ndarray  # (U,) multiplies each category's online share
    spend_cdf: np.ndarray  # (U, K) cumulative merchant-category preferences
    interest_cdf: np.ndarray  # (U, I) cumulative item-category preferences
    current_place: np.ndarray  # (U,) where the user is now (home or a trip)
    current_lat: np.ndarray
    current_lon: np.ndarray
    away: np.ndarray  # (U,) bool: on a trip
    deleted: np.ndarray  # (U,) bool: profile deleted, no more activity
    announced: np.ndarray  # (U,) bool: a profile has been emitted

    @property
    def size(self) -> int:
        return len(self.user_ids)

    def sample_activity(
        self, rng: np.random.Generator, t0: int, t1: int, per_user_day: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(users, times) in [t0, t1) of a Poisson process of ``per_user_day`` events per user
        per day, scaled by each user's activity and thinned by the diurnal curve where they are.
        Deleted users do nothing."""
        scale = per_user_day * self.activity_cdf[-1] / DIURNAL.mean() * (t1 - t0) / DAY_MS
        n = rng.poisson(scale)
        users = np.searchsorted(self.activity_cdf, rng.random(n) * self.activity_cdf[-1], "right")
        users = np.minimum(users, self.size - 1)
        times = rng.integers(t0, t1, n)
        hour = (times // HOUR_MS + _PLACE_UTC_OFFSET[self.current_place[users]]) % 24
        keep = (rng.random(n) < DIURNAL[hour]) & ~self.deleted[users]
        return users[keep], times[keep]


@dataclass
class Merchants:
    ids: list[str]
    category: np.ndarray  # (M,) index into MERCHANT_CATEGORIES
    place: np.ndarray  # (M,) where the shop is (online merchants: their head office)
    lat: np.ndarray
    lon: np.ndarray
    online: np.ndarray  # (M,) bool
    pos_table: np.ndarray  # merchant numbers ordered by (place, category)
    pos_start: np.ndarray  # (P, K) offset into pos_table
    pos_count: np.ndarray  # (P, K)
    online_table: np.ndarray  # online merchant numbers ordered by category
    online_start: np.ndarray  # (K,)
    online_count: np.ndarray  # (K,)

    def pick_pos(self, place: Any, category: Any, index: Any) -> Any:
        """The ``index``-th shop (modulo their number) of ``category`` in ``place``.

        Works on scalars and on arrays alike; every (place, in-person category) has a shop.
        """
        count = self.pos_count[place, category]
        return self.pos_table[self.pos_start[place, category] + index % count]

    def pick_online(self, category: Any, index: Any) -> Any:
        """The ``index``-th online merchant (modulo their number) of ``category``."""
        return self.online_table[self.online_start[category] + index % self.online_count[category]]


@dataclass
class Catalog:
    ids: list[str]
    category: np.ndarray  # (N,) index into ITEM_CATEGORIES
    niche: np.ndarray  # (N,) sub-style within the category
    category_cdf: list[float]  # global popularity of categories, cumulative
    # Per (category, niche): the items and their cumulative popularity, for bisect.
    niche_items: list[list[list[int]]]
    niche_cdf: list[list[list[float]]]


@dataclass
class World:
    population: Population
    merchants: Merchants
    catalog: Catalog

    @classmethod
    def build(cls, config: GeneratorConfig, rng: np.random.Generator) -> World:
        return cls(
            population=_build_population(config, rng),
            merchants=_build_merchants(config, rng),
            catalog=_build_catalog(config, rng),
        )


def _build_population(config: GeneratorConfig, rng: np.random.Generator) -> Population:
    n = config.users
    place_lat, place_lon, _ = place_arrays()
    residents = np.array([p.residents for p in PLACES])
    home_place = rng.choice(len(PLACES), size=n, p=residents / residents.sum())
    home_lat = np.round(place_lat[home_place] + rng.normal(0, CITY_SPREAD_DEG, n), 5)
    home_lon = np.round(place_lon[home_place] + rng.normal(0, CITY_SPREAD_DEG, n), 5)
    currencies = sorted({p.currency for p in PLACES if p.residents > 0})
    currency_of_place = np.array(
        [currencies.index(p.currency) if p.residents else 0 for p in PLACES]
    )

    shares = np.array([s.share for s in SEGMENTS])
    segment = rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum())
    spend = np.array([s.spend for s in SEGMENTS])[segment]
    age = np.where(
        segment == SEGMENT_NAMES.index("student"),
        rng.exponential(500.0, n),
        rng.lognormal(np.log(1800.0), 0.8, n),
    )
    brand_new = rng.random(n) < 0.04
    age = np.where(brand_new, rng.integers(0, 60, n), age)
    age = np.clip(age, 0, 20_000).astype(np.int64)

    activity = rng.lognormal(0.0, 0.6, n) * np.array([s.activity for s in SEGMENTS])[segment]
    activity /= activity.mean()

    base = np.array([c.share for c in MERCHANT_CATEGORIES])
    spend_pref = rng.dirichlet(20.0 * base / base.sum(), size=n)
    interest_base = 1.0 / np.arange(1, len(ITEM_CATEGORIES) + 1) ** 0.7
    interest = rng.dirichlet(2.5 * interest_base / interest_base.sum(), size=n)

    card_count = 1 + (rng.random(n) < 0.35).astype(np.int64)
    card_start = np.concatenate([[0], np.cumsum(card_count)[:-1]])
    n_cards = int(card_count.sum())

    return Population(
        user_ids=id_format("u", n),
        card_ids=id_format("c", n_cards),
        card_start=card_start,
        card_count=card_count,
        card_user=np.repeat(np.arange(n), card_count),
        home_place=home_place,
        home_lat=home_lat,
        home_lon=home_lon,
        currency=currency_of_place[home_place],
        currencies=currencies,
        segment=segment,
        account_age_days=age,
        typical_amount=TYPICAL_AMOUNT * spend * rng.lognormal(0.0, 0.45, n),
        activity=activity,
        activity_cdf=np.cumsum(activity),
        online_affinity=rng.lognormal(0.0, 0.5, n),
        spend_cdf=_cdf_rows(spend_pref),
        interest_cdf=_cdf_rows(interest),
        current_place=home_place.copy(),
        current_lat=home_lat.copy(),
        current_lon=home_lon.copy(),
        away=np.zeros(n, dtype=bool),
        deleted=np.zeros(n, dtype=bool),
        announced=np.zeros(n, dtype=bool),
    )


def _cdf_rows(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    return cdf.astype(np.float32)


def _build_merchants(config: GeneratorConfig, rng: np.random.Generator) -> Merchants:
    n_places, n_cats = len(PLACES), len(MERCHANT_CATEGORIES)
    n_online = max(3 * len(ONLINE_CATEGORIES), config.merchants // 10)
    minimum = n_places * len(POS_CATEGORIES) + n_online
    if config.merchants < minimum:
        raise ConfigError(
            f"merchants must be at least {minimum} (one shop of every kind in every place, "
            f"plus online merchants), got {config.merchants}"
        )
    place_lat, place_lon, _ = place_arrays()
    share = np.array([c.share for c in MERCHANT_CATEGORIES])

    # One shop of every in-person category in every place, the rest where people are.
    pos_place = [np.repeat(np.arange(n_places), len(POS_CATEGORIES))]
    pos_cat = [np.tile(POS_CATEGORIES, n_places)]
    extra = config.merchants - minimum
    presence = np.array([p.residents + 0.4 * p.tourism + 0.5 * p.fraud for p in PLACES])
    pos_weight = share[POS_CATEGORIES] * (1.0 - ONLINE_SHARE[POS_CATEGORIES])
    pos_place.append(rng.choice(n_places, size=extra, p=presence / presence.sum()))
    pos_cat.append(rng.choice(POS_CATEGORIES, size=extra, p=pos_weight / pos_weight.sum()))
    # Online merchants: at least three per category that is ever paid online.
    online_weight = share[ONLINE_CATEGORIES] * ONLINE_SHARE[ONLINE_CATEGORIES]
    online_cat = np.concatenate(
        [
            np.repeat(ONLINE_CATEGORIES, 3),
            rng.choice(
                ONLINE_CATEGORIES,
                size=n_online - 3 * len(ONLINE_CATEGORIES),
                p=online_weight / online_weight.sum(),
            ),
        ]
    )
    residents = np.array([p.residents for p in PLACES])
    online_place = rng.choice(n_places, size=n_online, p=residents / residents.sum())

    place = np.concatenate([*pos_place, online_place])
    category = np.concatenate([*pos_cat, online_cat])
    online = np.zeros(len(place), dtype=bool)
    online[-n_online:] = True
    # Shuffle so merchant numbers say nothing about kind or place.
    order = rng.permutation(len(place))
    place, category, online = place[order], category[order], online[order]
    spread = np.where(online, 0.02, CITY_SPREAD_DEG)
    lat = np.round(place_lat[place] + rng.normal(0, 1, len(place)) * spread, 5)
    lon = np.round(place_lon[place] + rng.normal(0, 1, len(place)) * spread, 5)

    pos_start, pos_count, pos_table = _table(
        np.flatnonzero(~online), place[~online] * n_cats + category[~online], n_places * n_cats
    )
    online_start, online_count, online_table = _table(
        np.flatnonzero(online), category[online], n_cats
    )
    return Merchants(
        ids=id_format("m", len(place)),
        category=category,
        place=place,
        lat=lat,
        lon=lon,
        online=online,
        pos_table=pos_table,
        pos_start=pos_start.reshape(n_places, n_cats),
        pos_count=pos_count.reshape(n_places, n_cats),
        online_table=online_table,
        online_start=online_start,
        online_count=online_count,
    )


def _table(members: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """Members ordered by group, with each group's offset and size."""
    order = np.argsort(group, kind="stable")
    count = np.bincount(group, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return start, count, members[order]


def _build_catalog(config: GeneratorConfig, rng: np.random.Generator) -> Catalog:
    n, n_cats = config.items, len(ITEM_CATEGORIES)
    popularity = 1.0 / np.arange(1, n_cats + 1) ** 0.7
    popularity /= popularity.sum()
    # Bigger categories hold more items, but less than in proportion to their popularity.
    size = np.sqrt(popularity)
    category = rng.choice(n_cats, size=n, p=size / size.sum())
    niche = rng.integers(0, NICHES_PER_CATEGORY, n)
    niche_items: list[list[list[int]]] = [
        [[] for _ in range(NICHES_PER_CATEGORY)] for _ in range(n_cats)
    ]
    for item, (c, k) in enumerate(zip(category.tolist(), niche.tolist(), strict=True)):
        niche_items[c][k].append(item)
    niche_cdf: list[list[list[float]]] = []
    for c in range(n_cats):
        row = []
        for k in range(NICHES_PER_CATEGORY):
            items = niche_items[c][k]
            rng.shuffle(items)  # popularity rank is unrelated to item number
            weights = 1.0 / np.arange(1, len(items) + 1) ** ITEM_ZIPF_EXPONENT
            row.append((np.cumsum(weights) / weights.sum()).tolist() if items else [])
        niche_cdf.append(row)
    _fill_empty_niches(niche_items, niche_cdf, n)
    return Catalog(
        ids=id_format("i", n),
        category=category,
        niche=niche,
        category_cdf=np.cumsum(popularity).tolist(),
        niche_items=niche_items,
        niche_cdf=niche_cdf,
    )


def _fill_empty_niches(
    niche_items: list[list[list[int]]], niche_cdf: list[list[list[float]]], n_items: int
) -> None:
    """A small catalog leaves niches (even categories) empty: they borrow the category's
    items, or the whole catalog's, so sampling never meets an empty niche."""
    everything = list(range(n_items))
    for c, niches in enumerate(niche_items):
        pooled = sorted(item for items in niches for item in items) or everything
        for k, items in enumerate(niches):
            if not items:
                niches[k] = pooled
                niche_cdf[c][k] = (np.arange(1, len(pooled) + 1) / len(pooled)).tolist()
