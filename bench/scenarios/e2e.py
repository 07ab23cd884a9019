"""The whole fraud pipeline with the model: generator -> Kafka -> features -> model -> scores.

Two Ray consumer actors run ``FraudFeaturesPipeline`` with scoring on (one FraudScorer call
per poll batch, through the bench's Serve app: ``bench.serving``), exactly once.

- ``drain``: the pre-produced transactions (the same topic as ``features``), from nothing to
  the end: the highest rate the pipeline can go when there is a backlog. Compared with the
  passthrough ceiling and with the feature stage alone.
- ``commit-new`` / ``commit-ahead``: one actor's batch commit at the size of a 2,000 tx/s load,
  its transactions begun at the commit or ahead of it (``bench.scenarios.e2e_commit``).
- ``load-<rate>``: live traffic from the generator at a fixed rate for ``load_seconds``, on
  the scenario's own topics, with the consumers already running. A read_committed reader of
  fraud-scores in the bench process takes, per score, two latencies from the input record's
  Kafka timestamp (``ingested_at``): **produced** (``scored_at``: the score record handed to
  the producer, the issue's definition) and **visible** (when the reader got it: the
  transaction committed and fetched, what a downstream consumer sees). A load runs
  ``load_warmup_seconds`` longer than ``load_seconds``; the warm-up is not counted (a broker
  started minutes earlier still spends a core compiling: measured p99 drops by a third from
  the first load to the second). The sample's value is the visible p99.
  A load is *sustained* when, at the end of it, the group is less than ``BOUNDED_S`` seconds
  of traffic behind and catches up within ``DRAIN_S`` seconds after the generator stops.
- ``latency-2000``: the same load at the latency target's rate in the latency configuration:
  one input partition and one actor (``LATENCY_PARTITIONS``, ``LATENCY_ACTORS``). An actor
  commits one transaction per input partition per cycle (the per-partition transactional ids
  fence zombies), so with 8 partitions on 2 actors a cycle of ~30 records costs four
  transactions and the two greedy loops keep both cores busy: the tail is the wait for the
  CPU. One partition costs one transaction per cycle, and one actor leaves the machine about
  half a core idle at this rate. The loads above keep the throughput configuration.

The generator, the reader and the bench's bookkeeping share the 2 cores with the pipeline,
Kafka, Redis and Serve. Above ``READ_ALL_UP_TO`` tx/s the reader reads a quarter of the
fraud-scores partitions (the cards of a quarter of the keys), not every score. The generator
simulates a load's transactions before its clock starts and only stamps, encodes and sends
them on schedule (``produce_live(simulate_ahead=True)``): the simulation is the upstream
systems' work, which a deployment does elsewhere, and it took more CPU than everything else
the bench process does during the load.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.environment import create_topics, scenario_topics
from bench.measure import BenchError, group_probe, group_ready, time_drain
from bench.procs import CpuMeter, pids_titled
from bench.results import Check, Sample
from bench.scenario import BenchContext, Case, Scenario
from bench.scenarios.e2e_commit import commit_cases, prepare_commit
from bench.scenarios.features import reset_state, verify_committed
from bench.serving import bench_app
from bench.workload import TransactionsWorkload, generator_config
from consumers.kafka_io import make_consumer
from producers.runner import produce_live, produce_profiles
from rtml.settings import TopicSpec

ACTORS = 2
# The latency configuration (``latency-<rate>``): one transaction per cycle, no second loop.
LATENCY_PARTITIONS = 1
LATENCY_ACTORS = 1
BOUNDED_S = 2.0  # lag at the end of a load, in seconds of its traffic
DRAIN_S = 10.0
LATENCY_TARGET_MS = 50.0
LATENCY_TARGET_RATE = 2_000.0
SUSTAINED_TARGET = 20_000.0
CEILING_SHARE_TARGET = 0.5
DRAIN_BASELINES = ("ceiling/passthrough-txn", "features/ray-2")
LIVE_USERS = 200_000
# Above this rate the score reader reads a share of the fraud-scores partitions (cards hash
# evenly over them): reading every score took ~0.1 of the 2 cores at 20,000 tx/s, CPU a
# downstream consumer spends on its own machine in a deployment.
READ_ALL_UP_TO = 5_000.0
READ_SHARE = 0.25


class _ScoreTimes(msgspec.Struct):
    ingested_at: int
    scored_at: int


_decoder = msgspec.json.Decoder(_ScoreTimes)


class E2EScenario(Scenario):
    name = "e2e"
    summary = "the fraud pipeline with the model: backlog drain rate and latency at fixed loads"
    needs_ray = True

    async def prepare(self, ctx: BenchContext) -> None:
        await bench_app(ctx)
        await ctx.transactions()
        for config in _load_configs(ctx):
            topics = scenario_topics(ctx.topic(config.prefix), config.partitions)
            await create_topics(ctx.stack.settings, topics.all())
        await prepare_commit(ctx)

    def cases(self, ctx: BenchContext) -> list[Case]:
        cases = commit_cases(self.name)
        cases += [
            Case(
                self.name,
                "drain",
                f"fraud pipeline with the model, {ACTORS} Ray actors, backlog",
                "events/s",
                _drain,
                DRAIN_BASELINES,
            )
        ]
        for rate in ctx.options.sizes.loads:
            cases.append(
                Case(
                    self.name,
                    f"load-{rate:g}",
                    f"end-to-end p99 (visible) at {rate:,.0f} tx/s",
                    "ms",
                    _load_case(rate),
                    higher_is_better=False,
                )
            )
        cases.append(
            Case(
                self.name,
                _latency_name(),
                f"end-to-end p99 (visible) at {LATENCY_TARGET_RATE:,.0f} tx/s, "
                f"{LATENCY_PARTITIONS} input partition, {LATENCY_ACTORS} Ray actor",
                "ms",
                _latency_case,
                higher_is_better=False,
            )
        )
        return cases

    def checks(self, ctx: BenchContext) -> list[Check]:
        return [_latency_check(ctx), _sustained_check(ctx), _ceiling_check(ctx)]


# --- backlog ----------------------------------------------------------------------------------


async def _drain(ctx: BenchContext, round_: int) -> Sample:
    from consumers.actors import ConsumerGroup

    app = await bench_app(ctx)
    base = await ctx.transactions()
    settings = app.configure(base.settings).model_copy(update={"rtml_emit_feature_rows": False})
    workload = replace(base, settings=settings)
    await reset_state(workload, flush=ctx.stack.owns_services)
    group = ConsumerGroup(settings, "fraud")
    try:
        await asyncio.to_thread(group.scale, ACTORS, max_members=workload.partitions)
        meters: list[CpuMeter] = []  # made at ready: Ray titles an actor's worker once it runs

        def ready(_: object) -> None:
            meters.append(_cpu_meter(ctx))
            meters[0].start()

        timing = await time_drain(
            "e2e/drain",
            group_probe(group, workload.partitions),
            workload.transactions,
            timeout_s=180.0 + workload.transactions / 1_000,
            interval_s=0.1,
            on_ready=ready,
            min_events=workload.transactions // 5,
        )
        cpu = meters[0].result() if meters else {}
        stats = await asyncio.to_thread(group.stats)
    finally:
        await asyncio.to_thread(group.stop)
    await verify_committed(workload, "e2e/drain")
    details = {
        "events": timing.events,
        "seconds": round(timing.seconds, 3),
        "startup_s": round(timing.startup_s, 2),
        "batches": sum(s["batches"] for s in stats),
        "failures": sum(s["failures"] for s in stats),
        **_cpu_details(cpu, timing.events),
    }
    return Sample(round_, timing.rate, details)


# --- fixed loads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadConfig:
    """Where a load runs: its topics' prefix, their partition count and the actors."""

    prefix: str
    partitions: int
    actors: int


LATENCY_CONFIG = LoadConfig("e2e-latency", LATENCY_PARTITIONS, LATENCY_ACTORS)


def _throughput_config(ctx: BenchContext) -> LoadConfig:
    return LoadConfig("e2e", ctx.options.partitions, ACTORS)


def _load_configs(ctx: BenchContext) -> tuple[LoadConfig, LoadConfig]:
    """The throughput configuration (``load-<rate>``) and the latency one (``latency-<rate>``)."""
    return _throughput_config(ctx), LATENCY_CONFIG


def _latency_name() -> str:
    return f"latency-{LATENCY_TARGET_RATE:g}"


def _load_case(rate: float):
    async def run(ctx: BenchContext, round_: int) -> Sample:
        return await _load(ctx, round_, rate, f"e2e/load-{rate:g}", _throughput_config(ctx))

    return run


async def _latency_case(ctx: BenchContext, round_: int) -> Sample:
    case = f"e2e/{_latency_name()}"
    return await _load(ctx, round_, LATENCY_TARGET_RATE, case, LATENCY_CONFIG)


async def _live_group(ctx: BenchContext, config: LoadConfig) -> tuple[Any, Any]:
    """The scenario's consumer group on the config's topics, ready (every partition restored).

    One per load: the group id is the pipeline's, which the other scenarios reset between
    their runs, and a group with live members cannot be reset."""
    from consumers.actors import ConsumerGroup

    app = await bench_app(ctx)
    topics = scenario_topics(ctx.topic(config.prefix), config.partitions)
    settings = app.configure(ctx.stack.settings).model_copy(
        update={"rtml_topics": topics, "rtml_emit_feature_rows": False}
    )
    group = ConsumerGroup(settings, "fraud")
    try:
        await asyncio.to_thread(group.scale, config.actors, max_members=config.partitions)
        deadline = time.monotonic() + 300
        while not group_ready(await asyncio.to_thread(group.stats), config.partitions):
            if time.monotonic() > deadline:
                raise BenchError("e2e/load", "the consumer group was not ready after 300 s")
            await asyncio.sleep(0.2)
    except BaseException:
        await asyncio.to_thread(group.stop)
        raise
    return settings, group


async def _load(
    ctx: BenchContext, round_: int, rate: float, case: str, config: LoadConfig
) -> Sample:
    settings, group = await _live_group(ctx, config)
    try:
        sample = await _measure_load(ctx, round_, rate, case, settings, group)
    finally:
        await asyncio.to_thread(group.stop)
    sample.details.update(partitions=config.partitions, actors=config.actors)
    return sample


async def _measure_load(
    ctx: BenchContext, round_: int, rate: float, case: str, settings: Any, group: Any
) -> Sample:
    seconds = ctx.options.sizes.load_seconds
    warmup = ctx.options.sizes.load_warmup_seconds
    scores = ScoreReader(settings, read_partitions(rate, settings.rtml_topics.fraud_scores))
    await scores.start()
    lag_points: list[tuple[float, int]] = []
    started = time.monotonic()
    stop_sampling = asyncio.Event()

    async def sample_lag() -> None:
        while not stop_sampling.is_set():
            stats = await asyncio.to_thread(group.stats)
            lag_points.append((time.monotonic() - started, _lag(stats)))
            await asyncio.sleep(0.5)

    config = generator_config(LIVE_USERS, ctx.options.seed + round_)
    # The profile table exists before the traffic: the load's rate is all transactions.
    await produce_profiles(settings, config)
    sampler = asyncio.create_task(sample_lag())
    meter = _cpu_meter(ctx)
    clock = asyncio.Event()

    def clock_started() -> None:
        scores.count_from = time.time() * 1000 + warmup * 1000
        clock.set()

    warmed = asyncio.create_task(_after_warmup(group, clock, warmup, meter))
    try:
        summary = await produce_live(
            settings,
            config,
            rate=rate,
            duration_s=warmup + seconds,
            announce_profiles=False,
            simulate_ahead=True,
            on_start=clock_started,
        )
        cpu = meter.result()
        before = await warmed
        end_lag = lag_points[-1][1] if lag_points else 0
        drained_after = await _drained(group, timeout_s=60.0)
        await scores.settle()
    finally:
        stop_sampling.set()
        warmed.cancel()
        await asyncio.gather(sampler, warmed, return_exceptions=True)
        await scores.stop()
    phases = _phases(before, await asyncio.to_thread(group.stats))
    transactions = summary.records.get(settings.rtml_topics.transactions.name, 0)
    if not scores.visible:
        raise BenchError(case, "no scores were read")
    visible = np.asarray(scores.visible)
    produced = np.asarray(scores.produced)
    bounded = end_lag <= rate * BOUNDED_S and drained_after is not None
    bounded = bounded and drained_after <= DRAIN_S  # type: ignore[operator]
    details: dict[str, Any] = {
        "rate": rate,
        "achieved_rate": (
            round(transactions / summary.elapsed_s, 1) if summary.elapsed_s else None
        ),
        "transactions": transactions,
        "scores_read": scores.count,
        "scores_partitions_read": len(scores.partitions),
        "scores_counted": len(visible),
        "lag_max": max((p[1] for p in lag_points), default=0),
        "lag_end": end_lag,
        "drained_after_s": None if drained_after is None else round(drained_after, 2),
        "sustained": bounded,
        **phases,
        **_cpu_details(cpu, rate * seconds),
    }
    for name, values in (("visible", visible), ("produced", produced)):
        for q in (50, 95, 99):
            details[f"{name}_p{q}_ms"] = round(float(np.percentile(values, q)), 2)
    ctx.say(
        f"{case}: p50/p95/p99 visible {details['visible_p50_ms']:.0f}/"
        f"{details['visible_p95_ms']:.0f}/{details['visible_p99_ms']:.0f} ms, produced "
        f"{details['produced_p50_ms']:.0f}/{details['produced_p95_ms']:.0f}/"
        f"{details['produced_p99_ms']:.0f} ms; lag max {details['lag_max']:,}, "
        f"{'sustained' if bounded else 'NOT sustained'}; per batch: "
        f"{phases.get('records_per_batch', 0):.0f} records, poll/process/commit/gc "
        f"{phases.get('poll_ms_per_batch', 0):.1f}/{phases.get('process_ms_per_batch', 0):.1f}/"
        f"{phases.get('commit_ms_per_batch', 0):.1f}/"
        f"{phases.get('gc_ms_per_batch', 0):.1f} ms; cores: "
        + ", ".join(
            f"{name} {details.get(f'{name}_cores', 0):.2f}"
            for name in ("consumers", "broker", "replicas", "redis", "bench", "machine")
        )
    )
    return Sample(round_, details["visible_p99_ms"], details)


async def _after_warmup(
    group: Any, clock: asyncio.Event, seconds: float, meter: CpuMeter
) -> list[dict[str, Any]]:
    """The group's stats once the load's warm-up is over (``seconds`` after the generator's
    clock started): the phases and the CPU count from there."""
    await clock.wait()
    await asyncio.sleep(seconds)
    meter.start()
    return await asyncio.to_thread(group.stats)


def _cpu_meter(ctx: BenchContext) -> CpuMeter:
    """The CPU of everything a load runs on the machine, by process group."""
    return CpuMeter(
        {
            "consumers": pids_titled("ray::ConsumerActor"),
            "replicas": pids_titled("ray::ServeReplica"),
            "broker": [p for p in [ctx.stack.broker_pid] if p],
            "redis": [p for p in [ctx.stack.redis_pid] if p],
            "bench": [os.getpid()],  # the generator, the score reader, the lag sampling
        }
    )


def _cpu_details(cpu: dict[str, float], transactions: float) -> dict[str, float]:
    """Cores per group over the counted part (of a load, or the drain after ready), and the
    consumers' CPU per transaction."""
    out = {k: round(v, 3) for k, v in cpu.items() if k.endswith("_cores")}
    if transactions and "consumers_cpu_s" in cpu:
        per_transaction = cpu["consumers_cpu_s"] / transactions * 1e6
        out["consumers_cpu_us_per_transaction"] = round(per_transaction, 1)
    return out


def _phases(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, float]:
    """Per-batch means over the load, all actors together: records, the wall ms of the runner's
    phases (poll, process: features + Redis + model, commit: the transactions) and of the
    pipeline's stages inside process."""

    def total(stats: list[dict[str, Any]], field: str) -> float:
        return float(sum(s[field] for s in stats))

    def stage_total(stats: list[dict[str, Any]], stage: str) -> float:
        return float(sum(s["metrics"]["stage_seconds"].get(stage, 0.0) for s in stats))

    batches = total(after, "batches") - total(before, "batches")
    if not batches:
        return {}
    out = {"batches": batches}
    out["records_per_batch"] = round(
        (total(after, "records") - total(before, "records")) / batches, 1
    )
    for phase in ("poll", "process", "commit", "gc"):
        seconds = total(after, f"{phase}_seconds") - total(before, f"{phase}_seconds")
        out[f"{phase}_ms_per_batch"] = round(seconds / batches * 1000, 2)
    # Inside process, the pipeline's stages (they may overlap: the store write and the model call).
    stages = {stage for s in after for stage in s["metrics"]["stage_seconds"]}
    for stage in sorted(stages):
        seconds = stage_total(after, stage) - stage_total(before, stage)
        out[f"{stage}_ms_per_batch"] = round(seconds / batches * 1000, 2)
    return out


def _lag(stats: list[dict[str, Any]]) -> int:
    return int(sum(sum(s["lag"].values()) for s in stats))


async def _drained(group: Any, *, timeout_s: float) -> float | None:
    """Seconds until the group's lag is 0 (None: not within ``timeout_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if _lag(await asyncio.to_thread(group.stats)) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


def read_partitions(rate: float, topic: TopicSpec) -> list[int]:
    """The fraud-scores partitions the reader of a load at ``rate`` reads: all up to
    ``READ_ALL_UP_TO``, above it ``READ_SHARE`` of them (at least one)."""
    if rate <= READ_ALL_UP_TO:
        return list(range(topic.partitions))
    return list(range(max(1, round(topic.partitions * READ_SHARE))))


class ScoreReader:
    """Reads ``partitions`` of fraud-scores (read_committed) from their end at ``start()``, in
    the background, and keeps both latencies of every score whose input arrived after
    ``count_from`` (epoch ms)."""

    def __init__(self, settings: Any, partitions: list[int]) -> None:
        self._settings = settings
        self._topic = settings.rtml_topics.fraud_scores.name
        self.partitions = partitions
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.count_from = float("inf")
        self.visible: list[float] = []
        self.produced: list[float] = []
        self.count = 0
        self._last_read = time.monotonic()

    async def start(self) -> None:
        consumer = make_consumer(self._settings, group_id=None, max_poll_records=10_000)
        await consumer.start()
        tps = [TopicPartition(self._topic, p) for p in self.partitions]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            polled = await self._consumer.getmany(timeout_ms=100)
            now_ms = time.time() * 1000
            for records in polled.values():
                self.count += len(records)
                self._last_read = time.monotonic()
                for record in records:
                    times = _decoder.decode(record.value)  # type: ignore[arg-type]
                    if times.ingested_at >= self.count_from:
                        self.visible.append(now_ms - times.ingested_at)
                        self.produced.append(times.scored_at - times.ingested_at)

    async def settle(self, quiet_s: float = 1.0) -> None:
        """Wait until nothing new was read for ``quiet_s``."""
        while (idle := time.monotonic() - self._last_read) < quiet_s:  # noqa: ASYNC110
            await asyncio.sleep(quiet_s - idle)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


# --- targets ----------------------------------------------------------------------------------


def _load_samples(ctx: BenchContext) -> dict[float, list[Sample]]:
    out: dict[float, list[Sample]] = {}
    for m in ctx.results.measurements:
        if m.scenario == "e2e" and m.name.startswith("load-"):
            for s in m.samples:
                out.setdefault(float(s.details["rate"]), []).append(s)
    return out


def _latency_check(ctx: BenchContext) -> Check:
    """Met when the latency configuration's visible and produced p99 (medians over rounds) are
    both under the target; the throughput configuration's load at the same rate is reported
    beside it."""
    name = f"end-to-end p99 at {LATENCY_TARGET_RATE:,.0f} tx/s"
    target = (
        f"< {LATENCY_TARGET_MS:.0f} ms (visible and produced, median over rounds; "
        f"{LATENCY_PARTITIONS} input partition, {LATENCY_ACTORS} actor)"
    )
    latency = _case_samples(ctx, _latency_name())
    throughput = _load_samples(ctx).get(LATENCY_TARGET_RATE, [])
    if not latency:
        value = "not measured"
        if throughput:
            visible, produced = _p99_medians(throughput)
            value += (
                f" (with {ACTORS} actors: visible {visible:,.1f} ms, produced {produced:,.1f} ms)"
            )
        return Check(name, target, value, None)
    visible, produced = _p99_medians(latency)
    value = f"visible {visible:,.1f} ms, produced {produced:,.1f} ms"
    detail = "rounds (visible p99): " + ", ".join(
        f"{s.details['visible_p99_ms']:.1f}" for s in latency
    )
    if throughput:
        t_visible, t_produced = _p99_medians(throughput)
        config = _throughput_config(ctx)
        detail += (
            f"; the throughput configuration ({config.partitions} partitions, "
            f"{config.actors} actors) at the same rate: visible {t_visible:,.1f} ms, "
            f"produced {t_produced:,.1f} ms"
        )
    met = visible < LATENCY_TARGET_MS and produced < LATENCY_TARGET_MS
    return Check(name, target, value, met, detail)


def _case_samples(ctx: BenchContext, case: str) -> list[Sample]:
    return [
        s
        for m in ctx.results.measurements
        if m.scenario == "e2e" and m.name == case
        for s in m.samples
    ]


def _p99_medians(samples: list[Sample]) -> tuple[float, float]:
    """(visible, produced): the medians over rounds of each round's p99."""
    visible = float(np.median([s.details["visible_p99_ms"] for s in samples]))
    produced = float(np.median([s.details["produced_p99_ms"] for s in samples]))
    return visible, produced


def _sustained_check(ctx: BenchContext) -> Check:
    name = "fraud pipeline sustained throughput (lag bounded)"
    target = f">= {SUSTAINED_TARGET:,.0f} tx/s"
    loads = _load_samples(ctx)
    if not loads:
        return Check(name, target, "not measured", None)
    sustained = [
        rate for rate, samples in loads.items() if all(s.details["sustained"] for s in samples)
    ]
    best = max(sustained, default=0.0)
    detail = "; ".join(
        f"{rate:,.0f}/s: {sum(s.details['sustained'] for s in samples)}/{len(samples)} rounds"
        for rate, samples in sorted(loads.items())
    )
    value = f"{best:,.0f} tx/s (highest load sustained in every round)" if best else "none"
    return Check(name, target, value, best >= SUSTAINED_TARGET, detail)


def _ceiling_check(ctx: BenchContext) -> Check:
    name = "fraud pipeline vs the passthrough ceiling"
    target = f">= {CEILING_SHARE_TARGET:.1f}x ceiling/passthrough-txn (median of paired rounds)"
    for ratio in ctx.results.ratios_of("e2e/drain"):
        if ratio.baseline == "ceiling/passthrough-txn":
            value = ratio.summary.median
            return Check(name, target, f"{value:.2f}x", value >= CEILING_SHARE_TARGET)
    return Check(name, target, "not measured", None)


__all__ = ["E2EScenario", "ScoreReader", "TransactionsWorkload"]
