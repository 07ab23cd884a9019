"""Poison isolation: a model that raises on some rows gets them dead-lettered, not retried."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import msgspec
import numpy as np
import pytest

from consumers.scoring import (
    PendingScore,
    encode_rows,
    features_json,
    score_isolating_poison,
    score_outputs,
)
from contracts.codec import encode
from contracts.events import AlertReason, FraudAlert, FraudScore, Transaction
from features.definitions import FRAUD_FEATURE_NAMES
from rtml.errors import ModelError, ServiceUnavailable

AMOUNT = FRAUD_FEATURE_NAMES.index("amount")


@dataclass
class Answer:
    model_version: str
    scores: np.ndarray
    reasons: dict[int, list[AlertReason]] = field(default_factory=dict)


@dataclass
class RaisingModel:
    """Raises ModelError on any call whose rows hold one of ``poison`` amounts."""

    poison: set[float]
    calls: int = 0

    async def score(self, rows: np.ndarray, explain_threshold: float | None) -> Answer:
        self.calls += 1
        amounts = rows[:, AMOUNT].tolist()
        if self.poison & {round(a, 2) for a in amounts}:
            raise ModelError("FraudScorer", "ValueError: cannot score")
        return Answer("v1", np.asarray(amounts, dtype=np.float64))


def pending(amounts: list[float]) -> list[PendingScore]:
    out = []
    for i, amount in enumerate(amounts):
        tx = Transaction(
            event_id=f"e{i}",
            card_id="c",
            user_id="u",
            merchant_id="m",
            merchant_category="food",
            amount=amount,
            currency="EUR",
            lat=0.0,
            lon=0.0,
            event_time=i,
            channel="pos",
        )
        row = tuple(amount if j == AMOUNT else None for j in range(len(FRAUD_FEATURE_NAMES)))
        out.append(PendingScore(0, tx, row, i, features_json(row), source=f"record-{i}"))
    return out


async def test_a_clean_batch_is_one_call() -> None:
    model = RaisingModel(set())
    chunks, poisoned = await score_isolating_poison(model, pending([1.0, 2.0, 3.0]), None)
    assert model.calls == 1 and not poisoned
    assert [list(answer.scores) for _, answer in chunks] == [[1.0, 2.0, 3.0]]


async def test_poison_rows_are_isolated_and_every_other_row_is_scored_once() -> None:
    amounts = [float(i + 1) for i in range(64)]
    model = RaisingModel({7.0, 50.0})
    chunks, poisoned = await score_isolating_poison(model, pending(amounts), None)
    assert sorted(item.source for item, _ in poisoned) == ["record-49", "record-6"]
    assert all(isinstance(error, ModelError) for _, error in poisoned)
    scored = [item.tx.amount for chunk, _ in chunks for item in chunk]
    assert sorted(scored) == sorted(set(amounts) - {7.0, 50.0})
    for chunk, answer in chunks:  # each chunk's answer belongs to its own rows
        assert [item.tx.amount for item in chunk] == list(answer.scores)
    assert model.calls <= 2 * 2 * 6 + 1  # about 2*log2(B) per poison row


async def test_a_model_failing_on_every_row_is_an_outage_not_poison() -> None:
    model = RaisingModel({1.0, 2.0})
    with pytest.raises(ServiceUnavailable, match="every row"):
        await score_isolating_poison(model, pending([1.0, 2.0]), None)


async def test_a_single_poison_row_is_dead_lettered() -> None:
    _, poisoned = await score_isolating_poison(RaisingModel({1.0}), pending([1.0]), None)
    assert [item.source for item, _ in poisoned] == ["record-0"]


def _varied_row(seed: int) -> tuple[object, ...]:
    return tuple(
        None if (i + seed) % 4 == 0 else i * 7 if (i + seed) % 4 == 1 else i / 3 + 0.1 * seed
        for i in range(len(FRAUD_FEATURE_NAMES))
    )


def test_score_records_are_exactly_the_fraud_score_json_and_alerts_cross_the_threshold() -> None:
    batch = []
    for i, item in enumerate(pending([1.0, 2.0, 3.0])):
        row = _varied_row(i)
        batch.append(replace(item, row=row, partition=i % 2, features=features_json(row)))
    answer = Answer("v7", np.asarray([0.2, 0.9, 1.3]), {1: [AlertReason("amount", 2.0, 1.5)]})
    outputs = score_outputs(
        batch, answer, threshold=0.5, scores_topic="scores", alerts_topic="alerts", scored_at=99
    )
    records = [r for p in sorted(outputs) for r in outputs[p]]
    scores = {r.value: r for r in records if r.topic == "scores"}
    for item, raw in zip(batch, [0.2, 0.9, 1.3], strict=True):
        expected = FraudScore(
            event_id=item.tx.event_id,
            card_id="c",
            score=min(raw, 1.0),
            model_version="v7",
            features=dict(zip(FRAUD_FEATURE_NAMES, item.row, strict=True)),
            event_time=item.tx.event_time,
            ingested_at=item.ingested_at,
            scored_at=99,
        )
        assert encode(expected) in scores
        assert msgspec.json.decode(encode(expected), type=FraudScore) == expected
    alerts = sorted(
        (msgspec.json.decode(r.value, type=FraudAlert) for r in records if r.topic == "alerts"),
        key=lambda a: a.event_id,
    )
    assert [(a.event_id, a.score) for a in alerts] == [("e1", 0.9), ("e2", 1.0)]
    assert alerts[0].reasons == [AlertReason("amount", 2.0, 1.5)]
    assert alerts[0].features == dict(zip(FRAUD_FEATURE_NAMES, _varied_row(1), strict=True))
    # Per input partition, in order: e0, e2 and its alert in 0; e1 and its alert in 1.
    assert [r.topic for r in outputs[0]] == ["scores", "scores", "alerts"]
    assert [r.topic for r in outputs[1]] == ["scores", "alerts"]


def test_model_rows_are_float32_with_nan_for_null() -> None:
    batch = pending([1.5, 2.5])
    batch[1].row = _varied_row(0)
    rows = encode_rows(batch)
    assert rows.dtype == np.float32 and rows.shape == (2, len(FRAUD_FEATURE_NAMES))
    expected = [[np.nan if v is None else v for v in item.row] for item in batch]
    np.testing.assert_array_equal(rows, np.asarray(expected, dtype=np.float32))
    assert encode_rows([]).shape == (0, len(FRAUD_FEATURE_NAMES))
