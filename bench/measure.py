"""Timing a consumer group through a pre-produced topic, and the probes that watch it.

A run starts its consumers, which first start up (Ray worker, imports, profile table, group
join, state restore); the clock for the rate starts only when every member holds its final
partitions and has restored them ("ready"), and stops when the records processed and committed
reach the topic's total. Events processed before "ready" are not counted, so start-up and the
rebalances of a group that forms do not dilute the steady-state rate; the start-up time is
reported beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.runner import ConsumerRunner
from rtml.errors import RtmlError


class BenchError(RtmlError):
    """A measurement could not be made (timed out, a consumer died); carries what and why."""

    def __init__(self, case: str, message: str) -> None:
        super().__init__(f"{case}: {message}")
        self.case = case


@dataclass(frozen=True)
class Progress:
    ready: bool  # every member holds and has restored its final partitions
    records: int  # processed and committed so far, all members together
    pids: tuple[int, ...] = ()  # the consumer processes
    extra: dict[str, Any] = field(default_factory=dict)


Probe = Callable[[], Awaitable[Progress]]


@dataclass(frozen=True)
class DrainTiming:
    startup_s: float  # from the start of the run until ready
    seconds: float  # from ready until every record was committed
    events: int  # records processed in that time
    total_events: int
    final: Progress

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def time_drain(
    case: str,
    probe: Probe,
    total: int,
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    on_ready: Callable[[Progress], None] | None = None,
    min_events: int = 1,
    stall_s: float = 60.0,
) -> DrainTiming:
    """Poll ``probe`` until ``total`` records are processed; time the span after "ready".

    Raises BenchError when the consumers are not done within ``timeout_s``, make no progress
    for ``stall_s`` once ready, or become ready with fewer than ``min_events`` records left
    (then nothing meaningful can be timed).
    """
    started = time.monotonic()
    deadline = started + timeout_s
    ready_at: float | None = None
    base = 0
    progress = await probe()
    last_records, last_change = progress.records, started
    while True:
        now = time.monotonic()
        if progress.records != last_records:
            last_records, last_change = progress.records, now
        elif ready_at is not None and now - last_change > stall_s:
            raise BenchError(
                case,
                f"no progress for {stall_s:.0f} s at {progress.records:,} of {total:,} records "
                f"({_facts(progress)})",
            )
        if ready_at is None and progress.ready:
            ready_at, base = now, progress.records
            if total - base < min_events:
                raise BenchError(
                    case,
                    f"only {total - base:,} of {total:,} records were left when the consumers "
                    "were ready; produce more (--transactions)",
                )
            if on_ready is not None:
                on_ready(progress)
        if progress.records >= total and ready_at is not None:
            return DrainTiming(ready_at - started, now - ready_at, total - base, total, progress)
        if now > deadline:
            raise BenchError(
                case,
                f"{progress.records:,} of {total:,} records after {timeout_s:.0f} s "
                f"({'ready' if ready_at else 'never ready'}; {_facts(progress)})",
            )
        await asyncio.sleep(interval_s)
        progress = await probe()


def _facts(progress: Progress) -> str:
    facts = {k: v for k, v in progress.extra.items() if isinstance(v, int | float)}
    return ", ".join(f"{k} {v}" for k, v in facts.items()) or "no details"


def runner_probe(runners: list[ConsumerRunner], partitions: int, pid: int) -> Probe:
    """Progress of in-process runners (one process: ``pid``)."""

    async def probe() -> Progress:
        ready = {p for r in runners for p in r.ready}
        return Progress(
            ready=len(ready) == partitions and all(r.ready for r in runners),
            records=sum(r.stats.records for r in runners),
            pids=(pid,),
            extra={"failed_batches": sum(r.stats.failures for r in runners)},
        )

    return probe


def group_ready(stats: list[dict[str, Any]], partitions: int) -> bool:
    """Every actor holds partitions, together all of them, each restored and polled."""
    held: set[int] = set()
    for s in stats:
        mine = set(s["partitions"])
        if not mine or not mine <= set(s["lag"]):
            return False
        held |= mine
    return len(held) == partitions


def group_probe(group: Any, partitions: int) -> Probe:
    """Progress of a ``ConsumerGroup`` of Ray actors, from their stats."""

    async def probe() -> Progress:
        stats = await asyncio.to_thread(group.stats)
        errors = await asyncio.to_thread(group.failed)
        if errors:
            raise BenchError(group.pipeline, f"an actor failed: {errors[0]}")
        return Progress(
            ready=group_ready(stats, partitions),
            records=sum(s["records"] for s in stats),
            pids=tuple(s["pid"] for s in stats),
            extra={
                "batches": sum(s["batches"] for s in stats),
                "failed_batches": sum(s["failures"] for s in stats),
            },
        )

    return probe


async def run_until(task: asyncio.Task[Any], coro: Awaitable[DrainTiming]) -> DrainTiming:
    """Await ``coro`` while ``task`` (a consumer loop) runs; its failure ends the wait."""
    waiter = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        return waiter.result()
    waiter.cancel()
    exc = task.exception() if not task.cancelled() else None
    raise BenchError("consumer", f"the consumer loop ended early: {exc!r}")
