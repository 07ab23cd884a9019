"""Evaluation metrics, in numpy: ROC AUC, average precision, card precision@k, calibration (Brier,
ECE), and next-item Recall@k / NDCG@k.

Ties are handled exactly rather than by whatever order a sort leaves them in:

- ROC AUC counts a tied (positive, negative) pair as half a correct pair (average ranks).
- Average precision steps at distinct scores only (tied rows enter the curve together), as
  scikit-learn's ``average_precision_score`` does.
- Card precision@k and Recall@k / NDCG@k are expectations over a uniformly random order of the
  tied items at the cut-off.
"""

from __future__ import annotations

import numpy as np

DAY_MS = 86_400_000
UNRANKED = 1 << 40  # "items above" a target that cannot be recommended


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels have {y.size} values, scores {s.size}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in ascending order; tied values share their average rank."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values, and each run's average rank.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U); NaN when only one class is present."""
    y, s = _check(labels, scores)
    positive = y > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(s)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as sum over thresholds of (R_n - R_n-1) * P_n,
    thresholds at the distinct scores; NaN without positives."""
    y, s = _check(labels, scores)
    n_pos = (y > 0).sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], (y[order] > 0).astype(np.float64)
    # The last row of each run of equal scores: the curve's points.
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last]
    seen = last + 1.0
    precision = tp / seen
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def card_precision_at_k(
    days: np.ndarray, cards: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int = 100
) -> float:
    """Card precision@k averaged over days.

    Each day: a card's score is its highest transaction score that day; a card is compromised
    that day if it has a fraud-labeled transaction that day. The k highest-scoring cards are
    investigated; the day's precision is the share of them that are compromised (of
    ``min(k, cards that day)``). Cards tied at the cut-off count in expectation: each of them is in
    the top k with probability (places left) / (tied cards). Days are the ``days`` values (e.g.
    ``event_time // DAY_MS``); the result is the mean over the days present. NaN without rows.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    days = np.asarray(days).ravel()
    cards = np.asarray(cards).ravel()
    y, s = _check(labels, scores)
    if not days.size == cards.size == s.size:
        raise ValueError("days, cards, scores and labels must have the same length")
    per_day = []
    for day in np.unique(days):
        rows = days == day
        card_ids, inverse = np.unique(cards[rows], return_inverse=True)
        best = np.full(card_ids.size, -np.inf)
        np.maximum.at(best, inverse, s[rows])
        compromised = np.zeros(card_ids.size)
        np.maximum.at(compromised, inverse, (y[rows] > 0).astype(np.float64))
        per_day.append(_expected_precision_at_k(best, compromised, k))
    return float(np.mean(per_day)) if per_day else float("nan")


def _expected_precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    n = scores.size
    k = min(k, n)
    order = np.argsort(-scores, kind="mergesort")
    threshold = scores[order[k - 1]]
    above = scores > threshold
    tied = scores == threshold
    places_left = k - int(above.sum())
    hits = relevant[above].sum() + relevant[tied].sum() * places_left / int(tied.sum())
    return float(hits / k)


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    y, p = _check(labels, probs)
    return float(np.mean((p - (y > 0)) ** 2))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE: sum over equal-width probability bins of (share of rows) * |mean p - fraud rate|."""
    y, p = _check(labels, probs)
    if y.size == 0:
        return float("nan")
    which = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    sum_y = np.bincount(which, weights=(y > 0).astype(np.float64), minlength=bins)
    return float(np.sum(np.abs(sum_p - sum_y)) / y.size)


# -- next-item prediction -------------------------------------------------------------------------


def target_rank_stats(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``scores`` [N, M]: how many items score above the target column, and how
    many others tie with it. Give excluded items ``-inf`` scores before calling. A target that
    cannot be recommended (< 0: unknown to the model; or scored ``-inf``: excluded) is a miss at
    any k: ``UNRANKED`` items above it."""
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64).ravel()
    if scores.ndim != 2 or scores.shape[0] != targets.size:
        raise ValueError(f"scores {scores.shape} do not fit {targets.size} targets")
    n = scores.shape[0]
    known = targets >= 0
    target_score = scores[np.arange(n), np.where(known, targets, 0)][:, None]  # [N, 1]
    valid = known & (target_score[:, 0] > -np.inf)
    greater = (scores > target_score).sum(axis=1)
    ties = (scores == target_score).sum(axis=1) - 1
    greater = np.where(valid, greater, UNRANKED)
    ties = np.where(valid, ties, 0)
    return greater.astype(np.int64), ties.astype(np.int64)


def recall_at_k(greater: np.ndarray, ties: np.ndarray, k: int) -> float:
    """Share of rows whose single target is in the top k (ties broken uniformly at random, in
    expectation), from ``target_rank_stats``."""
    g, t = np.asarray(greater, np.float64), np.asarray(ties, np.float64)
    if g.size == 0:
        return float("nan")
    return float(np.mean(np.clip(k - g, 0, t + 1) / (t + 1)))


def ndcg_at_k(greater: np.ndarray, ties: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item per row: 1 / log2(position + 2) if its 0-based position is
    below k, else 0 (the ideal DCG is 1), in expectation over the order of tied items."""
    g, t = np.asarray(greater, np.int64), np.asarray(ties, np.int64)
    if g.size == 0:
        return float("nan")
    # cumulative[p] = sum of 1 / log2(q + 2) for q < p, p = 0..k
    cumulative = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))]
    lo = np.minimum(g, k)
    hi = np.minimum(g + t + 1, k)
    return float(np.mean((cumulative[hi] - cumulative[lo]) / (t + 1)))
