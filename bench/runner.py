"""Running the scenarios in interleaved rounds, and writing what they measured.

Round r runs every case of every selected scenario once, in registry order; then round r + 1.
A case that fails in one round is recorded as a failure (the run goes on, the exit code says
so); a scenario whose preparation fails ends the run. Outputs, in ``out``, named by the run's
stem (``quick``, ``full`` or ``--name``): ``<stem>.json``, ``<stem>.md``, the plots
``<stem>-throughput.png`` and ``<stem>-memory.png``, and the scenarios' own files (profiles).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.errors import KafkaError

from bench.report import fmt_value, render_markdown, write_plots
from bench.results import BenchResults, Measurement, Sample
from bench.scenario import BenchContext, Case, Scenario
from rtml.errors import RtmlError


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _errors() -> tuple[type[BaseException], ...]:
    """What a failed measurement raises: ours, Kafka's, the OS's, Ray's."""
    errors: list[type[BaseException]] = [RtmlError, KafkaError, OSError, TimeoutError]
    try:
        from ray.exceptions import RayError

        errors.append(RayError)
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    return tuple(errors)


async def run_scenarios(ctx: BenchContext, scenarios: Sequence[Scenario]) -> list[str]:
    """Prepare, run the rounds, run the one-shot parts, evaluate the checks.

    Returns one line per failed case or one-shot part (empty: everything was measured).
    """
    failures: list[str] = []
    try:
        await _run(ctx, scenarios, failures)
    finally:
        await _close(ctx, failures)
    ctx.results.notes += [f"FAILED: {line}" for line in failures]
    return failures


async def _run(ctx: BenchContext, scenarios: Sequence[Scenario], failures: list[str]) -> None:
    errors = _errors()
    for scenario in scenarios:
        ctx.say(f"preparing {scenario.name}: {scenario.summary}")
        await scenario.prepare(ctx)
    cases = [case for scenario in scenarios for case in scenario.cases(ctx)]
    for case in cases:
        ctx.results.declare(
            Measurement(
                case.scenario,
                case.name,
                case.label,
                case.unit,
                list(case.baselines),
                case.higher_is_better,
            )
        )
    repeats = ctx.options.sizes.repeats
    for round_ in range(repeats):
        for case in cases:
            try:
                sample = await case.run(ctx, round_)
            except errors as exc:
                failures.append(f"round {round_ + 1} of {case.id}: {exc}")
                ctx.say(f"round {round_ + 1}/{repeats} {case.id}: FAILED: {exc}")
                continue
            measurement = ctx.results.measurement(case.id)
            assert measurement is not None
            measurement.samples.append(sample)
            ctx.say(f"round {round_ + 1}/{repeats} {case.id}: {describe_sample(case, sample)}")
    for scenario in scenarios:
        try:
            await scenario.once(ctx)
        except errors as exc:
            failures.append(f"{scenario.name}: {exc}")
            ctx.say(f"{scenario.name}: FAILED: {exc}")
    for scenario in scenarios:
        ctx.results.checks += scenario.checks(ctx)


async def _close(ctx: BenchContext, failures: list[str]) -> None:
    """What the scenarios registered with ``ctx.on_close``, last first; a failure is noted."""
    errors = _errors()
    while ctx.closers:
        close = ctx.closers.pop()
        try:
            await close()
        except errors as exc:
            failures.append(f"closing: {exc}")
            ctx.say(f"closing: FAILED: {exc}")


def describe_sample(case: Case, sample: Sample) -> str:
    d = sample.details
    parts = [f"{fmt_value(sample.value, case.unit)} {case.unit}"]
    if "events" in d and "seconds" in d:
        parts.append(f"{d['events']:,} events in {d['seconds']:.2f} s")
    if "consumer_cores" in d:
        parts.append(f"consumer {d['consumer_cores']:.2f} cores")
    if "broker_cores" in d:
        parts.append(f"broker {d['broker_cores']:.2f}")
    if "other_cores" in d:
        parts.append(f"other {d['other_cores']:.2f}")
    return ", ".join(parts)


def write_outputs(
    results: BenchResults, out: Path, stem: str, *, plots: bool, target: float | None
) -> list[Path]:
    """The JSON, the Markdown and the plots; returns every path written now."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:
        pngs = write_plots(results, out, stem, target=target)
        if not pngs and not any(n.startswith("plots:") for n in results.notes):
            results.notes.append("plots: not drawn (matplotlib missing: pip install -e '.[bench]')")
        for png in pngs:
            if png.name not in results.artifacts:
                results.artifacts.append(png.name)
        written += pngs
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    results.write_json(json_path)
    md_path.write_text(render_markdown(results))
    written += [json_path, md_path]
    written += [out / name for name in results.artifacts if (out / name).exists()]
    return list(dict.fromkeys(written))


def elapsed_since(started: float) -> str:
    seconds = time.monotonic() - started
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
