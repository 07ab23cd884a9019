"""Generated event streams for the feature engine tests (pure; no services).

Streams mix gaps across every window scale (ties, seconds, minutes, an hour, a day, days), put
a share of events out of order (some beyond the allowed lateness, so late), and use few keys,
merchants and items so windows are full and distinct counts collide. Amounts include values
that stress exact summation (full-mantissa fractions, 1e12, subnormals).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from contracts.events import Transaction, UserEvent, UserProfile
from features.config import FeatureConfig
from features.definitions import DAY_MS, HOUR_MS, MINUTE_MS

T0 = 1_700_000_000_000

# (low, high) ms of the gap before the next event, and how often each gap class is drawn.
GAPS = (
    ((0, 0), 3),
    ((1, 30_000), 30),
    ((30_000, 10 * MINUTE_MS), 30),
    ((40 * MINUTE_MS, 90 * MINUTE_MS), 6),
    ((20 * HOUR_MS, 30 * HOUR_MS), 2),
    ((3 * DAY_MS, 9 * DAY_MS), 1),
)

# Tight horizons so trimming, settling and expiry happen within short streams.
SMALL = FeatureConfig(
    allowed_lateness_ms=10 * MINUTE_MS,
    previous_transaction_horizon_ms=DAY_MS + 10 * MINUTE_MS,
    history_horizon_ms=2 * HOUR_MS,
)


class Streams:
    """Deterministic stream factories (pass a seeded ``random.Random``)."""

    @staticmethod
    def times(rng: random.Random, n: int, lateness: int, ooo: float = 0.15) -> list[int]:
        gaps = [g for g, _ in GAPS]
        weights = [w for _, w in GAPS]
        clock = T0
        out = []
        for _ in range(n):
            low, high = rng.choices(gaps, weights)[0]
            clock += rng.randint(low, high)
            if rng.random() < ooo:
                out.append(clock - rng.randint(0, lateness * 3 // 2))  # some beyond lateness
            else:
                out.append(clock)
        return out

    @staticmethod
    def amount(rng: random.Random) -> float:
        r = rng.random()
        if r < 0.5:
            return round(rng.uniform(0.5, 500.0), 2)
        if r < 0.8:
            return rng.random() * 1000.0 + 1e-9  # full 53-bit mantissa
        if r < 0.9:
            return rng.choice([0.1, 0.2, 0.3, 1e12, 1e12 - 0.5, 3.0e-7])
        return rng.choice([5e-324, 1e-300, 2.5e-310]) if r < 0.92 else 7.0

    @classmethod
    def transactions(
        cls,
        rng: random.Random,
        n: int,
        *,
        cards: int = 6,
        lateness: int = 10 * MINUTE_MS,
        ooo: float = 0.15,
    ) -> list[Transaction]:
        out = []
        for i, t in enumerate(cls.times(rng, n, lateness, ooo)):
            card = rng.randrange(cards)
            out.append(
                Transaction(
                    event_id=f"t{i}",
                    card_id=f"card-{card}",
                    user_id=f"user-{card % 4}",
                    merchant_id=f"m{rng.randrange(5)}",
                    merchant_category="grocery",
                    amount=cls.amount(rng),
                    currency="EUR",
                    lat=rng.choice([rng.uniform(-90, 90), 52.52, -52.52]),
                    lon=rng.choice([rng.uniform(-180, 180), 13.405, -166.595]),
                    event_time=t,
                    channel=rng.choice(["pos", "online"]),
                )
            )
        return out

    @staticmethod
    def profiles(rng: random.Random, users: int = 4, updated_at: int = 0) -> dict[str, UserProfile]:
        """Profiles for all but the last user (who has none)."""
        return {
            f"user-{u}": UserProfile(
                user_id=f"user-{u}",
                home_lat=rng.uniform(-90, 90),
                home_lon=rng.uniform(-180, 180),
                account_age_days=rng.randrange(5000),
                segment="retail",
                updated_at=updated_at,
            )
            for u in range(users - 1)
        }

    @classmethod
    def user_events(
        cls,
        rng: random.Random,
        n: int,
        *,
        users: int = 5,
        items: int = 30,
        categories: int = 4,
        lateness: int = 10 * MINUTE_MS,
        ooo: float = 0.15,
        kinds: Sequence[str] = ("view", "view", "view", "click", "click", "purchase"),
    ) -> list[UserEvent]:
        out = []
        for i, t in enumerate(cls.times(rng, n, lateness, ooo)):
            item = rng.randrange(items)
            out.append(
                UserEvent(
                    event_id=f"u{i}",
                    user_id=f"user-{rng.randrange(users)}",
                    item_id=f"item-{item}",
                    category=f"cat-{item % categories}",
                    event_type=rng.choice(kinds),  # type: ignore[arg-type]
                    event_time=t,
                )
            )
        return out


@pytest.fixture(scope="session")
def streams() -> type[Streams]:
    return Streams
