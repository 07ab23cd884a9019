"""Fraud features per card: exact sliding windows over a small time-sorted buffer per card.

Per card the engine keeps its transactions of the last 24 h + allowed lateness, sorted by
event_time (ties in processing order), in packed columns (``array``: 8 bytes per value, no
Python object per transaction; merchant ids are interned, so a card refers to shared strings),
with

- ``prefix``: exact running sums of the amounts as integers in units of 2**-scale (every float
  is a dyadic rational, so this is lossless). A window total is a difference of two prefixes,
  converted to float once: the correctly rounded exact sum, whatever the order of arrival.
- ``mcount``: merchant -> count over (last - 24 h, last], slid forward by in-order events, so
  unique_merchants_24h costs O(1) amortized. An out-of-order event counts its window directly.
- ``anchor``: the newest transaction dropped from the buffer, for the previous-transaction
  features of cards that were quiet for more than a day.

An in-order event (event_time >= the card's last) appends; an out-of-order one is inserted with
a bisect and shifts the prefixes after it. Window bounds are bisects on the buffer, so the cost
per event does not depend on window length. See docs/features.md for the definitions.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from math import asin, cos, radians, sin, sqrt

from contracts.events import Transaction, UserProfile
from features._engine import CLEAN, NO_TIME, BatchResult, KeyedEngine, KeyState
from features.config import FeatureConfig
from features.definitions import (
    DAY_MS,
    EARTH_RADIUS_KM,
    FRAUD_CARD,
    HOUR_MS,
    MINUTE_MS,
    SPEED_MIN_SECONDS,
    FraudRow,
)
from features.state import (
    CardHeadV3,
    CardSliceV3,
    CardStateV1,
    CardStateV2,
    card_slice_decoder,
    card_state_decoder,
    encoder,
)

_MIN_SCALE = 64  # 2**-64 resolution holds every amount >= 2**-11 exactly; finer ones rescale
_DIAMETER_KM = 2.0 * EARTH_RADIUS_KM
_W1 = MINUTE_MS
_W5 = 5 * MINUTE_MS
_WH = HOUR_MS
_LITTLE_ENDIAN = sys.byteorder == "little"

# The newest transaction dropped from a card's buffer: (event_time, lat rad, lon rad).
Anchor = tuple[int, float, float]


class CardState(KeyState):
    """One card's buffer, columnar. ``prefix[i]`` = exact sum of amounts before entry i."""

    __slots__ = (
        "amounts",
        "anchor",
        "div",
        "lat",
        "lo24",
        "lon",
        "mcount",
        "merchants",
        "prefix",
        "scale",
        "times",
        "unit",
    )

    def __init__(self) -> None:
        super().__init__()
        self.times = array("q")
        self.amounts = array("d")
        self.lat = array("d")
        self.lon = array("d")
        self.merchants: list[str] = []
        self.prefix: list[int] = [0]
        self.scale = _MIN_SCALE
        self.div = 1 << _MIN_SCALE
        self.unit = _unit(_MIN_SCALE)
        self.mcount: dict[str, int] = {}
        self.lo24 = 0  # first entry in (times[-1] - 24 h, times[-1]]: mcount counts entries lo24:
        self.anchor: Anchor | None = None

    def rescale(self, bits: int) -> None:
        """Make room for ``bits`` more fractional bits in the fixed-point prefixes."""
        self.prefix = [p << bits for p in self.prefix]
        self.scale += bits
        self.div = 1 << self.scale
        self.unit = _unit(self.scale)


def _unit(scale: int) -> float:
    """2**-scale when ``int * 2**-scale`` is the correctly rounded quotient, else 0.0.

    int * float rounds the int to the nearest double (ties to even) and the power-of-two
    multiply is then exact, so it equals ``int / 2**scale``, unless the int overflows a double
    or the result is subnormal; neither can happen for sums of amounts <= 1e12 at scale <= 900.
    """
    return 2.0**-scale if scale <= 900 else 0.0


def _fixed(st: CardState, amount: float) -> int:
    """``amount`` exactly, in units of 2**-st.scale (rescaling the card if it needs more bits)."""
    num, den = amount.as_integer_ratio()
    shift = st.scale - den.bit_length() + 1
    if shift < 0:
        st.rescale(-shift)
        shift = 0
    return num << shift


class FraudFeatureEngine(KeyedEngine[CardState]):
    """Fraud features of transactions, keyed by card_id, for the partitions it is assigned.

    Not thread-safe; one engine per consumer actor. Rows follow ``features.definitions.FRAUD_CARD``.
    The changelog is sliced (``features._engine``): a head (``CardHeadV3``) and slices of the
    buffer (``CardSliceV3``).
    """

    _sliced = True

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__(config)
        self._prev_horizon = self.config.previous_transaction_horizon_ms
        self._set_horizon(self._prev_horizon)  # >= 24 h + lateness, checked by FeatureConfig
        self._cap = self.config.max_events_per_key

    def process(
        self, partition: int, tx: Transaction, profile: UserProfile | None = None
    ) -> FraudRow | None:
        """Features of one transaction, or None when it is late. Prefer ``process_batch``."""
        profiles = {} if profile is None else {tx.user_id: profile}
        return self.process_batch(partition, (tx,), profiles).rows[0]

    def process_batch(
        self,
        partition: int,
        transactions: Sequence[Transaction],
        profiles: Mapping[str, UserProfile],
        *,
        now_ms: int | None = None,
    ) -> BatchResult:
        """Process ``transactions`` of one partition in partition order.

        ``profiles`` maps user_id to the current profile (the stream-table join as of now).
        ``now_ms`` is the processing time, for ``advance_idle``; leave it None offline.
        Returns one row per transaction, None for late ones (also listed in ``late``).
        """
        part = self._partition(partition)
        keys = part.keys
        touched = part.touched
        rebucket = self._rebucket
        lateness = self._lateness
        prev_horizon = self._prev_horizon
        cap = self._cap
        get_profile = profiles.get
        max_time = part.max_time
        wm = part.watermark
        rows: list[FraudRow | None] = []
        late: list[int] = []
        add_row = rows.append
        # Locals: this loop is the hot path.
        day, w1, w5, wh, hour_ms = DAY_MS, _W1, _W5, _WH, HOUR_MS
        bucket_ms = self._bucket_ms  # the expiry wheel's: rebucket only when it changes
        diameter, min_seconds = _DIAMETER_KM, SPEED_MIN_SECONDS
        _bisect, _radians, _cos, _sin, _asin, _sqrt = bisect_right, radians, cos, sin, asin, sqrt
        _intern = sys.intern
        new_state = CardState

        for index, tx in enumerate(transactions):
            t = tx.event_time
            if t < wm:
                late.append(index)
                add_row(None)
                continue
            if t > max_time:
                max_time = t
                wm = t - lateness
            key = tx.card_id
            st = keys.get(key)
            if st is None:
                st = keys[key] = new_state()
            times = st.times
            if times:
                if times[0] <= wm - day:
                    self._trim(st, wm)
                elif len(times) >= cap:
                    self._trim_to(st, times[len(times) - cap], wm - prev_horizon)
            elif st.anchor is not None and st.anchor[0] <= wm - prev_horizon:
                st.anchor = None
            merchants = st.merchants
            n = len(times)

            amount = tx.amount
            num, den = amount.as_integer_ratio()
            shift = st.scale - den.bit_length() + 1
            if shift < 0:
                st.rescale(-shift)
                shift = 0
            ai = num << shift  # the amount exactly, in units of 2**-scale
            prefix = st.prefix
            in_order = not n or t >= times[-1]
            pos = n if in_order else _bisect(times, t)
            top = prefix[pos] + ai  # exact sum through this transaction

            lo1 = _bisect(times, t - w1, 0, pos)
            lo5 = _bisect(times, t - w5, 0, lo1)
            loh = _bisect(times, t - wh, 0, lo5)

            merchant = tx.merchant_id
            mcount = st.mcount
            if in_order:
                # Slide the merchant counts to (t - 24 h, t].
                j = st.lo24
                cut = t - day
                while j < n and times[j] <= cut:
                    old = merchants[j]
                    c = mcount[old] - 1
                    if c:
                        mcount[old] = c
                    else:
                        del mcount[old]
                    j += 1
                st.lo24 = lo = j
                seen = merchant in mcount
                unique = len(mcount) if seen else len(mcount) + 1
            else:
                lo = _bisect(times, t - day, 0, loh)
                window = set(merchants[lo:pos])
                seen = merchant in window
                unique = len(window) if seen else len(window) + 1
            # Exact window sums, rounded once to the nearest double.
            unit = st.unit
            if unit:
                total_1m = (top - prefix[lo1]) * unit
                total_5m = (top - prefix[lo5]) * unit
                total_1h = (top - prefix[loh]) * unit
                total_others = (prefix[pos] - prefix[lo]) * unit
            else:
                div = st.div
                total_1m = (top - prefix[lo1]) / div
                total_5m = (top - prefix[lo5]) / div
                total_1h = (top - prefix[loh]) / div
                total_others = (prefix[pos] - prefix[lo]) / div
            others = pos - lo
            ratio = amount / (total_others / others) if others else None

            phi = _radians(tx.lat)
            lam = _radians(tx.lon)
            cphi = _cos(phi)
            if pos:
                prev_t, prev_phi, prev_lam = times[pos - 1], st.lat[pos - 1], st.lon[pos - 1]
            elif st.anchor is not None:
                prev_t, prev_phi, prev_lam = st.anchor
            else:
                prev_t = NO_TIME
            if prev_t > t - prev_horizon:
                seconds = (t - prev_t) / 1000
                s_phi = _sin((phi - prev_phi) * 0.5)
                s_lam = _sin((lam - prev_lam) * 0.5)
                a = s_phi * s_phi + cphi * _cos(prev_phi) * s_lam * s_lam
                distance = diameter * _asin(_sqrt(a if a < 1.0 else 1.0))
                speed = distance * 3600.0 / (seconds if seconds > min_seconds else min_seconds)
            else:
                distance = seconds = speed = None

            profile = get_profile(tx.user_id)
            if profile is None:
                home = age = None
            else:
                h_phi = _radians(profile.home_lat)
                s_phi = _sin((h_phi - phi) * 0.5)
                s_lam = _sin((_radians(profile.home_lon) - lam) * 0.5)
                a = s_phi * s_phi + cphi * _cos(h_phi) * s_lam * s_lam
                home = diameter * _asin(_sqrt(a if a < 1.0 else 1.0))
                age = float(profile.account_age_days)

            merchant = _intern(merchant)
            if in_order:
                times.append(t)
                st.amounts.append(amount)
                st.lat.append(phi)
                st.lon.append(lam)
                merchants.append(merchant)
                prefix.append(top)
                mcount[merchant] = mcount.get(merchant, 0) + 1
                if t > st.last:
                    st.last = t
                    if t // bucket_ms != st.bucket:
                        rebucket(part, key, st)
            else:
                times.insert(pos, t)
                st.amounts.insert(pos, amount)
                st.lat.insert(pos, phi)
                st.lon.insert(pos, lam)
                merchants.insert(pos, merchant)
                prefix.insert(pos + 1, top)
                for j in range(pos + 2, n + 2):
                    prefix[j] += ai
                if t > times[-1] - day:  # inside the merchant counts' window
                    mcount[merchant] = mcount.get(merchant, 0) + 1
                else:
                    st.lo24 += 1
            if t < st.low:
                st.low = t
            touched.add(key)

            add_row(
                (
                    amount,
                    pos - lo1 + 1,
                    pos - lo5 + 1,
                    pos - loh + 1,
                    total_1m,
                    total_5m,
                    total_1h,
                    unique,
                    0 if seen else 1,
                    ratio,
                    distance,
                    seconds,
                    speed,
                    home,
                    age,
                    (t // hour_ms) % 24,
                    1 if tx.channel == "online" else 0,
                )
            )

        self._end_batch(part, max_time, wm, now_ms if transactions else None)
        return BatchResult(rows, late)

    # -- state hooks ------------------------------------------------------------------------

    def _trim(self, st: CardState, watermark: int) -> bool:
        self._trim_to(st, watermark - DAY_MS, watermark - self._prev_horizon)
        return not st.times and st.anchor is None

    def _trim_to(self, st: CardState, cut: int, anchor_cut: int) -> None:
        """Drop buffered transactions with event_time <= ``cut``; the newest becomes the anchor.
        Expire the anchor when its event_time <= ``anchor_cut``."""
        times = st.times
        k = bisect_right(times, cut)
        if k:
            self._note_dropped(st, times, k)
            merchants = st.merchants
            st.anchor = (times[k - 1], st.lat[k - 1], st.lon[k - 1])
            lo24 = st.lo24
            if lo24 < k:  # dropping entries the merchant counts still hold
                mcount = st.mcount
                for m in merchants[lo24:k]:
                    c = mcount[m] - 1
                    if c:
                        mcount[m] = c
                    else:
                        del mcount[m]
                st.lo24 = 0
            else:
                st.lo24 = lo24 - k
            del times[:k]
            del st.amounts[:k]
            del st.lat[:k]
            del st.lon[:k]
            del merchants[:k]
            del st.prefix[:k]
            if not times:
                st.prefix = [0]
                st.scale = _MIN_SCALE
                st.div = 1 << _MIN_SCALE
                st.unit = _unit(_MIN_SCALE)
        anchor = st.anchor
        if anchor is not None and anchor[0] <= anchor_cut:
            st.anchor = None

    def _encode(self, st: CardState) -> bytes:
        return encoder.encode(
            CardStateV2(
                last=st.last,
                times=_packed(st.times),
                amounts=_packed(st.amounts),
                lat=_packed(st.lat),
                lon=_packed(st.lon),
                merchants=st.merchants,
                anchor=st.anchor,
            )
        )

    def _entry_times(self, st: CardState) -> array:  # type: ignore[type-arg]
        return st.times

    def _encode_head(self, st: CardState) -> bytes:
        return encoder.encode(CardHeadV3(st.last, st.anchor))

    def _encode_slice(self, st: CardState, lo: int, hi: int) -> bytes:
        return encoder.encode(
            CardSliceV3(
                times=_packed(st.times[lo:hi]),
                amounts=_packed(st.amounts[lo:hi]),
                lat=_packed(st.lat[lo:hi]),
                lon=_packed(st.lon[lo:hi]),
                merchants=st.merchants[lo:hi],
            )
        )

    def _decode_head(self, data: bytes) -> CardState | CardHeadV3:
        rec = card_state_decoder.decode(data)
        if isinstance(rec, CardHeadV3):
            return rec
        return self._build(rec)  # a whole-state record

    def _complete(self, rec: CardHeadV3, slices: list[bytes]) -> CardState:
        parts = [card_slice_decoder.decode(data) for data in slices]
        return self._build(
            CardStateV2(
                last=rec.last,
                times=b"".join(p.times for p in parts),
                amounts=b"".join(p.amounts for p in parts),
                lat=b"".join(p.lat for p in parts),
                lon=b"".join(p.lon for p in parts),
                merchants=[m for p in parts for m in p.merchants],
                anchor=rec.anchor,
            ),
            sliced=True,
        )

    def _build(self, rec: CardStateV1 | CardStateV2, *, sliced: bool = False) -> CardState:
        """The engine's state from a decoded record (validated: it may come from anywhere).

        A key restored from a whole-state record is written whole until its buffer grows."""
        if isinstance(rec, CardStateV1):
            rec = _upgrade(rec)
        st = CardState()
        if sliced:
            st.low = CLEAN
        st.last = rec.last
        for column, raw in (
            (st.times, rec.times),
            (st.amounts, rec.amounts),
            (st.lat, rec.lat),
            (st.lon, rec.lon),
        ):
            if len(raw) % 8:
                raise ValueError("card state column is not a whole number of 8-byte values")
            column.frombytes(raw)
            if not _LITTLE_ENDIAN:
                column.byteswap()
        n = len(st.times)
        if not len(st.amounts) == len(st.lat) == len(st.lon) == len(rec.merchants) == n:
            raise ValueError("card state columns have different lengths")
        times = st.times
        if any(times[i] > times[i + 1] for i in range(n - 1)):
            raise ValueError("card state times must be non-decreasing")
        if n and times[-1] > rec.last:
            raise ValueError("card state times must be <= its last event time")
        if not n and rec.anchor is None:
            raise ValueError("card state is empty")
        intern = sys.intern
        st.merchants = [intern(m) for m in rec.merchants]
        for amount in st.amounts:
            ai = _fixed(st, amount)  # may rescale, replacing st.prefix
            st.prefix.append(st.prefix[-1] + ai)
        if rec.anchor is not None:
            anchor_t, phi, lam = rec.anchor
            if n and anchor_t > times[0]:
                raise ValueError("card state anchor is newer than its buffer")
            st.anchor = (anchor_t, phi, lam)
        if n:
            st.lo24 = bisect_right(times, times[-1] - DAY_MS)
            mcount = st.mcount
            for m in st.merchants[st.lo24 :]:
                mcount[m] = mcount.get(m, 0) + 1
        return st


def _packed(column: array) -> bytes:  # type: ignore[type-arg]
    """``column``'s values as little-endian bytes (a copy; byte-swapped on big-endian hosts)."""
    if _LITTLE_ENDIAN:
        return column.tobytes()
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _upgrade(rec: CardStateV1) -> CardStateV2:
    """A V1 record (ages relative to ``last``, list columns) as V2."""
    n = len(rec.ages)
    if not len(rec.amounts) == len(rec.merchants) == len(rec.lat) == len(rec.lon) == n:
        raise ValueError("card state columns have different lengths")
    if any(a < 0 for a in rec.ages) or any(rec.ages[i] < rec.ages[i + 1] for i in range(n - 1)):
        raise ValueError("card state ages must be >= 0 and non-increasing")
    last = rec.last
    anchor = None
    if rec.anchor is not None:
        age, phi, lam = rec.anchor
        anchor = (last - age, phi, lam)
    return CardStateV2(
        last=last,
        times=_packed(array("q", [last - a for a in rec.ages])),
        amounts=_packed(array("d", rec.amounts)),
        lat=_packed(array("d", rec.lat)),
        lon=_packed(array("d", rec.lon)),
        merchants=rec.merchants,
        anchor=anchor,
    )


def fraud_row_dict(row: FraudRow) -> dict[str, float | None]:
    """This engine's row as ``{feature: value}`` (``FRAUD_CARD``: the card features)."""
    return FRAUD_CARD.as_dict(row)


__all__ = ["NO_TIME", "CardState", "FraudFeatureEngine", "fraud_row_dict"]
