"""Coalescing requests into one forward pass and splitting the results back: pure functions.

The model deployments hand ``@serve.batch`` whole requests; the batch's size is counted in rows
(``rows_in``), not in requests, so the forward pass stays near ``max_batch_rows`` whether it
holds one consumer's 3,000-row poll batch or forty 10-row HTTP calls. A request that alone
fills a batch skips the queue (``fills_batch``): it never waits for company and is never cut
into pieces, so one response always comes from one model version. So does a request that finds
the replica idle (``skips_queue``): waiting ``batch_wait_timeout_s`` for company that may never
come cost a lone caller ~2 ms per call (the timer's wait and an extra loop turn), a quarter of a
consumer's model call at 2,000 tx/s; requests that arrive while it runs still coalesce.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contracts.events import AlertReason, ScoredItem
from serving.protocol import (
    N_FRAUD_FEATURES,
    FraudScoreRequest,
    FraudScoreResponse,
    RecommendRequest,
    RecommendResponse,
)


def rows_in(requests: Sequence[FraudScoreRequest | RecommendRequest]) -> int:
    """The batch size ``@serve.batch`` compares with ``max_batch_size``: rows, not requests."""
    return sum(len(r) for r in requests)


def fills_batch(request: FraudScoreRequest | RecommendRequest, max_batch_rows: int) -> bool:
    """True when the request alone is a full batch: it is scored at once, without queueing."""
    return len(request) >= max_batch_rows


def skips_queue(
    request: FraudScoreRequest | RecommendRequest, max_batch_rows: int, in_progress: int
) -> bool:
    """True when the request runs a forward pass of its own at once: it fills a batch, or no
    other request is queued or computing on this replica (``in_progress`` counts them), so
    there is nobody to wait for."""
    return in_progress == 0 or fills_batch(request, max_batch_rows)


def offsets_of(requests: Sequence[FraudScoreRequest | RecommendRequest]) -> list[int]:
    """Start row of each request in the merged batch, plus the end: ``[0, n0, n0 + n1, ...]``."""
    offsets = [0]
    for request in requests:
        offsets.append(offsets[-1] + len(request))
    return offsets


# -----------------------------------------------------------------------------------------------
# Fraud


def merge_fraud(requests: Sequence[FraudScoreRequest]) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass's input: rows float32 [N, F] and per-row explain thresholds float64 [N]
    (``inf`` where the request asked for no explanations)."""
    if len(requests) == 1:
        rows = requests[0].rows
    elif requests:
        rows = np.concatenate([r.rows for r in requests], axis=0)
    else:
        rows = np.zeros((0, N_FRAUD_FEATURES), dtype=np.float32)
    thresholds = np.concatenate(
        [
            np.full(len(r), np.inf if r.explain_threshold is None else float(r.explain_threshold))
            for r in requests
        ]
        or [np.zeros(0)]
    )
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if not rows.flags.writeable:  # a request's array straight from Ray's object store
        rows = rows.copy()  # torch.from_numpy wants a writable buffer
    return rows, thresholds


def rows_to_explain(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the rows whose score reaches their request's threshold."""
    return np.flatnonzero(scores >= thresholds)


def split_fraud(
    requests: Sequence[FraudScoreRequest],
    model_version: str,
    scores: np.ndarray,
    explained: np.ndarray,
    reasons: Sequence[list[AlertReason]],
) -> list[FraudScoreResponse]:
    """One response per request from the merged pass: ``scores`` [N]; ``explained`` the merged
    row indices (ascending) that ``reasons`` belong to."""
    if len(explained) != len(reasons):
        raise ValueError(f"{len(reasons)} explanations for {len(explained)} explained rows")
    offsets = offsets_of(requests)
    if scores.shape[0] != offsets[-1]:
        raise ValueError(f"{scores.shape[0]} scores for {offsets[-1]} rows")
    responses = []
    cut = np.searchsorted(explained, offsets)  # explained[cut[j]:cut[j+1]] belong to request j
    for j in range(len(requests)):
        start, end = offsets[j], offsets[j + 1]
        mine = {int(explained[e]) - start: reasons[e] for e in range(int(cut[j]), int(cut[j + 1]))}
        responses.append(FraudScoreResponse(model_version, scores[start:end], mine))
    return responses


# -----------------------------------------------------------------------------------------------
# Recommendations


def merge_recommend(
    requests: Sequence[RecommendRequest],
) -> tuple[list[tuple], list[object], int]:
    """Rows, exclusions and the largest k of several requests: one top-k pass serves them all
    (each response is then cut to its own k)."""
    rows: list[tuple] = []
    exclude: list[object] = []
    for request in requests:
        rows.extend(request.rows)
        exclude.extend(request.exclusions())
    k = max((r.k for r in requests), default=1)
    return rows, exclude, k


def split_recommend(
    requests: Sequence[RecommendRequest],
    model_version: str,
    items: Sequence[list[ScoredItem]],
) -> list[RecommendResponse]:
    offsets = offsets_of(requests)
    if len(items) != offsets[-1]:
        raise ValueError(f"{len(items)} results for {offsets[-1]} users")
    return [
        RecommendResponse(
            model_version, [user[: r.k] for user in items[offsets[j] : offsets[j + 1]]]
        )
        for j, r in enumerate(requests)
    ]
