"""Coalescing requests into one forward pass and splitting results back (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import AlertReason, ScoredItem
from serving.batching import (
    fills_batch,
    merge_fraud,
    merge_recommend,
    offsets_of,
    rows_in,
    rows_to_explain,
    skips_queue,
    split_fraud,
    split_recommend,
)
from serving.protocol import N_FRAUD_FEATURES, FraudScoreRequest, RecommendRequest

F = N_FRAUD_FEATURES


def fraud_request(n: int, threshold: float | None, start: float = 0.0) -> FraudScoreRequest:
    rows = np.zeros((n, F), dtype=np.float32)
    rows[:, 0] = start + np.arange(n)  # the "amount" column identifies each row
    return FraudScoreRequest(rows, threshold)


def test_batch_size_counts_rows_not_requests() -> None:
    requests = [fraud_request(3, None), fraud_request(1000, None), fraud_request(0, None)]
    assert rows_in(requests) == 1003
    assert offsets_of(requests) == [0, 3, 1003, 1003]
    # A consumer's big poll batch is one forward pass of its own, never cut into pieces.
    assert fills_batch(fraud_request(4096, None), 4096)
    assert not fills_batch(fraud_request(4095, None), 4096)


def test_a_request_skips_the_queue_when_the_replica_is_idle_or_it_fills_a_batch() -> None:
    small = fraud_request(30, None)
    assert skips_queue(small, 4096, in_progress=0)  # nobody to wait for
    assert not skips_queue(small, 4096, in_progress=1)  # waits for company, coalesces
    assert skips_queue(fraud_request(4096, None), 4096, in_progress=3)


def test_merge_fraud_concatenates_rows_with_per_row_thresholds() -> None:
    rows, thresholds = merge_fraud(
        [fraud_request(2, 0.5), fraud_request(3, None, 100.0), fraud_request(1, 0.9, 200.0)]
    )
    assert rows.shape == (6, F) and rows.dtype == np.float32 and rows.flags.c_contiguous
    assert rows[:, 0].tolist() == [0, 1, 100, 101, 102, 200]
    assert thresholds.tolist() == [0.5, 0.5, np.inf, np.inf, np.inf, 0.9]


def test_merge_fraud_hands_torch_a_writable_array() -> None:
    request = fraud_request(4, None)
    request.rows.setflags(write=False)  # as an array unpickled from Ray's object store is
    rows, _ = merge_fraud([request])
    assert rows.flags.writeable
    assert not np.shares_memory(rows, request.rows)
    empty, thresholds = merge_fraud([])
    assert empty.shape == (0, F) and thresholds.shape == (0,)


def test_rows_to_explain_compares_each_row_with_its_own_threshold() -> None:
    scores = np.array([0.4, 0.5, 0.99, 0.95, 0.2])
    thresholds = np.array([0.5, 0.5, np.inf, 0.9, 0.0])
    assert rows_to_explain(scores, thresholds).tolist() == [1, 3, 4]


def test_split_fraud_gives_each_request_its_scores_and_local_reason_indices() -> None:
    requests = [fraud_request(2, 0.5), fraud_request(3, 0.5), fraud_request(1, 0.5)]
    scores = np.array([0.1, 0.7, 0.2, 0.3, 0.8, 0.9])
    explained = np.array([1, 4, 5])
    reasons = [[AlertReason("amount", float(i), 1.0)] for i in explained]
    first, second, third = split_fraud(requests, "v7", scores, explained, reasons)
    assert first.scores.tolist() == [0.1, 0.7] and first.reasons == {1: reasons[0]}
    assert second.scores.tolist() == [0.2, 0.3, 0.8] and second.reasons == {2: reasons[1]}
    assert third.scores.tolist() == [0.9] and third.reasons == {0: reasons[2]}
    assert {r.model_version for r in (first, second, third)} == {"v7"}


def test_split_fraud_refuses_mismatched_lengths() -> None:
    requests = [fraud_request(2, None)]
    with pytest.raises(ValueError, match="3 scores for 2 rows"):
        split_fraud(requests, "v", np.zeros(3), np.zeros(0, dtype=int), [])
    with pytest.raises(ValueError, match="1 explanations for 0 explained rows"):
        split_fraud(requests, "v", np.zeros(2), np.zeros(0, dtype=int), [[]])


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    thresholds=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=12, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_then_split_is_the_identity_per_request(
    sizes: list[int], thresholds: list[float | None], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    requests = [fraud_request(n, thresholds[i], start=1000.0 * i) for i, n in enumerate(sizes)]
    rows, row_thresholds = merge_fraud(requests)
    scores = rng.random(rows.shape[0])  # a stand-in model
    explained = rows_to_explain(scores, row_thresholds)
    reasons = [[AlertReason("amount", float(rows[i, 0]), 1.0)] for i in explained]
    responses = split_fraud(requests, "v", scores, explained, reasons)
    start = 0
    for request, response in zip(requests, responses, strict=True):
        n = len(request)
        np.testing.assert_array_equal(response.scores, scores[start : start + n])
        wanted = {
            i
            for i in range(n)
            if request.explain_threshold is not None
            and scores[start + i] >= request.explain_threshold
        }
        assert set(response.reasons) == wanted
        for i, (reason,) in response.reasons.items():
            assert reason.value == request.rows[i, 0]  # the reason belongs to that row
        start += n


def user(purchased: list[str]) -> tuple:
    return ({}, 1, 0, [], purchased)


def test_merge_and_split_recommendations_cut_each_response_to_its_k() -> None:
    requests = [
        RecommendRequest([user(["a"]), user([])], k=2),
        RecommendRequest([user(["b"])], k=4, exclude=[{"z"}]),
    ]
    rows, exclude, k = merge_recommend(requests)
    assert len(rows) == 3 and k == 4
    assert exclude == [["a"], [], {"z"}]
    ranked = [[ScoredItem(f"u{u}-{j}", 1.0 - j / 10) for j in range(4)] for u in range(3)]
    first, second = split_recommend(requests, "r1", ranked)
    assert [len(items) for items in first.items] == [2, 2]
    assert first.items[1][0].item_id == "u1-0"
    assert [len(items) for items in second.items] == [4]
    assert second.model_version == "r1"
    with pytest.raises(ValueError, match="2 results for 3 users"):
        split_recommend(requests, "r1", ranked[:2])
