"""HTTP request validation at the edge: precise messages, JSON paths, status codes."""

from __future__ import annotations

import json

import msgspec
import pytest

from serving.errors import InvalidRequest
from serving.http_api import (
    ErrorBody,
    check_user_id,
    content_length,
    decode_score_request,
    encode,
    error_body,
    parse_k,
    split_path,
    too_large,
)

TX = {
    "event_id": "e1",
    "card_id": "c1",
    "user_id": "u1",
    "merchant_id": "m1",
    "merchant_category": "food",
    "amount": 12.5,
    "currency": "EUR",
    "lat": 48.85,
    "lon": 2.35,
    "event_time": 1_700_000_000_000,
    "channel": "pos",
}


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_batch_decodes_into_contract_transactions() -> None:
    decoded = decode_score_request(body(transactions=[TX, TX], threshold=0.7), 10)
    assert len(decoded.transactions) == 2
    assert decoded.transactions[0].amount == 12.5
    assert decoded.threshold == 0.7
    assert decode_score_request(body(transactions=[TX]), 10).threshold is None


@pytest.mark.parametrize(
    ("raw", "status", "error", "field", "message"),
    [
        (b"", 400, "invalid_request", None, "body is empty"),
        (b'{"transactions": [', 400, "malformed_json", None, "malformed JSON"),
        (b"[]", 422, "invalid_request", None, "Expected `object`, got `array`"),
        (body(transactions=[]), 422, "invalid_request", "$.transactions", "at least one"),
        (body(), 422, "invalid_request", None, "missing required field `transactions`"),
        (
            body(transactions=[{k: v for k, v in TX.items() if k != "amount"}]),
            422,
            "invalid_request",
            "$.transactions[0]",
            "missing required field `amount`",
        ),
        (
            body(transactions=[TX, {**TX, "amount": "12"}]),
            422,
            "invalid_request",
            "$.transactions[1].amount",
            "Expected `float`, got `str`",
        ),
        (
            body(transactions=[{**TX, "amount": -3}]),
            422,
            "invalid_request",
            "$.transactions[0].amount",
            "Expected `float` > 0.0",
        ),
        (
            body(transactions=[{**TX, "channel": "atm"}]),
            422,
            "invalid_request",
            "$.transactions[0].channel",
            "Invalid enum value 'atm'",
        ),
        (
            body(transactions=[TX], threshold=2),
            422,
            "invalid_request",
            "$.threshold",
            "<= 1.0",
        ),
        (
            body(transactions=[TX], treshold=0.5),
            422,
            "invalid_request",
            None,
            "unknown field `treshold`",
        ),
        (
            body(transactions=[TX] * 4),
            413,
            "too_many_transactions",
            "$.transactions",
            "at most 3 transactions per request, got 4",
        ),
    ],
)
def test_invalid_bodies_say_what_and_where(
    raw: bytes, status: int, error: str, field: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_score_request(raw, 3)
    exc = info.value
    assert (exc.status, exc.error, exc.field) == (status, error, field)
    assert message in exc.message


def test_split_path() -> None:
    assert split_path("Expected `int`, got `str` - at `$.a[0].b`") == (
        "Expected `int`, got `str`",
        "$.a[0].b",
    )
    assert split_path("Object missing required field `x`") == (
        "Object missing required field `x`",
        None,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 20), ("1", 1), ("200", 200), ("007", 7)],
)
def test_k_defaults_and_bounds(raw: str | None, expected: int) -> None:
    assert parse_k(raw, 20, 200) == expected


@pytest.mark.parametrize("raw", ["0", "-3", "201", "ten", "1.5", ""])
def test_k_out_of_bounds_is_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest, match=r"expected a whole number in \[1, 200\]") as info:
        parse_k(raw, 20, 200)
    assert info.value.field == "k" and info.value.status == 422


def test_user_id_follows_the_contract() -> None:
    assert check_user_id("u-1") == "u-1"
    with pytest.raises(InvalidRequest, match="1 to 128 characters, got 129"):
        check_user_id("u" * 129)


def test_body_size_limits() -> None:
    assert content_length(None, 100) is None
    assert content_length("100", 100) == 100
    with pytest.raises(InvalidRequest, match="request body is 101 bytes; the limit is 100") as info:
        content_length("101", 100)
    assert info.value.status == 413 and info.value.error == "payload_too_large"
    with pytest.raises(InvalidRequest, match="Content-Length must be a whole number") as info:
        content_length("lots", 100)
    assert info.value.status == 400
    assert too_large(100).status == 413


def test_error_bodies_are_json() -> None:
    exc = InvalidRequest("Expected `float`", field="$.transactions[0].amount")
    assert str(exc) == "$.transactions[0].amount: Expected `float`"
    decoded = msgspec.json.decode(encode(error_body(exc)), type=ErrorBody)
    assert decoded == ErrorBody("invalid_request", "Expected `float`", "$.transactions[0].amount")
