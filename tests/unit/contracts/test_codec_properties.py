"""Any bytes into the event decoders: a valid event, or InvalidEvent with a dead-letter reason
from REASONS. Never another exception, never a hang (hypothesis' deadline bounds each call)."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts.codec import REASONS, EventDecoder, dead_letter, dead_letter_payload, encode
from contracts.events import DeadLetter, Transaction, UserEvent, UserProfile
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
}
DECODERS = [EventDecoder(t, max_bytes=4096) for t in (Transaction, UserEvent, UserProfile)]
PROPERTY = settings(max_examples=300, deadline=1_000, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def outcome(decoder: EventDecoder, value: bytes | None) -> str:
    """ "ok" or the dead-letter reason; anything else raised fails the test."""
    try:
        decoded = decoder.decode(value)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.message
        return exc.reason
    assert isinstance(decoded.event, decoder.event_type)
    return "ok"


@PROPERTY
@given(st.binary(max_size=5000))
@example(b"")
@example(b"\xff\xfe{\x00}\x00")
@example(b"null")
@example(b'{"amount": NaN}')
@example(b"[" * 4000)
def test_any_bytes_decode_or_name_a_reason(value: bytes) -> None:
    for decoder in DECODERS:
        outcome(decoder, value)


@PROPERTY
@given(st.sampled_from(sorted(TXN)), json_values)
def test_any_json_value_in_any_field_is_valid_or_rejected_with_a_reason(
    field: str, value: object
) -> None:
    raw = json.dumps({**TXN, field: value}).encode()
    result = outcome(DECODERS[0], raw)
    if result == "ok":  # then the value really is a valid one for the field
        event = DECODERS[0].decode(raw).event
        assert getattr(event, field) == value


@PROPERTY
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=6))
def test_extra_fields_are_schema_drift_not_errors(extra: dict[str, object]) -> None:
    extra = {k: v for k, v in extra.items() if k not in TXN and k != "schema_version"}
    decoded = DECODERS[0].decode(json.dumps({**TXN, **extra}).encode())
    assert decoded.unknown_fields == tuple(sorted(extra))


transactions = st.builds(
    Transaction,
    event_id=st.text(min_size=1, max_size=128),
    card_id=st.text(min_size=1, max_size=128),
    user_id=st.text(min_size=1, max_size=128),
    merchant_id=st.text(min_size=1, max_size=128),
    merchant_category=st.text(min_size=1, max_size=64),
    amount=st.floats(min_value=1e-9, max_value=1e12),
    currency=st.from_regex(r"^[A-Z]{3}$", fullmatch=True),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    event_time=st.integers(0, 32_503_680_000_000),
    channel=st.sampled_from(["pos", "online"]),
)


@PROPERTY
@given(transactions)
def test_every_valid_event_round_trips(tx: Transaction) -> None:
    decoder = EventDecoder(Transaction, max_bytes=1 << 20)
    decoded = decoder.decode(encode(tx)).event
    assert msgspec.structs.asdict(decoded) == msgspec.structs.asdict(tx)


@PROPERTY
@given(st.binary(max_size=300), st.binary(max_size=40) | st.none())
def test_a_dead_letter_keeps_the_exact_bytes(value: bytes, key: bytes | None) -> None:
    error = InvalidEvent("malformed_json", "x" * 2000)
    letter = dead_letter(
        source_topic="t", partition=0, offset=1, key=key, value=value, error=error, failed_at=1
    )
    decoded = msgspec.json.decode(encode(letter), type=DeadLetter)
    assert dead_letter_payload(decoded) == value
    assert len(decoded.error.message) <= 1000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing_value"),
        (b"x" * 4097, "oversize"),
        (json.dumps({**TXN, "amount": "NaN"}).encode(), "invalid_type"),
        (json.dumps(TXN).replace("12.5", "NaN").encode(), "malformed_json"),
        (json.dumps(TXN).replace("12.5", "Infinity").encode(), "malformed_json"),
        (json.dumps(TXN).replace("12.5", "1e999").encode(), "out_of_range"),
        (json.dumps(TXN).replace("12.5", "-1e999").encode(), "out_of_range"),
        (json.dumps({**TXN, "event_time": 10**30}).encode(), "out_of_range"),
        (json.dumps({**TXN, "event_time": 1.5}).encode(), "invalid_type"),
        (json.dumps({**TXN, "amount": 10**400}).encode(), "out_of_range"),
        (json.dumps({**TXN, "merchant_id": "é"}).encode("utf-16"), "invalid_encoding"),
        (json.dumps({**TXN, "merchant_id": "é"}, ensure_ascii=False).encode("latin-1"), None),
        (b"[" * 100_000, "oversize"),
        (b"[" * 2000 + b"]" * 2000, "malformed_json"),
        (b'{"a":' * 600 + b"1" + b"}" * 600, "missing_field"),  # legal JSON, skipped
        (b'{"a":' * 150_000 + b"1" + b"}" * 150_000, "oversize"),
        (b"\xef\xbb\xbf" + json.dumps(TXN).encode(), "malformed_json"),  # a UTF-8 BOM
    ],
)
def test_bad_input_kinds(raw: bytes | None, reason: str | None) -> None:
    if reason is None:  # latin-1 "é" is not UTF-8
        reason = "invalid_encoding"
    assert outcome(DECODERS[0], raw) == reason


def test_deep_nesting_inside_the_size_limit_is_malformed_not_a_recursion_crash() -> None:
    decoder = EventDecoder(Transaction, max_bytes=1 << 20)
    assert outcome(decoder, b"[" * 500_000 + b"]" * 500_000) == "malformed_json"
    assert outcome(decoder, b'{"a":' * 150_000 + b"1" + b"}" * 150_000) == "malformed_json"
