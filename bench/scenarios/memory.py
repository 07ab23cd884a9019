"""Memory of a consumer actor holding many cards, and how long a killed actor takes to come back.

One Ray actor runs the fraud feature stage (no scoring) on its own topics while transactions
over a fixed key space of ``memory_cards`` cards (``bench.key_space``: each card once in a first
pass, then cards at random) flow for ``memory_seconds`` at ``memory_rate`` records/s. Every
few seconds: the actor process's RSS (from /proc), the cards in the online store (one Redis key
per card seen: the bench's Redis holds nothing else) and the group's lag. The full run is 10
minutes at 10,000/s over 1,000,000 cards.

The traffic is a paced replay: its event times run faster than the wall clock, ``EVENT_DAYS``
over the run (with live event times a 10-minute run would never drop anything, whatever the
engine). What a card keeps is bounded by event time: 24 h windows, and the previous transaction
and the expiry index for 7 days (``previous_transaction_horizon_ms``, plus the lateness), after
which a quiet card is dropped. So state only stops growing once the replay has covered that
horizon: by ``settled_s`` (every card seen, the horizon covered, plus a tenth of the run) RSS
should be flat. ``rss-growth-settled`` is its growth from then to the end, and the check asks
for under ``FLAT_GROWTH``. At 10 days over the run a card pays ~0.6 times a simulated day, so
~1.5% of the cards are quiet for a whole horizon at any time: dropped, then back.

Then the actor is killed (SIGKILL, as a crash): Ray restarts it and retries its loop, which
reloads the profile table, rejoins the group (after the dead member's session times out),
restores every partition's state from the changelog and resumes. Measured: from the kill until
all partitions are ready again, and the state restore itself (``restore_seconds``, the slowest
partition; the partitions restore concurrently).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

from bench.environment import OffsetReader, create_topics, redis_keys, scenario_topics
from bench.key_space import key_space_batches
from bench.measure import BenchError, group_ready
from bench.procs import CpuMeter, rss_bytes
from bench.results import Check, Measurement, Sample, Series
from bench.scenario import BenchContext, Case, Scenario
from bench.scenarios.features import reset_state
from bench.workload import TransactionsWorkload
from consumers.pipelines.fraud_features import FraudFeaturesPipeline
from features.config import FeatureConfig
from features.definitions import DAY_MS
from producers.kafka_sink import KafkaSink
from producers.runner import Window, produce_batches

MIB = 1024 * 1024
EVENT_DAYS = 10.0  # event time the run replays: longer than the 7-day card horizon
FLAT_GROWTH = 0.05  # RSS growth allowed from settled_s to the end


class MemoryScenario(Scenario):
    name = "memory"
    summary = "RSS of a consumer actor over a live run with many cards; restore after a kill"
    needs_ray = True

    def cases(self, ctx: BenchContext) -> list[Case]:
        return []

    def checks(self, ctx: BenchContext) -> list[Check]:
        cards = ctx.options.sizes.memory_cards
        name = f"consumer RSS flat with {cards:,} cards in state"
        target = f"< {FLAT_GROWTH:.0%} growth once settled"
        growth = ctx.results.measurement("memory/rss-growth-settled")
        summary = growth.summary() if growth is not None else None
        if summary is None:
            return [Check(name, target, "not measured", None)]
        return [
            Check(
                name,
                target,
                f"{summary.median:+.1f}%",
                summary.median < FLAT_GROWTH * 100.0,
                f"{ctx.options.sizes.memory_seconds:,.0f} s at "
                f"{ctx.options.sizes.memory_rate:,.0f} records/s",
            )
        ]

    async def once(self, ctx: BenchContext) -> None:
        from consumers.actors import ConsumerGroup

        sizes, partitions = ctx.options.sizes, ctx.options.partitions
        topics = scenario_topics(ctx.topic("mem"), partitions)
        settings = ctx.stack.settings.model_copy(
            update={"rtml_topics": topics, "rtml_fraud_scoring": False}
        )
        topic = topics.transactions.name
        await create_topics(settings, topics.all())
        async with OffsetReader(settings) as reader:
            ends = await reader.end_offsets(topic, partitions)
        # Only the traffic of this run counts (a kept stack may hold an earlier run's).
        await reset_state(
            TransactionsWorkload(settings, topic, partitions, ends, sizes.memory_cards, 0, 0.0),
            to_end=True,
            flush=ctx.stack.owns_services,
        )
        ctx.results.workloads["memory"] = {
            "topic": topic,
            "partitions": partitions,
            "cards": sizes.memory_cards,
            "rate": sizes.memory_rate,
            "seconds": sizes.memory_seconds,
            "seed": ctx.options.seed,
            "event_days": EVENT_DAYS,
            "settled_s": round(_settled_s(sizes, settings.rtml_features), 1),
        }
        group = ConsumerGroup(settings, "fraud")
        try:
            await asyncio.to_thread(group.scale, 1)
            stats = await _wait(group, partitions, timeout_s=300, case="memory/start")
            await self._live(ctx, group, settings, stats[0]["pid"], topic, partitions)
            await self._restore(ctx, group, partitions)
        finally:
            await asyncio.to_thread(group.stop)

    async def _live(
        self, ctx: BenchContext, group: Any, settings: Any, pid: int, topic: str, partitions: int
    ) -> None:
        sizes = ctx.options.sizes
        interval = max(1.0, sizes.memory_seconds / 150)
        rss = Series(self.name, "rss", "consumer actor RSS", "MiB")
        cards = Series(self.name, "cards", "cards in state", "keys")
        lag = Series(self.name, "lag", "group lag", "records")
        ctx.results.series += [rss, cards, lag]
        started = time.monotonic()

        async def sample() -> None:
            t = round(time.monotonic() - started, 2)
            resident = rss_bytes(pid)
            stats = await asyncio.to_thread(group.stats)
            if resident is not None:
                rss.points.append((t, resident / MIB))
            if ctx.stack.owns_services:
                cards.points.append((t, float(await redis_keys(settings))))
            lag.points.append((t, float(sum(sum(s["lag"].values()) for s in stats))))

        async def sampler() -> None:
            next_line = 10.0
            while True:
                await sample()
                if rss.points and rss.points[-1][0] >= next_line:
                    ctx.say(
                        f"memory: {rss.points[-1][0]:.0f} s, RSS {rss.points[-1][1]:,.0f} MiB, "
                        f"{cards.points[-1][1] if cards.points else 0:,.0f} cards, "
                        f"lag {lag.points[-1][1]:,.0f}"
                    )
                    next_line += max(10.0, sizes.memory_seconds / 10)
                await asyncio.sleep(interval)

        ctx.say(
            f"memory: live traffic at {sizes.memory_rate:,.0f} records/s for "
            f"{sizes.memory_seconds:,.0f} s, {sizes.memory_cards:,} cards"
        )
        meter = CpuMeter(
            {
                "consumer": [pid],
                "broker": [p for p in [ctx.stack.broker_pid] if p],
                "redis": [p for p in [ctx.stack.redis_pid] if p],
                "producer": [os.getpid()],  # the bench process: generator, producer, sampling
            }
        )
        meter.start()
        task = asyncio.create_task(sampler())
        try:
            count = int(sizes.memory_rate * sizes.memory_seconds)
            window = Window.last_days(EVENT_DAYS)
            summary = await produce_batches(
                KafkaSink(settings),
                key_space_batches(
                    sizes.memory_cards,
                    count,
                    span_ms=window.end_ms - window.start_ms,
                    start_ms=window.start_ms,
                    seed=ctx.options.seed,
                ),
                count=count,
                rate=sizes.memory_rate,
            )
            group_id = FraudFeaturesPipeline(settings, scorer=None).group_id
            await _drained(settings, group_id, topic, partitions, timeout_s=300)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        cpu = meter.result()
        await sample()
        final = (await asyncio.to_thread(group.stats))[0]
        ctx.results.workloads["memory"] |= {
            "produced": summary.total,
            "achieved_rate": round(summary.rate, 1),
            "transactions": summary.records.get(settings.rtml_topics.transactions.name, 0),
            "mean_batch": round(final["records"] / max(1, final["batches"]), 1),
        } | {k: round(v, 3) for k, v in cpu.items() if k.endswith("_cores")}
        stats = rss.stats()
        if stats is not None:
            for name, label, value in (
                ("rss-start", "actor RSS when ready (empty state)", stats["start"]),
                ("rss-end", "actor RSS at the end", stats["end"]),
                ("rss-max", "actor RSS, highest sample", stats["max"]),
            ):
                _one(ctx, name, label, "MiB", value)
            final_cards = cards.points[-1][1] if cards.points else 0
            if final_cards:
                _one(
                    ctx,
                    "bytes-per-card",
                    "RSS growth per card in state",
                    "bytes",
                    (stats["end"] - stats["start"]) * MIB / final_cards,
                )
            _one(ctx, "cards", "cards in state at the end", "keys", final_cards, higher=True)
            settled = _settled_s(sizes, settings.rtml_features)
            after = [v for t, v in rss.points if t >= settled]
            if len(after) >= 2:
                _one(
                    ctx,
                    "rss-growth-settled",
                    f"RSS growth from {settled:,.0f} s (all cards seen, horizon passed) to the end",
                    "%",
                    (after[-1] - after[0]) / after[0] * 100.0,
                )

    async def _restore(self, ctx: BenchContext, group: Any, partitions: int) -> None:
        before = await asyncio.to_thread(group.stats)
        pid = before[0]["pid"]
        ctx.say(f"memory: killing the actor (pid {pid}, SIGKILL) and timing its restore")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = killed + 600
        while True:
            if time.monotonic() > deadline:
                raise BenchError("memory/restore", "the actor did not come back in 600 s")
            try:
                stats = await asyncio.to_thread(group.stats)
            except Exception:  # noqa: BLE001 - Ray errors while the actor restarts: poll again
                await asyncio.sleep(0.2)
                continue
            s = stats[0]
            if (
                s["pid"] != pid
                and group_ready(stats, partitions)
                and len(s["restore_seconds"]) >= partitions
            ):
                break
            await asyncio.sleep(0.1)
        wall = time.monotonic() - killed
        restore = s["restore_seconds"]
        _one(ctx, "restore-wall", "kill -> all partitions ready again", "s", wall)
        _one(
            ctx,
            "restore-state",
            "state restore, slowest partition (restore_seconds)",
            "s",
            max(restore.values()),
        )
        ctx.say(
            f"memory: back after {wall:.1f} s (state restore {max(restore.values()):.1f} s, "
            "the rest is the restart, the profile table and the group's session timeout)"
        )


def _one(
    ctx: BenchContext, name: str, label: str, unit: str, value: float, *, higher: bool = False
) -> None:
    """A one-shot number (one sample, round 0)."""
    m = ctx.results.declare(Measurement("memory", name, label, unit, higher_is_better=higher))
    m.samples.append(Sample(0, float(value)))


async def _wait(group: Any, partitions: int, *, timeout_s: float, case: str) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = await asyncio.to_thread(group.stats)
        if group_ready(stats, partitions):
            return stats
        errors = await asyncio.to_thread(group.failed)
        if errors:
            raise BenchError(case, f"the actor failed: {errors[0]}")
        await asyncio.sleep(0.2)
    raise BenchError(case, f"the actor was not ready within {timeout_s:.0f} s")


async def _drained(
    settings: Any, group_id: str, topic: str, partitions: int, *, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    async with OffsetReader(settings) as reader:
        ends = await reader.end_offsets(topic, partitions)
        while time.monotonic() < deadline:
            committed = await reader.committed(group_id, topic)
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                return
            await asyncio.sleep(0.5)
    raise BenchError("memory", f"the actor did not catch up within {timeout_s:.0f} s")


def _settled_s(sizes: Any, config: FeatureConfig) -> float:
    """Seconds into the run by which every card has been seen (the first pass) and the replay
    has covered the longest time a card keeps state (under the actor's ``config``), plus a
    tenth of the run."""
    horizon_ms = config.previous_transaction_horizon_ms + config.allowed_lateness_ms
    first_pass = sizes.memory_cards / sizes.memory_rate
    horizon_covered = sizes.memory_seconds * horizon_ms / (EVENT_DAYS * DAY_MS)
    return max(first_pass, horizon_covered) + sizes.memory_seconds / 10
