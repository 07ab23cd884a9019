"""The fraud feature stage alone: consume -> decode -> features -> Redis -> changelog + offsets.

``consumers.pipelines.fraud_features.FraudFeaturesPipeline`` without model scoring
(``rtml_fraud_scoring=False``), run by the real ``ConsumerRunner`` over the pre-produced
transactions, exactly once (one transaction per input partition per poll batch):

- ``ray-N``: N Ray actors through ``consumers.actors.ConsumerGroup``, the production path;
- ``inproc-1``: one runner in the bench process (no Ray): the same code without the actor.

Each run starts from nothing: the group's offsets go back to the beginning, its changelog
topic is deleted (the pipeline recreates it) and the online store is emptied. The rate counts
the records committed after every member is ready (see ``bench.measure``).

``once``, on one in-process runner over a bounded number of records after it is ready: the
wall time of a batch split into its phases (poll, process, Redis write, commit), and a
cProfile saved next to the results with the own time grouped by area.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import os
import pstats
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from bench.environment import (
    OffsetReader,
    delete_topic,
    flush_redis,
    redis_keys,
    set_group_offsets,
)
from bench.measure import (
    BenchError,
    DrainTiming,
    Progress,
    group_probe,
    run_until,
    runner_probe,
    time_drain,
)
from bench.procs import CpuMeter
from bench.results import Check, Measurement, Sample
from bench.scenario import BenchContext, Case, Scenario
from bench.workload import TransactionsWorkload
from consumers.pipelines.fraud_features import FraudFeaturesPipeline
from consumers.runner import ConsumerRunner
from infra.topics import describe_topics

BASELINES = ("ceiling/consume", "ceiling/passthrough-txn")
MIN_RATE = 1_000  # events/s: slower than this is a failure, not a measurement
CHECK_NAME = "fraud feature stage on Ray actors, exactly-once state"


class FeaturesScenario(Scenario):
    name = "features"
    summary = "the fraud feature stage alone, exactly once (Ray actors and in-process)"
    needs_ray = True

    async def prepare(self, ctx: BenchContext) -> None:
        await stage_workload(ctx)

    def cases(self, ctx: BenchContext) -> list[Case]:
        cases = [
            Case(
                self.name,
                "inproc-1",
                "fraud features, 1 in-process ConsumerRunner (no Ray)",
                "events/s",
                _inproc_case,
                BASELINES,
            ),
        ]
        for n in ctx.options.sizes.actors:
            cases.append(
                Case(
                    self.name,
                    f"ray-{n}",
                    f"fraud features, {n} Ray actor{'s' if n > 1 else ''} (ConsumerGroup)",
                    "events/s",
                    ray_case(n),
                    BASELINES,
                )
            )
        return cases

    async def once(self, ctx: BenchContext) -> None:
        records = ctx.options.sizes.profile_records
        if records:
            await _phases(ctx, records)
            await _profile(ctx, records)

    def checks(self, ctx: BenchContext) -> list[Check]:
        target = ctx.options.target
        ray = [
            m
            for m in ctx.results.measurements
            if m.scenario == self.name and m.name.startswith("ray-") and m.samples
        ]
        if not ray:
            return [
                Check(
                    CHECK_NAME,
                    f">= {target:,.0f} tx/s (median)",
                    "not measured",
                    None,
                )
            ]
        summaries = {m.name: m.summary() for m in ray}
        best_name = max(summaries, key=lambda name: summaries[name].median)  # type: ignore[union-attr]
        best = summaries[best_name]
        assert best is not None
        detail = "; ".join(
            f"{name}: median {s.median:,.0f}/s, rounds {s.min:,.0f} - {s.max:,.0f}"
            for name, s in summaries.items()
            if s is not None
        )
        every_round = "every round" if best.min >= target else f"lowest round {best.min:,.0f}"
        return [
            Check(
                CHECK_NAME,
                f">= {target:,.0f} tx/s (median)",
                f"{best.median:,.0f} tx/s ({best_name}; {every_round})",
                best.median >= target,
                detail,
            )
        ]


# --- one run ----------------------------------------------------------------------------------


async def stage_workload(ctx: BenchContext) -> TransactionsWorkload:
    """The shared transactions, with settings for the feature stage alone: no model scoring,
    no feature-row topic (whatever the stack's settings say; the actors get these too)."""
    workload = await ctx.transactions()
    return replace(
        workload,
        settings=workload.settings.model_copy(
            update={"rtml_fraud_scoring": False, "rtml_emit_feature_rows": False}
        ),
    )


def _pipeline(workload: TransactionsWorkload) -> FraudFeaturesPipeline:
    return FraudFeaturesPipeline(workload.settings, scorer=None)


async def reset_state(
    workload: TransactionsWorkload, *, to_end: bool = False, flush: bool = True
) -> None:
    """The fraud group starts over: offsets at the beginning (or end), no changelog, and
    (``flush``: the bench's own Redis) no online-store rows."""
    settings = workload.settings
    pipeline = _pipeline(workload)
    if await describe_topics(settings, [pipeline.changelog_topic], internal=True):
        await delete_topic(settings, pipeline.changelog_topic)
    offsets = workload.ends if to_end else dict.fromkeys(workload.ends, 0)
    await set_group_offsets(
        settings,
        pipeline.group_id,
        {TopicPartition(workload.topic, p): offset for p, offset in offsets.items()},
    )
    if flush:
        await flush_redis(settings)


async def verify_committed(workload: TransactionsWorkload, case: str) -> None:
    """The group committed through the end of every partition: the run really finished."""
    group = _pipeline(workload).group_id
    async with OffsetReader(workload.settings) as reader:
        committed = await reader.committed(group, workload.topic)
    behind = {
        p: (committed.get(p), end) for p, end in workload.ends.items() if committed.get(p) != end
    }
    if behind:
        raise BenchError(case, f"committed offsets differ from the end offsets: {behind}")


def _meter(ctx: BenchContext, consumers: tuple[int, ...]) -> CpuMeter:
    groups: dict[str, list[int]] = {
        "consumer": list(consumers),
        "broker": [p for p in [ctx.stack.broker_pid] if p],
        "redis": [p for p in [ctx.stack.redis_pid] if p],
    }
    if os.getpid() not in consumers:
        groups["driver"] = [os.getpid()]
    return CpuMeter(groups)


def _timeout(workload: TransactionsWorkload) -> float:
    return 180.0 + workload.transactions / MIN_RATE


def _details(timing: DrainTiming, cpu: dict[str, float], **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {
        "events": timing.events,
        "seconds": round(timing.seconds, 4),
        "startup_s": round(timing.startup_s, 3),
        "total_events": timing.total_events,
        **extra,
    }
    details |= {k: round(v, 4) for k, v in cpu.items()}
    if timing.events and "consumer_cpu_s" in cpu:
        details["consumer_cpu_us_per_event"] = round(cpu["consumer_cpu_s"] / timing.events * 1e6, 3)
    return details


def _pipeline_counts(stats: list[dict[str, Any]]) -> dict[str, Any]:
    dead: Counter[str] = Counter()
    late = 0
    for s in stats:
        dead.update(s.get("dead_letters", {}))
        late += int(s.get("late", 0))
    return {"dead_letters": sum(dead.values()), "late": late}


async def _inproc_case(ctx: BenchContext, round_: int) -> Sample:
    workload = await stage_workload(ctx)
    await reset_state(workload, flush=ctx.stack.owns_services)
    pipeline = _pipeline(workload)
    runner = ConsumerRunner(workload.settings, pipeline)
    meter = _meter(ctx, (os.getpid(),))
    task = asyncio.create_task(runner.run())
    try:
        timing = await run_until(
            task,
            time_drain(
                "features/inproc-1",
                runner_probe([runner], workload.partitions, os.getpid()),
                workload.transactions,
                timeout_s=_timeout(workload),
                on_ready=lambda _: meter.start(),
                min_events=workload.transactions // 5,
            ),
        )
        cpu = meter.result()
    finally:
        runner.stop()
        await task
        gc.unfreeze()  # the runner froze the bench process's heap; give it back to the GC
        gc.collect()
    await verify_committed(workload, "features/inproc-1")
    cards = await _cards(ctx, workload)
    details = _details(
        timing,
        cpu,
        batches=runner.stats.batches,
        cards=cards,
        **_pipeline_counts([pipeline.stats()]),
    )
    return Sample(round_, timing.rate, details)


def ray_case(
    actors: int,
    *,
    case: str | None = None,
    workload_of: Callable[[BenchContext], Awaitable[TransactionsWorkload]] | None = None,
):
    """A case running the stage on ``actors`` Ray actors over ``workload_of(ctx)`` (default:
    the shared transactions, ``stage_workload``)."""
    case = case or f"features/ray-{actors}"
    get_workload = workload_of or stage_workload

    async def run(ctx: BenchContext, round_: int) -> Sample:
        from consumers.actors import ConsumerGroup

        workload = await get_workload(ctx)
        await reset_state(workload, flush=ctx.stack.owns_services)
        group = ConsumerGroup(workload.settings, "fraud")
        meters: list[CpuMeter] = []

        def ready(progress: Progress) -> None:
            meters.append(_meter(ctx, progress.pids))
            meters[0].start()

        try:
            await asyncio.to_thread(group.scale, actors, max_members=workload.partitions)
            timing = await time_drain(
                case,
                group_probe(group, workload.partitions),
                workload.transactions,
                timeout_s=_timeout(workload),
                interval_s=0.1,
                on_ready=ready,
                min_events=workload.transactions // 5,
            )
            cpu = meters[0].result()
            stats = await asyncio.to_thread(group.stats)
        finally:
            await asyncio.to_thread(group.stop)
        await verify_committed(workload, case)
        cards = await _cards(ctx, workload)
        details = _details(
            timing,
            cpu,
            batches=sum(s["batches"] for s in stats),
            failures=sum(s["failures"] for s in stats),
            cards=cards,
            restore_s_max=round(
                max((v for s in stats for v in s["restore_seconds"].values()), default=0.0), 3
            ),
            **_pipeline_counts([s["pipeline"] for s in stats]),
        )
        return Sample(round_, timing.rate, details)

    return run


async def _cards(ctx: BenchContext, workload: TransactionsWorkload) -> int | None:
    """Cards with a row in the online store (= distinct cards processed): the bench's own
    Redis holds nothing else. None on a shared stack."""
    if not ctx.stack.owns_services:
        return None
    cards = await redis_keys(workload.settings)
    info = ctx.results.workloads.get("transactions")
    if info is not None:
        info["distinct_cards"] = cards
    return cards


# --- where a batch's wall time goes ---------------------------------------------------------


class _PhaseClock:
    """Wall time per phase of the runner's loop, from wrappers around one pipeline's
    ``process`` and its store's ``write`` (instance attributes of objects the bench made).

    Only batches whose processing starts after ``start()`` count; the window runs from the
    start of the first one's cycle (its transactions begin ahead of the processing, and that
    time counts as commit) to ``stop()``, so the phases add up to the window.
    """

    def __init__(self) -> None:
        self.since = float("inf")
        self.first: float | None = None
        self.process = 0.0  # pipeline.process, its Redis write included
        self.redis = 0.0
        self.commit = 0.0
        self.batches = 0
        self.records = 0
        self._counting = False
        self._stopped = False
        self._batch_process = 0.0  # of the last counted batch, until its commit is settled
        self._cycle_started = 0.0  # the runner's _process_and_commit of the batch in progress

    def start(self) -> None:
        self.since = time.perf_counter()

    def stop(self, runner: ConsumerRunner) -> float:
        """Settle the last commit and stop counting (the runner goes on until it is stopped);
        the window's wall seconds (0.0: no batch counted)."""
        self.settle(runner)
        self._stopped = True
        return 0.0 if self.first is None else time.perf_counter() - self.first

    def wrap(self, runner: ConsumerRunner, pipeline: FraudFeaturesPipeline, store: Any) -> None:
        process, write = pipeline.process, store.write
        process_and_commit = runner._process_and_commit

        async def timed_cycle(*args: Any, **kwargs: Any) -> Any:
            self._cycle_started = time.perf_counter()
            return await process_and_commit(*args, **kwargs)

        async def timed_write(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await write(*args, **kwargs)
            finally:
                if self._counting and not self._stopped:
                    self.redis += time.perf_counter() - started

        async def timed_process(batches: list[Any]) -> Any:
            self.settle(runner)
            started = time.perf_counter()
            self._counting = started >= self.since and not self._stopped
            if self._counting and self.first is None:
                self.first = self._cycle_started or started
            try:
                return await process(batches)
            finally:
                if self._counting and not self._stopped:
                    self._batch_process = time.perf_counter() - started
                    self.process += self._batch_process
                    self.batches += 1
                    self.records += sum(len(b.records) for b in batches)
                self._counting = False

        store.write = timed_write
        pipeline.process = timed_process  # type: ignore[method-assign]
        runner._process_and_commit = timed_cycle  # type: ignore[method-assign]

    def settle(self, runner: ConsumerRunner) -> None:
        """The last counted batch's commit: the runner's batch time minus its processing."""
        if self._batch_process and not self._stopped:
            self.commit += max(0.0, runner.stats.last_batch_seconds - self._batch_process)
            self._batch_process = 0.0


async def _phases(ctx: BenchContext, records: int) -> None:
    """One in-process runner, no profiler: the wall time of a batch split into polling,
    processing (decode, features, encode), the Redis write and the commit (the transactions)."""
    from store.online import OnlineStore

    workload = await stage_workload(ctx)
    await reset_state(workload, flush=ctx.stack.owns_services)
    limit = min(records, workload.transactions)
    store = OnlineStore.from_settings(workload.settings)
    pipeline = FraudFeaturesPipeline(workload.settings, scorer=None, store=store)
    runner = ConsumerRunner(workload.settings, pipeline)
    clock = _PhaseClock()
    clock.wrap(runner, pipeline, store)
    meter = _meter(ctx, (os.getpid(),))
    # Count from the runner's start: a small workload can be consumed whole before the probe
    # below sees the partitions ready (the first poll then also holds the assignment).
    clock.start()
    task = asyncio.create_task(runner.run())
    try:
        probe = runner_probe([runner], workload.partitions, os.getpid())
        while not (await probe()).ready:
            if task.done():
                raise BenchError("features/phases", f"runner ended: {task.exception()!r}")
            await asyncio.sleep(0.02)
        base = 0
        meter.start()
        while runner.stats.records - base < limit and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polls the runner's counter: it has no event to wait on
        wall = clock.stop(runner)
        cpu = meter.result()
    finally:
        runner.stop()
        await task
        await store.close()
        gc.unfreeze()
        gc.collect()
    if not clock.batches or wall <= 0:
        raise BenchError("features/phases", "no batch was processed")
    per_batch = {
        "poll": max(0.0, wall - clock.process - clock.commit),
        "process": clock.process - clock.redis,
        "redis": clock.redis,
        "commit": clock.commit,
    }
    labels = {
        "poll": "getmany and the loop between batches",
        "process": "decode, features, encode (CPU, pipeline.process)",
        "redis": "online store write (one Redis round trip per batch)",
        "commit": "commit: one transaction per partition, concurrently",
    }
    n = clock.batches
    for name, seconds in per_batch.items():
        m = ctx.results.declare(
            Measurement(
                "features-batch",
                name,
                f"ms per batch: {labels[name]}",
                "ms",
                higher_is_better=False,
            )
        )
        m.samples.append(Sample(0, seconds / n * 1000, {"share": round(seconds / wall, 4)}))
    shares = ", ".join(f"{name} {seconds / wall:.0%}" for name, seconds in per_batch.items())
    ctx.results.notes.append(
        f"batch phases (one in-process runner, {clock.records:,} records in {n} batches of "
        f"{clock.records / n:,.0f}, {clock.records / wall:,.0f}/s, consumer "
        f"{cpu.get('consumer_cores', 0):.2f} cores): wall time {shares}"
    )


# --- profile ----------------------------------------------------------------------------------

AREAS: tuple[tuple[str, str], ...] = (
    ("/features/", "features engine (features/)"),
    ("/contracts/", "decode/encode (contracts/)"),
    ("/consumers/pipelines/", "fraud pipeline glue (consumers/pipelines/)"),
    ("/consumers/", "runner, sessions, outbox (consumers/)"),
    ("/store/", "online store client (store/)"),
    ("/aiokafka/", "aiokafka (fetch, produce, protocol)"),
    ("/redis/", "redis-py"),
    ("/asyncio/", "asyncio event loop"),
)


def area_of(func: tuple[str, int, str]) -> str:
    """Which part of the stack a profiled function belongs to (pstats key: file, line, name)."""
    filename, _, name = func
    if filename == "~":  # a C function: classify by what it is a method of
        if "msgspec" in name:
            return "msgspec (C: JSON/msgpack)"
        if "poll" in name or "select" in name:
            return "waiting for I/O (epoll)"
        return "builtins (C)"
    for marker, area in AREAS:
        if marker in filename:
            return area
    return "other Python"


def breakdown(stats: pstats.Stats) -> list[tuple[str, float, float]]:
    """(area, seconds of own time, share of the total), largest first."""
    by_area: Counter[str] = Counter()
    for func, (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_area[area_of(func)] += tottime
    total = sum(by_area.values()) or 1.0
    return [(area, seconds, seconds / total) for area, seconds in by_area.most_common()]


async def _profile(ctx: BenchContext, records: int) -> None:
    workload = await stage_workload(ctx)
    await reset_state(workload, flush=ctx.stack.owns_services)
    limit = min(records, workload.transactions)
    ctx.say(f"profiling one in-process runner over {limit:,} records (cProfile)")
    pipeline = _pipeline(workload)
    runner = ConsumerRunner(workload.settings, pipeline)
    profiler = cProfile.Profile()
    task = asyncio.create_task(runner.run())
    started = 0.0
    try:
        probe = runner_probe([runner], workload.partitions, os.getpid())
        while not (await probe()).ready:
            if task.done():
                raise BenchError("features/profile", f"runner ended: {task.exception()!r}")
            await asyncio.sleep(0.02)
        base = runner.stats.records
        loop = asyncio.get_running_loop()
        started = loop.time()
        profiler.enable()
        while runner.stats.records - base < limit and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # polls the runner's counter: it has no event to wait on
        profiler.disable()
        elapsed = loop.time() - started
        processed = runner.stats.records - base
    finally:
        profiler.disable()
        runner.stop()
        await task
        gc.unfreeze()
        gc.collect()
    stats = pstats.Stats(profiler)
    stats.dump_stats(ctx.artifact("profile-features.pstats"))
    parts = breakdown(stats)
    text = io.StringIO()
    text.write(
        f"cProfile of one in-process ConsumerRunner (fraud features, no scoring) over "
        f"{processed:,} records in {elapsed:.2f} s wall under the profiler "
        f"({processed / elapsed:,.0f}/s; the profiler slows Python code down, so read shares, "
        "not rates).\n\nOwn time by area:\n"
    )
    for area, seconds, share in parts:
        text.write(f"  {share:6.1%}  {seconds:8.3f} s  {area}\n")
    for order, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        text.write(f"\nTop functions by {title}:\n")
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats(order).print_stats(30)
        text.write(_trim_paths(stream.getvalue()))
    ctx.artifact("profile-features.txt").write_text(text.getvalue())
    top = ", ".join(f"{area} {share:.0%}" for area, _, share in parts[:6])
    ctx.results.notes.append(
        f"profile (one in-process runner, {processed:,} records, cProfile): own time by area: "
        f"{top}; see {ctx.stem}-profile-features.txt"
    )
    ctx.shared["profile_breakdown"] = parts


_REPO = str(Path(__file__).resolve().parents[2]) + "/"


def _trim_paths(text: str) -> str:
    """Site-packages and repository prefixes out of pstats' lines, so they stay readable."""
    out = []
    for line in text.splitlines():
        for marker in ("site-packages/", _REPO):
            index = line.find(marker)
            while index != -1:
                start = line.rfind(" ", 0, index) + 1
                line = line[:start] + line[index + len(marker) :]
                index = line.find(marker)
        out.append(line)
    return "\n".join(out) + "\n"
