"""What every peer job shares: its arguments, the transaction check, the feature row and the
output records, so the peers differ only in their framework.

Input: the transactions topic (JSON ``contracts.events.Transaction``, key ``card_id``).
Output: one record per input record, either a feature row on ``--output`` (key ``card_id``;
JSON ``{"event_id", "card_id", "event_time", "features": {name: value}}``, the fields of
rtml's ``fraud-features`` topic) or a dead letter on ``--dead-letter`` (JSON ``{"partition",
"offset", "error"}``). The bench counts both to know how far a peer got.

The check is the obvious one (valid UTF-8 JSON object; the fields the features use, with their
types and ranges), not rtml's full contract: a few defects rtml dead-letters (an unknown
currency, an empty merchant category) pass here and get features.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from bench.reference_features import CardState, update

try:  # the peers' environment has orjson (Quix Streams depends on it); stdlib json otherwise
    import orjson

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - depends on the environment
    import json

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


# The card features (features.definitions.FRAUD_CARD.names, which this environment cannot
# import); tests/unit/bench/test_peer_jobs.py checks that they are the same.
FEATURE_NAMES = (
    "amount",
    "transaction_count_1m",
    "transaction_count_5m",
    "transaction_count_1h",
    "total_amount_1m",
    "total_amount_5m",
    "total_amount_1h",
    "unique_merchants_24h",
    "is_new_merchant_24h",
    "amount_to_mean_24h",
    "distance_from_last_transaction_km",
    "seconds_since_last_transaction",
    "speed_from_last_transaction_kmh",
    "distance_from_home_km",
    "account_age_days",
    "hour_of_day_utc",
    "is_online",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a peer computing rtml's fraud features")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--input", required=True, help="the transactions topic")
    parser.add_argument("--output", required=True, help="feature rows go here")
    parser.add_argument("--dead-letter", required=True, help="invalid records go here")
    parser.add_argument("--group", required=True, help="consumer group / application id")
    parser.add_argument("--partitions", type=int, required=True, help="of the input topic")
    parser.add_argument("--state-dir", required=True, help="the framework's local state")
    return parser.parse_args(argv)


def check(value: bytes | None) -> dict[str, Any] | str:
    """The transaction, or why it is invalid."""
    if value is None:
        return "null value"
    try:  # strict UTF-8 first: stdlib json would let encoded surrogates through
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8: {exc}"
    try:
        tx = loads(text)
    except ValueError as exc:  # orjson.JSONDecodeError and json's are ValueErrors
        return f"malformed JSON: {exc}"
    if not isinstance(tx, dict):
        return "not a JSON object"
    for name in ("event_id", "card_id", "merchant_id", "channel"):
        if not isinstance(tx.get(name), str) or not tx[name]:
            return f"{name} must be a non-empty string"
    if tx["channel"] not in ("pos", "online"):
        return "channel must be pos or online"
    t = tx.get("event_time")
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        return "event_time must be a non-negative integer"
    for name, low, high in (("amount", 0.0, math.inf), ("lat", -90.0, 90.0), ("lon", -180, 180)):
        v = tx.get(name)
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            return f"{name} must be a number"
        if not low <= v <= high or (name == "amount" and v <= 0):
            return f"{name} out of range"
    return tx


def features(state: CardState, tx: dict[str, Any]) -> dict[str, Any]:
    """The output record's value for a checked transaction (no profile join: the peers read
    only the transactions, so the two profile features are null)."""
    row = update(
        state,
        tx["event_time"],
        float(tx["amount"]),
        tx["merchant_id"],
        float(tx["lat"]),
        float(tx["lon"]),
        tx["channel"] == "online",
    )
    return {
        "event_id": tx["event_id"],
        "card_id": tx["card_id"],
        "event_time": tx["event_time"],
        "features": dict(zip(FEATURE_NAMES, row, strict=True)),
    }


def dead_letter(partition: int, offset: int, error: str) -> dict[str, Any]:
    return {"partition": partition, "offset": offset, "error": error}
