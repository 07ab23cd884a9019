"""Decoding raw Kafka values into contract events, and encoding outputs.

The hot path decodes straight into a struct that forbids unknown fields. Only when that fails
because of an extra field (schema drift, rare) do we decode again leniently and name the extra
fields, so the common case pays for one parse.

Every failure is an ``InvalidEvent`` whose ``reason`` is a dead-letter reason from ``REASONS``.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from contracts.events import (
    DeadLetter,
    DeadLetterError,
    FraudAlert,
    FraudLabel,
    Transaction,
    UserEvent,
    UserProfile,
)
from rtml.errors import InvalidEvent

REASONS = (
    "oversize",  # value larger than the configured maximum record size
    "missing_value",  # null value on a topic where null means nothing
    "invalid_encoding",  # not UTF-8
    "malformed_json",  # not parseable JSON, or not a JSON object
    "missing_field",  # a required field is absent
    "invalid_type",  # a field has the wrong JSON type
    "out_of_range",  # a value breaks its bounds (amount <= 0, lat > 90, unknown enum value...)
    "unsupported_schema_version",
    "late",  # older than the watermark (raised by the feature engine, not here)
    "processing_error",  # a downstream stage failed on this event (model, features)
)

E = TypeVar("E", Transaction, UserEvent, UserProfile, FraudAlert, FraudLabel)


@dataclass(slots=True)
class Decoded(Generic[E]):
    """A valid event, and the names of any fields the contract does not know (schema drift)."""

    event: E
    unknown_fields: tuple[str, ...] = ()


@dataclass
class EventDecoder(Generic[E]):
    """Decodes one topic's values into ``event_type``. Thread-compatible, not thread-safe."""

    event_type: type[E]
    max_bytes: int = 64 * 1024
    _strict: msgspec.json.Decoder[Any] = field(init=False, repr=False)
    _lenient: msgspec.json.Decoder[Any] = field(init=False, repr=False)
    _known: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        strict_type = _strict_variant(self.event_type)
        self._strict = msgspec.json.Decoder(strict_type)
        self._lenient = msgspec.json.Decoder(self.event_type)
        self._known = frozenset(self.event_type.__struct_fields__)

    def decode(self, value: bytes | None) -> Decoded[E]:
        """Decode one value or raise ``InvalidEvent`` saying what was wrong."""
        if value is None:
            raise InvalidEvent("missing_value", "record value is null")
        if len(value) > self.max_bytes:
            raise InvalidEvent(
                "oversize", f"value is {len(value)} bytes, limit is {self.max_bytes}"
            )
        try:
            return Decoded(self._strict.decode(value))
        except msgspec.ValidationError as exc:
            if "unknown field" not in str(exc):
                raise _invalid(exc, value) from None
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            raise _invalid(exc, value) from None
        # Schema drift: extra fields. Accept the event and report the extra names.
        try:
            event = self._lenient.decode(value)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            raise _invalid(exc, value) from None
        raw = msgspec.json.decode(value)
        unknown = tuple(sorted(k for k in raw if k not in self._known))
        return Decoded(event, unknown)


_STRICT_CACHE: dict[type, type] = {}


def _strict_variant(event_type: type[E]) -> type[E]:
    """A subclass of ``event_type`` that rejects unknown fields (same fields, same checks)."""
    strict = _STRICT_CACHE.get(event_type)
    if strict is None:
        strict = type(
            event_type.__name__,
            (event_type,),
            {"__module__": event_type.__module__},
            forbid_unknown_fields=True,
            frozen=True,
        )
        _STRICT_CACHE[event_type] = strict
    return strict


def _invalid(exc: Exception, value: bytes) -> InvalidEvent:
    message = str(exc)
    if isinstance(exc, RecursionError):
        return InvalidEvent("malformed_json", "JSON nested too deeply")
    if isinstance(exc, UnicodeDecodeError):
        return InvalidEvent("invalid_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
    if not isinstance(exc, msgspec.ValidationError):  # a DecodeError: not parseable
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as err:
            return InvalidEvent("invalid_encoding", f"not UTF-8: {err.reason} at byte {err.start}")
        return InvalidEvent("malformed_json", message)
    if message.startswith("Object missing required field"):
        return InvalidEvent("missing_field", message)
    if "schema_version" in message:
        return InvalidEvent("unsupported_schema_version", message)
    if message.startswith("Expected `object`"):
        return InvalidEvent("malformed_json", f"value must be a JSON object: {message}")
    if message.startswith("Expected `") and (" got `" in message or ", got `" in message):
        return InvalidEvent("invalid_type", message)
    return InvalidEvent("out_of_range", message)


_encoder = msgspec.json.Encoder()


def encode(event: msgspec.Struct) -> bytes:
    """Encode any contract struct as compact JSON."""
    return _encoder.encode(event)


def encode_key(key: str) -> bytes:
    return key.encode("utf-8")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: InvalidEvent,
    failed_at: int | None = None,
) -> DeadLetter:
    """The dead-letter record for a value that failed; keeps the raw bytes losslessly."""
    payload, encoding = _text_or_base64(value)
    key_text, _ = _text_or_base64(key)
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key_text,
        error=DeadLetterError(kind=error.reason, message=error.message[:1000]),
        payload=payload,
        payload_encoding=encoding,
        failed_at=now_ms() if failed_at is None else failed_at,
    )


def _text_or_base64(raw: bytes | None) -> tuple[str | None, Any]:
    if raw is None:
        return None, "none"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter_payload(record: DeadLetter) -> bytes | None:
    """The original bytes of a dead-lettered value (inverse of ``dead_letter``)."""
    if record.payload is None:
        return None
    if record.payload_encoding == "base64":
        return base64.b64decode(record.payload)
    return record.payload.encode("utf-8")
