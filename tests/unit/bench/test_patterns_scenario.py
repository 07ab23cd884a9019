"""The patterns bench scenario on a tiny workload: 10 valid rules, every case measures."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bench.scenarios import SCENARIOS, load
from bench.scenarios.patterns import PatternsScenario, ten_rules


def test_ten_rules_are_valid_and_use_every_kind_of_step() -> None:
    rules = ten_rules()
    assert len(rules.rules) == 10
    steps = [s for r in rules.rules for s in r.steps]
    assert any(s.negated for s in steps) and any(s.contiguity == "strict" for s in steps)
    assert any(s.event == "profile_change" for s in steps)
    assert any(s.times.max is None and s.times.min > 1 for s in steps)


def test_cases_measure_a_tiny_stream() -> None:
    assert isinstance(load("patterns"), PatternsScenario) and "patterns" in SCENARIOS
    ctx: object = SimpleNamespace(
        options=SimpleNamespace(sizes=SimpleNamespace(transactions=3_000), seed=1),
        shared={},
        results=SimpleNamespace(workloads={}),
        say=lambda _: None,
    )
    scenario = PatternsScenario()
    asyncio.run(scenario.prepare(ctx))  # type: ignore[arg-type]
    samples = {c.name: asyncio.run(c.run(ctx, 1)) for c in scenario.cases(ctx)}  # type: ignore[arg-type]
    assert set(samples) == {"card-features", "rules-3", "rules-10"}
    assert all(s.value > 0 and s.details["events"] == 3_000 for s in samples.values())
    assert samples["rules-10"].details["rules"] == 10
    assert samples["rules-10"].details["alert_matches"] > 0
