"""Delayed-label merchant risk: how often a merchant's labeled transactions were fraud.

Labels (``contracts.events.FraudLabel``: an analyst's decision on an alerted transaction) arrive
late, as real chargebacks do, so a label counts only once it is ``label_delay_ms`` old. The
delay is measured in event time: a transaction at time ``t`` sees the labels decided at or
before ``c = t - label_delay_ms``. That makes the features a pure function of the labels and
the transaction, identical online and in the offline replay, whenever a label reaches the
actors within the delay (seconds, against a default delay of 7 days; docs/features.md).

For a transaction at ``t`` at merchant ``m``, with ``c = t - label_delay_ms`` and ``D`` the UTC
day of ``c``: ``merchant_fraud_share_{k}d`` = fraud labels / all labels of ``m`` decided at or
before ``c`` whose transactions fall on the UTC days ``D-k+1 .. D``; null when there are none.

State: per merchant and transaction day, the decision times of its labels (all, and fraud
only), sorted, so a query is two binary searches per day. A label is counted once per
transaction (by event id: the outbox relay may publish one twice). Online (``prune=True``),
transaction days more than delay + 30 + 2 days before the newest label's decision are dropped,
so memory follows the label rate; a transaction that much older than the newest label (a
backfill through the live pipeline) would miss them. The offline replay keeps everything.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.events import FraudLabel, Transaction
from features.definitions import DAY_MS, MERCHANT_RISK_WINDOW_DAYS

MerchantRiskRow = tuple[float | None, ...]
"""Values in ``features.definitions.MERCHANT_RISK`` order (one share per window)."""

_LONGEST = max(MERCHANT_RISK_WINDOW_DAYS)
_NONE: MerchantRiskRow = (None,) * len(MERCHANT_RISK_WINDOW_DAYS)


@dataclass(slots=True)
class _Day:
    decided: list[int] = field(default_factory=list)  # decided_at of every label, sorted
    fraud: list[int] = field(default_factory=list)  # decided_at of the fraud labels, sorted
    event_ids: list[str] = field(default_factory=list)


class MerchantRisk:
    """The labels of every merchant, and the merchant-risk features of a transaction."""

    def __init__(self, label_delay_ms: int, *, prune: bool = True) -> None:
        if label_delay_ms < 0:
            raise ValueError(f"label_delay_ms must be >= 0, got {label_delay_ms}")
        self.label_delay_ms = label_delay_ms
        self._prune_on = prune
        self._keep_days = -(-label_delay_ms // DAY_MS) + _LONGEST + 2
        self._merchants: dict[str, dict[int, _Day]] = {}
        self._seen: set[str] = set()
        self._newest_decided = 0
        self.labels = 0
        self.duplicates = 0

    def add(self, label: FraudLabel) -> bool:
        """Count one label; False when its transaction was counted already or it is too old."""
        if label.event_id in self._seen:
            self.duplicates += 1
            return False
        day = label.event_time // DAY_MS
        if day < self._oldest_day():
            return False
        days = self._merchants.setdefault(label.merchant_id, {})
        bucket = days.get(day)
        if bucket is None:
            bucket = days[day] = _Day()
        _insert(bucket.decided, label.decided_at)
        if label.label == "fraud":
            _insert(bucket.fraud, label.decided_at)
        bucket.event_ids.append(label.event_id)
        self._seen.add(label.event_id)
        self.labels += 1
        if label.decided_at > self._newest_decided:
            new_day = label.decided_at // DAY_MS > self._newest_decided // DAY_MS
            self._newest_decided = label.decided_at
            if new_day and self._prune_on:
                self._prune()
        return True

    def features(self, merchant_id: str, event_time: int) -> MerchantRiskRow:
        """``merchant_fraud_share_{1,7,30}d`` of a transaction at ``merchant_id``."""
        days = self._merchants.get(merchant_id)
        if not days:
            return _NONE
        cutoff = event_time - self.label_delay_ms
        last = cutoff // DAY_MS
        out: list[float | None] = []
        total = fraud = 0
        done = 0
        for k in MERCHANT_RISK_WINDOW_DAYS:
            while done < k:
                bucket = days.get(last - done)
                if bucket is not None:
                    total += bisect_right(bucket.decided, cutoff)
                    fraud += bisect_right(bucket.fraud, cutoff)
                done += 1
            out.append(fraud / total if total else None)
        return tuple(out)

    def __len__(self) -> int:
        return self.labels

    def _oldest_day(self) -> int:
        """Days before this one can no longer be in any window (see the module docstring)."""
        if not self._newest_decided or not self._prune_on:
            return -(1 << 62)
        return self._newest_decided // DAY_MS - self._keep_days

    def _prune(self) -> None:
        oldest = self._oldest_day()
        for merchant in list(self._merchants):
            days = self._merchants[merchant]
            for day in [d for d in days if d < oldest]:
                self._seen.difference_update(days.pop(day).event_ids)
            if not days:
                del self._merchants[merchant]


def _insert(values: list[int], value: int) -> None:
    if not values or values[-1] <= value:
        values.append(value)  # the common case: labels arrive in decision order
    else:
        insort(values, value)


def append_merchant_risk(
    transactions: Sequence[Transaction],
    rows: Sequence[tuple[Any, ...] | None],
    risk: MerchantRisk | None,
) -> list[tuple[Any, ...] | None]:
    """Complete the fraud rows: each card + pattern row (``PatternEngine``) gets its
    transaction's merchant risk appended, giving a full ``FRAUD`` row; None (late) stays None.

    ``risk`` None (no labels: serving's request-time features) gives nulls. The consumers and
    the offline replay both call this, so their rows agree.
    """
    features = risk.features if risk is not None else None
    out: list[tuple[Any, ...] | None] = []
    for tx, row in zip(transactions, rows, strict=True):
        if row is None:
            out.append(None)
        elif features is None:
            out.append((*row, *_NONE))
        else:
            out.append((*row, *features(tx.merchant_id, tx.event_time)))
    return out
