"""The peers: the same fraud velocity features in Quix Streams, Bytewax and Faust.

Each peer is a program in ``bench/peer_jobs/`` that the bench starts in its own process (their
runtimes have their own event loops and threads, and their packages their own pins: Quix
Streams wants pydantic < 2.14), with the Python of the peers' environment: ``.venv-peers/`` at
the repository root when it exists (``scripts/bench_peers_env.sh`` makes it from the ``peers``
extra), else the bench's own Python (``pip install -e '.[peers]'``). A peer that is not
installed, or does not start there, is skipped with the reason in the results' notes; the run
goes on.

What every peer does, on the same machine, from the same pre-produced transactions topic as the
``features`` scenario, with one worker: check each record, compute the fraud features of
``bench.reference_features`` (the engine's values; tested against it) with the card's recent
transactions in the framework's keyed state, and write one record per input to its own output
topic (feature row, or dead letter for an invalid record; 8 partitions each). The rate counts
the records in those two topics (their end offsets: the peers produce without transactions)
from the first output until ``total``; then the peer is stopped.

What differs from rtml's ``features`` stage, all of it in the peers' favour except the state
store: the peers are at least once (rtml: exactly once, one transaction per partition per
batch); they do not join the user profiles (the two profile features are null); their output is
Kafka only (rtml writes the online store in Redis and its changelog); their record check is
simpler than rtml's contract; they have no watermark (late transactions get features); their
state is the framework's (Quix: RocksDB + changelog topic, per-event get/set; Bytewax: in
memory, no recovery configured; Faust: in-memory table + changelog topic).

A round starts the peer on the topic from the beginning (a new group, empty state) and ends
after ``max_events`` records (quick 60,000; full: the whole topic) or ``max_seconds`` after its
first output (quick 10 s, full 60 s), whichever comes first; the slowest peers are bounded by
time. The rate is the outputs in that window over its length: nothing is extrapolated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.environment import OffsetReader, create_topics
from bench.measure import BenchError
from bench.procs import CpuMeter
from bench.results import Check, Measurement, Sample
from bench.scenario import BenchContext, Case, Scenario
from bench.stats import ratio_summary
from bench.workload import TransactionsWorkload
from rtml.settings import TopicSpec

REPO = Path(__file__).resolve().parents[2]
PEERS_VENV = REPO / ".venv-peers"
# A round ends after this many records, or this many seconds after the first output.
MAX_EVENTS = {"quick": 60_000, "full": None}
MAX_SECONDS = {"quick": 10.0, "full": 60.0}
CHECK_NAME = "fraud features faster than every peer"
STOP_TIMEOUT_S = 15.0
STARTUP_TIMEOUT_S = 120.0  # from the start of the program to its first output


@dataclass(frozen=True)
class Peer:
    name: str
    title: str
    module: str  # the program: python -m <module>
    distribution: str  # what pip installs (its version goes in the results)
    how: str  # its state and guarantee, for the label


PEERS: tuple[Peer, ...] = (
    Peer(
        "quix",
        "Quix Streams",
        "bench.peer_jobs.quix",
        "quixstreams",
        "stateful apply, RocksDB + changelog, at least once",
    ),
    Peer(
        "bytewax",
        "Bytewax",
        "bench.peer_jobs.bytewax_flow",
        "bytewax",
        "stateful_map, in memory, at least once",
    ),
    Peer(
        "faust",
        "Faust (faust-streaming)",
        "bench.peer_jobs.faust_app",
        "faust-streaming",
        "agent + table, memory + changelog, at least once",
    ),
)


def peers_python() -> str:
    """The interpreter that runs the peers: the peers' environment, else the bench's."""
    candidate = PEERS_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def availability(python: str, peer: Peer) -> tuple[str | None, str]:
    """(the installed version, "") or (None, why the peer cannot run)."""
    probe = (
        "import importlib, importlib.metadata as m; "
        f"importlib.import_module({peer.module!r}); "
        f"print(m.version({peer.distribution!r}))"
    )
    proc = await asyncio.create_subprocess_exec(
        python,
        "-c",
        probe,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, f"importing {peer.module} took over 120 s"
    if proc.returncode == 0:
        return out.decode().strip().splitlines()[-1], ""
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    if "ModuleNotFoundError" in last or "PackageNotFoundError" in last:
        return None, (
            f"not installed ({last}); install the peers extra: scripts/bench_peers_env.sh "
            f"(or pip install -e '.[peers]')"
        )
    return None, f"does not import with {python}: {last}"


class PeersScenario(Scenario):
    name = "peers"
    summary = "the fraud velocity features in Quix Streams, Bytewax and Faust (subprocesses)"

    def __init__(
        self,
        max_events: int | None = None,
        max_seconds: float | None = None,
        peers: tuple[str, ...] | None = None,
    ) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.peers = [p for p in PEERS if peers is None or p.name in peers]
        self.available: list[Peer] = []
        self.skipped: dict[str, str] = {}

    async def prepare(self, ctx: BenchContext) -> None:
        workload = await ctx.transactions()
        python = peers_python()
        versions: dict[str, str] = {}
        for peer in self.peers:
            version, reason = await availability(python, peer)
            if version is None:
                self.skipped[peer.name] = reason
                ctx.results.notes.append(f"peers/{peer.name}: skipped: {reason}")
                ctx.say(f"peers/{peer.name}: skipped: {reason}")
                continue
            versions[peer.distribution] = version
            self.available.append(peer)
            await create_topics(workload.settings, _topics(ctx, peer, workload.partitions))
        ctx.results.workloads["peers"] = {
            "python": python,
            "versions": versions,
            "skipped": dict(self.skipped),
            "max_events": self._limit(ctx, workload),
            "max_seconds": self.max_seconds or MAX_SECONDS[ctx.options.mode],
        }

    def _limit(self, ctx: BenchContext, workload: TransactionsWorkload) -> int:
        limit = self.max_events or MAX_EVENTS[ctx.options.mode] or workload.transactions
        return min(limit, workload.transactions)

    def cases(self, ctx: BenchContext) -> list[Case]:
        rtml = tuple(f"features/ray-{n}" for n in ctx.options.sizes.actors)
        return [
            Case(
                self.name,
                peer.name,
                f"{peer.title}: fraud velocity features ({peer.how}), 1 worker",
                "events/s",
                self._runner(peer),
                rtml,
            )
            for peer in self.available
        ]

    def _runner(self, peer: Peer):
        async def run(ctx: BenchContext, round_: int) -> Sample:
            workload = await ctx.transactions()
            limit = self._limit(ctx, workload)
            seconds = self.max_seconds or MAX_SECONDS[ctx.options.mode]
            return await run_peer(ctx, peer, workload, round_, limit, seconds)

        return run

    def checks(self, ctx: BenchContext) -> list[Check]:
        return [peers_check(ctx, self.skipped)]


def _topics(ctx: BenchContext, peer: Peer, partitions: int) -> list[TopicSpec]:
    return [
        TopicSpec(name=ctx.topic(f"peers.{peer.name}.features"), partitions=partitions),
        TopicSpec(name=ctx.topic(f"peers.{peer.name}.dead-letter"), partitions=partitions),
    ]


async def run_peer(
    ctx: BenchContext,
    peer: Peer,
    workload: TransactionsWorkload,
    round_: int,
    total: int,
    max_seconds: float,
) -> Sample:
    """Start the peer on the topic from the beginning; time it from its first output through
    ``total`` records or ``max_seconds``; stop it."""
    case = f"peers/{peer.name}"
    settings = workload.settings
    outputs = [t.name for t in _topics(ctx, peer, workload.partitions)]
    # In the group id: the changelog topics the peers derive from it carry the run's prefix.
    group = f"{ctx.prefix}bench-peer-{peer.name}-{uuid.uuid4().hex[:8]}"
    state_dir = ctx.stack.state_dir / "peers" / group
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "peer.log"
    argv = [
        peers_python(),
        "-m",
        peer.module,
        "--bootstrap",
        settings.kafka_bootstrap_servers,
        "--input",
        workload.topic,
        "--output",
        outputs[0],
        "--dead-letter",
        outputs[1],
        "--group",
        group,
        "--partitions",
        str(workload.partitions),
        "--state-dir",
        str(state_dir / "state"),
    ]
    async with OffsetReader(settings) as offsets:
        base = await _produced(offsets, outputs, workload.partitions)
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT
            )
        meter = CpuMeter(
            {
                "consumer": [proc.pid],
                "broker": [p for p in [ctx.stack.broker_pid] if p],
            }
        )

        async def count() -> int:
            records = await _produced(offsets, outputs, workload.partitions) - base
            if proc.returncode is not None and records < total:
                raise BenchError(
                    case,
                    f"the peer exited ({proc.returncode}) after {records:,} records: "
                    f"{_tail(log_path)}",
                )
            return records

        try:
            window = await measure_output(
                case, count, total, max_seconds=max_seconds, on_ready=meter.start, log=log_path
            )
            cpu = meter.result()
        finally:
            await _stop(proc)
            shutil.rmtree(state_dir, ignore_errors=True)
    details = {
        "events": window.events,
        "seconds": round(window.seconds, 4),
        "startup_s": round(window.startup_s, 3),
        "bounded_by": window.bounded_by,
        "total_events": total,
    }
    details |= {k: round(v, 4) for k, v in cpu.items()}
    if window.events and "consumer_cpu_s" in cpu:
        details["consumer_cpu_us_per_event"] = round(cpu["consumer_cpu_s"] / window.events * 1e6, 3)
    return Sample(round_, window.events / window.seconds, details)


@dataclass(frozen=True)
class Window:
    startup_s: float  # from the start of the program to its first output
    seconds: float  # from the first output to the end of the window
    events: int  # outputs in the window
    bounded_by: str  # "events": all ``total`` records were out; "time": ``max_seconds`` passed


async def measure_output(
    case: str,
    count: Callable[[], Awaitable[int]],
    total: int,
    *,
    max_seconds: float,
    on_ready: Callable[[], None],
    log: Path,
    interval_s: float = 0.2,
    stall_s: float = 60.0,
) -> Window:
    """Poll ``count`` (outputs so far) from the first output until ``total`` outputs or
    ``max_seconds``, whichever comes first."""
    started = time.monotonic()
    ready_at: float | None = None
    base = last = 0
    last_change = started
    while True:
        records = await count()
        now = time.monotonic()
        if records != last:
            last, last_change = records, now
        if ready_at is None:
            if records > 0:
                ready_at, base = now, records
                if total - base < total // 5:
                    raise BenchError(
                        case, f"{base:,} of {total:,} records were out at the first look"
                    )
                on_ready()
            elif now - started > STARTUP_TIMEOUT_S:
                raise BenchError(case, f"no output after {STARTUP_TIMEOUT_S:.0f} s: {_tail(log)}")
        else:
            if records >= total or now - ready_at >= max_seconds:
                bounded = "events" if records >= total else "time"
                return Window(ready_at - started, now - ready_at, records - base, bounded)
            if now - last_change > stall_s:
                raise BenchError(
                    case, f"no output for {stall_s:.0f} s at {records:,} records: {_tail(log)}"
                )
        await asyncio.sleep(interval_s)


async def _produced(offsets: OffsetReader, topics: list[str], partitions: int) -> int:
    ends = await asyncio.gather(*(offsets.end_offsets(t, partitions) for t in topics))
    return sum(sum(e.values()) for e in ends)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM (the frameworks shut down cleanly on it), SIGKILL when that takes too long."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"


def peers_check(ctx: BenchContext, skipped: dict[str, str]) -> Check:
    """rtml's best feature stage (Ray actors) over each peer, paired by round: met when every
    measured peer is slower than rtml (median ratio > 1)."""
    target = "rtml/peer > 1 for every peer (median of paired rounds)"
    rtml = _best(ctx, "features", prefix="ray-") or _best(ctx, "e2e")
    peers = [m for m in ctx.results.measurements if m.scenario == "peers" and m.samples]
    skipped_text = "; ".join(f"{name} skipped: {why}" for name, why in skipped.items())
    if rtml is None or not peers:
        what = "no features/ray-N result" if rtml is None else "no peer measured"
        return Check(CHECK_NAME, target, what, None, skipped_text)
    parts: list[str] = []
    worst: tuple[float, str] | None = None
    for peer in peers:
        ratio = ratio_summary(rtml.pairs(), peer.pairs())
        if ratio is None:
            parts.append(f"{peer.name}: no common round")
            continue
        parts.append(
            f"{peer.name}: {ratio.median:,.2f}x (rounds {ratio.min:,.2f} - {ratio.max:,.2f})"
        )
        if worst is None or ratio.median < worst[0]:
            worst = (ratio.median, peer.name)
    detail = f"{rtml.id} / peer: " + "; ".join(parts)
    if skipped_text:
        detail += f"; {skipped_text}"
    if worst is None:
        return Check(CHECK_NAME, target, "no common round", None, detail)
    value = f"{worst[0]:,.2f}x the slowest margin ({worst[1]})"
    return Check(CHECK_NAME, target, value, worst[0] > 1.0, detail)


def _best(ctx: BenchContext, scenario: str, prefix: str = "") -> Measurement | None:
    found = [
        m
        for m in ctx.results.measurements
        if m.scenario == scenario
        and m.name.startswith(prefix)
        and m.unit in ("events/s", "tx/s")
        and m.samples
    ]
    return max(found, key=lambda m: m.summary().median, default=None)  # type: ignore[union-attr]
