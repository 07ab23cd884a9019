"""Train, calibrate, evaluate and export the fraud classifier.

1. Split the replayed rows by event time: train / validation / test (``TimeSplit``).
2. Fit the normalization on the training rows.
3. Train the MLP with a class-weighted loss (positives weighted n_neg / n_pos), Adam, early
   stopping on the validation average precision; train the logistic-regression baseline (the
   same model without hidden layers) the same way.
4. Calibrate both by Platt scaling on the unweighted validation split.
5. Evaluate on the test range: ROC AUC, AP, card precision@100, Brier, ECE; against the rules
   baseline and the logistic regression.
6. Export the artifact: weights, normalization, reference distributions, metrics, report.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from features.definitions import DAY_MS, FRAUD, FRAUD_FEATURE_NAMES
from models.artifacts import Reference, save_fraud
from models.device import configure_threads, pick_device, seed_everything
from models.fraud import FraudClassifier, FraudConfig, encode_rows, fit_normalization
from rtml.errors import ConfigError
from training import metrics
from training.baselines import rules_score
from training.calibration import fit_platt
from training.data import FraudExamples, TimeSplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FraudTrainConfig:
    """How to train (the model's own hyperparameters are ``hidden`` and ``dropout``)."""

    seed: int = 0
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-5
    patience: int = 5  # epochs without a better validation AP before stopping
    cp_k: int = 100  # card precision@k
    device: str | None = None  # None: CUDA if available


@dataclass
class FraudResult:
    path: Path | None
    report: dict[str, Any]
    model: FraudClassifier = field(repr=False)


def train_classifier(
    model: FraudClassifier,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: np.ndarray,
    cfg: FraudTrainConfig,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Weighted-BCE training with early stopping on validation AP; leaves the best weights in
    ``model``. ``x_*`` are raw rows [n, F] (NaN = null) on the training device."""
    n_pos = float(y_train.sum())
    n_neg = float(y_train.numel()) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ConfigError("the training range needs both fraud and legit transactions")
    pos_weight = torch.tensor(n_neg / n_pos, device=x_train.device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    inputs_train = model.inputs(x_train)  # [n, F + N]; the normalization is fixed
    inputs_val = model.inputs(x_val)
    best_ap, best_state, best_epoch, history = -1.0, None, 0, []
    n = inputs_train.shape[0]
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(inputs_train.device)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = loss_fn(model.raw_logit(inputs_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        model.eval()
        with torch.inference_mode():
            val_logit = model.raw_logit(inputs_val).double().cpu().numpy()
        ap = metrics.average_precision(y_val, val_logit)
        history.append({"epoch": epoch + 1, "train_loss": total / n, "val_ap": ap})
        log.debug("epoch %d loss %.4f val AP %.4f", epoch + 1, total / n, ap)
        if ap > best_ap:
            best_ap, best_epoch = ap, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        elif epoch + 1 - best_epoch >= cfg.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return {"best_epoch": best_epoch, "best_val_ap": best_ap, "epochs_run": len(history)}


def raw_logits(model: FraudClassifier, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return model.raw_logit(model.inputs(x)).double().cpu().numpy()


def calibrated_probs(model: FraudClassifier, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return torch.sigmoid(model(x)).double().cpu().numpy()


def score_metrics(data: FraudExamples, score: np.ndarray, k: int) -> dict[str, float]:
    out = {
        "roc_auc": metrics.roc_auc(data.y, score),
        "average_precision": metrics.average_precision(data.y, score),
        f"card_precision_at_{k}": metrics.card_precision_at_k(
            data.event_time // DAY_MS, data.card_id, score, data.y, k
        ),
    }
    if score.min() >= 0.0 and score.max() <= 1.0:
        out["brier"] = metrics.brier(data.y, score)
        out["ece"] = metrics.expected_calibration_error(data.y, score)
    return out


def train_fraud(
    examples: FraudExamples,
    cfg: FraudTrainConfig,
    *,
    models_dir: Path | None,
    training_data: dict[str, Any],
    num_threads: int | None = None,
) -> FraudResult:
    """Train and evaluate; export to ``models_dir`` unless it is None. Deterministic given
    ``cfg.seed`` on the CPU."""
    started = time.perf_counter()
    configure_threads(num_threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    split = TimeSplit.by_fractions(examples.event_time)
    train_mask, val_mask, test_mask = split.masks(examples.event_time)
    train, val, test = (examples.subset(m) for m in (train_mask, val_mask, test_mask))
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if part.y.sum() == 0:
            raise ConfigError(
                f"the {name} range ({split.describe()[name]}) has no fraud labels: "
                "generate more days or users"
            )

    nullable = [f.nullable for f in FRAUD.features]
    norms = fit_normalization(train.x, FRAUD_FEATURE_NAMES, nullable)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    x_tr, x_val, x_te = tensor(train.x), tensor(val.x), tensor(test.x)
    y_tr = tensor(train.y.astype(np.float32))
    generator = torch.Generator().manual_seed(cfg.seed)

    models: dict[str, FraudClassifier] = {}
    fits: dict[str, Any] = {}
    calibration: dict[str, Any] = {}
    for name, hidden, dropout in (
        ("model", cfg.hidden, cfg.dropout),
        ("logistic_regression", (), 0.0),
    ):
        config = FraudConfig(
            n_features=len(norms),
            n_nullable=sum(nullable),
            hidden=tuple(hidden),
            dropout=dropout,
        )
        model = FraudClassifier(config, norms).to(device)
        fits[name] = train_classifier(model, x_tr, y_tr, x_val, val.y, cfg, generator)
        # Calibrate on the unweighted validation split; check it there.
        val_raw = raw_logits(model, x_val)
        a, b = fit_platt(val_raw, val.y)
        before = 1.0 / (1.0 + np.exp(-val_raw))
        model.set_calibration(a, b)
        after = calibrated_probs(model, x_val)
        calibration[name] = {
            "platt_a": a,
            "platt_b": b,
            "validation_brier_before": metrics.brier(val.y, before),
            "validation_brier_after": metrics.brier(val.y, after),
            "validation_ece_before": metrics.expected_calibration_error(val.y, before),
            "validation_ece_after": metrics.expected_calibration_error(val.y, after),
        }
        models[name] = model
    train_seconds = time.perf_counter() - started

    k = cfg.cp_k
    test_scores = {
        "model": calibrated_probs(models["model"], x_te),
        "logistic_regression": calibrated_probs(models["logistic_regression"], x_te),
        "rules": rules_score(test.x),
    }
    evaluation = {name: score_metrics(test, s, k) for name, s in test_scores.items()}
    best_baseline_ap = max(
        evaluation[b]["average_precision"] for b in ("rules", "logistic_regression")
    )
    model = models["model"].cpu()
    timing = measure_latency(model, test.x)
    headline = {
        **{f"test_{key}": value for key, value in evaluation["model"].items()},
        "test_ap_rules": evaluation["rules"]["average_precision"],
        "test_ap_logistic_regression": evaluation["logistic_regression"]["average_precision"],
        "validation_brier": calibration["model"]["validation_brier_after"],
        "validation_ece": calibration["model"]["validation_ece_after"],
    }
    report = {
        "kind": "fraud",
        "split": split.to_dict(),
        "rows": {
            name: {"rows": int(part.y.size), "fraud": int(part.y.sum())}
            for name, part in (("train", train), ("validation", val), ("test", test))
        },
        "replay": {"rows": len(examples), "late_dropped": examples.stats.late},
        "training": {name: fits[name] for name in fits},
        "train_config": {**asdict(cfg), "hidden": list(cfg.hidden)},
        "device": str(device),
        "calibration": calibration,
        "test": evaluation,
        # What card precision@k a perfect model would reach: with fewer than k compromised
        # cards a day, no model gets near 1.
        "oracle_card_precision": metrics.card_precision_at_k(
            test.event_time // DAY_MS, test.card_id, test.y.astype(np.float64), test.y, k
        ),
        "beats_baselines_on_ap": bool(evaluation["model"]["average_precision"] > best_baseline_ap),
        "timings": {"train_seconds": train_seconds, **timing},
        "metrics": headline,
    }
    path = None
    if models_dir is not None:
        reference = {
            name: Reference.fit(train.x[:, j]) for j, name in enumerate(FRAUD_FEATURE_NAMES)
        }
        reference["score"] = Reference.fit(calibrated_probs(model, torch.from_numpy(train.x)))
        path = save_fraud(
            model,
            models_dir,
            training_data={**training_data, **split.to_dict()},
            metrics=headline,
            reference=reference,
            report=report,
        )
    return FraudResult(path, report, model)


def measure_latency(model: FraudClassifier, x: np.ndarray, batch: int = 512) -> dict[str, float]:
    """Milliseconds to score one micro-batch on one CPU thread, median of 50: from row tuples
    (encode + forward), and of ``explain`` on 10 alert rows."""
    model = model.cpu().eval()
    rows_np = x[:batch] if x.shape[0] >= batch else np.resize(x, (batch, x.shape[1]))
    rows = [tuple(None if np.isnan(v) else float(v) for v in r) for r in rows_np]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from models.fraud import LoadedFraudModel

        loaded = LoadedFraudModel(model, "timing", torch.device("cpu"), {})
        for _ in range(5):
            loaded.predict(rows)
        predict = []
        for _ in range(50):
            t = time.perf_counter()
            loaded.predict(encode_rows(rows, model.config.n_features))
            predict.append((time.perf_counter() - t) * 1e3)
        explain = []
        for _ in range(20):
            t = time.perf_counter()
            loaded.explain(rows[:10])
            explain.append((time.perf_counter() - t) * 1e3)
    finally:
        torch.set_num_threads(threads)
    return {
        f"predict_{batch}_ms_1_thread": float(np.median(predict)),
        "explain_10_rows_ms_1_thread": float(np.median(explain)),
    }
