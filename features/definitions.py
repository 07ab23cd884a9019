"""The feature schema in one place: names, order, dtypes, nullability, one-line descriptions.

The model's input order, the online store's fields and docs/features.md all follow these tuples.
A fraud feature row is a tuple in ``FRAUD_FEATURES`` order; a recommendation row is a tuple in
``RECOMMENDATION_FEATURES`` order. Bump ``FEATURE_SET_VERSION`` whenever a definition changes,
so a model trained on one definition is never served another.

The precise definitions (window bounds, ties, nulls, float operations) are in docs/features.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

# 2: the pattern features (PATTERN_FEATURE_RULES) after the card ones; 3: then merchant risk
FEATURE_SET_VERSION = 3

# Windows and horizons of the definitions (milliseconds). Part of the definitions, not settings.
SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

FRAUD_WINDOWS_MS = (MINUTE_MS, 5 * MINUTE_MS, HOUR_MS)  # counts and totals
FRAUD_LONG_WINDOW_MS = DAY_MS  # unique merchants, amount relative to the 24 h mean
INTEREST_WINDOW_MS = 30 * MINUTE_MS  # a user's category views for TF
CLICK_WINDOW_MS = 5 * MINUTE_MS  # click_count_5m: a 5 min hopping window...
CLICK_HOP_MS = MINUTE_MS  # ...that advances every minute
SLICE_MS = MINUTE_MS  # global aggregates are kept per 1-minute slice...
GLOBAL_WINDOW_SLICES = 60  # ...and read as the sum of the last 60 complete slices (1 h)
RECENT_ITEMS = 20  # recent_items keeps the last 20 distinct viewed or clicked items
PURCHASED_ITEMS = 200  # purchased_items keeps the last 200 distinct purchased items
MERCHANT_RISK_WINDOW_DAYS = (1, 7, 30)  # labeled transactions of the days before the delay
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
SPEED_MIN_SECONDS = 60.0  # speed_from_last_transaction_kmh divides by at least one minute

Dtype = Literal["int", "float", "list[str]", "dict[str,float]"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: its name, value type, whether it may be null, and what it means."""

    name: str
    dtype: Dtype
    nullable: bool
    description: str


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """An ordered group of features computed for one entity (the row's key)."""

    name: str
    key: str
    features: tuple[FeatureSpec, ...]
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(f.name for f in self.features)
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name} has duplicate feature names")
        object.__setattr__(self, "names", names)

    def as_dict(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """A row as ``{name: value}`` (for ``FraudScore.features``, JSON, the online store)."""
        if len(row) != len(self.names):
            raise ValueError(f"{self.name} row has {len(row)} values, expected {len(self.names)}")
        return dict(zip(self.names, row, strict=True))


def _f(name: str, dtype: Dtype, nullable: bool, description: str) -> FeatureSpec:
    return FeatureSpec(name, dtype, nullable, description)


FRAUD_CARD = FeatureGroup(
    name="fraud_card",
    key="card_id",
    features=(
        _f("amount", "float", False, "the transaction's amount"),
        _f("transaction_count_1m", "int", False, "card's transactions in (t-1m, t], this one in"),
        _f("transaction_count_5m", "int", False, "card's transactions in (t-5m, t], this one in"),
        _f("transaction_count_1h", "int", False, "card's transactions in (t-1h, t], this one in"),
        _f("total_amount_1m", "float", False, "exact sum of amounts in (t-1m, t]"),
        _f("total_amount_5m", "float", False, "exact sum of amounts in (t-5m, t]"),
        _f("total_amount_1h", "float", False, "exact sum of amounts in (t-1h, t]"),
        _f("unique_merchants_24h", "int", False, "distinct merchant_id in (t-24h, t]"),
        _f("is_new_merchant_24h", "int", False, "1 if no other transaction in (t-24h, t] has it"),
        _f(
            "amount_to_mean_24h",
            "float",
            True,
            "amount / mean amount of the card's other transactions in (t-24h, t]",
        ),
        _f("distance_from_last_transaction_km", "float", True, "haversine km to the previous"),
        _f("seconds_since_last_transaction", "float", True, "seconds since the previous"),
        _f(
            "speed_from_last_transaction_kmh",
            "float",
            True,
            "distance to the previous / max(seconds since it, 60) in km/h",
        ),
        _f("distance_from_home_km", "float", True, "haversine km to the user's profile home"),
        _f("account_age_days", "float", True, "the user's profile account_age_days"),
        _f("hour_of_day_utc", "int", False, "hour of event_time in UTC, 0-23"),
        _f("is_online", "int", False, "1 if channel is online, 0 if pos"),
    ),
)
"""What ``FraudFeatureEngine`` computes per transaction: the first part of a ``FRAUD`` row."""

# Complex event patterns whose matches are model features (features/patterns/, rules in
# rtml_pattern_rules). Each rule named here must be in the rule set with ``feature: true``;
# adding one here changes the model's input (bump FEATURE_SET_VERSION, retrain). Rules not named
# here can still alert without a code change.
PATTERN_FEATURE_RULES = ("card_testing", "impossible_travel", "account_takeover")


def _pattern_features(rule: str) -> tuple[FeatureSpec, FeatureSpec]:
    return (
        _f(f"pattern_{rule}_matched", "int", False, f"1 if {rule} matched in (t-within, t]"),
        _f(f"pattern_{rule}_count", "int", False, f"matches of {rule} ending in (t-within, t]"),
    )


FRAUD_PATTERNS = FeatureGroup(
    name="fraud_patterns",
    key="card_id",
    features=tuple(spec for rule in PATTERN_FEATURE_RULES for spec in _pattern_features(rule)),
)
"""What ``PatternEngine`` adds per transaction: the second part of a ``FRAUD`` row."""

MERCHANT_RISK = FeatureGroup(
    name="merchant_risk",
    key="merchant_id",
    features=tuple(
        _f(
            f"merchant_fraud_share_{days}d",
            "float",
            True,
            f"fraud / all labels of the merchant's transactions of the {days} UTC day(s) up "
            "to t - label delay, decided by then; null if none",
        )
        for days in MERCHANT_RISK_WINDOW_DAYS
    ),
)
"""What ``features.merchant_risk`` adds per transaction from the fraud labels: the last part
of a ``FRAUD`` row."""
MERCHANT_RISK_FEATURE_NAMES = MERCHANT_RISK.names

FRAUD = FeatureGroup(
    name="fraud",
    key="card_id",
    features=FRAUD_CARD.features + FRAUD_PATTERNS.features + MERCHANT_RISK.features,
)

RECOMMENDATION = FeatureGroup(
    name="recommendation",
    key="user_id",
    features=(
        _f(
            "category_interest",
            "dict[str,float]",
            False,
            "L2-normalized TF-IDF of the user's viewed categories in (t-30m, t]; {} if none",
        ),
        _f("view_count_30m", "int", False, "the user's views in (t-30m, t] (TF denominator)"),
        _f("click_count_5m", "int", False, "the user's clicks in [h-5m, h), h = t floored to 1m"),
        _f("recent_items", "list[str]", False, "last 20 distinct viewed/clicked items, newest 1st"),
        _f("purchased_items", "list[str]", False, "last 200 distinct purchased items, newest 1st"),
    ),
)

GLOBAL = FeatureGroup(
    name="global",
    key="category or item_id",
    features=(
        _f("category_views_1h", "int", False, "global views of a category in [h-60m, h)"),
        _f("item_views_1h", "int", False, "global views of an item in [h-60m, h) (popularity)"),
    ),
)

FRAUD_FEATURES = FRAUD.features
FRAUD_FEATURE_NAMES = FRAUD.names
RECOMMENDATION_FEATURES = RECOMMENDATION.features
RECOMMENDATION_FEATURE_NAMES = RECOMMENDATION.names

FraudRow = tuple[Any, ...]
"""Values in ``FRAUD_FEATURE_NAMES`` order: int, float or None as the spec says
(``FraudFeatureEngine`` rows: the ``FRAUD_CARD`` prefix; ``PatternEngine`` appends
``FRAUD_PATTERNS``, ``features.merchant_risk.append_merchant_risk`` then ``MERCHANT_RISK``)."""
RecommendationRow = tuple[Any, ...]
"""Values in ``RECOMMENDATION_FEATURE_NAMES`` order."""

FraudFeatureValues = msgspec.defstruct(
    "FraudFeatureValues", [(name, float | None) for name in FRAUD_FEATURE_NAMES], frozen=True
)
"""A ``FraudRow`` as a struct, built positionally (``FraudFeatureValues(*row)``): it encodes
to the same JSON as the dict of ``FRAUD_FEATURE_NAMES`` to values (the same keys in the same
order) at half the cost, for the records that carry a row (feature rows, scores)."""
