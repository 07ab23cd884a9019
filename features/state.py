"""Serialized state formats (msgpack via msgspec), one struct per format version.

Each record is a msgpack array whose first element is its tag (format and version), then the
fields in order: no field names on the wire. Times are stored as non-negative ages relative to
the key's last event time, which keeps them small. Coordinates are stored in radians exactly as
the engine holds them, so a restored engine computes bit-identical features.

To evolve a format, add ``...V2`` with a new tag, decode ``V1 | V2`` and upgrade V1 on load;
never change a released struct.
"""

from __future__ import annotations

import msgspec

PARTITION_META_KEY = "\x00partition-meta"
"""Changelog key suggested for ``serialize_partition`` records (no entity key starts with NUL:
see ``ESCAPE_PREFIX``)."""

ESCAPE_PREFIX = b"\x00e"
"""Written before an entity key that starts with NUL, so it cannot be taken for a reserved key."""

SLICE_MS = 60_000
"""Width of a changelog slice (event time). Part of the format: slice records are keyed by
``t // SLICE_MS``, so changing it needs a new format version."""

SLICE_KEY_PREFIX = b"\x00s"
"""A slice record's changelog key: ``SLICE_KEY_PREFIX + b"<slice>:" + entity key``."""


class PartitionMetaV1(msgspec.Struct, array_like=True, tag="p1"):
    """A partition's event-time clock (None: nothing processed yet)."""

    max_event_time: int | None


class CardStateV1(msgspec.Struct, array_like=True, tag="f1"):
    """One card's fraud state: its buffered transactions, oldest first, and the anchor.

    ``ages[i] = last - event_time[i]`` (non-increasing); ``lat``/``lon`` in radians. The anchor
    is the newest transaction already dropped from the buffer: (age, lat, lon), kept for the
    previous-transaction features.
    """

    last: int
    ages: list[int]
    amounts: list[float]
    merchants: list[str]
    lat: list[float]
    lon: list[float]
    anchor: tuple[int, float, float] | None


class CardStateV2(msgspec.Struct, array_like=True, tag="f2"):
    """One card's fraud state, columnar: the engine's arrays copied byte for byte.

    ``times`` (int64 event times, ms), ``amounts``, ``lat``, ``lon`` (float64, radians) are
    little-endian packed arrays of the buffered transactions, oldest first; ``merchants`` is
    aligned with them. Encoding is a memcpy per column, so writing a busy card to the changelog
    costs about the same as writing a quiet one. ``anchor``: (event_time, lat, lon) of the
    newest transaction already dropped from the buffer.
    """

    last: int
    times: bytes
    amounts: bytes
    lat: bytes
    lon: bytes
    merchants: list[str]
    anchor: tuple[int, float, float] | None


class CardHeadV3(msgspec.Struct, array_like=True, tag="f3"):
    """One card's fraud state without its buffer, which is in ``CardSliceV3`` records.

    The sliced changelog (``features._engine``): a touched card writes this head and only the
    slices of its buffer that changed, so the bytes per event do not grow with the buffer.
    """

    last: int
    anchor: tuple[int, float, float] | None


class CardSliceV3(msgspec.Struct, array_like=True, tag="fs3"):
    """The buffered transactions of one card in one changelog slice, columns as in V2."""

    times: bytes
    amounts: bytes
    lat: bytes
    lon: bytes
    merchants: list[str]


class FraudCardV1(msgspec.Struct, array_like=True, tag="fc1"):
    """One card's window state and pattern state in one changelog record, under the card's key.

    Each is the record its engine writes for the card (whole state or head: a card format
    above, a pattern format of ``features.patterns.state``), embedded as is; nil where that
    engine holds no state for the card. One record per card instead of one per engine: about
    half the changelog records of a batch (``consumers.pipelines.fraud_partition``). The
    slices of either buffer keep their own records.
    """

    card: msgspec.Raw
    patterns: msgspec.Raw


class UserStateV1(msgspec.Struct, array_like=True, tag="r1"):
    """One user's recommendation state.

    ``ages``/``kinds``/``items``/``categories``: buffered views (kind 0) and clicks (kind 1),
    oldest first. ``purchase_ages``/``purchase_items``: buffered purchases, oldest first.
    ``recent_*`` and ``purchased_*``: the settled item lists, newest first, distinct.
    """

    last: int
    ages: list[int]
    kinds: list[int]
    items: list[str]
    categories: list[str]
    purchase_ages: list[int]
    purchase_items: list[str]
    recent_items: list[str]
    recent_ages: list[int]
    purchased_items: list[str]
    purchased_ages: list[int]


encoder = msgspec.msgpack.Encoder()
partition_meta_decoder = msgspec.msgpack.Decoder(PartitionMetaV1)
card_state_decoder = msgspec.msgpack.Decoder(CardStateV1 | CardStateV2 | CardHeadV3)
card_slice_decoder = msgspec.msgpack.Decoder(CardSliceV3)
user_state_decoder = msgspec.msgpack.Decoder(UserStateV1)
fraud_card_decoder = msgspec.msgpack.Decoder(FraudCardV1)
