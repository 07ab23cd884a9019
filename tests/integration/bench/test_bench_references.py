"""The reference pipelines of `rtml bench`, tiny, on the test stack: the naive per-event
pipeline scores through the real Serve app (deployed by ``bench.serving``) and the peers run
(or say why they cannot). No timing is asserted: only that every number was measured."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import msgspec

from bench.environment import BenchStack
from bench.options import QUICK, BenchOptions
from bench.results import BenchResults
from bench.runner import run_scenarios
from bench.scenario import BenchContext
from bench.scenarios.naive import NaiveScenario
from contracts.events import FraudScore
from infra.topics import delete_topics, describe_topics
from infra.topics import read_topic as read_topic_records
from rtml.settings import Settings

TRANSACTIONS = 3_000


def _context(settings: Settings, tmp_path: Path, scenarios: tuple[str, ...]) -> BenchContext:
    options = BenchOptions(
        mode="quick",
        scenarios=scenarios,
        sizes=replace(QUICK, repeats=1, transactions=TRANSACTIONS, users=2_000, actors=(1,)),
        out=tmp_path,
        name="smoke",
    )
    # A shared stack: nothing is flushed, topics carry a unique prefix, Serve stays up.
    stack = BenchStack(settings, tmp_path, temporary=False, owns_services=False)
    results = BenchResults("rtml bench (test)", "quick", options.to_dict(), {}, "now")
    prefix = f"test-bench-{uuid.uuid4().hex[:8]}."
    return BenchContext(options, stack, results, tmp_path, "smoke", lambda _: None, prefix=prefix)


async def _drop_topics(settings: Settings, prefix: str) -> None:
    names = [t.name for t in await describe_topics(settings) if prefix in t.name]
    await delete_topics(settings, names)


async def test_naive_pipeline_scores_events_one_by_one(
    stack_settings: Settings, ray_session: None, tmp_path: Path
) -> None:
    ctx = _context(stack_settings, tmp_path, ("naive",))
    try:
        async with asyncio.timeout(240):
            failures = await run_scenarios(ctx, [NaiveScenario(seconds=2.0)])
        scores = await read_topic_records(
            stack_settings, f"{ctx.prefix}naive.fraud-scores", timeout_s=10.0
        )
    finally:
        await _drop_topics(stack_settings, ctx.prefix)

    assert failures == [], failures
    [naive] = ctx.results.measurements
    [sample] = naive.samples
    assert sample.value > 0
    assert sample.details["events"] > 0 and sample.details["seconds"] > 0
    assert sample.details["serve_cpu_s"] > 0  # the replica's process was found and measured
    app = ctx.results.workloads["serve_app"]
    decoded = [msgspec.json.decode(r.value, type=FraudScore) for r in scores]
    assert len(decoded) >= sample.details["events"]
    assert {s.model_version for s in decoded} == {app["fraud_model"]}
    assert all(len(s.features) == 17 for s in decoded)
    # No e2e/ or features/ results in this run: the 10x check cannot be decided.
    [check] = ctx.results.checks
    assert check.met is None and "no e2e/" in check.value
    assert "serve_app" in ctx.shared and not ctx.closers  # the app was deleted at the end
