"""Evaluation metrics against hand-computed examples (ties included) and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from training.metrics import (
    UNRANKED,
    average_precision,
    average_ranks,
    brier,
    card_precision_at_k,
    expected_calibration_error,
    ndcg_at_k,
    recall_at_k,
    roc_auc,
    target_rank_stats,
)


def test_average_ranks_share_ties() -> None:
    assert average_ranks(np.array([0.3, 0.1, 0.3, 0.2])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_roc_auc_by_hand() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # Ties: positives {0.5, 0.9}, negatives {0.5, 0.2}; the tied pair counts half: 3.5 / 4.
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == pytest.approx(0.875)
    # All tied: no information.
    assert roc_auc(np.array([0, 1, 0, 1]), np.ones(4)) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_average_precision_by_hand() -> None:
    # Ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): P=1 at R=.5, P=2/3 at R=1.
    ap = average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # A positive tied with a negative enters the curve together with it: not 1.0, but 5/6.
    ap = average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.5, 0.5, 0.1]))
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert math.isnan(average_precision(np.zeros(3), np.array([0.1, 0.2, 0.3])))


def test_auc_and_ap_match_brute_force_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.2
    s = rng.integers(0, 8, 300).astype(float)  # heavy ties
    pos, neg = s[y], s[~y]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert roc_auc(y, s) == pytest.approx(np.mean(pairs))
    # AP from the definition: thresholds at the distinct scores, high to low.
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        chosen = s >= t
        precision, recall = y[chosen].mean(), y[chosen].sum() / y.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    assert average_precision(y, s) == pytest.approx(ap)


def test_card_precision_at_k_over_days_with_ties() -> None:
    rows = [
        # day 0: A max 0.9 (compromised by its second txn), B 0.8, C 0.3 (compromised)
        (0, "A", 0.9, 0),
        (0, "A", 0.1, 1),
        (0, "B", 0.8, 0),
        (0, "C", 0.3, 1),
        # day 1: D 0.7 (compromised), then A, B, C tied at 0.5 for the last place; B compromised
        (1, "A", 0.5, 0),
        (1, "B", 0.5, 1),
        (1, "C", 0.5, 0),
        (1, "D", 0.7, 1),
        # day 2: a single card, compromised: precision over min(k, 1) card
        (2, "E", 0.2, 1),
    ]
    days, cards, scores, labels = (np.array(c) for c in zip(*rows, strict=True))
    expected_day0 = 1 / 2  # A, B
    expected_day1 = (1 + 1 / 3) / 2  # D, and one of three tied cards of which one is compromised
    expected_day2 = 1.0
    got = card_precision_at_k(days, cards, scores, labels, k=2)
    assert got == pytest.approx((expected_day0 + expected_day1 + expected_day2) / 3)
    # k=1 on day 1: D alone.
    assert card_precision_at_k(days[4:8], cards[4:8], scores[4:8], labels[4:8], k=1) == 1.0


def test_brier_and_ece_by_hand() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.9, 0.6, 0.4])
    assert brier(y, p) == pytest.approx((0.01 + 0.01 + 0.16 + 0.16) / 4)
    # Two bins: [0, .5) has mean p .25 and rate 0; [.5, 1] has mean p .75 and rate 1.
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.25 * 0.5 + 0.25 * 0.5)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_recall_and_ndcg_by_hand() -> None:
    scores = np.array(
        [
            [0.1, 0.5, 0.3, 0.2],  # target 2: one item above, no ties -> position 1
            [1.0, 1.0, 1.0, 0.0],  # target 1: tied with two others -> positions 0..2
            [0.4, 0.3, 0.2, 0.1],  # target unknown (-1): a miss
            [0.4, -np.inf, 0.2, 0.1],  # target excluded (-inf): a miss
        ]
    )
    targets = np.array([2, 1, -1, 1])
    greater, ties = target_rank_stats(scores, targets)
    assert greater.tolist() == [1, 0, UNRANKED, UNRANKED]
    assert ties.tolist() == [0, 2, 0, 0]
    assert recall_at_k(greater, ties, 1) == pytest.approx((0 + 1 / 3 + 0 + 0) / 4)
    assert recall_at_k(greater, ties, 2) == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)
    assert recall_at_k(greater, ties, 10) == pytest.approx((1 + 1 + 0 + 0) / 4)
    d = [1 / math.log2(p + 2) for p in range(3)]
    assert ndcg_at_k(greater, ties, 2) == pytest.approx((d[1] + (d[0] + d[1]) / 3) / 4)
    assert ndcg_at_k(greater, ties, 10) == pytest.approx((d[1] + (d[0] + d[1] + d[2]) / 3) / 4)
