"""Train, evaluate and export the two-tower recommender (next-item prediction).

1. Examples: the user's recommendation features as of each user event, and the next other item
   the user touches (``training.data.recsys_examples``). Split by the event's time; an example
   whose target lies in a later split is dropped (its label would leak across the boundary).
2. The catalog (vocabulary) is every item and category seen before the validation range;
   popularity is each item's interactions there.
3. Training: in-batch negatives with the logQ correction: the logit of item j for user i is
   ``u_i . v_j - log q_j``, q_j the item's share of training targets (how often it shows up as an
   in-batch negative); another row's copy of user i's own target is masked out. Adam, early
   stopping on the validation Recall@10.
4. Evaluation on the test range over the whole catalog, the user's purchased items excluded (as
   serving does): Recall@10, Recall@50, NDCG@10 against popularity and recent-category baselines.
5. Export: weights, the catalog's item vectors, the vocabulary, reference distributions, report.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.artifacts import Reference, save_recommender
from models.device import configure_threads, pick_device, seed_everything
from models.two_tower import TwoTower, TwoTowerConfig, UserBatch, Vocabulary, encode_users
from rtml.errors import ConfigError
from training import metrics
from training.baselines import popularity_scores, recent_category_scores
from training.data import RecsysExamples, TimeSplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecsysTrainConfig:
    seed: int = 0
    dim: int = 64
    hidden: int = 128
    dropout: float = 0.1
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 2e-3
    patience: int = 2  # epochs without a better validation Recall@10 before stopping
    max_eval_rows: int = 50_000  # test rows evaluated (a seeded sample when there are more)
    max_val_rows: int = 10_000  # validation rows for early stopping
    device: str | None = None


@dataclass
class RecsysResult:
    path: Path | None
    report: dict[str, Any]
    model: TwoTower = field(repr=False)
    vocab: Vocabulary = field(repr=False)


@dataclass
class _Encoded:
    users: UserBatch  # on the CPU
    targets: np.ndarray  # [n] int64 catalog column of the target, -1 if not in the catalog
    exclude_rows: np.ndarray  # [m] row of each (row, column) never to recommend
    exclude_cols: np.ndarray  # [m] its column
    rows: list[tuple[Any, ...]]  # the feature rows (for the heuristic baseline)


def build_vocabulary(examples: RecsysExamples, before_ms: int) -> tuple[Vocabulary, np.ndarray]:
    """Items and categories interacted with before ``before_ms``; and each item's interaction
    count there (popularity, [I])."""
    counts: Counter[str] = Counter(item for t, item in examples.interactions if t < before_ms)
    item_ids = tuple(sorted(counts))
    categories = tuple(sorted({examples.item_category[i] for i in item_ids}))
    cat_index = {c: k + 1 for k, c in enumerate(categories)}
    vocab = Vocabulary(
        item_ids, categories, tuple(cat_index[examples.item_category[i]] for i in item_ids)
    )
    return vocab, np.array([counts[i] for i in item_ids], dtype=np.float64)


def encode(examples: RecsysExamples, vocab: Vocabulary, recent_items: int) -> _Encoded:
    users = encode_users(examples.rows, vocab, recent_items)
    targets = np.array([vocab.item_index(t) - 1 for t in examples.target], dtype=np.int64)
    ex_rows, ex_cols = [], []
    for i, row in enumerate(examples.rows):
        for item in row[4]:  # purchased_items
            col = vocab.item_index(item) - 1
            if col >= 0:
                ex_rows.append(i)
                ex_cols.append(col)
    return _Encoded(
        users,
        targets,
        np.array(ex_rows, dtype=np.int64),
        np.array(ex_cols, dtype=np.int64),
        examples.rows,
    )


def rank_stats(
    data: _Encoded, score_chunk: Any, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Target rank statistics over the catalog, purchased items excluded. ``score_chunk(slice)``
    returns the scores [rows, I] (numpy) of rows ``slice``."""
    n = data.targets.size
    greater, ties = np.empty(n, np.int64), np.empty(n, np.int64)
    order = np.argsort(data.exclude_rows, kind="stable")
    ex_rows, ex_cols = data.exclude_rows[order], data.exclude_cols[order]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        scores = np.array(score_chunk(slice(start, stop)), dtype=np.float64)
        lo, hi = np.searchsorted(ex_rows, [start, stop])
        scores[ex_rows[lo:hi] - start, ex_cols[lo:hi]] = -np.inf
        g, t = metrics.target_rank_stats(scores, data.targets[start:stop])
        greater[start:stop], ties[start:stop] = g, t
    return greater, ties


def ranking_metrics(greater: np.ndarray, ties: np.ndarray) -> dict[str, float]:
    return {
        "recall_at_10": metrics.recall_at_k(greater, ties, 10),
        "recall_at_50": metrics.recall_at_k(greater, ties, 50),
        "ndcg_at_10": metrics.ndcg_at_k(greater, ties, 10),
    }


def model_scorer(model: TwoTower, data: _Encoded, device: torch.device) -> Any:
    model.eval()
    with torch.inference_mode():
        table = model.item_vectors()  # [I, D + 1]

    def score(rows: slice) -> np.ndarray:
        with torch.inference_mode():
            users = model.user_vectors(data.users.index(rows).to(device))  # [b, D + 1]
            return (users @ table.T).cpu().numpy()  # [b, I]

    return score


def train_recsys(
    examples: RecsysExamples,
    cfg: RecsysTrainConfig,
    *,
    models_dir: Path | None,
    training_data: dict[str, Any],
    num_threads: int | None = None,
) -> RecsysResult:
    """Train and evaluate; export to ``models_dir`` unless it is None."""
    started = time.perf_counter()
    configure_threads(num_threads)
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)

    split = TimeSplit.by_fractions(examples.event_time)
    train_m, val_m, test_m = split.masks(examples.event_time)
    # No label across a boundary: the target must fall in the example's own range.
    train_m &= examples.target_time < split.val_start
    val_m &= examples.target_time < split.test_start
    vocab, popularity = build_vocabulary(examples, split.val_start)
    if len(vocab.item_ids) < 2:
        raise ConfigError("fewer than 2 items before the validation range: generate more data")
    model_config = TwoTowerConfig(
        n_items=len(vocab.item_ids),
        n_categories=len(vocab.categories),
        dim=cfg.dim,
        hidden=cfg.hidden,
        dropout=cfg.dropout,
    )
    L = model_config.recent_items
    train = encode(examples.subset(train_m), vocab, L)
    val = encode(examples.subset(_sample_within(val_m, cfg.max_val_rows, rng)), vocab, L)
    test = encode(examples.subset(_sample_within(test_m, cfg.max_eval_rows, rng)), vocab, L)
    known = train.targets >= 0
    if known.sum() == 0 or val.targets.size == 0 or test.targets.size == 0:
        raise ConfigError(f"not enough examples in each range: {split.describe()}")
    train_users = train.users.index(torch.from_numpy(np.flatnonzero(known)))
    train_targets = torch.from_numpy(train.targets[known] + 1)  # embedding indices 1..I

    log_pop = np.log1p(popularity)
    pop_feature = (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-6)
    model = TwoTower(
        model_config,
        torch.tensor(vocab.item_category, dtype=torch.long),
        torch.tensor(pop_feature, dtype=torch.float32),
    ).to(device)
    # logQ: log of each item's share of the training targets (smoothed), [I + 1].
    target_counts = np.bincount(train_targets.numpy(), minlength=model_config.n_items + 1)
    q = (target_counts + 1.0) / (target_counts.sum() + model_config.n_items + 1.0)
    log_q = torch.tensor(np.log(q), dtype=torch.float32, device=device)

    fit = _fit(model, train_users, train_targets, log_q, val, cfg, device)
    train_seconds = time.perf_counter() - started

    test_greater = {
        "model": rank_stats(test, model_scorer(model, test, device)),
        "popularity": rank_stats(
            test, lambda rows: popularity_scores(popularity, rows.stop - rows.start)
        ),
        "recent_category": rank_stats(
            test,
            lambda rows: recent_category_scores(
                test.rows[rows],
                {item: k for k, item in enumerate(vocab.item_ids)},
                np.array(vocab.item_category),
                popularity,
                len(vocab.categories),
            ),
        ),
    }
    evaluation = {name: ranking_metrics(*gt) for name, gt in test_greater.items()}
    evaluation["share_of_targets_outside_catalog"] = float(np.mean(test.targets < 0))
    ratio = evaluation["model"]["recall_at_10"] / max(
        evaluation["popularity"]["recall_at_10"], 1e-12
    )
    model = model.cpu().eval()
    timing = measure_latency(model, vocab, examples.rows)
    headline = {
        **{f"test_{k}": v for k, v in evaluation["model"].items()},
        "test_recall_at_10_popularity": evaluation["popularity"]["recall_at_10"],
        "test_recall_at_10_recent_category": evaluation["recent_category"]["recall_at_10"],
    }
    report = {
        "kind": "recsys",
        "split": split.to_dict(),
        "rows": {
            "train": int(train_m.sum()),
            "train_with_target_in_catalog": int(known.sum()),
            "validation_evaluated": int(val.targets.size),
            "test": int(test_m.sum()),
            "test_evaluated": int(test.targets.size),
        },
        "catalog": {"items": len(vocab.item_ids), "categories": len(vocab.categories)},
        "replay": {"rows": examples.stats.processed, "late_dropped": examples.stats.late},
        "training": fit,
        "train_config": asdict(cfg),
        "device": str(device),
        "test": evaluation,
        "recall_at_10_vs_popularity": ratio,
        "timings": {"train_seconds": train_seconds, **timing},
        "metrics": headline,
    }
    path = None
    if models_dir is not None:
        reference = reference_distributions(model, vocab, train)
        path = save_recommender(
            model,
            vocab,
            models_dir,
            training_data={**training_data, **split.to_dict()},
            metrics=headline,
            reference=reference,
            report=report,
        )
    return RecsysResult(path, report, model, vocab)


def _sample_within(mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded subset of at most ``limit`` of the rows in ``mask``."""
    idx = np.flatnonzero(mask)
    keep = np.zeros(mask.size, dtype=bool)
    keep[idx if idx.size <= limit else rng.choice(idx, size=limit, replace=False)] = True
    return keep


def _fit(
    model: TwoTower,
    users: UserBatch,
    targets: torch.Tensor,
    log_q: torch.Tensor,
    val: _Encoded,
    cfg: RecsysTrainConfig,
    device: torch.device,
) -> dict[str, Any]:
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    n = targets.numel()
    best, best_state, best_epoch, history = -1.0, None, 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            batch = users.index(idx).to(device)
            items = targets[idx].to(device)  # [B] embedding indices
            u = model.user_vectors(batch)  # [B, D + 1]
            v = model.item_vectors(items)  # [B, D + 1]
            logits = u @ v.T - log_q[items][None, :]  # [B, B]: row i, in-batch item j
            same = items[:, None] == items[None, :]  # [B, B]: j is a copy of i's target
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, -math.inf)
            labels = torch.arange(idx.numel(), device=device)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        g, t = rank_stats(val, model_scorer(model, val, device))
        recall = metrics.recall_at_k(g, t, 10)
        history.append({"epoch": epoch + 1, "train_loss": total / n, "val_recall_at_10": recall})
        log.info("epoch %d loss %.4f val Recall@10 %.4f", epoch + 1, total / n, recall)
        if recall > best:
            best, best_epoch = recall, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        elif epoch + 1 - best_epoch >= cfg.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return {"best_epoch": best_epoch, "best_val_recall_at_10": best, "history": history}


def reference_distributions(
    model: TwoTower, vocab: Vocabulary, train: _Encoded, limit: int = 20_000
) -> dict[str, Reference]:
    """Drift references over the training rows: each feature (list and dict features by their
    length) and the top-1 score over the catalog."""
    rows = train.rows
    columns = {
        "category_interest": [len(r[0]) for r in rows],
        "view_count_30m": [r[1] for r in rows],
        "click_count_5m": [r[2] for r in rows],
        "recent_items": [len(r[3]) for r in rows],
        "purchased_items": [len(r[4]) for r in rows],
    }
    reference = {name: Reference.fit(np.array(v, dtype=np.float64)) for name, v in columns.items()}
    sample = slice(0, min(limit, len(rows)))
    with torch.inference_mode():
        scores = model.user_vectors(train.users.index(sample)) @ model.item_vectors().T
    reference["score"] = Reference.fit(scores.max(dim=1).values.double().numpy())
    return reference


def measure_latency(
    model: TwoTower, vocab: Vocabulary, rows: list[tuple[Any, ...]], batch: int = 512
) -> dict[str, float]:
    """Milliseconds for one micro-batch on one CPU thread (median of 20): rows -> top-10 with
    purchased items excluded, the catalog's vectors precomputed."""
    from models.two_tower import LoadedRecommender

    sample = [rows[i % len(rows)] for i in range(batch)]
    with torch.inference_mode():
        table = model.item_vectors()
    loaded = LoadedRecommender(model, table, vocab, "timing", torch.device("cpu"), {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded.topk(sample, 10)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            loaded.topk(sample, 10)
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        torch.set_num_threads(threads)
    return {f"topk10_{batch}_ms_1_thread": float(np.median(times))}
