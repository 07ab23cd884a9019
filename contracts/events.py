"""Event contracts: the one definition of every record rtml reads or writes.

JSON, UTF-8. Times are integers in epoch milliseconds. Every event carries ``schema_version``.
The structs validate types and ranges while decoding (msgspec), so a decoded event is a valid one.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

SCHEMA_VERSION = 1

# Bounded strings keep a malicious or broken producer from blowing up keyed state.
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Label = Annotated[str, Meta(min_length=1, max_length=64)]
EpochMs = Annotated[int, Meta(ge=0, le=32_503_680_000_000)]  # up to year 3000
Latitude = Annotated[float, Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Meta(ge=-180.0, le=180.0)]
Amount = Annotated[float, Meta(gt=0.0, le=1e12)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
SchemaVersion = Literal[1]


class Transaction(msgspec.Struct, frozen=True):
    """A card payment. Topic ``transactions``, key ``card_id``."""

    event_id: Id
    card_id: Id
    user_id: Id
    merchant_id: Id
    merchant_category: Label
    amount: Amount
    currency: Currency
    lat: Latitude
    lon: Longitude
    event_time: EpochMs
    channel: Literal["pos", "online"]
    schema_version: SchemaVersion = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # JSON has no NaN, but 1e999 decodes to inf; bounds catch it, this says why.
        if not math.isfinite(self.amount):
            raise ValueError("amount must be finite")


class UserEvent(msgspec.Struct, frozen=True):
    """A user's interaction with an item. Topic ``user-events``, key ``user_id``."""

    event_id: Id
    user_id: Id
    item_id: Id
    category: Label
    event_type: Literal["view", "click", "purchase"]
    event_time: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


class UserProfile(msgspec.Struct, frozen=True):
    """A user's profile. Topic ``user-profiles`` (compacted), key ``user_id``; null deletes."""

    user_id: Id
    home_lat: Latitude
    home_lon: Longitude
    account_age_days: Annotated[int, Meta(ge=0, le=100_000)]
    segment: Label
    updated_at: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


FeatureValues = dict[str, float | None]


class FraudScore(msgspec.Struct, frozen=True):
    """The model's verdict on one transaction. Topic ``fraud-scores``, key ``card_id``.

    ``features`` holds exactly the values the model saw (null where a feature was missing);
    ``ingested_at`` is the input record's Kafka timestamp, so ``scored_at - ingested_at`` is the
    pipeline's latency.
    """

    event_id: Id
    card_id: Id
    score: Probability
    model_version: Label
    features: FeatureValues
    event_time: EpochMs
    ingested_at: EpochMs
    scored_at: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


class AlertReason(msgspec.Struct, frozen=True):
    """One feature that drove a score up: its value and its contribution to the logit."""

    feature: Label
    value: float | None
    contribution: float


class FraudAlert(FraudScore, frozen=True, kw_only=True):
    """A fraud score at or above the alert threshold. Topic ``fraud-alerts``.

    ``alert_type`` tells it from a ``PatternAlert`` on the same topic ("score"; records written
    before it existed have none, which means "score" too).

    ``transaction`` is the scored transaction itself, for the analyst who reviews the case (and
    the merchant its label is about); absent in alerts written before it existed.
    """

    threshold: Probability
    reasons: list[AlertReason]
    transaction: Transaction | None = None
    alert_type: Literal["score"] = "score"


class PatternAlert(msgspec.Struct, frozen=True, kw_only=True):
    """A complex event pattern rule matched on a card. Topic ``fraud-alerts``, key ``card_id``.

    ``event_id``/``event_time``: the transaction that completed the match. ``event_ids``: the
    matched events in event-time order (transaction ids; a profile change is
    ``profile:{user_id}@{updated_at}``). ``matches``: how many matches of the rule that
    transaction completed (``event_ids`` is the earliest-started one). ``rules_version``: the
    rule set's ``version``. See docs/patterns.md.
    """

    alert_type: Literal["pattern"] = "pattern"
    rule: Label
    rules_version: int
    event_id: Id
    card_id: Id
    event_ids: list[str]
    matches: int
    event_time: EpochMs
    ingested_at: EpochMs
    detected_at: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


class _AlertKind(msgspec.Struct):
    alert_type: str = "score"


def fraud_alert_type(data: bytes) -> str:
    """The ``alert_type`` of a fraud-alerts record ("score" for records from before it).
    Raises ``msgspec.DecodeError`` when ``data`` is not a JSON object."""
    return msgspec.json.decode(data, type=_AlertKind).alert_type


def decode_fraud_alert(data: bytes) -> FraudAlert | PatternAlert:
    """A fraud-alerts record: a ``PatternAlert`` when ``alert_type`` is "pattern", else a
    ``FraudAlert`` (also the records from before ``alert_type``)."""
    if fraud_alert_type(data) == "pattern":
        return msgspec.json.decode(data, type=PatternAlert)
    return msgspec.json.decode(data, type=FraudAlert)


class FraudLabel(msgspec.Struct, frozen=True):
    """An analyst's decision on an alerted transaction. Topic ``fraud-labels``, key
    ``merchant_id``.

    ``event_time`` is the transaction's (the labels' windows count transactions by it);
    ``decided_at`` is when the analyst decided: a label counts in the merchant-risk features only
    once it is at least the configured label delay old (chargebacks arrive late).
    """

    event_id: Id
    card_id: Id
    merchant_id: Id
    label: Literal["fraud", "legitimate"]
    event_time: EpochMs
    decided_at: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


class ScoredItem(msgspec.Struct, frozen=True):
    item_id: Id
    score: float


class Recommendation(msgspec.Struct, frozen=True):
    """A user's ranked top-K. Topic ``recommendations``, key ``user_id``."""

    user_id: Id
    items: list[ScoredItem]
    model_version: Label
    event_time: EpochMs
    ingested_at: EpochMs
    produced_at: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


class DeadLetterError(msgspec.Struct, frozen=True):
    kind: str
    message: str


class DeadLetter(msgspec.Struct, frozen=True):
    """A record rtml could not process, with where it came from and why. Topic ``dead-letter``.

    ``payload`` is the raw value as text when it is valid UTF-8, else base64
    (``payload_encoding`` says which); nothing of the original is lost.
    """

    source_topic: str
    partition: int
    offset: int
    key: str | None
    error: DeadLetterError
    payload: str | None
    payload_encoding: Literal["utf-8", "base64", "none"]
    failed_at: EpochMs
    schema_version: SchemaVersion = SCHEMA_VERSION


class OpsAlert(msgspec.Struct, frozen=True):
    """An operational alert changing state. Topic ``ops-alerts``, key ``{rule}:{subject}``.

    One ``firing`` record when a rule's condition has held for its ``for`` duration, one
    ``resolved`` record when it has been clear for its resolve duration; nothing in between.
    ``value`` is the signal when the state changed, ``threshold`` what it was compared with.
    """

    rule: Label
    subject: Annotated[str, Meta(min_length=1, max_length=256)]
    state: Literal["firing", "resolved"]
    severity: Literal["warning", "critical"]
    value: float | None
    threshold: float | None
    message: Annotated[str, Meta(max_length=1000)]
    started_at: EpochMs  # when the condition began (the firing's start, for both states)
    at: EpochMs  # when this state change was decided
    schema_version: SchemaVersion = SCHEMA_VERSION


InputEvent = Transaction | UserEvent | UserProfile
