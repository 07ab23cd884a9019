"""Legit card transactions: everyday spending, trips, and bursts that look a little like fraud.

Everyday spending is a Poisson process per user, thinned by a diurnal curve at the user's current
location and drawn for a whole chunk at once with numpy. Each transaction picks a category from
the user's habits, a channel, a shop (usually the user's usual one for that category nearby) and
an amount around the user's typical amount.

The noise that keeps fraud from being trivially separable is legit too:

- trips: for days at a time a user pays far from home (``travel`` and leisure categories);
- shopping trips: several shops in a couple of hours, like a slow merchant spree;
- in-app bursts: several small online amounts within minutes, like card testing.
"""

from __future__ import annotations

import heapq

import numpy as np

from contracts.events import Transaction
from producers.config import DAY_MS, GeneratorConfig
from producers.geography import CITY_SPREAD_DEG, PLACES, place_arrays
from producers.records import Drafts, EventIds, Stream
from producers.world import (
    AMOUNT_MULTIPLIER,
    AMOUNT_SIGMA,
    CATEGORY_INDEX,
    CATEGORY_NAMES,
    ONLINE_SHARE,
    SEGMENTS,
    World,
    habit_index,
)

HABIT_SHARE = 0.65  # share of in-person payments at the user's usual shop for the category
DEVICE_SPREAD_DEG = 0.03  # where an online payment is geolocated, around the payer
# On a trip, half of the payments are leisure: these categories, in these proportions.
TRIP_CATEGORIES = np.array(
    [CATEGORY_INDEX[c] for c in ("restaurants", "travel", "entertainment", "transit", "coffee")]
)
TRIP_WEIGHTS = np.array([0.35, 0.2, 0.15, 0.15, 0.15])
SHOPPING_CATEGORIES = [
    CATEGORY_INDEX[c]
    for c in ("clothing", "restaurants", "coffee", "entertainment", "electronics", "pharmacy")
]
SHOPPING_WEIGHTS = [0.35, 0.2, 0.15, 0.1, 0.1, 0.1]
APP_PRICES = [0.99, 1.99, 2.99, 4.99, 9.99, 19.99]
APP_PRICE_WEIGHTS = [0.3, 0.2, 0.15, 0.2, 0.1, 0.05]
SHOPPING_SHARE = 0.5  # of legit bursts; the rest are in-app bursts
MEAN_BURST_SIZE = SHOPPING_SHARE * 6.5 + (1 - SHOPPING_SHARE) * 7.5


def expected_legit_per_day(config: GeneratorConfig) -> float:
    """Expected legit transactions per simulated day, bursts included."""
    everyday = config.txns_per_user_day * config.users  # activity has mean 1
    bursts = config.legit_burst_rate * config.users * MEAN_BURST_SIZE
    return everyday + bursts if config.txns_per_user_day > 0 else 0.0


class TransactionMaker:
    """Builds ``Transaction`` structs for legit and fraud sources alike."""

    def __init__(self, world: World, ids: EventIds) -> None:
        self.world = world
        self.ids = ids
        pop = world.population
        self._currency = [pop.currencies[c] for c in pop.currency.tolist()]

    def make(
        self,
        time: int,
        card: int,
        merchant: int,
        amount: float,
        lat: float,
        lon: float,
        online: bool,
    ) -> Transaction:
        pop, merchants = self.world.population, self.world.merchants
        user = int(pop.card_user[card])
        return Transaction(
            self.ids.one(),
            pop.card_ids[card],
            pop.user_ids[user],
            merchants.ids[merchant],
            CATEGORY_NAMES[merchants.category[merchant]],
            round(float(amount), 2),
            self._currency[user],
            round(float(lat), 5),
            round(float(lon), 5),
            time,
            "online" if online else "pos",
        )

    def add(
        self,
        drafts: Drafts,
        time: int,
        card: int,
        merchant: int,
        amount: float,
        lat: float,
        lon: float,
        online: bool,
    ) -> None:
        """Make a legit transaction and add it to ``drafts``."""
        txn = self.make(time, card, merchant, amount, lat, lon, online)
        user = int(self.world.population.card_user[card])
        drafts.add(time, Stream.TRANSACTIONS, txn.card_id, txn, user)

    def add_many(
        self,
        drafts: Drafts,
        times: np.ndarray,
        users: np.ndarray,
        cards: np.ndarray,
        merchants: np.ndarray,
        amounts: np.ndarray,
        lats: np.ndarray,
        lons: np.ndarray,
        online: np.ndarray,
    ) -> None:
        """The vectorized path: one struct per row, no per-row numpy calls."""
        pop, m = self.world.population, self.world.merchants
        card_ids, user_ids, merchant_ids = pop.card_ids, pop.user_ids, m.ids
        currency = self._currency
        category = m.category
        card_keys = [card_ids[c] for c in cards.tolist()]
        events = [
            Transaction(
                event_id,
                card_key,
                user_ids[u],
                merchant_ids[mi],
                CATEGORY_NAMES[k],
                a,
                currency[u],
                la,
                lo,
                t,
                "online" if o else "pos",
            )
            for event_id, card_key, u, mi, k, a, la, lo, t, o in zip(
                self.ids.take(len(times)),
                card_keys,
                users.tolist(),
                merchants.tolist(),
                category[merchants].tolist(),
                np.round(amounts, 2).tolist(),
                np.round(lats, 5).tolist(),
                np.round(lons, 5).tolist(),
                times.tolist(),
                online.tolist(),
                strict=True,
            )
        ]
        drafts.extend(times.tolist(), Stream.TRANSACTIONS, card_keys, events, users.tolist())


class TripPlanner:
    """Legit trips: a user's current place moves for a few days, then comes home."""

    def __init__(self, world: World, config: GeneratorConfig, rng: np.random.Generator) -> None:
        self.world = world
        self.rng = rng
        self.rate = config.travel_rate
        self._travel = np.array([s.travel for s in SEGMENTS])
        self._returns: list[tuple[int, int]] = []  # (time back home, user)
        self._lat, self._lon, _ = place_arrays()
        self._tourism = np.array([p.tourism for p in PLACES])

    def advance(self, t0: int, t1: int) -> None:
        """Bring back the users whose trip ended before ``t0``; start trips in [t0, t1)."""
        pop = self.world.population
        while self._returns and self._returns[0][0] <= t0:
            _, user = heapq.heappop(self._returns)
            pop.away[user] = False
            pop.current_place[user] = pop.home_place[user]
            pop.current_lat[user] = pop.home_lat[user]
            pop.current_lon[user] = pop.home_lon[user]
        max_travel = self._travel.max()
        expected = self.rate * pop.size * max_travel * (t1 - t0) / DAY_MS
        n = self.rng.poisson(expected)
        if n == 0:
            return
        users = self.rng.integers(0, pop.size, n)
        accept = self.rng.random(n) < self._travel[pop.segment[users]] / max_travel
        users = np.unique(users[accept & ~pop.away[users] & ~pop.deleted[users]])
        for user in users.tolist():
            weights = self._tourism.copy()
            weights[pop.home_place[user]] = 0.0
            dest = int(self.rng.choice(len(PLACES), p=weights / weights.sum()))
            days = float(np.clip(self.rng.lognormal(np.log(4.0), 0.6), 1.0, 21.0))
            pop.away[user] = True
            pop.current_place[user] = dest
            pop.current_lat[user] = self._lat[dest] + self.rng.normal(0, CITY_SPREAD_DEG)
            pop.current_lon[user] = self._lon[dest] + self.rng.normal(0, CITY_SPREAD_DEG)
            heapq.heappush(self._returns, (t0 + int(days * DAY_MS), user))


class TransactionSource:
    """Legit transactions of one chunk of simulated time."""

    def __init__(
        self,
        world: World,
        config: GeneratorConfig,
        rng: np.random.Generator,
        maker: TransactionMaker,
        trips_rng: np.random.Generator,
    ) -> None:
        self.world = world
        self.config = config
        self.rng = rng
        self.maker = maker
        self.trips = TripPlanner(world, config, trips_rng)

    def generate(self, t0: int, t1: int, drafts: Drafts) -> None:
        self.trips.advance(t0, t1)
        if self.config.txns_per_user_day > 0:
            self._everyday(t0, t1, drafts)
            self._bursts(t0, t1, drafts)

    def _everyday(self, t0: int, t1: int, drafts: Drafts) -> None:
        pop, merchants, rng = self.world.population, self.world.merchants, self.rng
        users, times = pop.sample_activity(rng, t0, t1, self.config.txns_per_user_day)
        n = len(users)
        if n == 0:
            return
        u = rng.random(n).astype(np.float32)
        category = np.minimum(
            (pop.spend_cdf[users] < u[:, None]).sum(axis=1), len(CATEGORY_NAMES) - 1
        )
        leisure = pop.away[users] & (rng.random(n) < 0.5)
        category[leisure] = rng.choice(TRIP_CATEGORIES, size=int(leisure.sum()), p=TRIP_WEIGHTS)
        share = ONLINE_SHARE[category]
        online_p = np.where(
            (share > 0) & (share < 1), np.minimum(share * pop.online_affinity[users], 0.95), share
        )
        online = rng.random(n) < online_p
        # The usual shop for the category at home, any shop of the kind otherwise.
        usual = (rng.random(n) < HABIT_SHARE) & ~pop.away[users]
        index = np.where(usual, habit_index(users, category), rng.integers(0, 1 << 40, n))
        merchant = np.empty(n, dtype=np.int64)
        merchant[online] = merchants.pick_online(category[online], index[online])
        pos = ~online
        merchant[pos] = merchants.pick_pos(pop.current_place[users[pos]], category[pos], index[pos])

        amount = pop.typical_amount[users] * AMOUNT_MULTIPLIER[category]
        amount = np.maximum(amount * np.exp(rng.normal(0.0, 1.0, n) * AMOUNT_SIGMA[category]), 0.25)
        jitter = rng.normal(0.0, DEVICE_SPREAD_DEG, (2, n))
        lat = np.where(online, pop.current_lat[users] + jitter[0], merchants.lat[merchant])
        lon = np.where(online, pop.current_lon[users] + jitter[1], merchants.lon[merchant])
        extra_card = (pop.card_count[users] > 1) & (rng.random(n) < 0.4)
        cards = pop.card_start[users] + extra_card
        self.maker.add_many(drafts, times, users, cards, merchant, amount, lat, lon, online)

    def _bursts(self, t0: int, t1: int, drafts: Drafts) -> None:
        """Shopping trips and in-app purchase bursts."""
        pop, rng = self.world.population, self.rng
        users, starts = pop.sample_activity(rng, t0, t1, self.config.legit_burst_rate)
        for user, start in zip(users.tolist(), starts.tolist(), strict=True):
            if rng.random() < SHOPPING_SHARE:
                self._shopping_trip(user, start, drafts)
            else:
                self._in_app_burst(user, start, drafts)

    def _shopping_trip(self, user: int, time: int, drafts: Drafts) -> None:
        """A few different shops within a couple of hours, amounts as usual."""
        pop, merchants, rng = self.world.population, self.world.merchants, self.rng
        card, place = int(pop.card_start[user]), int(pop.current_place[user])
        visited: set[int] = set()
        for _ in range(int(rng.integers(3, 11))):
            category = int(rng.choice(SHOPPING_CATEGORIES, p=SHOPPING_WEIGHTS))
            merchant = int(merchants.pick_pos(place, category, int(rng.integers(1 << 40))))
            if merchant in visited:
                continue
            visited.add(merchant)
            amount = pop.typical_amount[user] * AMOUNT_MULTIPLIER[category]
            amount *= rng.lognormal(0.0, AMOUNT_SIGMA[category])
            lat, lon = merchants.lat[merchant], merchants.lon[merchant]
            self.maker.add(drafts, time, card, merchant, max(amount, 0.25), lat, lon, False)
            time += int(rng.exponential(12 * 60_000)) + 60_000

    def _in_app_burst(self, user: int, time: int, drafts: Drafts) -> None:
        """Several small app-store amounts within minutes, at the user's usual app store."""
        pop, rng = self.world.population, self.rng
        card = int(pop.card_start[user])
        category = CATEGORY_INDEX["digital_goods"]
        merchant = int(self.world.merchants.pick_online(category, habit_index(user, category)))
        for _ in range(int(rng.integers(3, 13))):
            price = float(rng.choice(APP_PRICES, p=APP_PRICE_WEIGHTS))
            lat = pop.current_lat[user] + rng.normal(0.0, DEVICE_SPREAD_DEG)
            lon = pop.current_lon[user] + rng.normal(0.0, DEVICE_SPREAD_DEG)
            self.maker.add(drafts, time, card, merchant, price, lat, lon, True)
            time += int(rng.exponential(60_000)) + 3_000
