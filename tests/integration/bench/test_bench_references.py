"""The reference pipelines of `rtml bench`, tiny, on the test stack: the naive per-event
pipeline scores through the real Serve app (deployed by ``bench.serving``) and the peers run
(or say why they cannot). No timing is asserted: only that every number was measured."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition

from bench.environment import BenchStack
from bench.options import QUICK, BenchOptions
from bench.peer_jobs.common import check, features, loads
from bench.reference_features import new_state
from bench.results import BenchResults
from bench.runner import run_scenarios
from bench.scenario import BenchContext
from bench.scenarios import e2e, e2e_commit
from bench.scenarios.naive import NaiveScenario
from bench.scenarios.peers import PEERS, PeersScenario
from consumers.kafka_io import make_consumer
from contracts.events import FraudScore
from features.definitions import FRAUD, FRAUD_CARD
from infra.topics import delete_topics, describe_topics
from infra.topics import read_topic as read_topic_records
from rtml.settings import Settings


def _context(
    settings: Settings,
    tmp_path: Path,
    scenarios: tuple[str, ...],
    transactions: int,
    **sizes: Any,
) -> BenchContext:
    options = BenchOptions(
        mode="quick",
        scenarios=scenarios,
        sizes=replace(
            QUICK,
            repeats=1,
            transactions=transactions,
            users=transactions // 2,
            actors=(1,),
            **sizes,
        ),
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
    ctx = _context(stack_settings, tmp_path, ("naive",), 3_000)
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
    # The model's whole row; the naive pipeline computes the card features, the rest is null.
    assert all(tuple(s.features) == FRAUD.names for s in decoded)
    assert all(s.features["amount"] is not None for s in decoded)
    rest = FRAUD.names[len(FRAUD_CARD.names) :]
    assert all(s.features[name] is None for s in decoded for name in rest)
    # No e2e/ or features/ results in this run: the 10x check cannot be decided.
    [check] = ctx.results.checks
    assert check.met is None and "no e2e/" in check.value
    assert "serve_app" in ctx.shared and not ctx.closers  # the app was deleted at the end


async def test_peers_compute_the_reference_features_or_say_why_not(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """Where the peers' environment is there (.venv-peers or the peers extra), every peer runs
    and its outputs are the reference features of its inputs; where it is not, each peer is
    skipped with the reason and nothing fails."""
    ctx = _context(stack_settings, tmp_path, ("peers",), 20_000)
    scenario = PeersScenario(max_events=10_000, max_seconds=8.0)
    outputs = {}
    try:
        async with asyncio.timeout(400):
            failures = await run_scenarios(ctx, [scenario])
        workload = await ctx.transactions()
        inputs = await read_topic_records(stack_settings, workload.topic, timeout_s=30.0)
        for peer in scenario.available:
            topic = f"{ctx.prefix}peers.{peer.name}.features"
            outputs[peer.name] = await read_topic_records(stack_settings, topic, timeout_s=30.0)
    finally:
        await _drop_topics(stack_settings, ctx.prefix)

    assert failures == [], failures
    assert {p.name for p in scenario.available} | set(scenario.skipped) == {p.name for p in PEERS}
    for name, reason in scenario.skipped.items():
        assert f"peers/{name}: skipped: {reason}" in ctx.results.notes
    measured = {m.name: m for m in ctx.results.measurements if m.samples}
    assert set(measured) == {p.name for p in scenario.available}
    for m in measured.values():
        assert m.samples[0].value > 0 and m.samples[0].details["events"] > 0

    # The reference features of every input, per partition in offset order (cards are keys).
    expected = {}
    states: dict[str, dict] = {}
    for record in inputs:
        tx = check(record.value)
        if isinstance(tx, dict):
            row = features(states.setdefault(tx["card_id"], new_state()), tx)
            expected[tx["event_id"]] = row["features"]
    for name, records in outputs.items():
        assert len(records) >= measured[name].samples[0].details["events"] * 0.5, name
        for record in records:
            out = loads(record.value)
            assert out["features"] == expected[out["event_id"]], (name, out)


async def test_commit_cases_commit_every_batch_both_ways(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``e2e/commit-new`` and ``e2e/commit-ahead``: each cycle's transactions are committed
    (a read_committed reader sees every record once), and both samples are measured."""
    monkeypatch.setattr(e2e_commit, "WARMUP_CYCLES", 2)
    monkeypatch.setattr(e2e_commit, "CYCLES", 10)
    ctx = _context(stack_settings, tmp_path, ("e2e",), 1_000)
    topic = ctx.topic(e2e_commit.TOPIC)
    try:
        await e2e_commit.prepare_commit(ctx)
        for case in e2e_commit.commit_cases("e2e"):
            sample = await case.run(ctx, 0)
            assert sample.value > 0 and sample.details["transactions"] == 10 * e2e_commit.SESSIONS
            assert sample.details["p99_ms"] >= sample.details["p50_ms"]
        per_kind = 2 * 12 * e2e_commit.SESSIONS * e2e_commit.RECORDS  # two cases, 12 cycles
        assert await _committed_records(stack_settings, f"{topic}.out", per_kind) == per_kind
        # The changelog also holds each transaction's offset record.
        per_log = per_kind + 2 * 12 * e2e_commit.SESSIONS
        assert await _committed_records(stack_settings, f"{topic}.log", per_log) == per_log
    finally:
        await _drop_topics(stack_settings, ctx.prefix)


async def _committed_records(settings: Settings, topic: str, expected: int) -> int:
    """How many records of ``topic`` a read_committed reader sees, read again until that is
    ``expected`` or 15 s passed. A commit returns once the coordinator logged it; the markers
    that make the records visible (the LSO) are written to the partitions after that (KIP-98),
    so a reader right after the last commit may not see its records yet."""
    deadline = asyncio.get_running_loop().time() + 15.0
    while True:
        seen = await _read_committed(settings, topic)
        if seen == expected or asyncio.get_running_loop().time() > deadline:
            return seen
        await asyncio.sleep(0.5)


async def _read_committed(settings: Settings, topic: str) -> int:
    """How many records of ``topic`` a read_committed reader sees now (its end: the LSO)."""
    consumer = make_consumer(settings, group_id=None, read_committed=True)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(e2e_commit.SESSIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        seen = 0
        async with asyncio.timeout(30):
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                batch = await consumer.getmany(timeout_ms=500)
                seen += sum(len(records) for records in batch.values())
        return seen
    finally:
        await consumer.stop()


async def test_drain_and_a_fixed_load_measure_the_pipeline_with_the_model(
    stack_settings: Settings, ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``e2e/drain`` and ``e2e/load-<rate>`` on two actors and the real Serve app, and the
    latency configuration's load on one partition and one actor: the load's generator
    simulates ahead, its warm-up and counted part start from the generator's clock, every
    score is read with both latencies, and every case measures the CPU of the actors."""
    monkeypatch.setattr(e2e, "commit_cases", lambda scenario: [])  # measured in the test above
    monkeypatch.setattr(e2e, "LIVE_USERS", 2_000)
    rate, seconds, warmup = 200.0, 5.0, 2.0
    monkeypatch.setattr(e2e, "LATENCY_TARGET_RATE", rate)  # the latency case at the same rate
    ctx = _context(
        stack_settings,
        tmp_path,
        ("e2e",),
        # The drain: the first actor takes every partition until the second joins (seconds
        # on a busy machine, at ~15,000/s) and the group is ready; enough must be left then.
        100_000,
        loads=(rate,),
        load_seconds=seconds,
        load_warmup_seconds=warmup,
    )
    try:
        async with asyncio.timeout(300):
            failures = await run_scenarios(ctx, [e2e.E2EScenario()])
    finally:
        await _drop_topics(stack_settings, ctx.prefix)

    assert failures == [], failures
    by_name = {m.name: m for m in ctx.results.measurements}
    [drain] = by_name["drain"].samples
    assert drain.value > 0 and drain.details["failures"] == 0
    assert drain.details["consumers_cores"] > 0  # the actors were found once ready
    assert drain.details["consumers_cpu_us_per_transaction"] > 0
    [load] = by_name[f"load-{rate:g}"].samples
    [latency] = by_name[f"latency-{rate:g}"].samples
    assert (load.details["partitions"], load.details["actors"]) == (ctx.options.partitions, 2)
    assert (latency.details["partitions"], latency.details["actors"]) == (1, 1)
    for details in (load.details, latency.details):
        _check_load(details, rate, seconds, warmup)
    assert "serve_app" in ctx.shared and not ctx.closers  # the app was deleted at the end
    [check] = [c for c in ctx.results.checks if c.name.startswith("end-to-end p99")]
    assert check.met is not None and "throughput configuration" in check.detail


def _check_load(details: dict, rate: float, seconds: float, warmup: float) -> None:
    # The load's rate is all records: a rare profile change replaces a transaction.
    assert rate * (warmup + seconds) - 10 <= details["transactions"] <= rate * (warmup + seconds)
    # One score per transaction; the generator's few malformed and late ones are dead letters.
    assert details["sustained"]
    assert 0.97 * details["transactions"] <= details["scores_read"] <= details["transactions"]
    # Counted from the clock's start plus the warm-up: about the last `seconds` of traffic.
    assert abs(details["scores_counted"] - rate * seconds) <= rate * 0.5
    assert 0 < details["produced_p50_ms"] <= details["produced_p99_ms"]
    assert details["visible_p99_ms"] >= details["produced_p99_ms"] > 0
    assert details["consumers_cores"] > 0 and details["bench_cores"] > 0
