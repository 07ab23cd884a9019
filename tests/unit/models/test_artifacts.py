"""Artifacts: save -> load round trips, manifest contents, and every validation at load."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from features.definitions import FEATURE_SET_VERSION, FRAUD, RECOMMENDATION, FeatureGroup
from models.artifacts import (
    ITEM_EMBEDDINGS,
    MANIFEST,
    WEIGHTS,
    Reference,
    format_table,
    latest,
    list_models,
    load_fraud,
    load_recommender,
    read_manifest,
    save_fraud,
    save_recommender,
)
from models.errors import ArtifactError, ChecksumMismatch, FeatureMismatch
from models.fraud import FraudClassifier
from models.two_tower import TwoTower, Vocabulary
from rtml.errors import ConfigError

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


F = len(FRAUD.names)


def save(model: FraudClassifier, root: Path, reference: dict, now: datetime = T0) -> Path:
    return save_fraud(
        model,
        root,
        training_data={"seed": 0},
        metrics={"test_average_precision": 0.5},
        reference=reference,
        report={"kind": "fraud"},
        now=now,
    )


def edit_manifest(path: Path, change: Any) -> None:
    data = json.loads((path / MANIFEST).read_text())
    change(data)
    (path / MANIFEST).write_text(json.dumps(data))


@pytest.fixture
def fraud_artifact(tmp_path: Path, fraud_model: FraudClassifier, fraud_reference: dict) -> Path:
    return save(fraud_model, tmp_path, fraud_reference)


def test_fraud_round_trip_gives_identical_predictions(
    fraud_artifact: Path, fraud_model: FraudClassifier, fraud_rows: np.ndarray
) -> None:
    loaded = load_fraud(fraud_artifact, device="cpu")
    with torch.inference_mode():
        expected = torch.sigmoid(fraud_model(torch.from_numpy(fraud_rows))).double().numpy()
    np.testing.assert_array_equal(loaded.predict(fraud_rows), expected)
    rows = [tuple(None if np.isnan(v) else float(v) for v in r) for r in fraud_rows]
    np.testing.assert_array_equal(loaded.predict(rows), expected)
    assert loaded.explain(rows[:3]) == fraud_model_explain(fraud_model, rows[:3])
    assert loaded.version == fraud_artifact.name
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training


def fraud_model_explain(model: FraudClassifier, rows: list) -> list:
    from models.fraud import LoadedFraudModel

    return LoadedFraudModel(model, "x", torch.device("cpu"), {}).explain(rows)


def test_fraud_manifest_says_what_the_model_is(fraud_artifact: Path) -> None:
    assert re.fullmatch(r"fraud-20250301120000-[0-9a-f]{8}", fraud_artifact.name)
    assert fraud_artifact.parent.name == "fraud"
    manifest = read_manifest(fraud_artifact)
    assert manifest.kind == "fraud"
    assert manifest.created_at == "2025-03-01T12:00:00+00:00"
    assert manifest.feature_set_version == FEATURE_SET_VERSION
    assert [f.name for f in manifest.features] == list(FRAUD.names)
    assert [n["name"] for n in manifest.normalization] == list(FRAUD.names)
    assert {n["transform"] for n in manifest.normalization} == {"identity", "log1p"}
    assert manifest.hyperparameters["hidden"] == [16, 8]
    assert set(manifest.reference) == {*FRAUD.names, "score"}
    assert set(manifest.files) == {WEIGHTS, "report.json"}
    assert manifest.metrics == {"test_average_precision": 0.5}
    assert json.loads((fraud_artifact / "report.json").read_text()) == {"kind": "fraud"}
    # No temporary directories are left behind.
    assert [p.name for p in fraud_artifact.parent.iterdir()] == [fraud_artifact.name]


def _reordered(group: FeatureGroup, i: int, j: int) -> FeatureGroup:
    features = list(group.features)
    features[i], features[j] = features[j], features[i]
    return FeatureGroup(group.name, group.key, tuple(features))


def test_feature_order_mismatch_is_named(fraud_artifact: Path) -> None:
    with pytest.raises(FeatureMismatch) as info:
        load_fraud(fraud_artifact, group=_reordered(FRAUD, 1, 2))
    message = str(info.value)
    assert "position 1" in message
    assert "'transaction_count_1m'" in message and "'transaction_count_5m'" in message
    assert isinstance(info.value, ConfigError)


def test_missing_and_unknown_features_are_named(fraud_artifact: Path) -> None:
    fewer = FeatureGroup(FRAUD.name, FRAUD.key, FRAUD.features[:-1])
    with pytest.raises(FeatureMismatch, match=f"unknown {FRAUD.names[-1]}"):
        load_fraud(fraud_artifact, group=fewer)
    edit_manifest(fraud_artifact, lambda m: m["features"].pop(3))
    with pytest.raises(FeatureMismatch, match="lacks transaction_count_1h"):
        load_fraud(fraud_artifact)


def test_feature_set_version_and_dtype_mismatch(fraud_artifact: Path) -> None:
    version = FEATURE_SET_VERSION
    with pytest.raises(
        FeatureMismatch, match=rf"feature set version {version}.*version {version + 1}"
    ):
        load_fraud(fraud_artifact, feature_set_version=FEATURE_SET_VERSION + 1)
    edit_manifest(fraud_artifact, lambda m: m["features"][9].update(nullable=False))
    with pytest.raises(FeatureMismatch, match=r"'amount_to_mean_24h'.*nullable=False"):
        load_fraud(fraud_artifact)


def test_normalization_mismatches_are_detected(fraud_artifact: Path) -> None:
    original = (fraud_artifact / MANIFEST).read_text()

    def shift_mean(m: dict) -> None:
        m["normalization"][0]["mean"] += 1.0

    edit_manifest(fraud_artifact, shift_mean)
    with pytest.raises(ArtifactError, match=r"normalization mean in weights\.pt differs"):
        load_fraud(fraud_artifact)

    (fraud_artifact / MANIFEST).write_text(original)
    edit_manifest(fraud_artifact, lambda m: m["normalization"].pop())
    with pytest.raises(ArtifactError, match=f"normalization has {F - 1} entries for {F} features"):
        load_fraud(fraud_artifact)

    (fraud_artifact / MANIFEST).write_text(original)
    edit_manifest(fraud_artifact, lambda m: m["normalization"][0].update(transform="identity"))
    with pytest.raises(ArtifactError, match=r"transforms in weights\.pt differ"):
        load_fraud(fraud_artifact)

    (fraud_artifact / MANIFEST).write_text(original)
    edit_manifest(fraud_artifact, lambda m: m["normalization"][2].update(std=0.0))
    with pytest.raises(ArtifactError, match="'transaction_count_5m': bad mean/std"):
        load_fraud(fraud_artifact)


def test_changed_files_fail_their_checksum(fraud_artifact: Path) -> None:
    weights = fraud_artifact / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-30] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=r"weights\.pt: sha256"):
        load_fraud(fraud_artifact)
    weights.unlink()
    with pytest.raises(ArtifactError, match=r"weights\.pt is missing"):
        load_fraud(fraud_artifact)


def test_hyperparameters_that_do_not_fit_the_weights(fraud_artifact: Path) -> None:
    edit_manifest(fraud_artifact, lambda m: m["hyperparameters"].update(hidden=[32, 8]))
    with pytest.raises(ArtifactError, match="does not fit the hyperparameters"):
        load_fraud(fraud_artifact)


def test_not_an_artifact(tmp_path: Path, fraud_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        load_fraud(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"invalid manifest\.json"):
        load_fraud(tmp_path)
    with pytest.raises(ArtifactError, match="is a fraud model, not a recommender"):
        load_recommender(fraud_artifact)
    edit_manifest(fraud_artifact, lambda m: m.update(format_version=99))
    with pytest.raises(ArtifactError, match="format_version 99"):
        load_fraud(fraud_artifact)


def test_latest_and_listing(
    tmp_path: Path, fraud_model: FraudClassifier, fraud_reference: dict
) -> None:
    with pytest.raises(ArtifactError, match="no fraud model found"):
        latest(tmp_path, "fraud")
    old = save(fraud_model, tmp_path, fraud_reference, now=T0)
    new = save(fraud_model, tmp_path, fraud_reference, now=T0.replace(hour=13))
    (tmp_path / "fraud" / "junk").mkdir()  # not an artifact: ignored
    assert latest(tmp_path, "fraud") == new
    summaries = list_models(tmp_path)
    assert [s.path for s in summaries] == [old, new]
    table = format_table(summaries, {"fraud": ["test_average_precision"]})
    lines = table.splitlines()
    assert lines[0].split() == ["KIND", "VERSION", "CREATED_AT", "METRICS"]
    assert new.name in lines[2] and "test_average_precision=0.5000" in lines[2]


# -- recommender --------------------------------------------------------------------------------


def save_rec(model: TwoTower, vocab: Vocabulary, root: Path) -> Path:
    reference = {"view_count_30m": Reference.fit(np.arange(10.0))}
    return save_recommender(
        model,
        vocab,
        root,
        training_data={},
        metrics={"test_recall_at_10": 0.3},
        reference=reference,
        report={},
        now=T0,
    )


def test_recommender_round_trip(
    tmp_path: Path, recommender: TwoTower, vocab: Vocabulary, user_row: Any
) -> None:
    path = save_rec(recommender, vocab, tmp_path)
    assert re.fullmatch(r"recsys-20250301120000-[0-9a-f]{8}", path.name)
    loaded = load_recommender(path, device="cpu")
    assert loaded.vocab == vocab
    assert loaded.item_table.shape == (12, 9)
    rows = [user_row(), user_row({"music": 1.0}, ["i04"], ["i00"])]
    batch = loaded.encode(rows)
    with torch.inference_mode():
        expected = recommender.user_vectors(batch) @ recommender.item_vectors().T
    torch.testing.assert_close(loaded.score_all(rows), expected, rtol=0, atol=0)
    manifest = read_manifest(path)
    assert [f.name for f in manifest.features] == list(RECOMMENDATION.names)
    assert set(manifest.files) == {WEIGHTS, ITEM_EMBEDDINGS, "vocabulary.json", "report.json"}


def test_recommender_validation(tmp_path: Path, recommender: TwoTower, vocab: Vocabulary) -> None:
    path = save_rec(recommender, vocab, tmp_path)
    with pytest.raises(FeatureMismatch, match="position 0"):
        load_recommender(path, group=_reordered(RECOMMENDATION, 0, 1))
    with pytest.raises(ArtifactError, match="not a fraud model"):
        load_fraud(path)
    # An item table that does not come from the weights is refused, even with a fresh checksum.
    table = torch.load(path / ITEM_EMBEDDINGS, weights_only=True)
    torch.save(table + 1.0, path / ITEM_EMBEDDINGS)
    with pytest.raises(ChecksumMismatch, match=r"item_embeddings\.pt"):
        load_recommender(path)
    from models.artifacts import sha256_file

    digest = sha256_file(path / ITEM_EMBEDDINGS)
    edit_manifest(path, lambda m: m["files"][ITEM_EMBEDDINGS].update(sha256=digest))
    with pytest.raises(ArtifactError, match="does not match the item tower"):
        load_recommender(path)


def test_reference_distribution_bins() -> None:
    # Few distinct values: one bin per value.
    ref = Reference.fit(np.array([1, 1, 1, 2, 3, np.nan]))
    assert ref.edges == [1.0, 2.0, 3.0]
    assert ref.proportions == pytest.approx([0.0, 0.6, 0.2, 0.2])
    assert ref.missing == pytest.approx(1 / 6)
    assert ref.count == 6
    assert ref.proportions_of(np.array([0.0, 5.0])).tolist() == [0.5, 0.0, 0.0, 0.5]
    # Many distinct values: deciles, roughly a tenth in each bin.
    values = np.random.default_rng(0).normal(size=10_000)
    ref = Reference.fit(values)
    assert len(ref.edges) == 9
    assert sum(ref.proportions) == pytest.approx(1.0)
    assert max(ref.proportions) < 0.11
    assert Reference.fit(np.array([np.nan])).proportions == [1.0]
