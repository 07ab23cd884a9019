"""The fraud classifier: a transaction's feature row in, a calibrated fraud probability out.

Read top to bottom:

1. ``FraudConfig``: the hyperparameters (frozen, saved in the artifact's manifest).
2. ``FeatureNorm`` / ``fit_normalization``: per feature, a transform (``log1p`` for heavy-tailed
   amounts, counts, distances and durations; ``identity`` for flags and the hour) and the mean and
   std of the transformed non-null training values. Saved with the weights.
3. ``FraudClassifier``: normalize -> MLP -> raw logit -> Platt scaling (``a * logit + b``) ->
   probability. A null value becomes 0 after normalization (the training mean) and, for a nullable
   feature, sets its missing indicator to 1.
4. ``encode_rows``: feature rows (tuples in ``FRAUD_FEATURE_NAMES`` order, ``None`` for null) to a
   float32 array with NaN for null: the one input format of the model.
5. ``LoadedFraudModel``: what serving holds: ``predict(rows)`` and ``explain(rows)``.

Units: ``amount`` and totals in the transaction currency, distances in km, speeds in km/h,
durations in seconds, ages in days; the model sees them only through the normalization.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from contracts.events import AlertReason
from features.definitions import FRAUD

Transform = Literal["identity", "log1p"]

# Features that keep their scale: 0/1 flags and the hour of day. Everything else rtml computes for
# fraud is a non-negative amount, count, distance, duration, speed or ratio with a long right tail,
# and goes through sign(x) * log1p(|x|) before standardization.
IDENTITY_FEATURES = frozenset({"is_new_merchant_24h", "hour_of_day_utc", "is_online"})


def default_transform(name: str) -> Transform:
    flag = name.startswith("is_") or name.endswith("_matched")  # 0/1, like the pattern flags
    return "identity" if name in IDENTITY_FEATURES or flag else "log1p"


# -----------------------------------------------------------------------------------------------
# Hyperparameters


@dataclass(frozen=True)
class FraudConfig:
    n_features: int = len(FRAUD.features)  # F: len(FRAUD_FEATURE_NAMES)
    n_nullable: int = sum(f.nullable for f in FRAUD.features)  # N: nullable features, each
    # with a missing-indicator input
    hidden: tuple[int, ...] = (64, 32)  # MLP hidden widths
    dropout: float = 0.1
    clip: float = 8.0  # normalized values are clipped to [-clip, clip] (training std units)

    @property
    def n_inputs(self) -> int:
        return self.n_features + self.n_nullable  # F + N

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FraudConfig:
        return cls(**{**data, "hidden": tuple(data["hidden"])})


# -----------------------------------------------------------------------------------------------
# Normalization


@dataclass(frozen=True)
class FeatureNorm:
    """How one feature is normalized: ``z = (transform(x) - mean) / std``, clipped; null -> 0."""

    name: str
    transform: Transform
    mean: float  # of transform(x) over the non-null training values
    std: float  # likewise; >= 1e-6
    nullable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_normalization(
    x: np.ndarray, names: Sequence[str], nullable: Sequence[bool]
) -> tuple[FeatureNorm, ...]:
    """Normalization stats from training rows ``x`` [n, F] (float, NaN = null)."""
    if x.ndim != 2 or x.shape[1] != len(names) or len(names) != len(nullable):
        raise ValueError(f"x has shape {x.shape}, expected [n, {len(names)}]")
    norms = []
    for j, (name, can_be_null) in enumerate(zip(names, nullable, strict=True)):
        transform = default_transform(name)
        col = x[:, j].astype(np.float64)
        col = col[~np.isnan(col)]
        if transform == "log1p":
            col = np.sign(col) * np.log1p(np.abs(col))
        mean = float(col.mean()) if col.size else 0.0
        std = float(col.std()) if col.size else 1.0
        norms.append(FeatureNorm(name, transform, mean, max(std, 1e-6), bool(can_be_null)))
    return tuple(norms)


# -----------------------------------------------------------------------------------------------
# The model


class FraudClassifier(nn.Module):
    """MLP over normalized features plus missing indicators, with Platt scaling on top."""

    def __init__(self, config: FraudConfig, norms: Sequence[FeatureNorm]) -> None:
        super().__init__()
        if len(norms) != config.n_features:
            raise ValueError(f"{len(norms)} feature norms for n_features={config.n_features}")
        if sum(n.nullable for n in norms) != config.n_nullable:
            raise ValueError(
                f"norms have {sum(n.nullable for n in norms)} nullable features, "
                f"config says n_nullable={config.n_nullable}"
            )
        self.config = config
        self.feature_names = tuple(n.name for n in norms)
        # Normalization, as buffers: they move with .to(device) and sit in the state_dict.
        log_mask = torch.tensor([n.transform == "log1p" for n in norms])  # [F] bool
        self.register_buffer("log_mask", log_mask)
        self.register_buffer("mean", torch.tensor([n.mean for n in norms]))  # [F] float32
        self.register_buffer("std", torch.tensor([n.std for n in norms]))  # [F] float32
        nullable = [j for j, n in enumerate(norms) if n.nullable]
        self.register_buffer("nullable_index", torch.tensor(nullable, dtype=torch.long))  # [N]
        # Platt scaling, fitted after training on the (unweighted) validation split.
        self.register_buffer("calib_a", torch.tensor(1.0))  # scalar
        self.register_buffer("calib_b", torch.tensor(0.0))  # scalar

        layers: list[nn.Module] = []
        width = config.n_inputs
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw rows [B, F] (NaN = null) -> MLP inputs [B, F + N]: normalized values, indicators."""
        missing = torch.isnan(x)  # [B, F] bool
        x = torch.where(missing, torch.zeros_like(x), x)
        x = torch.where(self.log_mask, torch.sign(x) * torch.log1p(x.abs()), x)
        z = ((x - self.mean) / self.std).clamp(-self.config.clip, self.config.clip)  # [B, F]
        z = torch.where(missing, torch.zeros_like(z), z)  # null -> the training mean
        indicators = missing[:, self.nullable_index].to(z.dtype)  # [B, N]
        return torch.cat([z, indicators], dim=1)  # [B, F + N]

    def raw_logit(self, inputs: torch.Tensor) -> torch.Tensor:
        """MLP inputs [B, F + N] -> uncalibrated logit [B] (what the training loss sees)."""
        return self.mlp(inputs).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw rows [B, F] -> calibrated logit [B]; ``sigmoid`` of it is the fraud probability."""
        return self.calib_a * self.raw_logit(self.inputs(x)) + self.calib_b

    def set_calibration(self, a: float, b: float) -> None:
        self.calib_a.fill_(a)
        self.calib_b.fill_(b)


# -----------------------------------------------------------------------------------------------
# Rows in, scores and reasons out


def encode_rows(rows: Sequence[Sequence[float | int | None]], n_features: int) -> np.ndarray:
    """Feature rows (``FRAUD_FEATURE_NAMES`` order, None = null) -> float32 [B, F], NaN = null."""
    nan = math.nan
    x = np.array([[nan if v is None else v for v in row] for row in rows], dtype=np.float32)
    if x.size == 0:
        return np.zeros((len(rows), n_features), dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"fraud rows must have {n_features} values each, got shape {x.shape}")
    return x


@dataclass
class LoadedFraudModel:
    """A fraud model as serving holds it: the module in eval mode on its device, and its manifest.

    ``predict`` scores a micro-batch; ``explain`` is for the few rows that raise an alert.
    Neither is thread-safe with respect to changing torch's thread count; both are re-entrant.
    """

    model: FraudClassifier
    version: str
    device: torch.device
    manifest: dict[str, Any] = field(repr=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.model.feature_names

    def _tensor(self, rows: Sequence[Sequence[float | int | None]] | np.ndarray) -> torch.Tensor:
        x = (
            rows
            if isinstance(rows, np.ndarray)
            else encode_rows(rows, self.model.config.n_features)
        )
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)

    def predict(self, rows: Sequence[Sequence[float | int | None]] | np.ndarray) -> np.ndarray:
        """Rows (tuples in feature order, or a float32 [B, F] array with NaN) -> float64 [B] in
        [0, 1]: the calibrated fraud probability of each row."""
        x = self._tensor(rows)  # [B, F]
        if x.shape[0] == 0:
            return np.zeros(0)
        with torch.inference_mode():
            return torch.sigmoid(self.model(x)).double().cpu().numpy()

    def explain(
        self, rows: Sequence[Sequence[float | int | None]] | np.ndarray, top_k: int = 3
    ) -> list[list[AlertReason]]:
        """The features that drove each row's score up, largest first (at most ``top_k``).

        Gradient x input on the calibrated logit, relative to the "typical" row (every feature at
        its training mean, nothing missing): feature j contributes ``dlogit/dz_j * z_j`` plus, if
        it is null, ``dlogit/dindicator_j``. Contributions are in logit units and add up to
        roughly ``logit(row) - logit(typical row)``. Only positive contributions are reasons.
        """
        x = self._tensor(rows)  # [B, F]
        if x.shape[0] == 0:
            return []
        model = self.model
        with torch.enable_grad():
            inputs = model.inputs(x).detach().requires_grad_(True)  # [B, F + N]
            logit = model.calib_a * model.raw_logit(inputs) + model.calib_b  # [B]
            (grad,) = torch.autograd.grad(logit.sum(), inputs)  # [B, F + N]
        attribution = (grad * inputs).detach()  # [B, F + N]
        n_features = model.config.n_features
        contrib = attribution[:, :n_features].clone()  # [B, F]
        contrib[:, model.nullable_index] += attribution[:, n_features:]
        contrib_np = contrib.double().cpu().numpy()
        values = x.double().cpu().numpy()
        names = model.feature_names
        order = np.argsort(-contrib_np, axis=1, kind="stable")[:, :top_k]  # [B, top_k]
        reasons = []
        for i in range(contrib_np.shape[0]):
            row = []
            for j in order[i]:
                c = contrib_np[i, j]
                if c <= 0.0:
                    break
                v = values[i, j]
                row.append(AlertReason(names[j], None if math.isnan(v) else float(v), float(c)))
            reasons.append(row)
        return reasons
