"""The scaling scenario's grid of cases (actors x partitions, no idle actors) and its speed-up
summary; the run itself is `rtml bench --quick --only scaling`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.options import QUICK, BenchOptions
from bench.results import BenchResults, Measurement, Sample
from bench.scenario import BenchContext
from bench.scenarios import SCENARIOS, load
from bench.scenarios.scaling import ScalingScenario, parse_case
from rtml.errors import ConfigError


def context(tmp_path: Path, **sizes: object) -> BenchContext:
    options = BenchOptions(
        mode="quick", scenarios=("scaling",), sizes=replace(QUICK, **sizes), out=tmp_path
    )
    results = BenchResults("rtml bench", "quick", options.to_dict(), {}, "now")
    return BenchContext(options, None, results, tmp_path, "t", lambda _: None)  # type: ignore[arg-type]


def test_registered_and_loadable() -> None:
    assert "scaling" in SCENARIOS
    assert isinstance(load("scaling"), ScalingScenario)


def test_cases_cover_actors_by_partitions_without_idle_actors(tmp_path: Path) -> None:
    ctx = context(tmp_path, scaling_actors=(1, 2, 4), scaling_partitions=(2, 8))
    names = [case.name for case in ScalingScenario().cases(ctx)]
    assert names == ["p2-ray-1", "p2-ray-2", "p8-ray-1", "p8-ray-2", "p8-ray-4"]
    assert all(parse_case(name)[1] <= parse_case(name)[0] for name in names)
    assert parse_case("p16-ray-4") == (16, 4)


def test_checks_report_the_speed_up_per_partition_count(tmp_path: Path) -> None:
    ctx = context(tmp_path, scaling_actors=(1, 2, 4), scaling_partitions=(4, 8))
    for name, value in (("p8-ray-1", 10_000.0), ("p8-ray-2", 18_000.0), ("p8-ray-4", 30_000.0)):
        m = ctx.results.declare(Measurement("scaling", name, name, "events/s"))
        m.samples.append(Sample(0, value))
    ctx.results.declare(Measurement("scaling", "p4-ray-1", "no samples", "events/s"))
    by_name = {c.name: c for c in ScalingScenario().checks(ctx)}
    eight = by_name["fraud feature stage: speed-up with consumer actors (8 partitions)"]
    assert eight.value == "3.00x with 4 actors (75% per actor)" and eight.met is None
    assert "2 actor(s): 18,000/s" in eight.detail
    four = by_name["fraud feature stage: speed-up with consumer actors (4 partitions)"]
    assert four.value == "not measured"


def test_sizes_are_checked_and_written_out(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scaling partition counts"):
        context(tmp_path, scaling_partitions=(0,))
    with pytest.raises(ConfigError, match="scaling actor counts"):
        context(tmp_path, scaling_actors=())
    data = context(tmp_path).options.to_dict()
    assert data["sizes"]["scaling_actors"] == [1, 2, 4]
    assert data["sizes"]["scaling_partitions"] == [8]  # quick: the curve over 8 partitions only
