"""The scenario interface: what a benchmark scenario provides and what it gets.

A ``Scenario`` prepares its data once (``prepare``), offers ``cases``: measurements that are
repeated, one sample per round, and ``once``: one-shot parts (a profile, memory over time). The
runner interleaves the rounds: round 1 of every case, then round 2..., so cases compared by a
ratio ran under the same background load. ``checks`` turns the results into targets.

Adding a scenario (the end-to-end fraud pipeline with the model, the recommendation pipeline
with top-K latency, a scaling curve) means one module in ``bench/scenarios/`` with a
``Scenario`` subclass, listed in ``SCENARIOS`` there. What scenarios share beyond one case (the
Serve app of ``bench.serving``) is torn down through ``BenchContext.on_close``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.environment import BenchStack
from bench.options import BenchOptions
from bench.results import BenchResults, Check, Sample
from bench.workload import TransactionsWorkload, prepare_transactions

Say = Callable[[str], None]


@dataclass(frozen=True)
class Case:
    """One repeatable measurement: ``run(ctx, round)`` returns one Sample."""

    scenario: str
    name: str
    label: str
    unit: str
    run: Callable[[BenchContext, int], Awaitable[Sample]]
    baselines: tuple[str, ...] = ()
    higher_is_better: bool = True

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"


class Scenario(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    needs_ray: ClassVar[bool] = False

    async def prepare(self, ctx: BenchContext) -> None:  # noqa: B027 - optional hook
        """Create topics, produce data: whatever the cases share."""

    @abstractmethod
    def cases(self, ctx: BenchContext) -> list[Case]: ...

    async def once(self, ctx: BenchContext) -> None:  # noqa: B027 - optional hook
        """One-shot measurements after the rounds (series, profiles, restore time)."""

    def checks(self, ctx: BenchContext) -> list[Check]:
        return []


@dataclass
class BenchContext:
    options: BenchOptions
    stack: BenchStack
    results: BenchResults
    out_dir: Path
    stem: str
    say: Say
    prefix: str = ""  # before every topic name the scenarios create (tests: a unique one)
    shared: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def started(self) -> float:
        return self.shared.setdefault("_started", time.monotonic())

    async def transactions(self) -> TransactionsWorkload:
        """The pre-produced transactions every throughput scenario reads (made once)."""
        workload = self.shared.get("transactions")
        if workload is None:
            sizes = self.options.sizes
            workload = await prepare_transactions(
                self.stack.settings,
                prefix=self.topic("tx"),
                transactions=sizes.transactions,
                users=sizes.users,
                partitions=self.options.partitions,
                seed=self.options.seed,
                say=self.say,
            )
            self.shared["transactions"] = workload
            self.results.workloads["transactions"] = {
                "topic": workload.topic,
                "partitions": workload.partitions,
                "transactions": workload.transactions,
                "users": workload.users,
                "profiles": workload.profiles,
                "produce_seconds": round(workload.produce_seconds, 2),
                "seed": self.options.seed,
            }
        return workload

    def on_close(self, close: Callable[[], Awaitable[object]]) -> None:
        """Call ``close`` when the run ends (the last registered first): for what scenarios
        share beyond one case, e.g. the Serve app of ``bench.serving``."""
        self.closers.append(close)

    def artifact(self, suffix: str) -> Path:
        """A file next to the results (``<stem>-<suffix>``), listed in them."""
        name = f"{self.stem}-{suffix}"
        if name not in self.results.artifacts:
            self.results.artifacts.append(name)
        return self.out_dir / name
