"""The two-tower recommender: a user's recommendation features in, a score for every item out.

Read top to bottom:

1. ``TwoTowerConfig``: the hyperparameters (frozen, saved in the artifact's manifest).
2. ``Vocabulary``: item ids and categories to embedding indices. Index 0 of each is "padding or
   unknown"; catalog item k (``item_ids[k]``) has index k + 1.
3. ``TwoTower``: the user tower (category interest, the last 20 items, click activity) and the
   item tower (item id + category + popularity), scored by a dot product. Both towers output
   D + 1 numbers: the user's last one is a constant 1 and the item's is a learned bias, so
   ``user . item`` = similarity + the item's prior (its popularity).
4. ``encode_users``: feature rows (tuples in ``RECOMMENDATION_FEATURE_NAMES`` order) to tensors.
5. ``LoadedRecommender``: what serving holds: ``score_all`` and ``topk`` over the catalog, whose
   item vectors are precomputed at export.

Training (``training/recsys.py``) uses in-batch negatives with the logQ correction; scoring uses
the plain dot product.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from contracts.events import ScoredItem

# -----------------------------------------------------------------------------------------------
# Hyperparameters


@dataclass(frozen=True)
class TwoTowerConfig:
    n_items: int  # I: catalog size; embedding tables have I + 1 rows (row 0: padding/unknown)
    n_categories: int  # C: category vocabulary size; tables have C + 1 rows
    dim: int = 64  # D: embedding width of both towers
    recent_items: int = 20  # L: how many of recent_items the user tower reads (newest first)
    hidden: int = 128  # user-tower MLP width
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwoTowerConfig:
        return cls(**data)


# -----------------------------------------------------------------------------------------------
# Vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Item ids and categories known to the model, in index order (minus the padding row)."""

    item_ids: tuple[str, ...]  # [I]; catalog item k has embedding index k + 1
    categories: tuple[str, ...]  # [C]; category c has index c + 1
    item_category: tuple[int, ...]  # [I]; category index (1..C, 0 unknown) of each item
    _item_index: dict[str, int] = field(init=False, repr=False, compare=False)
    _cat_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.item_category) != len(self.item_ids):
            raise ValueError("item_category must have one entry per item")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError("item_ids must be distinct")
        object.__setattr__(self, "_item_index", {i: k + 1 for k, i in enumerate(self.item_ids)})
        object.__setattr__(self, "_cat_index", {c: k + 1 for k, c in enumerate(self.categories)})

    def item_index(self, item_id: str) -> int:
        """Embedding index of an item; 0 when unknown."""
        return self._item_index.get(item_id, 0)

    def category_index(self, category: str) -> int:
        """Index of a category; 0 when unknown."""
        return self._cat_index.get(category, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_ids": list(self.item_ids),
            "categories": list(self.categories),
            "item_category": list(self.item_category),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        return cls(tuple(data["item_ids"]), tuple(data["categories"]), tuple(data["item_category"]))


# -----------------------------------------------------------------------------------------------
# The model


@dataclass
class UserBatch:
    """The user tower's inputs for B users."""

    interest: torch.Tensor  # [B, C + 1] float: category TF-IDF weights (column 0: unknown ones)
    recent: torch.Tensor  # [B, L] long: item indices, newest first, 0 = none
    activity: torch.Tensor  # [B, 2] float: log1p(view_count_30m), log1p(click_count_5m)

    def to(self, device: torch.device) -> UserBatch:
        return UserBatch(self.interest.to(device), self.recent.to(device), self.activity.to(device))

    def __len__(self) -> int:
        return self.recent.shape[0]

    def index(self, rows: torch.Tensor | slice) -> UserBatch:
        return UserBatch(self.interest[rows], self.recent[rows], self.activity[rows])


class TwoTower(nn.Module):
    def __init__(
        self, config: TwoTowerConfig, item_category: torch.Tensor, item_popularity: torch.Tensor
    ) -> None:
        """``item_category`` [I] long (1..C, 0 unknown); ``item_popularity`` [I] float: the
        standardized log1p of each item's interactions in the training range."""
        super().__init__()
        n_items, n_cats, dim = config.n_items, config.n_categories, config.dim
        if item_category.shape != (n_items,) or item_popularity.shape != (n_items,):
            raise ValueError(f"item_category and item_popularity must have shape [{n_items}]")
        self.config = config
        # Item side lookups, as buffers (row 0 = padding): [I + 1].
        self.register_buffer(
            "item_category", torch.cat([torch.zeros(1, dtype=torch.long), item_category.long()])
        )
        self.register_buffer(
            "item_popularity", torch.cat([torch.zeros(1), item_popularity.float()])
        )

        # Shared item id embeddings: the item tower's identity and the user tower's history.
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # [I + 1, D]
        # Item tower.
        self.item_cat_emb = nn.Embedding(n_cats + 1, dim)  # [C + 1, D]
        self.item_proj = nn.Linear(2 * dim + 1, dim)  # [id, category, popularity] -> D
        self.item_bias = nn.Embedding(n_items + 1, 1)  # per-item prior
        nn.init.zeros_(self.item_bias.weight)
        self.pop_bias = nn.Linear(1, 1)  # prior from popularity
        # User tower.
        self.user_cat = nn.Linear(n_cats + 1, dim, bias=False)  # interest [C + 1] -> D
        self.recent_pos = nn.Parameter(torch.zeros(config.recent_items))  # [L] recency weights
        self.user_mlp = nn.Sequential(
            nn.Linear(3 * dim + 2, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, dim),
        )
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Item indices [K] (default: the whole catalog 1..I) -> item vectors [K, D + 1]."""
        if items is None:
            items = torch.arange(1, self.config.n_items + 1, device=self.item_emb.weight.device)
        pop = self.item_popularity[items].unsqueeze(-1)  # [K, 1]
        parts = [self.item_emb(items), self.item_cat_emb(self.item_category[items]), pop]
        vec = self.item_proj(torch.cat(parts, dim=-1))  # [K, D]
        bias = self.item_bias(items) + self.pop_bias(pop)  # [K, 1]
        return torch.cat([vec, bias], dim=-1)  # [K, D + 1]

    def user_vectors(self, users: UserBatch) -> torch.Tensor:
        """User tower inputs (B users) -> user vectors [B, D + 1] (last column: 1)."""
        interest = self.user_cat(users.interest)  # [B, D]
        recent = self.item_emb(users.recent)  # [B, L, D] (padding rows are zero)
        present = (users.recent > 0).float()  # [B, L]
        weights = present * torch.exp(self.recent_pos)  # [B, L], learned recency weights
        pooled = (weights.unsqueeze(-1) * recent).sum(1) / weights.sum(1, keepdim=True).clamp(
            min=1e-6
        )  # [B, D]: weighted mean of the recent items
        last = recent[:, 0]  # [B, D]: the newest item
        hidden = torch.cat([interest, pooled, last, users.activity], dim=-1)  # [B, 3D + 2]
        user = self.user_mlp(hidden)  # [B, D]
        return torch.cat([user, torch.ones_like(user[:, :1])], dim=-1)  # [B, D + 1]

    def forward(self, users: UserBatch, items: torch.Tensor) -> torch.Tensor:
        """Scores of every user against every given item: [B] users x [K] items -> [B, K]."""
        return self.user_vectors(users) @ self.item_vectors(items).T


# -----------------------------------------------------------------------------------------------
# Rows in, scores out


def encode_users(rows: Sequence[Sequence[Any]], vocab: Vocabulary, recent_items: int) -> UserBatch:
    """Recommendation rows (``category_interest, view_count_30m, click_count_5m, recent_items,
    purchased_items``) -> the user tower's inputs (on the CPU)."""
    n = len(rows)
    interest = np.zeros((n, len(vocab.categories) + 1), dtype=np.float32)  # [B, C + 1]
    recent = np.zeros((n, recent_items), dtype=np.int64)  # [B, L]
    activity = np.zeros((n, 2), dtype=np.float32)  # [B, 2]
    for i, row in enumerate(rows):
        cat_interest, views, clicks, items = row[0], row[1], row[2], row[3]
        for category, weight in cat_interest.items():
            interest[i, vocab.category_index(category)] += weight
        for j, item in enumerate(items[:recent_items]):
            recent[i, j] = vocab.item_index(item)
        activity[i] = (math.log1p(views), math.log1p(clicks))
    return UserBatch(
        torch.from_numpy(interest), torch.from_numpy(recent), torch.from_numpy(activity)
    )


@dataclass
class LoadedRecommender:
    """A recommender as serving holds it: the user tower, the precomputed catalog vectors
    (``item_table`` [I, D + 1], row k = ``vocab.item_ids[k]``) and the manifest."""

    model: TwoTower
    item_table: torch.Tensor  # [I, D + 1] on device
    vocab: Vocabulary
    version: str
    device: torch.device
    manifest: dict[str, Any] = field(repr=False)

    @property
    def item_ids(self) -> tuple[str, ...]:
        return self.vocab.item_ids

    def encode(self, rows: Sequence[Sequence[Any]]) -> UserBatch:
        return encode_users(rows, self.vocab, self.model.config.recent_items)

    def score_all(self, users: Sequence[Sequence[Any]] | UserBatch) -> torch.Tensor:
        """Rows or an encoded batch of B users -> scores [B, I] (float32, on ``device``);
        column k is ``item_ids[k]``. Higher is better; no item is excluded."""
        batch = users if isinstance(users, UserBatch) else self.encode(users)
        with torch.inference_mode():
            return self.model.user_vectors(batch.to(self.device)) @ self.item_table.T

    def topk(
        self,
        rows: Sequence[Sequence[Any]],
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[list[ScoredItem]]:
        """The k best items per user, best first. ``exclude[i]``: item ids never to recommend to
        user i (default: the row's ``purchased_items``). Fewer than k when the catalog runs out."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if exclude is None:
            exclude = [row[4] for row in rows]
        if len(exclude) != len(rows):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(rows)} rows")
        if not rows:
            return []
        rows_idx, cols_idx = [], []
        for i, items in enumerate(exclude):
            for item in items:
                col = self.vocab.item_index(item) - 1
                if col >= 0:
                    rows_idx.append(i)
                    cols_idx.append(col)
        with torch.inference_mode():
            scores = self.score_all(rows)  # [B, I]
            if rows_idx:
                scores[rows_idx, cols_idx] = -math.inf
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            values, indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
        ids = self.vocab.item_ids
        return [
            [
                ScoredItem(ids[c], float(v))
                for v, c in zip(vals, cols, strict=True)
                if v != -math.inf
            ]
            for vals, cols in zip(values, indices, strict=True)
        ]
