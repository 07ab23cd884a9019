"""The HTTP API's bodies (msgspec structs), request validation and error bodies.

    POST /v1/fraud/score                  ScoreRequestBody -> ScoreResponseBody
    GET  /v1/recommendations/{user_id}?k  -> RecommendationsBody
    GET  /v1/models                       -> ModelsBody
    GET  /healthz                         -> HealthBody (200, or 503 with the problems)

Every error is ``{"error": slug, "message": text, "field": JSON path or null}`` with a 4xx
status for the caller's mistakes (400 malformed JSON, 413 body too large, 422 a value breaks
the contract), 503 when a dependency is unavailable, 500 otherwise (details in the logs only).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.events import AlertReason, Probability, ScoredItem, Transaction
from serving.errors import InvalidRequest
from serving.online import FeatureSource
from serving.protocol import ModelInfo


class ScoreRequestBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``transactions`` in the contract schema (``contracts.events.Transaction``);
    ``threshold``: scores at or above it are alerts, with reasons (default: the server's)."""

    transactions: list[Transaction]
    threshold: Probability | None = None


class ScoredTransaction(msgspec.Struct, frozen=True):
    event_id: str
    card_id: str
    score: float
    alert: bool
    reasons: list[AlertReason]
    # online_store: the card's stored features (those of features_event_id); request: this
    # transaction's features computed from the request alone (see serving.online).
    features_source: FeatureSource
    features_event_id: str
    features_event_time: int
    features: dict[str, float | None]


class ScoreResponseBody(msgspec.Struct, frozen=True):
    model_version: str
    threshold: float
    results: list[ScoredTransaction]


class RecommendationsBody(msgspec.Struct, frozen=True):
    user_id: str
    k: int
    # model: the recommender ranked the catalog from the user's stored features (purchases
    # excluded); popularity: the user has no features, items by views in the last hour.
    source: Literal["model", "popularity"]
    model_version: str | None
    features_event_time: int | None
    items: list[ScoredItem]


class ModelsBody(msgspec.Struct, frozen=True):
    models: list[ModelInfo]


class HealthBody(msgspec.Struct, frozen=True):
    status: Literal["ok", "unavailable"]
    models: dict[str, str | None]
    problems: list[str]


class ErrorBody(msgspec.Struct, frozen=True):
    error: str
    message: str
    field: str | None = None


_encoder = msgspec.json.Encoder()
_score_decoder = msgspec.json.Decoder(ScoreRequestBody)


def encode(body: msgspec.Struct) -> bytes:
    return _encoder.encode(body)


def decode_score_request(body: bytes, max_transactions: int) -> ScoreRequestBody:
    """The validated body of ``POST /v1/fraud/score`` or ``InvalidRequest`` saying what is wrong
    and where."""
    if not body:
        raise InvalidRequest("the request body is empty; expected a JSON object", status=400)
    try:
        decoded = _score_decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, field = split_path(str(exc))
        raise InvalidRequest(message, field=field) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}", status=400, error="malformed_json") from None
    n = len(decoded.transactions)
    if n == 0:
        raise InvalidRequest("expected at least one transaction", field="$.transactions")
    if n > max_transactions:
        raise InvalidRequest(
            f"at most {max_transactions} transactions per request, got {n}",
            field="$.transactions",
            status=413,
            error="too_many_transactions",
        )
    return decoded


def split_path(message: str) -> tuple[str, str | None]:
    """msgspec's ``"Expected `int`, got `str` - at `$.a[0].b`"`` as (message, ``$.a[0].b``)."""
    text, sep, path = message.rpartition(" - at `")
    if not sep or not path.endswith("`"):
        return message, None
    return text, path[:-1]


def check_user_id(user_id: str) -> str:
    if not 1 <= len(user_id) <= 128:
        raise InvalidRequest(f"must be 1 to 128 characters, got {len(user_id)}", field="user_id")
    return user_id


def parse_k(raw: str | None, default: int, max_k: int) -> int:
    """The ``k`` query parameter: a whole number in [1, max_k]; ``default`` when absent."""
    if raw is None:
        return default
    try:
        k = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"expected a whole number in [1, {max_k}], got {raw[:40]!r}", field="k"
        ) from None
    if not 1 <= k <= max_k:
        raise InvalidRequest(f"expected a whole number in [1, {max_k}], got {k}", field="k")
    return k


def content_length(header: str | None, limit: int) -> int | None:
    """The declared body size, refusing (413) a declared size above ``limit``."""
    if header is None:
        return None
    try:
        length = int(header)
    except ValueError:
        raise InvalidRequest(
            f"Content-Length must be a whole number, got {header[:40]!r}", status=400
        ) from None
    if length > limit:
        raise too_large(limit, length)
    return length


def too_large(limit: int, size: int | None = None) -> InvalidRequest:
    """413 for a body over ``limit`` bytes (``size``: its declared length, if known)."""
    message = (
        f"request body exceeds the limit of {limit} bytes"
        if size is None
        else f"request body is {size} bytes; the limit is {limit}"
    )
    return InvalidRequest(message, status=413, error="payload_too_large")


def error_body(exc: InvalidRequest) -> ErrorBody:
    return ErrorBody(exc.error, exc.message, exc.field)
