"""Training end to end on small generated logs: generator -> replay -> train -> evaluate ->
export -> load. No services: the generator writes files in-process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifacts import load_fraud, load_recommender, read_manifest
from rtml.settings import Settings
from training import cli
from training.data import (
    FraudExamples,
    RecsysExamples,
    fraud_examples,
    generate_log,
    read_log,
    recsys_examples,
)
from training.fraud import FraudTrainConfig, train_fraud
from training.recsys import RecsysTrainConfig, train_recsys

FRAUD_DAYS, FRAUD_USERS = 6, 2_000
RECSYS_DAYS, RECSYS_USERS = 2, 1_000


@pytest.fixture(scope="module")
def fraud_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fraud-log")
    generate_log(directory, seed=3, days=FRAUD_DAYS, users=FRAUD_USERS, recsys=False)
    return directory


@pytest.fixture(scope="module")
def fraud_data(fraud_log_dir: Path) -> FraudExamples:
    return fraud_examples(read_log(fraud_log_dir, recsys=False), partitions=4)


@pytest.fixture(scope="module")
def recsys_data(tmp_path_factory: pytest.TempPathFactory) -> RecsysExamples:
    directory = tmp_path_factory.mktemp("recsys-log")
    generate_log(directory, seed=3, days=RECSYS_DAYS, users=RECSYS_USERS, fraud=False)
    return recsys_examples(read_log(directory, fraud=False), partitions=4)


def test_fraud_trains_calibrates_evaluates_and_round_trips(
    fraud_data: FraudExamples, tmp_path: Path
) -> None:
    result = train_fraud(
        fraud_data,
        FraudTrainConfig(epochs=12),
        models_dir=tmp_path,
        training_data={"source": "test"},
        num_threads=1,
    )
    report = result.report
    assert result.path is not None and result.path.parent == tmp_path / "fraud"
    test = report["test"]
    # The model learns the scenarios and beats the rules; both far above chance.
    assert test["model"]["roc_auc"] > 0.9
    assert test["model"]["average_precision"] > test["rules"]["average_precision"]
    assert 0.0 < test["model"]["card_precision_at_100"] <= report["oracle_card_precision"]
    # The class-weighted loss inflates probabilities; Platt scaling on validation fixes them.
    cal = report["calibration"]["model"]
    assert cal["validation_brier_after"] < cal["validation_brier_before"]
    assert cal["validation_ece_after"] < cal["validation_ece_before"]
    assert report["timings"]["predict_512_ms_1_thread"] > 0

    # Export -> load -> identical predictions on the test rows.
    loaded = load_fraud(result.path, device="cpu")
    x = fraud_data.x[-500:]
    with torch.inference_mode():
        expected = torch.sigmoid(result.model(torch.from_numpy(x))).double().numpy()
    np.testing.assert_array_equal(loaded.predict(x), expected)
    manifest = read_manifest(result.path)
    assert manifest.metrics == report["metrics"]
    assert manifest.training_data["source"] == "test"
    assert manifest.training_data["test_start_ms"] == report["split"]["test_start_ms"]
    assert json.loads((result.path / "report.json").read_text())["test"] == test
    # The score reference describes calibrated probabilities.
    assert 0.0 <= manifest.reference["score"].edges[0] <= 1.0


def test_fraud_training_is_deterministic_with_a_seed(fraud_data: FraudExamples) -> None:
    runs = [
        train_fraud(
            fraud_data,
            FraudTrainConfig(epochs=2, seed=5),
            models_dir=None,
            training_data={},
            num_threads=1,
        )
        for _ in range(2)
    ]
    a, b = (r.model.state_dict() for r in runs)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].report["test"] == runs[1].report["test"]


def test_recsys_trains_evaluates_and_round_trips(
    recsys_data: RecsysExamples, tmp_path: Path
) -> None:
    result = train_recsys(
        recsys_data,
        RecsysTrainConfig(epochs=3, dim=16, hidden=32, batch_size=256),
        models_dir=tmp_path,
        training_data={},
        num_threads=1,
    )
    test = result.report["test"]
    assert test["model"]["recall_at_10"] > test["popularity"]["recall_at_10"]
    for name in ("model", "popularity", "recent_category"):
        assert 0.0 <= test[name]["ndcg_at_10"] <= test[name]["recall_at_10"]
        assert test[name]["recall_at_10"] <= test[name]["recall_at_50"] <= 1.0
    assert result.path is not None
    loaded = load_recommender(result.path, device="cpu")
    rows = recsys_data.rows[:64]
    with torch.inference_mode():
        expected = result.model.user_vectors(loaded.encode(rows)) @ result.model.item_vectors().T
    torch.testing.assert_close(loaded.score_all(rows), expected)
    for row, top in zip(rows, loaded.topk(rows, 10), strict=True):
        assert len(top) == 10
        assert set(row[4]).isdisjoint(s.item_id for s in top)
    assert set(read_manifest(result.path).reference) >= {"view_count_30m", "score"}


def test_cli_trains_from_an_input_directory_and_lists(
    fraud_log_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="rtml")
    cli.register(parser.add_subparsers(dest="command", required=True))
    settings = Settings(rtml_state_dir=tmp_path / "state")
    args = parser.parse_args(["train", "fraud", "--input", str(fraud_log_dir), "--epochs", "2"])
    assert args.run(settings, args) == 0
    out = capsys.readouterr().out
    assert "average_precision" in out and "artifact: " in out
    args = parser.parse_args(["models", "list"])
    assert args.run(settings, args) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["KIND", "VERSION", "CREATED_AT"]
    assert listing[1].startswith("fraud ") and "test_average_precision=" in listing[1]
    assert (tmp_path / "state" / "models" / "fraud").is_dir()
