"""Defects of a real stream: records that arrive out of order or late, and values that are broken.

Every record draws once: late (``late_fraction``), out of order (``out_of_order_fraction``),
malformed (``malformed_fraction``) or clean. So the fractions are of all records.

- out of order: the record is delayed by 1..``max_delay_ms`` behind its event time, so records with
  later event times go first; it stays within the allowed lateness;
- late: delayed by more than ``allowed_lateness_ms`` (the watermark's slack), up to twice that, so a
  consumer must treat it as late;
- malformed: the value is replaced by one of the defects below, each built to fail
  ``contracts.codec.EventDecoder`` with a known dead-letter reason, which the record carries in
  ``Record.defect``. Fraudulent transactions and tombstones are never made malformed, so every
  label points at a valid event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from producers.config import GeneratorConfig
from producers.records import Stream

Mutation = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Defect:
    name: str
    reason: str  # the dead-letter reason (contracts.codec.REASONS)
    weight: float
    streams: tuple[Stream, ...] = tuple(Stream)


DEFECTS: tuple[Defect, ...] = (
    Defect("truncated_json", "malformed_json", 2.0),
    Defect("not_an_object", "malformed_json", 1.0),
    Defect("missing_field", "missing_field", 3.0),
    Defect("wrong_type", "invalid_type", 3.0),
    Defect("out_of_range", "out_of_range", 3.0),
    Defect("not_utf8", "invalid_encoding", 2.0),
    Defect("unsupported_schema_version", "unsupported_schema_version", 1.0),
    # Null means "delete" on the compacted profiles topic, so only the others can have it.
    Defect("null_value", "missing_value", 1.0, (Stream.TRANSACTIONS, Stream.USER_EVENTS)),
    Defect("oversize", "oversize", 0.5),
)
REASON = {d.name: d.reason for d in DEFECTS}
_CODE = {s: i for i, s in enumerate(Stream)}

# Per stream: fields a producer bug may drop, retype or push out of range, and a text field that
# may arrive in Latin-1.
_MISSING = {
    Stream.TRANSACTIONS: ("event_id", "card_id", "amount", "event_time", "merchant_id", "lat"),
    Stream.USER_EVENTS: ("event_id", "item_id", "event_type", "event_time", "user_id"),
    Stream.USER_PROFILES: ("home_lat", "home_lon", "segment", "updated_at", "account_age_days"),
}
_WRONG_TYPE: dict[Stream, tuple[tuple[str, Mutation], ...]] = {
    Stream.TRANSACTIONS: (
        ("amount", lambda v: f"{v:.2f}"),  # "12.50"
        ("amount", lambda v: None),
        ("event_time", str),
        ("lat", lambda v: f"{v}"),
        ("card_id", lambda v: int(v.lstrip("c") or 0)),
        ("channel", lambda v: v == "online"),
    ),
    Stream.USER_EVENTS: (
        ("event_time", str),
        ("item_id", lambda v: int(v.lstrip("i") or 0)),
        ("event_type", lambda v: [v]),
        ("user_id", lambda v: None),
    ),
    Stream.USER_PROFILES: (
        ("account_age_days", str),
        ("home_lat", lambda v: f"{v}"),
        ("updated_at", lambda v: v / 1000.5),
        ("segment", lambda v: {"name": v}),
    ),
}
_OUT_OF_RANGE: dict[Stream, tuple[tuple[str, Mutation], ...]] = {
    Stream.TRANSACTIONS: (
        ("amount", lambda v: -v),
        ("amount", lambda v: 0.0),
        ("lat", lambda v: 90.0 + abs(v) + 0.5),
        ("lon", lambda v: -180.0 - abs(v) - 0.5),
        ("currency", str.lower),
        ("channel", lambda v: "atm"),
        ("event_time", lambda v: -v),
        ("merchant_category", lambda v: ""),
    ),
    Stream.USER_EVENTS: (
        ("event_type", lambda v: "add_to_cart"),
        ("event_type", str.upper),
        ("event_time", lambda v: -1),
        ("category", lambda v: ""),
        ("item_id", lambda v: v * 40),  # longer than 128 characters
    ),
    Stream.USER_PROFILES: (
        ("home_lat", lambda v: v + 180.0 if v < 0 else v + 90.5),
        ("home_lon", lambda v: v + 360.0 if v < 0 else v + 180.5),
        ("account_age_days", lambda v: -1 - v),
        ("segment", lambda v: ""),
        ("updated_at", lambda v: -v),
    ),
}
_TEXT = {
    Stream.TRANSACTIONS: "merchant_category",
    Stream.USER_EVENTS: "category",
    Stream.USER_PROFILES: "segment",
}
_NOT_UTF8 = (b"\xe9", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80")  # Latin-1, BOM-ish, bad pairs
_MARKER = "__rtml_not_utf8__"


class Corruptor:
    """Decides each record's delay and defect, and breaks values.

    Each stream has its own random stream, so switching one stream off (or changing its rate)
    leaves the defects of the others exactly as they were. Breaking values draws from streams
    of its own too: the plans do not depend on when the values are broken (as records are
    encoded, which a live load simulated ahead does later than the planning).
    """

    def __init__(self, config: GeneratorConfig, seed: np.random.SeedSequence) -> None:
        self.config = config
        self._rngs = {
            s: np.random.default_rng(child)
            for s, child in zip(Stream, seed.spawn(len(Stream)), strict=True)
        }
        self._break_rngs = {
            s: np.random.default_rng(child)
            for s, child in zip(Stream, seed.spawn(len(Stream)), strict=True)
        }
        self._late = config.late_fraction
        self._ooo = self._late + config.out_of_order_fraction
        self._bad = self._ooo + config.malformed_fraction
        self._defects: dict[Stream, tuple[list[str], np.ndarray]] = {}
        for stream in Stream:
            usable = [d for d in DEFECTS if stream in d.streams]
            weights = np.array([d.weight for d in usable])
            self._defects[stream] = ([d.name for d in usable], np.cumsum(weights) / weights.sum())

    def plan(
        self, streams: list[Stream], protected: np.ndarray
    ) -> tuple[np.ndarray, list[str | None]]:
        """Per record: the delay in ms (0: on time) and the defect name (None: valid).

        ``protected`` marks records that must stay valid (fraud, tombstones).
        """
        n = len(streams)
        codes = np.fromiter((_CODE[s] for s in streams), dtype=np.int8, count=n)
        delay = np.zeros(n, dtype=np.int64)
        defects: list[str | None] = [None] * n
        lateness = self.config.allowed_lateness_ms
        for stream, rng in self._rngs.items():
            rows = np.flatnonzero(codes == _CODE[stream])
            if not len(rows):
                continue
            draw = rng.random(len(rows))
            late = rows[draw < self._late]
            ooo = rows[(draw >= self._late) & (draw < self._ooo)]
            delay[late] = lateness + rng.integers(60_000, lateness + 60_000, len(late))
            delay[ooo] = rng.integers(1, self.config.max_delay_ms + 1, len(ooo))
            bad = rows[(draw >= self._ooo) & (draw < self._bad)]
            bad = bad[~protected[bad]]
            names, cdf = self._defects[stream]
            picks = np.minimum(np.searchsorted(cdf, rng.random(len(bad)), "right"), len(names) - 1)
            for i, pick in zip(bad.tolist(), picks.tolist(), strict=True):
                defects[i] = names[pick]
        return delay, defects

    def corrupt(self, value: bytes, stream: Stream, defect: str) -> bytes | None:
        """``value`` (a valid encoded event of ``stream``) broken as ``defect`` says."""
        rng = self._break_rngs[stream]
        if defect == "truncated_json":
            return value[: int(rng.integers(1, len(value) - 1))]
        if defect == "not_an_object":
            wrappers = (
                b"[" + value + b"]",
                b'"' + value.replace(b'"', b"'") + b'"',
                b"42",
                b"null",
            )
            return wrappers[int(rng.integers(len(wrappers)))]
        if defect == "null_value":
            return None
        fields = msgspec.json.decode(value)
        if defect == "missing_field":
            options = _MISSING[stream]
            del fields[options[int(rng.integers(len(options)))]]
        elif defect in ("wrong_type", "out_of_range"):
            options = (_WRONG_TYPE if defect == "wrong_type" else _OUT_OF_RANGE)[stream]
            name, mutate = options[int(rng.integers(len(options)))]
            fields[name] = mutate(fields[name])
        elif defect == "unsupported_schema_version":
            fields["schema_version"] = int(rng.choice([0, 2, 3]))
        elif defect == "oversize":
            fields["padding"] = "x" * (self.config.max_record_bytes + int(rng.integers(1, 1000)))
        elif defect == "not_utf8":
            name = _TEXT[stream]
            original = fields[name].encode()
            fields[name] = _MARKER
            bad = _NOT_UTF8[int(rng.integers(len(_NOT_UTF8)))]
            return msgspec.json.encode(fields).replace(_MARKER.encode(), original[:3] + bad)
        else:
            raise ValueError(f"unknown defect {defect!r}")
        return msgspec.json.encode(fields)
