"""Fraud features per card: exact sliding windows over a small time-sorted buffer per card.

Per card the engine keeps its transactions of the last 24 h + allowed lateness, sorted by
event_time (ties in processing order), with

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

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from math import asin, cos, radians, sin, sqrt

from contracts.events import Transaction, UserProfile
from features._engine import NO_TIME, BatchResult, KeyedEngine, KeyState
from features.config import FeatureConfig
from features.definitions import (
    DAY_MS,
    EARTH_RADIUS_KM,
    FRAUD,
    HOUR_MS,
    MERCHANT_RISK_FEATURE_NAMES,
    MINUTE_MS,
    SPEED_MIN_SECONDS,
    FraudRow,
)
from features.merchant_risk import MerchantRisk, MerchantRiskRow
from features.state import CardStateV1, card_state_decoder, encoder

_MIN_SCALE = 64  # 2**-64 resolution holds every amount >= 2**-11 exactly; finer ones rescale
_DIAMETER_KM = 2.0 * EARTH_RADIUS_KM
_W1 = MINUTE_MS
_W5 = 5 * MINUTE_MS
_WH = HOUR_MS

# A buffered transaction: (event_time, amount, merchant_id, lat rad, lon rad, cos lat).
Entry = tuple[int, float, str, float, float, float]


class CardState(KeyState):
    """One card's buffer. ``prefix[i]`` = exact sum of amounts before entry i (+ a base)."""

    __slots__ = ("anchor", "div", "entries", "lo24", "mcount", "prefix", "scale", "times", "unit")

    def __init__(self) -> None:
        super().__init__()
        self.times: list[int] = []
        self.entries: list[Entry] = []
        self.prefix: list[int] = [0]
        self.scale = _MIN_SCALE
        self.div = 1 << _MIN_SCALE
        self.unit = _unit(_MIN_SCALE)
        self.mcount: dict[str, int] = {}
        self.lo24 = 0  # first entry in (times[-1] - 24 h, times[-1]]: mcount counts entries lo24:
        self.anchor: Entry | None = None

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

    Not thread-safe; one engine per consumer actor. Rows follow ``features.definitions.FRAUD``.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__(config)
        self._prev_horizon = self.config.previous_transaction_horizon_ms
        self._horizon_ms = self._prev_horizon  # >= 24 h + lateness, checked by FeatureConfig
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
        merchant_risk: MerchantRisk | None = None,
    ) -> BatchResult:
        """Process ``transactions`` of one partition in partition order.

        ``profiles`` maps user_id to the current profile (the stream-table join as of now).
        ``merchant_risk`` holds the fraud labels (the merchant-risk features; null without).
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
        risk_of = merchant_risk.features if merchant_risk is not None else _no_merchant_risk
        max_time = part.max_time
        wm = part.watermark
        rows: list[FraudRow | None] = []
        late: list[int] = []
        add_row = rows.append
        # Locals: this loop is the hot path.
        day, w1, w5, wh, hour_ms = DAY_MS, _W1, _W5, _WH, HOUR_MS
        bucket_ms = MINUTE_MS
        diameter, min_seconds = _DIAMETER_KM, SPEED_MIN_SECONDS
        _bisect, _radians, _cos, _sin, _asin, _sqrt = bisect_right, radians, cos, sin, asin, sqrt
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
                    _trim_to(st, times[len(times) - cap], wm - prev_horizon)
            elif st.anchor is not None and st.anchor[0] <= wm - prev_horizon:
                st.anchor = None
            entries = st.entries
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
                    old = entries[j][2]
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
                window = {e[2] for e in entries[lo:pos]}
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
            prev = entries[pos - 1] if pos else st.anchor
            if prev is not None and prev[0] > t - prev_horizon:
                seconds = (t - prev[0]) / 1000
                s_phi = _sin((phi - prev[3]) * 0.5)
                s_lam = _sin((lam - prev[4]) * 0.5)
                a = s_phi * s_phi + cphi * prev[5] * s_lam * s_lam
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

            entry = (t, amount, merchant, phi, lam, cphi)
            if in_order:
                times.append(t)
                entries.append(entry)
                prefix.append(top)
                mcount[merchant] = mcount.get(merchant, 0) + 1
                if t > st.last:
                    st.last = t
                    if t // bucket_ms != st.bucket:
                        rebucket(part, key, st)
            else:
                times.insert(pos, t)
                entries.insert(pos, entry)
                prefix.insert(pos + 1, top)
                for j in range(pos + 2, n + 2):
                    prefix[j] += ai
                if t > times[-1] - day:  # inside the merchant counts' window
                    mcount[merchant] = mcount.get(merchant, 0) + 1
                else:
                    st.lo24 += 1
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
                    *risk_of(merchant, t),
                )
            )

        self._end_batch(part, max_time, wm, now_ms if transactions else None)
        return BatchResult(rows, late)

    # -- state hooks ------------------------------------------------------------------------

    def _trim(self, st: CardState, watermark: int) -> bool:
        _trim_to(st, watermark - DAY_MS, watermark - self._prev_horizon)
        return not st.times and st.anchor is None

    def _encode(self, st: CardState) -> bytes:
        last = st.last
        entries = st.entries
        anchor = st.anchor
        return encoder.encode(
            CardStateV1(
                last=last,
                ages=[last - e[0] for e in entries],
                amounts=[e[1] for e in entries],
                merchants=[e[2] for e in entries],
                lat=[e[3] for e in entries],
                lon=[e[4] for e in entries],
                anchor=None if anchor is None else (last - anchor[0], anchor[3], anchor[4]),
            )
        )

    def _decode(self, data: bytes) -> CardState:
        rec = card_state_decoder.decode(data)
        n = len(rec.ages)
        if not len(rec.amounts) == len(rec.merchants) == len(rec.lat) == len(rec.lon) == n:
            raise ValueError("card state columns have different lengths")
        if any(a < 0 for a in rec.ages) or any(rec.ages[i] < rec.ages[i + 1] for i in range(n - 1)):
            raise ValueError("card state ages must be >= 0 and non-increasing")
        if not n and rec.anchor is None:
            raise ValueError("card state is empty")
        st = CardState()
        last = rec.last
        st.last = last
        for age, amount, merchant, phi, lam in zip(
            rec.ages, rec.amounts, rec.merchants, rec.lat, rec.lon, strict=True
        ):
            t = last - age
            ai = _fixed(st, amount)
            st.times.append(t)
            st.entries.append((t, amount, merchant, phi, lam, cos(phi)))
            st.prefix.append(st.prefix[-1] + ai)
        if rec.anchor is not None:
            age, phi, lam = rec.anchor
            if n and last - age > st.times[0]:
                raise ValueError("card state anchor is newer than its buffer")
            st.anchor = (last - age, 0.0, "", phi, lam, cos(phi))
        if n:
            st.lo24 = bisect_right(st.times, st.times[-1] - DAY_MS)
            mcount = st.mcount
            for e in st.entries[st.lo24 :]:
                mcount[e[2]] = mcount.get(e[2], 0) + 1
        return st


def _trim_to(st: CardState, cut: int, anchor_cut: int) -> None:
    """Drop buffered transactions with event_time <= ``cut``; the newest becomes the anchor.
    Expire the anchor when its event_time <= ``anchor_cut``."""
    times = st.times
    k = bisect_right(times, cut)
    if k:
        entries = st.entries
        st.anchor = entries[k - 1]
        lo24 = st.lo24
        if lo24 < k:  # dropping entries the merchant counts still hold
            mcount = st.mcount
            for e in entries[lo24:k]:
                c = mcount[e[2]] - 1
                if c:
                    mcount[e[2]] = c
                else:
                    del mcount[e[2]]
            st.lo24 = 0
        else:
            st.lo24 = lo24 - k
        del times[:k]
        del entries[:k]
        del st.prefix[:k]
        if not times:
            st.prefix = [0]
            st.scale = _MIN_SCALE
            st.div = 1 << _MIN_SCALE
            st.unit = _unit(_MIN_SCALE)
    anchor = st.anchor
    if anchor is not None and anchor[0] <= anchor_cut:
        st.anchor = None


_NO_MERCHANT_RISK: MerchantRiskRow = (None,) * len(MERCHANT_RISK_FEATURE_NAMES)


def _no_merchant_risk(merchant_id: str, event_time: int) -> MerchantRiskRow:
    return _NO_MERCHANT_RISK


def fraud_row_dict(row: FraudRow) -> dict[str, float | None]:
    """A fraud row as ``{feature: value}`` (``contracts.events.FraudScore.features``)."""
    return FRAUD.as_dict(row)


__all__ = ["NO_TIME", "CardState", "FraudFeatureEngine", "fraud_row_dict"]
