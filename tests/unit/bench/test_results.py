"""The result schema: measurements, ratios to baselines, series, and the JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results import SCHEMA, BenchResults, Check, Measurement, Sample, Series


def make_results() -> BenchResults:
    results = BenchResults(
        command="rtml bench --quick",
        mode="quick",
        options={"repeats": 2},
        machine={"cpu_model": "test CPU", "cores": 2, "memory_gib": 8.0},
        started_at="2025-01-01T00:00:00+00:00",
    )
    consume = results.declare(Measurement("ceiling", "consume", "raw consume", "events/s"))
    consume.samples += [Sample(0, 200_000.0), Sample(1, 100_000.0)]
    features = results.declare(
        Measurement(
            "features",
            "ray-1",
            "fraud features",
            "events/s",
            baselines=["ceiling/consume", "ceiling/absent"],
        )
    )
    features.samples += [
        Sample(0, 20_000.0, {"events": 300_000, "consumer_cores": 0.9}),
        Sample(1, 20_000.0, {"events": 300_000, "consumer_cores": 1.0}),
    ]
    results.series.append(Series("memory", "rss", "actor RSS", "MiB", [(0.0, 200.0), (5.0, 260.0)]))
    results.checks.append(Check("target", ">= 30,000 tx/s", "20,000 tx/s", False, "ray-1"))
    results.artifacts.append("quick-throughput.png")
    results.notes.append("a note")
    return results


def test_declare_returns_the_known_measurement() -> None:
    results = make_results()
    again = results.declare(Measurement("ceiling", "consume", "other label", "events/s"))
    assert again is results.measurement("ceiling/consume")
    assert len(results.measurements) == 2


def test_ratios_are_paired_by_round_and_skip_missing_baselines() -> None:
    results = make_results()
    ratios = results.ratios()
    assert [(r.measurement, r.baseline) for r in ratios] == [("features/ray-1", "ceiling/consume")]
    # Round 0: 20k / 200k, round 1: 20k / 100k; not the ratio of the medians (20k / 150k).
    assert ratios[0].summary.min == pytest.approx(0.1)
    assert ratios[0].summary.max == pytest.approx(0.2)
    assert ratios[0].summary.median == pytest.approx(0.15)


def test_series_stats() -> None:
    stats = make_results().series[0].stats()
    assert stats == {"start": 200.0, "end": 260.0, "min": 200.0, "max": 260.0, "seconds": 5.0}
    assert Series("m", "empty", "", "MiB").stats() is None


def test_json_round_trip(tmp_path: Path) -> None:
    results = make_results()
    path = tmp_path / "quick.json"
    results.write_json(path)
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    # Derived fields are there for readers...
    features = next(m for m in data["measurements"] if m["id"] == "features/ray-1")
    assert features["summary"]["median"] == 20_000.0
    assert data["ratios"][0]["baseline"] == "ceiling/consume"
    assert data["series"][0]["stats"]["max"] == 260.0
    # ...and recomputed from the samples when read back.
    again = BenchResults.read_json(path)
    assert again.to_dict() == results.to_dict()


def test_unknown_schema_and_malformed_results_are_refused() -> None:
    data = make_results().to_dict()
    with pytest.raises(ValueError, match="unsupported results schema"):
        BenchResults.from_dict({**data, "schema": "rtml-bench/0"})
    broken = {**data, "measurements": [{"scenario": "x"}]}
    with pytest.raises(ValueError, match="malformed results"):
        BenchResults.from_dict(broken)
