"""What callers send to the model deployments through a Serve handle, and what they get back.

Importable without Ray Serve: plain frozen dataclasses of numpy arrays and contract structs,
pickled by Ray on the way (numpy arrays travel without a copy through the object store).

Fraud, one call per consumer poll batch::

    response = await handle.score.remote(FraudScoreRequest(rows, explain_threshold=0.8))
    response.model_version        # the artifact version that scored every row
    response.scores[i]            # float64 probability of row i
    response.reasons[i]           # list[AlertReason], only for rows with score >= threshold

Recommendations::

    response = await handle.recommend.remote(RecommendRequest(rows, k=20))
    response.items[i]             # list[ScoredItem] for user i, best first
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts.events import AlertReason, ScoredItem
from features.definitions import FRAUD_FEATURE_NAMES, RECOMMENDATION_FEATURE_NAMES

N_FRAUD_FEATURES = len(FRAUD_FEATURE_NAMES)


@dataclass(frozen=True, slots=True)
class FraudScoreRequest:
    """B feature rows to score.

    ``rows``: float32 [B, F], columns in ``FRAUD_FEATURE_NAMES`` order, NaN for null (what
    ``consumers.scoring.encode_rows`` and ``models.fraud.encode_rows`` produce). Other float
    dtypes are converted to float32.
    ``explain_threshold``: rows whose score is >= it get ``reasons``; None explains nothing.
    """

    rows: np.ndarray
    explain_threshold: float | None = None

    def __post_init__(self) -> None:
        rows = self.rows
        if not isinstance(rows, np.ndarray):
            raise TypeError(f"rows must be a numpy array, got {type(rows).__name__}")
        if rows.ndim != 2 or rows.shape[1] != N_FRAUD_FEATURES:
            raise ValueError(
                f"rows must have shape [B, {N_FRAUD_FEATURES}] (FRAUD_FEATURE_NAMES order), "
                f"got {list(rows.shape)}"
            )
        if rows.dtype != np.float32:
            if not np.issubdtype(rows.dtype, np.floating):
                raise TypeError(f"rows must be float32 (NaN for null), got {rows.dtype}")
            object.__setattr__(self, "rows", rows.astype(np.float32))
        threshold = self.explain_threshold
        if threshold is not None and not (
            isinstance(threshold, int | float) and 0.0 <= threshold <= 1.0
        ):
            raise ValueError(f"explain_threshold must be None or in [0, 1], got {threshold!r}")

    def __len__(self) -> int:
        return int(self.rows.shape[0])


@dataclass(frozen=True, slots=True)
class FraudScoreResponse:
    """Scores of one request's rows, all from the model ``model_version``.

    ``scores``: float64 [B] calibrated probabilities, row i of the request at index i.
    ``reasons``: row index -> the features that drove its score up (largest first), for the
    rows at or above the request's ``explain_threshold`` only.
    """

    model_version: str
    scores: np.ndarray
    reasons: dict[int, list[AlertReason]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


RecommendationRow = tuple[Any, ...]
"""``(category_interest, view_count_30m, click_count_5m, recent_items, purchased_items)``: the
``RECOMMENDATION_FEATURE_NAMES`` order, as the recsys feature pipeline computes it."""


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    """Top-``k`` items for each of B users.

    ``rows``: one ``RecommendationRow`` per user. ``exclude``: per user, item ids never to
    recommend; None excludes each user's ``purchased_items``.
    """

    rows: Sequence[RecommendationRow]
    k: int = 20
    exclude: Sequence[Collection[str]] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        width = len(RECOMMENDATION_FEATURE_NAMES)
        for i, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(
                    f"rows[{i}] has {len(row)} values, expected {width} "
                    f"({', '.join(RECOMMENDATION_FEATURE_NAMES)})"
                )
        if self.exclude is not None and len(self.exclude) != len(self.rows):
            raise ValueError(f"exclude has {len(self.exclude)} entries for {len(self.rows)} rows")

    def __len__(self) -> int:
        return len(self.rows)

    def exclusions(self) -> list[Collection[str]]:
        """Per user, the items to leave out (the purchases when ``exclude`` is None)."""
        if self.exclude is not None:
            return list(self.exclude)
        return [row[4] for row in self.rows]


@dataclass(frozen=True, slots=True)
class RecommendResponse:
    """``items[i]``: user i's top-k (fewer when the catalog runs out), best first."""

    model_version: str
    items: list[list[ScoredItem]]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What one replica of a model deployment holds (``GET /v1/models``)."""

    deployment: str
    version: str | None  # None until a model is loaded
    requested: str  # the user_config's model: a version, "latest" or a path
    path: str | None
    device: str
    loaded_at_ms: int | None
    replica: str
    last_error: str | None = None  # the last reload that failed (the old model kept serving)


def recommendation_row(features: Mapping[str, Any]) -> RecommendationRow:
    """A stored ``{name: value}`` feature dict as a row in ``RECOMMENDATION_FEATURE_NAMES``
    order. Raises ``KeyError`` naming a missing feature."""
    return tuple(features[name] for name in RECOMMENDATION_FEATURE_NAMES)


def fraud_row_array(features: Mapping[str, float | None]) -> np.ndarray:
    """A stored ``{name: value}`` fraud feature dict as float32 [F] (NaN for null)."""
    return np.array(
        [math.nan if (v := features[name]) is None else v for name in FRAUD_FEATURE_NAMES],
        dtype=np.float32,
    )
