"""The two-tower recommender: shapes, encoding, dot-product scoring, top-K with exclusions."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from models.two_tower import LoadedRecommender, TwoTower, Vocabulary, encode_users


def loaded(model: TwoTower, vocab: Vocabulary) -> LoadedRecommender:
    with torch.inference_mode():
        table = model.item_vectors()
    return LoadedRecommender(model, table, vocab, "v", torch.device("cpu"), {})


def test_vocabulary_indices_reserve_zero_for_unknown(vocab: Vocabulary) -> None:
    assert vocab.item_index("i00") == 1
    assert vocab.item_index("i11") == 12
    assert vocab.item_index("nope") == 0
    assert vocab.category_index("music") == 3
    assert vocab.category_index("nope") == 0
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(("a", "a"), ("c",), (1, 1))


def test_encode_users(vocab: Vocabulary, user_row: Any) -> None:
    rows = [
        user_row({"books": 0.6, "music": 0.8, "unknown": 0.1}, ["i05", "zzz", "i01"], views=0),
        user_row({}, [f"i{k:02d}" for k in range(12)] * 3, clicks=7),
    ]
    batch = encode_users(rows, vocab, recent_items=20)
    assert batch.interest.shape == (2, 4)  # C + 1
    assert batch.interest[0].tolist() == pytest.approx([0.1, 0.6, 0.0, 0.8])
    assert batch.recent.shape == (2, 20)
    assert batch.recent[0, :4].tolist() == [6, 0, 2, 0]  # unknown item -> 0, then padding
    assert batch.recent[1].tolist() == [k % 12 + 1 for k in range(20)]  # first 20 only
    assert batch.activity[1].tolist() == pytest.approx([math.log1p(3), math.log1p(7)])


def test_towers_and_dot_product(recommender: TwoTower, vocab: Vocabulary, user_row: Any) -> None:
    batch = encode_users([user_row(), user_row({"games": 1.0}, ["i02"])], vocab, 20)
    with torch.inference_mode():
        users = recommender.user_vectors(batch)  # [B, D + 1]
        items = recommender.item_vectors()  # [I, D + 1]
        scores = recommender(batch, torch.tensor([1, 5, 12]))
    assert users.shape == (2, 9)
    assert users[:, -1].tolist() == [1.0, 1.0]  # the constant that picks up the item bias
    assert items.shape == (12, 9)
    torch.testing.assert_close(scores, users @ items[[0, 4, 11]].T)


def test_score_all_and_topk_exclude_purchased(
    recommender: TwoTower, vocab: Vocabulary, user_row: Any
) -> None:
    rec = loaded(recommender, vocab)
    rows = [user_row(), user_row(purchased=["i03", "i07"])]
    scores = rec.score_all(rows)
    assert scores.shape == (2, 12)
    full = rec.topk(rows, 12, exclude=[[], []])
    assert [s.item_id for s in full[0]] == [
        vocab.item_ids[i] for i in scores[0].argsort(descending=True)
    ]
    top = rec.topk(rows, 12)  # default exclusion: the row's purchased_items
    assert len(top[0]) == 12
    assert len(top[1]) == 10
    assert {"i03", "i07"}.isdisjoint(s.item_id for s in top[1])
    assert [s.score for s in top[1]] == sorted((s.score for s in top[1]), reverse=True)
    custom = rec.topk(rows, 3, exclude=[["i00", "unknown-item"], []])
    assert len(custom[0]) == 3 and all(s.item_id != "i00" for s in custom[0])
    assert rec.topk([], 5) == []
    with pytest.raises(ValueError, match="k must be"):
        rec.topk(rows, 0)
