"""Drift statistics, the sliding window, and a real shift of the generator's distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.definitions import FRAUD_FEATURE_NAMES
from models.artifacts import Reference
from monitoring.alerts import AlertEvaluator, Signals
from monitoring.alerts.rules import default_rules
from monitoring.config import MonitoringConfig
from monitoring.drift import DriftWindow, js_divergence, psi
from producers.config import GeneratorConfig
from producers.runner import Window, write_history
from training.data import fraud_examples, read_log


def test_psi_and_js_are_zero_for_equal_distributions_and_grow_with_the_shift() -> None:
    e = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(e, e) == pytest.approx(0.0)
    assert js_divergence(e, e) == pytest.approx(0.0)
    slight, strong = np.array([0.3, 0.25, 0.25, 0.2]), np.array([0.7, 0.1, 0.1, 0.1])
    assert 0 < psi(e, slight) < 0.1 < 0.2 < psi(e, strong)
    assert 0 < js_divergence(e, slight) < js_divergence(e, strong) <= 1.0
    # An empty bin on one side: PSI is large but finite, JS stays bounded.
    assert np.isfinite(psi(e, np.array([1.0, 0.0, 0.0, 0.0])))
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_window_forgets_old_slots_and_reports_null_share_over_the_reference() -> None:
    ref = Reference.fit(np.arange(100, dtype=np.float64))
    window = DriftWindow(["x"], {"x": ref}, window_s=10.0, slots=10)
    shifted = np.full((200, 1), 1_000.0)
    window.add(0.0, shifted)
    (p, js, nulls) = window.statistics(0.0)["x"]
    assert p > 0.2 and js > 0.5 and nulls == pytest.approx(0.0)
    same = np.arange(100, dtype=np.float64).reshape(-1, 1)
    same[::10] = np.nan  # one value of each decile
    window.add(20.0, same)  # the shifted slot left the window
    assert window.count(20.0) == 100
    (p, _, nulls) = window.statistics(20.0)["x"]
    assert p < 0.1 and nulls == pytest.approx(0.1)
    assert window.statistics(100.0) == {}


def features_of(tmp_path: Path, seed: int, **shift: float) -> np.ndarray:
    out = tmp_path / f"log-{seed}"
    write_history(GeneratorConfig(seed=seed, users=400, **shift), out, Window.last_days(1.0))
    return fraud_examples(read_log(out, recsys=False), partitions=2).x


def test_a_shift_of_the_generator_raises_psi_above_the_threshold_and_fires(
    tmp_path: Path,
) -> None:
    reference_rows = features_of(tmp_path, seed=0)
    references = {
        name: Reference.fit(reference_rows[:, j]) for j, name in enumerate(FRAUD_FEATURE_NAMES)
    }
    config = MonitoringConfig(for_s=0.0, resolve_s=0.0)

    def drift(rows: np.ndarray) -> dict[str, float]:
        window = DriftWindow(FRAUD_FEATURE_NAMES, references, window_s=60.0)
        window.add(0.0, rows.astype(np.float64))
        return {name: stats[0] for name, stats in window.statistics(0.0).items()}

    steady = drift(features_of(tmp_path, seed=1))  # same world, other draws
    assert max(steady.values()) < config.psi, steady
    assert AlertEvaluator(default_rules(config)).evaluate(Signals(at=0.0, psi=steady)) == []

    # Four times the card activity: the count and recency features move.
    shifted = drift(features_of(tmp_path, seed=2, txns_per_user_day=12.0))
    moved = {name for name, value in shifted.items() if value > config.psi}
    assert {"transaction_count_1h", "unique_merchants_24h"} <= moved, shifted
    fired = AlertEvaluator(default_rules(config)).evaluate(Signals(at=0.0, psi=shifted))
    assert {e.subject for e in fired if e.rule == "feature_drift_psi"} == moved
