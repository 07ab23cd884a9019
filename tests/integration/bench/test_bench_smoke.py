"""`rtml bench` end to end, tiny, on the test stack: the ceiling and fraud-feature scenarios run
through the real pipeline (in-process and one Ray actor) and the results have the documented
structure. No timing is asserted: only that every number was measured and written."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from bench.environment import BenchStack
from bench.options import QUICK, BenchOptions
from bench.results import BenchResults
from bench.runner import run_scenarios, write_outputs
from bench.scenario import BenchContext
from bench.scenarios import load
from infra.topics import delete_topics, describe_topics
from rtml.settings import Settings

TRANSACTIONS = 20_000
BATCH = 2_000  # records per poll: > 4 batches, as the first one of an actor is before "ready"


async def test_tiny_bench_run(stack_settings: Settings, ray_session: None, tmp_path: Path) -> None:
    prefix = f"test-bench-{uuid.uuid4().hex[:8]}."
    options = BenchOptions(
        mode="quick",
        scenarios=("ceiling", "features"),
        sizes=replace(
            QUICK,
            repeats=1,
            transactions=TRANSACTIONS,
            users=5_000,
            actors=(1,),
            profile_records=5_000,
        ),
        out=tmp_path,
        name="smoke",
    )
    # A shared stack: the bench must not flush its Redis, and its topics carry our prefix.
    settings = stack_settings.model_copy(update={"rtml_max_poll_records": BATCH})
    stack = BenchStack(settings, tmp_path, temporary=False, owns_services=False)
    results = BenchResults("rtml bench (test)", "quick", options.to_dict(), {}, "now")
    lines: list[str] = []
    ctx = BenchContext(options, stack, results, tmp_path, "smoke", lines.append, prefix=prefix)
    try:
        async with asyncio.timeout(150):
            failures = await run_scenarios(ctx, [load("ceiling"), load("features")])
    finally:
        names = [t.name for t in await describe_topics(stack_settings) if prefix in t.name]
        await delete_topics(stack_settings, names)

    assert failures == [], failures
    assert results.workloads["transactions"]["transactions"] == TRANSACTIONS
    measured = {m.id: m for m in results.measurements if m.unit == "events/s"}
    assert set(measured) == {
        "ceiling/consume",
        "ceiling/passthrough-txn",
        "ceiling/passthrough",
        "ceiling/runner-passthrough",
        "features/inproc-1",
        "features/ray-1",
    }
    phases = {m.name: m for m in results.measurements if m.scenario == "features-batch"}
    assert set(phases) == {"poll", "process", "redis", "commit"}
    assert all(m.unit == "ms" and len(m.samples) == 1 for m in phases.values())
    assert sum(m.samples[0].details["share"] for m in phases.values()) == pytest.approx(1, 0.01)
    for m in measured.values():
        assert len(m.samples) == 1 and m.samples[0].value > 0, m.id
        details = m.samples[0].details
        assert 0 < details["events"] <= TRANSACTIONS
        assert details["seconds"] > 0
    assert measured["ceiling/consume"].samples[0].details["events"] == TRANSACTIONS
    ray = measured["features/ray-1"].samples[0].details
    assert ray["failures"] == 0 and ray["batches"] >= 4
    assert ray["dead_letters"] >= ray["late"] >= 0
    assert {r.baseline for r in results.ratios_of("features/ray-1")} == {
        "ceiling/consume",
        "ceiling/passthrough-txn",
    }
    [check] = results.checks
    assert isinstance(check.met, bool)
    assert any(line.startswith("round 1/1 features/ray-1: ") for line in lines)

    written = write_outputs(results, tmp_path, "smoke", plots=False, target=options.target)
    assert {p.name for p in written} >= {
        "smoke.json",
        "smoke.md",
        "smoke-profile-features.txt",
        "smoke-profile-features.pstats",
    }
    assert "Own time by area" in (tmp_path / "smoke-profile-features.txt").read_text()
    again = BenchResults.from_dict(json.loads((tmp_path / "smoke.json").read_text()))
    assert again.to_dict() == results.to_dict()
    assert "| `features/ray-1` |" in (tmp_path / "smoke.md").read_text()
