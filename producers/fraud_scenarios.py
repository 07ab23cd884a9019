"""Labeled fraud: scripted scenarios on a victim's card, on top of the card's legit activity.

The truth never enters the events; every fraudulent transaction gets a ``FraudLabel`` that goes to
``labels.jsonl`` (and optionally the fraud-labels topic). Unlabeled transactions are legit.

Scenarios and their signatures (docs/generator.md has the numbers):

- ``card_testing``: 3-15 small amounts (0.50-5.00, often exactly 1.00) seconds apart (a script)
  or minutes apart (a patient tester) at one to three online merchants (sometimes fuel pumps),
  through a proxy near the victim or from a fraud place; half end with one large online purchase
  within the hour.
- ``account_takeover``: the card suddenly pays from a place more than 1500 km from home, maybe a
  small probe first, then 2-8 large amounts (electronics, jewelry, gift cards, travel) over an
  hour or two, while the real user keeps paying at home.
- ``merchant_spree``: 8-25 in-person payments at as many different shops within a few hours,
  moderate to high amounts, in the victim's city or elsewhere.

The scenario rate is set so fraudulent transactions are ``fraud_rate`` of all transactions.
Scenarios start at any hour (legit activity follows the day), which is realistic and one more
weak signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal, cast

import msgspec
import numpy as np

from producers.config import DAY_MS, SCENARIOS, GeneratorConfig
from producers.geography import CITY_SPREAD_DEG, PLACES, distance_matrix_km, place_arrays
from producers.records import Drafts, Stream
from producers.transactions import DEVICE_SPREAD_DEG, TransactionMaker, expected_legit_per_day
from producers.world import CATEGORY_INDEX, World

Scenario = Literal["card_testing", "account_takeover", "merchant_spree"]
Step = tuple[int, int, float, float, float, bool]  # (time, merchant, amount, lat, lon, online)
FAR_KM = 1500.0  # an account takeover pays at least this far from the victim's home


class FraudLabel(msgspec.Struct, frozen=True):
    """The ground truth for one fraudulent transaction (``labels.jsonl``, topic fraud-labels)."""

    event_id: str
    card_id: str
    user_id: str
    scenario: Scenario
    scenario_id: str  # the transactions of one scenario instance share it
    event_time: int
    label: int = 1
    merchant_id: str = ""  # empty in files written before it was added


# Expected fraudulent transactions per scenario instance (see the scripts below).
MEAN_TXNS = {"card_testing": 9.0 + 0.5, "account_takeover": 0.5 + 5.0, "merchant_spree": 16.5}

_TESTING_CATEGORIES = [CATEGORY_INDEX["digital_goods"], CATEGORY_INDEX["online_retail"]]
_CASHOUT_CATEGORIES = [CATEGORY_INDEX["electronics"], CATEGORY_INDEX["online_retail"]]
_TAKEOVER_CATEGORIES = [
    CATEGORY_INDEX[c]
    for c in ("electronics", "jewelry", "digital_goods", "travel", "online_retail")
]
_TAKEOVER_WEIGHTS = [0.35, 0.15, 0.2, 0.15, 0.15]
_SPREE_CATEGORIES = [
    CATEGORY_INDEX[c]
    for c in ("electronics", "clothing", "jewelry", "grocery", "fuel", "pharmacy", "restaurants")
]
_SPREE_WEIGHTS = [0.25, 0.2, 0.1, 0.15, 0.1, 0.1, 0.1]
# Paid online in a takeover (travel is booked online); the others online 60% of the time.
_ONLINE_ONLY = {CATEGORY_INDEX[c] for c in ("digital_goods", "online_retail", "travel")}


class FraudSource:
    """Starts scenario instances as a Poisson process and scripts their transactions."""

    def __init__(
        self,
        world: World,
        config: GeneratorConfig,
        rng: np.random.Generator,
        maker: TransactionMaker,
        tag: str,
    ) -> None:
        self.world = world
        self.rng = rng
        self.maker = maker
        self._tag = tag
        self._count = 0
        weights = np.array([config.scenario_weights.get(s, 0.0) for s in SCENARIOS])
        self._scenario_p = weights / weights.sum()
        mean_txns = float(self._scenario_p @ np.array([MEAN_TXNS[s] for s in SCENARIOS]))
        fraud_per_day = expected_legit_per_day(config) * config.fraud_rate / (1 - config.fraud_rate)
        self.scenarios_per_day = fraud_per_day / mean_txns
        pop = world.population
        # Fraud rings favour young accounts a little: a weak signal, as in real data.
        young = pop.account_age_days[pop.card_user] < 365
        self._card_cdf = np.cumsum(np.where(young, 2.5, 1.0))
        self._lat, self._lon, _ = place_arrays()
        self._distance = distance_matrix_km()
        self._fraud_weight = np.array([p.fraud for p in PLACES])
        self._scripts: dict[str, Callable[[int, int], Iterator[Step]]] = {
            "card_testing": self._card_testing,
            "account_takeover": self._account_takeover,
            "merchant_spree": self._merchant_spree,
        }

    def generate(self, t0: int, t1: int, drafts: Drafts) -> None:
        rng = self.rng
        n = rng.poisson(self.scenarios_per_day * (t1 - t0) / DAY_MS)
        for _ in range(n):
            scenario = cast(
                Scenario, SCENARIOS[int(rng.choice(len(SCENARIOS), p=self._scenario_p))]
            )
            card = self._victim()
            if card is None:
                continue
            start = int(rng.integers(t0, t1))
            self._count += 1
            scenario_id = f"fraud-{self._tag}-{self._count}"
            for time, merchant, amount, lat, lon, online in self._scripts[scenario](card, start):
                txn = self.maker.make(time, card, merchant, amount, lat, lon, online)
                label = FraudLabel(
                    txn.event_id,
                    txn.card_id,
                    txn.user_id,
                    scenario,
                    scenario_id,
                    time,
                    merchant_id=txn.merchant_id,
                )
                user = int(self.world.population.card_user[card])
                drafts.add(time, Stream.TRANSACTIONS, txn.card_id, txn, user, label)

    def _victim(self) -> int | None:
        pop = self.world.population
        for _ in range(10):
            card = int(
                np.searchsorted(self._card_cdf, self.rng.random() * self._card_cdf[-1], "right")
            )
            if not pop.deleted[pop.card_user[card]]:
                return card
        return None

    def _near(self, place: int, spread: float) -> tuple[float, float]:
        return (
            float(self._lat[place] + self.rng.normal(0.0, spread)),
            float(self._lon[place] + self.rng.normal(0.0, spread)),
        )

    def _fraud_place(self, exclude_within_km_of: int | None = None) -> int:
        weights = self._fraud_weight.copy()
        if exclude_within_km_of is not None:
            weights[self._distance[exclude_within_km_of] < FAR_KM] = 0.0
            if weights.sum() == 0:
                weights = self._fraud_weight.copy()
        return int(self.rng.choice(len(PLACES), p=weights / weights.sum()))

    def _any(self) -> int:
        """A random shop index for ``pick_pos`` / ``pick_online`` (taken modulo their number)."""
        return int(self.rng.integers(1 << 40))

    def _in_person(self, time: int, merchant: int, amount: float) -> Step:
        merchants = self.world.merchants
        return time, merchant, amount, merchants.lat[merchant], merchants.lon[merchant], False

    # Each script yields its steps in time order.

    def _card_testing(self, card: int, time: int) -> Iterator[Step]:
        rng, merchants = self.rng, self.world.merchants
        user = self.world.population.card_user[card]
        local = rng.random() < 0.6  # through a proxy near the victim, or from anywhere
        place = int(self.world.population.current_place[user]) if local else self._fraud_place()
        at_pumps = rng.random() < 0.15  # fuel pumps accept small authorizations unattended
        if at_pumps:
            shops = [int(merchants.pick_pos(place, CATEGORY_INDEX["fuel"], self._any()))]
        else:
            categories = rng.choice(_TESTING_CATEGORIES, size=int(rng.integers(1, 4)))
            shops = [int(merchants.pick_online(c, self._any())) for c in categories]
        device_lat, device_lon = self._near(place, CITY_SPREAD_DEG)
        fast = rng.random() < 0.5  # a script, or a patient tester staying under velocity rules
        for _ in range(int(rng.integers(3, 16))):
            merchant = shops[int(rng.integers(len(shops)))]
            amount = 1.0 if rng.random() < 0.2 else float(rng.uniform(0.5, 5.0))
            if at_pumps:
                yield self._in_person(time, merchant, amount)
            else:
                yield time, merchant, amount, device_lat, device_lon, True
            gap = rng.exponential(20_000) + 1_000 if fast else rng.exponential(150_000) + 10_000
            time += int(gap)
        if rng.random() < 0.5:  # cash out
            time += int(rng.exponential(10 * 60_000)) + 30_000
            merchant = int(merchants.pick_online(rng.choice(_CASHOUT_CATEGORIES), self._any()))
            amount = float(min(rng.lognormal(np.log(700.0), 0.5), 5000.0))
            yield time, merchant, amount, device_lat, device_lon, True

    def _account_takeover(self, card: int, time: int) -> Iterator[Step]:
        rng, merchants, pop = self.rng, self.world.merchants, self.world.population
        user = pop.card_user[card]
        place = self._fraud_place(exclude_within_km_of=int(pop.home_place[user]))
        device_lat, device_lon = self._near(place, DEVICE_SPREAD_DEG * 3)
        if rng.random() < 0.5:  # a small probe first
            merchant = int(merchants.pick_online(CATEGORY_INDEX["digital_goods"], self._any()))
            yield time, merchant, float(rng.uniform(5.0, 50.0)), device_lat, device_lon, True
            time += int(rng.exponential(8 * 60_000)) + 30_000
        typical = float(pop.typical_amount[user])
        for _ in range(int(rng.integers(2, 9))):
            category = int(rng.choice(_TAKEOVER_CATEGORIES, p=_TAKEOVER_WEIGHTS))
            online = category in _ONLINE_ONLY or rng.random() < 0.6
            amount = max(
                typical * rng.lognormal(np.log(5.0), 0.6), rng.lognormal(np.log(250.0), 0.7)
            )
            amount = float(min(amount, 8000.0))
            if online:
                merchant = int(merchants.pick_online(category, self._any()))
                yield time, merchant, amount, device_lat, device_lon, True
            else:
                yield self._in_person(
                    time, int(merchants.pick_pos(place, category, self._any())), amount
                )
            time += int(rng.exponential(12 * 60_000)) + 30_000

    def _merchant_spree(self, card: int, time: int) -> Iterator[Step]:
        rng, merchants, pop = self.rng, self.world.merchants, self.world.population
        user = pop.card_user[card]
        place = int(pop.home_place[user]) if rng.random() < 0.7 else self._fraud_place()
        # Every shop of the spree's kinds in the place, each kind weighted as a whole.
        shops, weights = [], []
        for category, weight in zip(_SPREE_CATEGORIES, _SPREE_WEIGHTS, strict=True):
            start, count = (
                merchants.pos_start[place, category],
                merchants.pos_count[place, category],
            )
            shops.extend(merchants.pos_table[start : start + count].tolist())
            weights.extend([weight / count] * count)
        p = np.array(weights) / sum(weights)
        n = int(rng.integers(8, 26))
        distinct = rng.choice(shops, size=min(n, len(shops)), replace=False, p=p).tolist()
        visits = distinct + rng.choice(shops, size=n - len(distinct), p=p).tolist()
        for merchant in visits:
            amount = float(min(rng.lognormal(np.log(140.0), 0.7), 3000.0))
            yield self._in_person(time, merchant, amount)
            time += int(rng.exponential(6 * 60_000)) + 20_000
