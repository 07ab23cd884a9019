"""`rtml bench`: measure the pipelines side by side on an isolated stack, write the results.

Thin: parse, build ``BenchOptions``, start the bench's own Kafka/Redis/Ray, run the scenarios
(``bench.runner``), write JSON, Markdown and plots, stop the stack, print where the results are.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench.options import (
    CONTROLLER_PORT,
    KAFKA_PORT,
    REDIS_PORT,
    BenchOptions,
    parse_actors,
    parse_loads,
    parse_only,
    sizes_for,
    with_overrides,
)
from bench.scenarios import SCENARIOS
from rtml.arguments import non_negative_float, non_negative_int, positive_float, positive_int
from rtml.settings import Settings

DEFAULT_OUT = Path("docs/benchmarks")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the pipelines on an isolated stack (throughput, ceilings, memory)",
        description=(
            "Run benchmark scenarios side by side on the bench's own Kafka, Redis and Ray "
            f"(ports {KAFKA_PORT}/{CONTROLLER_PORT}/{REDIS_PORT}, a temporary state dir), "
            "repeated in interleaved rounds; write <out>/<quick|full>.json, .md and plots. "
            "Without --quick this is the full run (about 40 minutes on 2 cores)."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, 1 round: about 6 minutes on 2 cores (--repeats N for statistics)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated scenarios (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--repeats", type=positive_int, help="rounds (quick 2, full 5)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--name", help="file name stem of the results (default: quick/full, or <mode>-custom)"
    )
    parser.add_argument(
        "--keep-stack", action="store_true", help="leave Kafka and Redis running at the end"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="the stack's state dir (default: a new temporary one)"
    )
    parser.add_argument(
        "--serve-default-mode",
        action="store_true",
        help="run Serve in its default mode, not the throughput mode rtml starts it in "
        "(ray_serve_throughput_optimized)",
    )
    sizes = parser.add_argument_group("sizes (default: those of --quick or the full run)")
    sizes.add_argument("--transactions", type=positive_int, help="pre-produced transactions")
    sizes.add_argument("--users", type=positive_int, help="synthetic users for them")
    sizes.add_argument("--actors", type=parse_actors, help="Ray actor counts, e.g. 1,2")
    sizes.add_argument(
        "--loads", type=parse_loads, help="end-to-end fixed rates in tx/s, e.g. 1000,2000,20000"
    )
    sizes.add_argument(
        "--load-seconds", type=positive_float, help="end-to-end: seconds at each fixed rate"
    )
    sizes.add_argument(
        "--load-warmup-seconds",
        type=non_negative_float,
        help="end-to-end: uncounted seconds at each rate before it is measured",
    )
    sizes.add_argument("--memory-seconds", type=positive_float, help="live run length")
    sizes.add_argument("--memory-rate", type=positive_float, help="live records/s")
    sizes.add_argument("--memory-cards", type=positive_int, help="distinct cards of the memory run")
    sizes.add_argument(
        "--profile-records", type=non_negative_int, help="records under cProfile (0: none)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="generator seed")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--kafka-port", type=positive_int, default=KAFKA_PORT)
    parser.add_argument("--controller-port", type=positive_int, default=CONTROLLER_PORT)
    parser.add_argument("--redis-port", type=positive_int, default=REDIS_PORT)
    parser.set_defaults(run=bench_command)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """The run's options; ConfigError (exit 2) for a bad combination."""
    mode = "quick" if args.quick else "full"
    sizes = with_overrides(
        sizes_for(mode),
        repeats=args.repeats,
        transactions=args.transactions,
        users=args.users,
        actors=args.actors,
        loads=args.loads,
        load_seconds=args.load_seconds,
        load_warmup_seconds=args.load_warmup_seconds,
        memory_seconds=args.memory_seconds,
        memory_rate=args.memory_rate,
        memory_cards=args.memory_cards,
        profile_records=args.profile_records,
    )
    return BenchOptions(
        mode=mode,
        scenarios=parse_only(args.only, list(SCENARIOS)),
        sizes=sizes,
        out=args.out,
        state_dir=args.state_dir,
        keep_stack=args.keep_stack,
        plots=not args.no_plots,
        seed=args.seed,
        kafka_port=args.kafka_port,
        controller_port=args.controller_port,
        redis_port=args.redis_port,
        name=args.name,
        serve_throughput_optimized=not args.serve_default_mode,
    )


def canonical_command(options: BenchOptions) -> str:
    """The command that repeats this run exactly (every size spelled out)."""
    s = options.sizes
    argv = ["rtml", "bench"]
    if options.mode == "quick":
        argv.append("--quick")
    argv += [
        "--only", ",".join(options.scenarios),
        "--repeats", str(s.repeats),
        "--transactions", str(s.transactions),
        "--users", str(s.users),
        "--actors", ",".join(map(str, s.actors)),
        "--loads", ",".join(f"{rate:g}" for rate in s.loads),
        "--load-seconds", f"{s.load_seconds:g}",
        "--load-warmup-seconds", f"{s.load_warmup_seconds:g}",
        "--memory-seconds", f"{s.memory_seconds:g}",
        "--memory-rate", f"{s.memory_rate:g}",
        "--memory-cards", str(s.memory_cards),
        "--profile-records", str(s.profile_records),
        "--seed", str(options.seed),
        "--out", str(options.out),
    ]  # fmt: skip
    if options.name:
        argv += ["--name", options.name]
    if not options.serve_throughput_optimized:
        argv.append("--serve-default-mode")
    return shlex.join(argv)


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} bench: {message}", flush=True)


def bench_command(settings: Settings, args: argparse.Namespace) -> int:
    from bench.environment import start_ray, start_stack, stop_stack
    from bench.machine import describe_machine
    from bench.results import BenchResults
    from bench.runner import elapsed_since, now_iso, run_scenarios, write_outputs
    from bench.scenario import BenchContext
    from bench.scenarios import load
    from rtml.interrupts import interrupt_on_sigterm

    interrupt_on_sigterm()  # a SIGTERM stops the stack too
    options = options_from_args(args)
    if not getattr(args, "verbose", False):
        # Per-partition INFO lines of the clients and sessions drown the progress lines.
        for name in ("consumers", "infra", "producers"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # aiokafka logs retried coordinator lookups as errors; real failures raise anyway.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    stem = options.stem(list(SCENARIOS))
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    started = time.monotonic()
    results = BenchResults(
        command=canonical_command(options),
        mode=options.mode,
        options=options.to_dict() | {"argv": sys.argv[1:]},
        machine=describe_machine(repo),
        started_at=now_iso(),
    )
    scenarios = [load(name) for name in options.scenarios]
    rounds = f"{options.sizes.repeats} round{'s' if options.sizes.repeats != 1 else ''}"
    say(f"{options.mode} run of {', '.join(options.scenarios)}, {rounds}; results: {out}/{stem}.*")
    say(f"to repeat it: {results.command}")
    say("starting the bench stack (Kafka, Redis)")
    bench = start_stack(options, cache_dir=settings.rtml_cache_dir)
    say(
        f"stack up: kafka {bench.settings.kafka_bootstrap_servers}, redis "
        f"{bench.settings.redis_url}, state {bench.state_dir}"
    )
    failures: list[str] = []
    try:
        results.notes += bench.notes
        if any(s.needs_ray for s in scenarios):
            bench.settings = bench.settings.model_copy(
                update={"ray_serve_throughput_optimized": options.serve_throughput_optimized}
            )
            say("starting a local Ray instance")
            start_ray(bench)
            interrupt_on_sigterm()  # Ray's driver installed its own, which aborts
        ctx = BenchContext(options, bench, results, out, stem, say)
        failures = asyncio.run(run_scenarios(ctx, scenarios))
    finally:
        results.finished_at = now_iso()
        results.machine["load_average_end"] = list(os.getloadavg())
        paths = write_outputs(results, out, stem, plots=options.plots, target=options.target)
        say("stopping the bench stack" if not options.keep_stack else "leaving the stack up")
        stop_stack(bench, keep=options.keep_stack)
    from bench.report import measurement_rows

    for row in measurement_rows(results):
        print(f"  {row[0]:<32} {row[2]:>22}  ({row[3]}) {row[6]}")
    for check in results.checks:
        verdict = {True: "met", False: "NOT met", None: "not decided"}[check.met]
        print(f"  target {check.name}: {check.target}, measured {check.value}: {verdict}")
    say(f"done in {elapsed_since(started)}; results:")
    for path in paths:
        print(f"  {path}")
    if options.keep_stack:
        print(
            f"  stack left running; stop it with: RTML_STATE_DIR={bench.state_dir} "
            f"KAFKA_BOOTSTRAP_SERVERS={bench.settings.kafka_bootstrap_servers} "
            f"KAFKA_CONTROLLER_PORT={bench.settings.kafka_controller_port} "
            f"REDIS_URL={bench.settings.redis_url} rtml infra down"
        )
    if failures:
        for line in failures:
            print(f"  FAILED: {line}", file=sys.stderr)
        return 1
    return 0
