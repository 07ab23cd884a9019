"""Model artifacts: one versioned directory per trained model, loaded only through its manifest.

Layout (``<models_dir>/<kind>/<version>/``, version ``<kind>-<yyyymmddHHMMSS>-<sha8>``, the UTC
export time and the first 8 hex digits of the weights' sha256)::

    manifest.json          what the model is: kind, version, features and their order, feature
                           set version, normalization, hyperparameters, training data range,
                           metrics, reference distributions, sha256 of every other file
    weights.pt             the torch state_dict (loaded with weights_only=True)
    report.json            the evaluation report (model vs baselines), as printed by training
    item_embeddings.pt     recsys: the catalog's item vectors [I, D + 1] (float32)
    vocabulary.json        recsys: item ids (row order of item_embeddings), categories

An artifact is written to a temporary directory and renamed into place, so a reader never sees
half an artifact. ``load_fraud`` / ``load_recommender`` refuse an artifact whose kind, features
(names, order, dtypes, nullability), feature set version, normalization or file checksums do not
match, with an ``ArtifactError`` (a ``ConfigError``) that names the difference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import torch

from features.definitions import (
    FEATURE_SET_VERSION,
    FRAUD,
    RECOMMENDATION,
    FeatureGroup,
)
from models.device import pick_device
from models.errors import ArtifactError, ChecksumMismatch, FeatureMismatch
from models.fraud import FeatureNorm, FraudClassifier, FraudConfig, LoadedFraudModel
from models.two_tower import LoadedRecommender, TwoTower, TwoTowerConfig, Vocabulary

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
Kind = Literal["fraud", "recsys"]
KINDS: tuple[Kind, ...] = ("fraud", "recsys")
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
REPORT = "report.json"
ITEM_EMBEDDINGS = "item_embeddings.pt"
VOCABULARY = "vocabulary.json"
_GROUP: dict[str, FeatureGroup] = {"fraud": FRAUD, "recsys": RECOMMENDATION}


# -----------------------------------------------------------------------------------------------
# The manifest


class FeatureEntry(msgspec.Struct, frozen=True):
    name: str
    dtype: str
    nullable: bool


class FileEntry(msgspec.Struct, frozen=True):
    sha256: str
    bytes: int


class Reference(msgspec.Struct, frozen=True):
    """A reference distribution for drift monitoring (PSI, Jensen-Shannon).

    Values fall in ``len(edges) + 1`` bins: bin 0 is ``(-inf, edges[0])``, bin i is
    ``[edges[i-1], edges[i])``, the last is ``[edges[-1], inf)`` (``np.searchsorted(edges, v,
    side="right")``). ``proportions`` are the training shares of the non-null values per bin (they
    sum to 1); ``missing`` is the share of nulls among all ``count`` values.
    """

    edges: list[float]
    proportions: list[float]
    missing: float
    count: int

    @classmethod
    def fit(cls, values: np.ndarray, n_bins: int = 10) -> Reference:
        """Edges at the deciles (or every distinct value, for a feature with at most ``2 *
        n_bins`` of them) of the non-NaN ``values``."""
        values = np.asarray(values, dtype=np.float64)
        present = values[~np.isnan(values)]
        missing = 1.0 - present.size / values.size if values.size else 0.0
        if present.size == 0:
            return cls([], [1.0], missing, int(values.size))
        distinct = np.unique(present)
        if distinct.size <= 2 * n_bins:
            edges = distinct
        else:
            edges = np.unique(np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1]))
        ref = cls([float(e) for e in edges], [], missing, int(values.size))
        return msgspec.structs.replace(ref, proportions=ref.proportions_of(present).tolist())

    def proportions_of(self, values: np.ndarray) -> np.ndarray:
        """Shares of the non-NaN ``values`` in this reference's bins: float64 [len(edges) + 1]."""
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        counts = np.bincount(
            np.searchsorted(np.asarray(self.edges), values, side="right"),
            minlength=len(self.edges) + 1,
        )
        return counts / max(values.size, 1)


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format_version: int
    kind: Kind
    version: str
    created_at: str  # ISO 8601, UTC
    feature_set_version: int
    feature_group: str
    features: list[FeatureEntry]  # the model's input, in order
    hyperparameters: dict[str, Any]  # the model config dataclass, as a dict
    normalization: list[dict[str, Any]]  # fraud: FeatureNorm per feature; recsys: []
    training_data: dict[str, Any]  # source, seed, time ranges of the splits, row counts
    metrics: dict[str, Any]  # headline metrics of the held-out range
    reference: dict[str, Reference]  # per input feature (and "score"): drift references
    files: dict[str, FileEntry]  # every other file of the artifact
    torch_version: str


@dataclass(frozen=True)
class ModelSummary:
    """One line of ``rtml models list``."""

    kind: str
    version: str
    created_at: str
    metrics: dict[str, Any]
    path: Path


# -----------------------------------------------------------------------------------------------
# Saving


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def feature_entries(group: FeatureGroup) -> list[FeatureEntry]:
    return [FeatureEntry(f.name, f.dtype, f.nullable) for f in group.features]


def save_fraud(
    model: FraudClassifier,
    models_dir: Path,
    *,
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    reference: Mapping[str, Reference],
    report: Mapping[str, Any],
    now: datetime | None = None,
) -> Path:
    """Write a fraud artifact under ``models_dir/fraud/``; returns its directory."""
    norms = [
        FeatureNorm(name, "log1p" if log1p else "identity", float(m), float(s), nullable)
        for name, log1p, m, s, nullable in zip(
            model.feature_names,
            model.log_mask.tolist(),
            model.mean.tolist(),
            model.std.tolist(),
            _nullable_flags(model),
            strict=True,
        )
    ]

    def write(tmp: Path) -> None:
        torch.save(_cpu_state(model), tmp / WEIGHTS)

    return _save(
        "fraud",
        models_dir,
        write,
        hyperparameters=model.config.to_dict(),
        normalization=[n.to_dict() for n in norms],
        training_data=training_data,
        metrics=metrics,
        reference=reference,
        report=report,
        now=now,
    )


def save_recommender(
    model: TwoTower,
    vocab: Vocabulary,
    models_dir: Path,
    *,
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    reference: Mapping[str, Reference],
    report: Mapping[str, Any],
    now: datetime | None = None,
) -> Path:
    """Write a recommender artifact (weights, catalog item vectors, vocabulary) under
    ``models_dir/recsys/``; returns its directory."""
    if len(vocab.item_ids) != model.config.n_items:
        raise ValueError(
            f"vocabulary has {len(vocab.item_ids)} items, model {model.config.n_items}"
        )
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        table = model.item_vectors().float().cpu().contiguous()  # [I, D + 1]
    model.train(was_training)

    def write(tmp: Path) -> None:
        torch.save(_cpu_state(model), tmp / WEIGHTS)
        torch.save(table, tmp / ITEM_EMBEDDINGS)
        (tmp / VOCABULARY).write_text(json.dumps(vocab.to_dict()))

    return _save(
        "recsys",
        models_dir,
        write,
        hyperparameters=model.config.to_dict(),
        normalization=[],
        training_data=training_data,
        metrics=metrics,
        reference=reference,
        report=report,
        now=now,
    )


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _nullable_flags(model: FraudClassifier) -> list[bool]:
    nullable = set(model.nullable_index.tolist())
    return [j in nullable for j in range(model.config.n_features)]


def _save(
    kind: Kind,
    models_dir: Path,
    write_files: Any,
    *,
    hyperparameters: dict[str, Any],
    normalization: list[dict[str, Any]],
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    reference: Mapping[str, Reference],
    report: Mapping[str, Any],
    now: datetime | None,
) -> Path:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    kind_dir = Path(models_dir) / kind
    kind_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=kind_dir))
    try:
        write_files(tmp)
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        files = {
            p.name: FileEntry(sha256_file(p), p.stat().st_size)
            for p in sorted(tmp.iterdir())
            if p.is_file()
        }
        version = f"{kind}-{now:%Y%m%d%H%M%S}-{files[WEIGHTS].sha256[:8]}"
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            kind=kind,
            version=version,
            created_at=now.isoformat(timespec="seconds"),
            feature_set_version=FEATURE_SET_VERSION,
            feature_group=_GROUP[kind].name,
            features=feature_entries(_GROUP[kind]),
            hyperparameters=hyperparameters,
            normalization=normalization,
            training_data=dict(training_data),
            metrics=dict(metrics),
            reference=dict(reference),
            files=files,
            torch_version=str(torch.__version__),
        )
        (tmp / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
        final = kind_dir / version
        if final.exists():
            raise ArtifactError(final, "already exists (same second, same weights)")
        os.chmod(tmp, 0o755)
        tmp.rename(final)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# -----------------------------------------------------------------------------------------------
# Loading and validation


def read_manifest(path: Path | str) -> Manifest:
    """The manifest of the artifact directory ``path`` (or of the manifest file itself)."""
    path = Path(path)
    file = path if path.name == MANIFEST else path / MANIFEST
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(file.parent, f"no {MANIFEST} (not a model artifact?)") from None
    except OSError as exc:
        raise ArtifactError(file.parent, f"cannot read {MANIFEST}: {exc}") from exc
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ArtifactError(file.parent, f"invalid {MANIFEST}: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise ArtifactError(
            file.parent,
            f"format_version {manifest.format_version}; this rtml reads {FORMAT_VERSION}",
        )
    return manifest


def check_features(
    where: Path, manifest: Manifest, group: FeatureGroup, feature_set_version: int
) -> None:
    """Raise ``FeatureMismatch`` naming the first difference between the artifact's features and
    ``group`` (the code's current definitions)."""
    have = [(f.name, f.dtype, f.nullable) for f in manifest.features]
    want = [(f.name, f.dtype, f.nullable) for f in group.features]
    have_names, want_names = [h[0] for h in have], [w[0] for w in want]
    missing = [n for n in want_names if n not in have_names]
    extra = [n for n in have_names if n not in want_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if extra:
            parts.append(f"has unknown {', '.join(extra)}")
        raise FeatureMismatch(
            where,
            f"features differ from features.definitions.{group.name.upper()}: "
            f"the artifact {' and '.join(parts)}; retrain the model",
        )
    if have_names != want_names:
        i = next(i for i, (h, w) in enumerate(zip(have_names, want_names, strict=True)) if h != w)
        raise FeatureMismatch(
            where,
            f"feature order differs from features.definitions.{group.name.upper()} at position "
            f"{i}: the artifact has {have_names[i]!r}, the code {want_names[i]!r}; "
            "retrain the model",
        )
    for h, w in zip(have, want, strict=True):
        if h != w:
            raise FeatureMismatch(
                where,
                f"feature {h[0]!r} is {h[1]} nullable={h[2]} in the artifact but {w[1]} "
                f"nullable={w[2]} in features.definitions; retrain the model",
            )
    if manifest.feature_set_version != feature_set_version:
        raise FeatureMismatch(
            where,
            f"trained on feature set version {manifest.feature_set_version}, the code computes "
            f"version {feature_set_version}; retrain the model",
        )


def verify_files(where: Path, manifest: Manifest, required: Iterable[str]) -> None:
    for name in required:
        if name not in manifest.files:
            raise ArtifactError(where, f"manifest lists no {name}")
    for name, entry in manifest.files.items():
        file = where / name
        if not file.is_file():
            raise ArtifactError(where, f"{name} is missing")
        actual = sha256_file(file)
        if actual != entry.sha256:
            raise ChecksumMismatch(where, name, entry.sha256, actual)


def _load_state(where: Path, name: str) -> Any:
    try:
        return torch.load(where / name, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:  # torch's unpickler errors
        raise ArtifactError(where, f"cannot load {name}: {exc}") from exc


def _load_into(where: Path, model: torch.nn.Module, state: Any) -> None:
    if not isinstance(state, dict):
        raise ArtifactError(where, f"{WEIGHTS} does not hold a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(where, f"{WEIGHTS} does not fit the hyperparameters: {exc}") from exc


def _fraud_norms(where: Path, manifest: Manifest) -> list[FeatureNorm]:
    names = [f.name for f in manifest.features]
    if len(manifest.normalization) != len(names):
        raise ArtifactError(
            where,
            f"normalization has {len(manifest.normalization)} entries for {len(names)} features",
        )
    norms = []
    for i, (entry, feature) in enumerate(
        zip(manifest.normalization, manifest.features, strict=True)
    ):
        try:
            norm = FeatureNorm(**entry)
        except TypeError as exc:
            raise ArtifactError(where, f"normalization[{i}] is malformed: {exc}") from exc
        if norm.name != feature.name:
            raise ArtifactError(
                where,
                f"normalization[{i}] is for {norm.name!r} but feature {i} is {feature.name!r}",
            )
        if norm.transform not in ("identity", "log1p"):
            raise ArtifactError(where, f"normalization of {norm.name!r}: unknown transform")
        if not (np.isfinite(norm.mean) and np.isfinite(norm.std) and norm.std > 0):
            raise ArtifactError(where, f"normalization of {norm.name!r}: bad mean/std")
        if norm.nullable != feature.nullable:
            raise ArtifactError(where, f"normalization of {norm.name!r}: nullable differs")
        norms.append(norm)
    return norms


def load_fraud(
    path: Path | str,
    device: str | torch.device | None = None,
    *,
    group: FeatureGroup = FRAUD,
    feature_set_version: int = FEATURE_SET_VERSION,
) -> LoadedFraudModel:
    """Load and validate a fraud artifact for scoring on ``device`` (default: CUDA if available).

    ``group`` and ``feature_set_version`` default to the code's definitions (tests override them).
    """
    where = Path(path)
    where = where.parent if where.name == MANIFEST else where
    manifest = read_manifest(where)
    if manifest.kind != "fraud":
        raise ArtifactError(where, f"is a {manifest.kind} model, not a fraud model")
    check_features(where, manifest, group, feature_set_version)
    verify_files(where, manifest, [WEIGHTS])
    norms = _fraud_norms(where, manifest)
    try:
        config = FraudConfig.from_dict(manifest.hyperparameters)
        model = FraudClassifier(config, norms)
    except (TypeError, ValueError, KeyError) as exc:
        raise ArtifactError(where, f"hyperparameters do not build a model: {exc}") from exc
    expected = {k: v.clone() for k, v in model.state_dict().items() if k in ("mean", "std")}
    _load_into(where, model, _load_state(where, WEIGHTS))
    for name, tensor in expected.items():
        if not torch.allclose(getattr(model, name), tensor, rtol=1e-5, atol=1e-6):
            raise ArtifactError(
                where, f"normalization {name} in {WEIGHTS} differs from the manifest"
            )
    if model.log_mask.tolist() != [n.transform == "log1p" for n in norms]:
        raise ArtifactError(
            where, f"normalization transforms in {WEIGHTS} differ from the manifest"
        )
    target = pick_device(device)
    model = model.to(target).eval().requires_grad_(False)
    return LoadedFraudModel(model, manifest.version, target, msgspec.to_builtins(manifest))


def load_recommender(
    path: Path | str,
    device: str | torch.device | None = None,
    *,
    group: FeatureGroup = RECOMMENDATION,
    feature_set_version: int = FEATURE_SET_VERSION,
) -> LoadedRecommender:
    """Load and validate a recommender artifact (default device: CUDA if available)."""
    where = Path(path)
    where = where.parent if where.name == MANIFEST else where
    manifest = read_manifest(where)
    if manifest.kind != "recsys":
        raise ArtifactError(where, f"is a {manifest.kind} model, not a recommender")
    check_features(where, manifest, group, feature_set_version)
    verify_files(where, manifest, [WEIGHTS, ITEM_EMBEDDINGS, VOCABULARY])
    try:
        config = TwoTowerConfig.from_dict(manifest.hyperparameters)
        vocab = Vocabulary.from_dict(json.loads((where / VOCABULARY).read_text()))
    except (TypeError, ValueError, KeyError) as exc:
        raise ArtifactError(where, f"hyperparameters or vocabulary are malformed: {exc}") from exc
    if (len(vocab.item_ids), len(vocab.categories)) != (config.n_items, config.n_categories):
        raise ArtifactError(
            where,
            f"vocabulary has {len(vocab.item_ids)} items and {len(vocab.categories)} categories, "
            f"hyperparameters say {config.n_items} and {config.n_categories}",
        )
    model = TwoTower(
        config,
        torch.tensor(vocab.item_category, dtype=torch.long),
        torch.zeros(config.n_items),  # replaced by the state_dict's buffer
    )
    _load_into(where, model, _load_state(where, WEIGHTS))
    model.eval().requires_grad_(False)
    table = _load_state(where, ITEM_EMBEDDINGS)
    if not isinstance(table, torch.Tensor) or tuple(table.shape) != (
        config.n_items,
        config.dim + 1,
    ):
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ArtifactError(
            where,
            f"{ITEM_EMBEDDINGS} has shape {shape}, expected ({config.n_items}, {config.dim + 1})",
        )
    if model.item_category[1:].tolist() != list(vocab.item_category):
        raise ArtifactError(where, f"item categories in {WEIGHTS} differ from {VOCABULARY}")
    with torch.inference_mode():
        recomputed = model.item_vectors()
    if not torch.allclose(recomputed, table, rtol=1e-4, atol=1e-4):
        raise ArtifactError(where, f"{ITEM_EMBEDDINGS} does not match the item tower in {WEIGHTS}")
    target = pick_device(device)
    return LoadedRecommender(
        model.to(target),
        table.float().to(target).contiguous(),
        vocab,
        manifest.version,
        target,
        msgspec.to_builtins(manifest),
    )


# -----------------------------------------------------------------------------------------------
# Finding artifacts


def list_models(models_dir: Path | str, kind: Kind | None = None) -> list[ModelSummary]:
    """Every readable artifact under ``models_dir`` (of ``kind``), oldest first."""
    found = []
    for k in [kind] if kind else KINDS:
        kind_dir = Path(models_dir) / k
        if not kind_dir.is_dir():
            continue
        for child in kind_dir.iterdir():
            if child.name.startswith(".") or not (child / MANIFEST).is_file():
                continue
            try:
                m = read_manifest(child)
            except ArtifactError as exc:
                log.warning("skipping %s: %s", child, exc.message)
                continue
            if m.kind == k:
                found.append(ModelSummary(m.kind, m.version, m.created_at, m.metrics, child))
    return sorted(found, key=lambda s: (s.kind, s.created_at, s.version))


def latest(models_dir: Path | str, kind: Kind) -> Path:
    """The directory of the newest ``kind`` artifact under ``models_dir``."""
    if kind not in KINDS:
        raise ArtifactError(Path(models_dir), f"unknown model kind {kind!r}; expected {KINDS}")
    found = list_models(models_dir, kind)
    if not found:
        raise ArtifactError(
            Path(models_dir) / kind, f"no {kind} model found; train one with `rtml train {kind}`"
        )
    return found[-1].path


def format_table(
    summaries: Sequence[ModelSummary], metric_keys: Mapping[str, Sequence[str]]
) -> str:
    """``rtml models list`` output: kind, version, created_at and each kind's key metrics."""
    rows = [("KIND", "VERSION", "CREATED_AT", "METRICS")]
    for s in summaries:
        keys = metric_keys.get(s.kind, ())
        shown = " ".join(
            f"{k}={s.metrics[k]:.4f}"
            if isinstance(s.metrics.get(k), float)
            else f"{k}={s.metrics.get(k)}"
            for k in keys
            if k in s.metrics
        )
        rows.append((s.kind, s.version, s.created_at, shown))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    )
