"""The event contracts: valid events of every kind decode; each kind of bad input is rejected
with the dead-letter reason that names what was wrong."""

from __future__ import annotations

import base64

import msgspec
import pytest

from contracts.codec import (
    REASONS,
    EventDecoder,
    dead_letter,
    dead_letter_payload,
    encode,
)
from contracts.events import (
    AlertReason,
    DeadLetter,
    FraudAlert,
    FraudScore,
    Recommendation,
    ScoredItem,
    Transaction,
    UserEvent,
    UserProfile,
)
from rtml.errors import InvalidEvent

TXN = {
    "event_id": "t-1",
    "card_id": "card-1",
    "user_id": "user-1",
    "merchant_id": "m-1",
    "merchant_category": "grocery",
    "amount": 12.5,
    "currency": "EUR",
    "lat": 52.52,
    "lon": 13.405,
    "event_time": 1_700_000_000_000,
    "channel": "pos",
    "schema_version": 1,
}
USER_EVENT = {
    "event_id": "u-1",
    "user_id": "user-1",
    "item_id": "item-9",
    "category": "books",
    "event_type": "view",
    "event_time": 1_700_000_000_000,
    "schema_version": 1,
}
PROFILE = {
    "user_id": "user-1",
    "home_lat": 48.85,
    "home_lon": 2.35,
    "account_age_days": 400,
    "segment": "regular",
    "updated_at": 1_700_000_000_000,
    "schema_version": 1,
}
VALID = [(Transaction, TXN), (UserEvent, USER_EVENT), (UserProfile, PROFILE)]


def raw(payload: object) -> bytes:
    return msgspec.json.encode(payload)


@pytest.mark.parametrize(("event_type", "payload"), VALID)
def test_valid_events_decode_to_their_struct(event_type: type, payload: dict) -> None:
    decoded = EventDecoder(event_type).decode(raw(payload))
    assert type(decoded.event).__name__ == event_type.__name__
    assert isinstance(decoded.event, event_type)
    assert msgspec.structs.asdict(decoded.event) == payload
    assert decoded.unknown_fields == ()


@pytest.mark.parametrize(("event_type", "payload"), VALID)
def test_decoded_event_round_trips_through_encode(event_type: type, payload: dict) -> None:
    event = EventDecoder(event_type).decode(raw(payload)).event
    assert msgspec.json.decode(encode(event)) == payload


def test_integer_json_numbers_are_accepted_for_float_fields() -> None:
    event = EventDecoder(Transaction).decode(raw(TXN | {"amount": 12, "lat": 0})).event
    assert event.amount == 12.0 and isinstance(event.amount, float)


def test_schema_version_defaults_to_1_when_absent() -> None:
    payload = {k: v for k, v in TXN.items() if k != "schema_version"}
    assert EventDecoder(Transaction).decode(raw(payload)).event.schema_version == 1


def test_unknown_fields_are_tolerated_and_named() -> None:
    decoded = EventDecoder(Transaction).decode(raw(TXN | {"zeta": 1, "alpha": {"x": [1]}}))
    assert decoded.event.card_id == "card-1"
    assert decoded.unknown_fields == ("alpha", "zeta")


def reason_of(event_type: type, value: bytes | None, max_bytes: int = 64 * 1024) -> str:
    with pytest.raises(InvalidEvent) as info:
        EventDecoder(event_type, max_bytes=max_bytes).decode(value)
    assert info.value.reason in REASONS
    assert info.value.message
    return info.value.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({k: v for k, v in TXN.items() if k != "card_id"}, "missing_field"),
        (TXN | {"amount": "12.5"}, "invalid_type"),
        (TXN | {"event_time": 1.5}, "invalid_type"),
        (TXN | {"event_time": "yesterday"}, "invalid_type"),
        (TXN | {"card_id": 7}, "invalid_type"),
        (TXN | {"amount": 0}, "out_of_range"),
        (TXN | {"amount": -3.0}, "out_of_range"),
        (TXN | {"lat": 90.5}, "out_of_range"),
        (TXN | {"lon": -181}, "out_of_range"),
        (TXN | {"currency": "eur"}, "out_of_range"),
        (TXN | {"channel": "atm"}, "out_of_range"),
        (TXN | {"event_time": -1}, "out_of_range"),
        (TXN | {"card_id": ""}, "out_of_range"),
        (TXN | {"card_id": "x" * 500}, "out_of_range"),
        (TXN | {"schema_version": 2}, "unsupported_schema_version"),
        (USER_EVENT | {"event_type": "hover"}, "out_of_range"),
        (PROFILE | {"account_age_days": 1.5}, "invalid_type"),
        (PROFILE | {"home_lat": None}, "invalid_type"),
    ],
)
def test_bad_fields_are_rejected_with_their_reason(payload: dict, reason: str) -> None:
    event_type = Transaction
    if "event_type" in payload:
        event_type = UserEvent
    elif "home_lat" in payload:
        event_type = UserProfile
    assert reason_of(event_type, raw(payload)) == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{", "malformed_json"),
        (b"", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'"a string"', "malformed_json"),
        (b"null", "malformed_json"),
        (raw(TXN).replace(b"12.5", b"NaN"), "malformed_json"),
        (raw(TXN).replace(b"12.5", b"1e999"), "out_of_range"),
        (b'{"a":' * 5000, "malformed_json"),
        (b"\xff\xfe\x00garbage", "invalid_encoding"),
        (raw(TXN).replace(b'"card-1"', b'"card-\xff"'), "invalid_encoding"),
        (None, "missing_value"),
    ],
)
def test_unparseable_values_are_rejected_with_their_reason(value: bytes | None, reason: str):
    assert reason_of(Transaction, value) == reason


def test_oversize_values_are_rejected_before_parsing() -> None:
    value = raw(TXN | {"padding": "x" * 2000})
    assert reason_of(Transaction, value, max_bytes=1024) == "oversize"


def test_dead_letter_keeps_the_raw_bytes_losslessly() -> None:
    for value in (b'{"broken": ', b"\xff\x00\x01binary", None):
        record = dead_letter(
            source_topic="transactions",
            partition=3,
            offset=42,
            key=b"card-1",
            value=value,
            error=InvalidEvent("malformed_json", "boom"),
            failed_at=1,
        )
        decoded = msgspec.json.decode(encode(record), type=DeadLetter)
        assert dead_letter_payload(decoded) == value
        assert (decoded.source_topic, decoded.partition, decoded.offset) == ("transactions", 3, 42)
        assert decoded.error.kind == "malformed_json"
        assert decoded.key == "card-1"
    binary = dead_letter(
        source_topic="t",
        partition=0,
        offset=0,
        key=None,
        value=b"\xff",
        error=InvalidEvent("x", ""),
    )
    assert binary.payload_encoding == "base64"
    assert base64.b64decode(binary.payload or "") == b"\xff"
    assert binary.key is None


def test_output_contracts_encode_with_every_field() -> None:
    score = FraudScore(
        event_id="t-1",
        card_id="card-1",
        score=0.97,
        model_version="fraud-v1",
        features={"transaction_count_1m": 3.0, "distance_from_home_km": None},
        event_time=1,
        ingested_at=2,
        scored_at=3,
    )
    alert = FraudAlert(
        **msgspec.structs.asdict(score),
        threshold=0.9,
        reasons=[AlertReason(feature="transaction_count_1m", value=3.0, contribution=1.2)],
    )
    decoded = msgspec.json.decode(encode(alert))
    assert decoded["threshold"] == 0.9
    assert decoded["features"]["distance_from_home_km"] is None
    assert decoded["reasons"][0]["feature"] == "transaction_count_1m"
    rec = Recommendation(
        user_id="u",
        items=[ScoredItem(item_id="i", score=1.5)],
        model_version="recsys-v1",
        event_time=1,
        ingested_at=2,
        produced_at=3,
    )
    assert msgspec.json.decode(encode(rec))["items"] == [{"item_id": "i", "score": 1.5}]


def test_output_contracts_validate_their_ranges() -> None:
    bad_score = raw(
        {
            "event_id": "t",
            "card_id": "c",
            "score": 1.5,
            "model_version": "v",
            "features": {},
            "event_time": 1,
            "ingested_at": 1,
            "scored_at": 1,
        }
    )
    assert reason_of(FraudScore, bad_score) == "out_of_range"
