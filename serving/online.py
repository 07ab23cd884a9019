"""Features for HTTP requests: the online store's rows, or features computed from the request.

Fraud, per transaction of a request (one Redis round trip for the cards, one for the profiles,
concurrently):

- ``online_store``: the card has a row in the ``fraud`` group: the card's newest features as the
  stream pipeline computed them (for the transaction ``features_event_id`` at
  ``features_event_time``; when that is this transaction, they are exactly its features).
- ``request``: no stored row: the features of this transaction alone, as if it were the card's
  first: counts 1, totals = amount, one merchant, no previous transaction (nulls), the hour and
  channel from the request, and home distance and account age from the user's profile in the
  online store when there is one. The one feature implementation computes them
  (``features.fraud.FraudFeatureEngine``), each transaction in its own empty state. The
  merchant-risk features are null here: serving holds no fraud labels (the consumers do).

Recommendations: the user's row in the ``recsys`` group, or nothing (the ingress then answers
with item popularity); in the same round trip, the top-K the recommendation consumers stored
for the user (``recs`` group, a ``Recommendation`` keyed by the event time of the features it
was ranked from).

The stored payloads are the consumers' ``FeatureRow`` / ``UserFeatureRow`` JSON
(``consumers.pipelines``); this module reads the fields every row has (``event_id``,
``event_time``, ``features``) and ignores the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np

from contracts.events import Recommendation, Transaction, UserProfile
from features.config import FeatureConfig
from features.definitions import FRAUD_FEATURE_NAMES
from features.fraud import FraudFeatureEngine
from features.merchant_risk import append_merchant_risk
from features.patterns import PatternEngine, shipped_rules
from serving.protocol import RecommendationRow, fraud_row_array, recommendation_row
from store.online import FRAUD_GROUP, PROFILE_GROUP, RECS_GROUP, RECSYS_GROUP, OnlineStore, Row

log = logging.getLogger(__name__)

POPULARITY = "item_views_1h"

FeatureSource = Literal["online_store", "request"]


class StoredFeatures(msgspec.Struct, frozen=True):
    """The fields of a stored feature row that serving reads."""

    event_id: str
    event_time: int
    features: dict[str, Any]


_stored_decoder = msgspec.json.Decoder(StoredFeatures)
_profile_decoder = msgspec.json.Decoder(UserProfile)
_recommendation_decoder = msgspec.json.Decoder(Recommendation)


def decode_stored(row: Row | None) -> StoredFeatures | None:
    """A stored row's features, or None when absent or unreadable (logged)."""
    if row is None:
        return None
    try:
        return _stored_decoder.decode(row.payload)
    except msgspec.DecodeError as exc:
        log.warning("unreadable online store row (%s); computing features instead", exc)
        return None


def decode_profile(row: Row | None) -> UserProfile | None:
    if row is None:
        return None
    try:
        return _profile_decoder.decode(row.payload)
    except msgspec.DecodeError as exc:
        log.warning("unreadable profile in the online store (%s); ignoring it", exc)
        return None


@dataclass(frozen=True, slots=True)
class FraudFeatures:
    """The model input for a request's transactions, and where each row came from."""

    rows: np.ndarray  # float32 [B, F], NaN for null
    sources: list[FeatureSource]
    event_ids: list[str]  # the transaction each row's features belong to
    event_times: list[int]

    def as_dict(self, i: int) -> dict[str, float | None]:
        return {
            name: None if np.isnan(v) else float(v)
            for name, v in zip(FRAUD_FEATURE_NAMES, self.rows[i].tolist(), strict=True)
        }


def request_features(
    transactions: Sequence[Transaction],
    profiles: Mapping[str, UserProfile],
    config: FeatureConfig | None = None,
) -> list[tuple[Any, ...]]:
    """Each transaction's features as the first of its card (see the module docstring).

    Pattern features: the shipped rules over that one transaction (a card's first event).
    Merchant risk: null (no labels here; the model reads nulls as missing)."""
    engine = FraudFeatureEngine(config)
    patterns = PatternEngine(shipped_rules(), config)
    rows = []
    for i, tx in enumerate(transactions):
        engine.assign(i)  # its own partition: nothing of the other transactions is seen
        patterns.assign(i)
        profile = profiles.get(tx.user_id)
        card_row = engine.process(i, tx, profile)
        assert card_row is not None  # an empty partition has no watermark: nothing is late
        joined = {} if profile is None else {tx.user_id: profile}
        card_and_patterns = patterns.process_batch(i, (tx,), (card_row,), joined).rows
        (row,) = append_merchant_risk((tx,), card_and_patterns, None)
        assert row is not None
        rows.append(row)
        engine.revoke(i)
        patterns.revoke(i)
    return rows


def assemble_fraud(
    transactions: Sequence[Transaction],
    stored: Mapping[str, StoredFeatures | None],
    profiles: Mapping[str, UserProfile],
    config: FeatureConfig | None = None,
) -> FraudFeatures:
    """Rows for ``transactions``: the card's stored features where ``stored`` has them (and
    they fit the current feature definitions), else features computed from the request."""
    n = len(transactions)
    rows = np.empty((n, len(FRAUD_FEATURE_NAMES)), dtype=np.float32)
    sources: list[FeatureSource] = ["request"] * n
    event_ids = [tx.event_id for tx in transactions]
    event_times = [tx.event_time for tx in transactions]
    missing: list[int] = []
    for i, tx in enumerate(transactions):
        row = stored.get(tx.card_id)
        if row is not None:
            try:
                rows[i] = fraud_row_array(row.features)
            except (KeyError, TypeError, ValueError):
                log.warning("stored features of a card do not fit FRAUD; computing them")
            else:
                sources[i] = "online_store"
                event_ids[i] = row.event_id
                event_times[i] = row.event_time
                continue
        missing.append(i)
    if missing:
        computed = request_features([transactions[i] for i in missing], profiles, config)
        for i, row_values in zip(missing, computed, strict=True):
            rows[i] = [np.nan if v is None else v for v in row_values]
    return FraudFeatures(rows, sources, event_ids, event_times)


async def read_fraud_features(
    store: OnlineStore, transactions: Sequence[Transaction], config: FeatureConfig | None = None
) -> FraudFeatures:
    """The features of ``transactions``: two concurrent round trips to the online store."""
    cards = list(dict.fromkeys(tx.card_id for tx in transactions))
    users = list(dict.fromkeys(tx.user_id for tx in transactions))
    card_rows, profile_rows = await asyncio.gather(
        store.read(FRAUD_GROUP, cards), store.read(PROFILE_GROUP, users)
    )
    stored = {card: decode_stored(row) for card, row in zip(cards, card_rows, strict=True)}
    profiles = {
        user: profile
        for user, row in zip(users, profile_rows, strict=True)
        if (profile := decode_profile(row)) is not None
    }
    return assemble_fraud(transactions, stored, profiles, config)


class RecommendationFeatures(msgspec.Struct, frozen=True):
    """The ``recsys`` group's features, typed (field order = ``RECOMMENDATION_FEATURE_NAMES``)."""

    category_interest: dict[str, float]
    view_count_30m: int
    click_count_5m: int
    recent_items: list[str]
    purchased_items: list[str]


@dataclass(frozen=True, slots=True)
class UserFeatures:
    row: RecommendationRow
    event_time: int


def _user_features(row: Row | None) -> UserFeatures | None:
    """A stored ``recsys`` row's features, or None (absent, or not in RECOMMENDATION's shape)."""
    stored = decode_stored(row)
    if stored is None:
        return None
    try:
        typed = msgspec.convert(stored.features, RecommendationFeatures)
    except msgspec.ValidationError as exc:
        log.warning("stored recsys features do not fit RECOMMENDATION (%s); using popularity", exc)
        return None
    return UserFeatures(recommendation_row(msgspec.structs.asdict(typed)), stored.event_time)


async def read_user_features_and_top_k(
    store: OnlineStore, user_id: str
) -> tuple[UserFeatures | None, Recommendation | None]:
    """The user's stored recommendation features and top-K (each None when absent or
    unreadable), in one round trip."""
    features_row, recs_row = await store.read_keys([(RECSYS_GROUP, user_id), (RECS_GROUP, user_id)])
    features = _user_features(features_row)
    if features is None or recs_row is None:
        return features, None
    try:
        return features, _recommendation_decoder.decode(recs_row.payload)
    except msgspec.DecodeError as exc:
        log.warning("unreadable stored top-K (%s); ranking instead", exc)
        return features, None
