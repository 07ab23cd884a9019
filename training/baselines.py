"""Baselines the models must beat.

Fraud:
- ``rules_score``: hand-written thresholds on velocity, distance and amount features, the kind a
  fraud team writes before it has a model. Each rule that fires adds its weight to the score.
- the logistic regression is ``FraudClassifier`` with no hidden layer (same inputs, same
  normalization, same training loop; see ``training/fraud.py``).

Recommendations (scores over the catalog, higher is better):
- ``popularity_scores``: the catalog's interaction counts in the training range, for everyone.
- ``recent_category_scores``: the most popular items of the user's most recent categories first
  (the categories of ``recent_items``, newest first), then the rest by popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from features.definitions import FRAUD_FEATURE_NAMES

# -- fraud ----------------------------------------------------------------------------------------

# (weight, feature, comparison, threshold): the rule fires when feature <op> threshold.
RULES: tuple[tuple[float, str, str, float], ...] = (
    (3.0, "speed_from_last_transaction_kmh", ">", 900.0),  # impossible travel
    (2.0, "distance_from_home_km", ">", 1500.0),  # far from home
    (2.0, "transaction_count_5m", ">=", 4),  # card testing velocity
    (1.0, "transaction_count_1h", ">=", 8),
    (2.0, "unique_merchants_24h", ">=", 6),  # merchant spree
    (1.5, "amount_to_mean_24h", ">", 5.0),  # far above the card's usual amount
    (1.0, "amount", ">", 500.0),
    (0.5, "is_new_merchant_24h", ">=", 1),
    (0.5, "account_age_days", "<", 90.0),
)


def rules_score(x: np.ndarray) -> np.ndarray:
    """Rows [n, F] (FRAUD order, NaN = null; a null never fires a rule) -> scores [n] >= 0."""
    index = {name: j for j, name in enumerate(FRAUD_FEATURE_NAMES)}
    score = np.zeros(x.shape[0])
    with np.errstate(invalid="ignore"):  # NaN comparisons are False, as intended
        for weight, feature, op, threshold in RULES:
            col = x[:, index[feature]]
            fired = {">": col > threshold, ">=": col >= threshold, "<": col < threshold}[op]
            score += weight * fired
    return score


# -- recommendations ------------------------------------------------------------------------------


def popularity_scores(popularity: np.ndarray, n_rows: int) -> np.ndarray:
    """The same scores [n_rows, I] (float64 copies of ``popularity`` [I]) for every user."""
    return np.broadcast_to(popularity.astype(np.float64), (n_rows, popularity.size)).copy()


def recent_category_scores(
    rows: Sequence[Sequence[Any]],
    item_index: dict[str, int],
    item_category: np.ndarray,
    popularity: np.ndarray,
    n_categories: int,
) -> np.ndarray:
    """Scores [n, I]: items of the user's most recent category first, then the second most
    recent, ...; within a category, and for every other item, by popularity.

    ``item_index``: item id -> catalog column; ``item_category`` [I]: category index (0..C) of
    each column; ``popularity`` [I] >= 0. Row field 3 is ``recent_items`` (newest first).
    """
    n = len(rows)
    pop = popularity.astype(np.float64)
    bonus_unit = float(pop.max()) + 1.0  # any category step outranks any popularity gap
    # rank_bonus[i, c]: (how recent category c is for user i, most recent = largest) * unit
    rank_bonus = np.zeros((n, n_categories + 1))
    for i, row in enumerate(rows):
        seen: list[int] = []
        for item in row[3]:
            col = item_index.get(item)
            if col is None:
                continue
            c = int(item_category[col])
            if c not in seen:
                seen.append(c)
        for r, c in enumerate(seen):
            rank_bonus[i, c] = (len(seen) - r) * bonus_unit
    return rank_bonus[:, item_category] + pop[None, :]
