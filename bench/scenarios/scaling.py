"""The scaling curve: fraud-feature throughput against consumer actors and input partitions.

The same stage as ``features/ray-N`` (``FraudFeaturesPipeline`` without scoring, exactly once,
through ``consumers.actors.ConsumerGroup``), over the same transactions produced into topics
of ``sizes.scaling_partitions`` partitions, on ``sizes.scaling_actors`` actors each (an actor
count above the partition count is skipped: the extra actors would idle). Case names are
``p<partitions>-ray-<actors>``.

What the curve shows on one machine: actors scale until the cores run out (the broker, Redis
and the actors share them), and partitions bound the useful actors. ``checks`` reports the
speed-up of the most actors over one per partition count and the efficiency per actor; it sets
no target (the curve depends on the machine). docs/scaling.md explains how to read it.
"""

from __future__ import annotations

from dataclasses import replace

from bench.results import Check
from bench.scenario import BenchContext, Case, Scenario
from bench.scenarios.features import ray_case, stage_workload
from bench.workload import TransactionsWorkload, prepare_transactions

CHECK_NAME = "fraud feature stage: speed-up with consumer actors"


class ScalingScenario(Scenario):
    name = "scaling"
    summary = "fraud features throughput against consumer actors (1, 2, 4) and partitions"
    needs_ray = True

    async def prepare(self, ctx: BenchContext) -> None:
        for partitions in ctx.options.sizes.scaling_partitions:
            await workload_for(ctx, partitions)

    def cases(self, ctx: BenchContext) -> list[Case]:
        sizes = ctx.options.sizes
        cases = []
        for partitions in sizes.scaling_partitions:
            for actors in sizes.scaling_actors:
                if actors > partitions:
                    continue
                name = f"p{partitions}-ray-{actors}"
                cases.append(
                    Case(
                        self.name,
                        name,
                        f"fraud features, {partitions} partitions, {actors} Ray actor"
                        f"{'s' if actors > 1 else ''}",
                        "events/s",
                        ray_case(
                            actors,
                            case=f"{self.name}/{name}",
                            workload_of=_workload_getter(partitions),
                        ),
                    )
                )
        return cases

    def checks(self, ctx: BenchContext) -> list[Check]:
        medians: dict[tuple[int, int], float] = {}
        for m in ctx.results.measurements:
            summary = m.summary() if m.scenario == self.name and m.samples else None
            if summary is not None:
                partitions, actors = parse_case(m.name)
                medians[(partitions, actors)] = summary.median
        checks = []
        for partitions in ctx.options.sizes.scaling_partitions:
            curve = {a: r for (p, a), r in sorted(medians.items()) if p == partitions}
            name = f"{CHECK_NAME} ({partitions} partitions)"
            if 1 not in curve or len(curve) < 2:
                checks.append(Check(name, "measured (no target)", "not measured", None))
                continue
            most = max(curve)
            speedup = curve[most] / curve[1]
            detail = "; ".join(f"{a} actor(s): {r:,.0f}/s" for a, r in curve.items())
            checks.append(
                Check(
                    name,
                    "measured (no target)",
                    f"{speedup:.2f}x with {most} actors ({speedup / most:.0%} per actor)",
                    None,
                    detail,
                )
            )
        return checks


def parse_case(name: str) -> tuple[int, int]:
    """``"p8-ray-4"`` -> (8, 4)."""
    partitions, _, actors = name.removeprefix("p").partition("-ray-")
    return int(partitions), int(actors)


def _workload_getter(partitions: int):
    async def get(ctx: BenchContext) -> TransactionsWorkload:
        return await workload_for(ctx, partitions)

    return get


async def workload_for(ctx: BenchContext, partitions: int) -> TransactionsWorkload:
    """The stage's transactions in a topic of ``partitions`` partitions: the shared workload
    when it has that many, else the same generator run into a topic of its own (made once)."""
    if partitions == ctx.options.partitions:
        return await stage_workload(ctx)
    key = f"scaling-transactions-p{partitions}"
    workload = ctx.shared.get(key)
    if workload is None:
        sizes = ctx.options.sizes
        workload = await prepare_transactions(
            ctx.stack.settings,
            prefix=ctx.topic(f"scaling-p{partitions}.tx"),
            transactions=sizes.transactions,
            users=sizes.users,
            partitions=partitions,
            seed=ctx.options.seed,
            say=ctx.say,
        )
        ctx.shared[key] = workload
    return replace(
        workload,
        settings=workload.settings.model_copy(
            update={"rtml_fraud_scoring": False, "rtml_emit_feature_rows": False}
        ),
    )
