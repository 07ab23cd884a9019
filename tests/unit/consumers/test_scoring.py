"""Poison isolation: a model that raises on some rows gets them dead-lettered, not retried."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from consumers.scoring import PendingScore, score_isolating_poison
from contracts.events import AlertReason, Transaction
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
        out.append(PendingScore(0, tx, row, i, source=f"record-{i}"))
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
