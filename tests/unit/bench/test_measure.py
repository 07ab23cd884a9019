"""Timing a drain: what counts as ready, which events are counted, when it gives up.

The probes here are scripted; nothing sleeps for long and no duration is asserted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from bench.measure import BenchError, Progress, group_ready, time_drain
from bench.procs import CpuMeter, cpu_seconds, rss_bytes


def scripted(*steps: Progress):
    remaining = list(steps)

    async def probe() -> Progress:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return probe


async def test_only_events_after_ready_are_counted() -> None:
    seen: list[Progress] = []
    timing = await time_drain(
        "case",
        scripted(
            Progress(False, 0),
            Progress(False, 400),
            Progress(True, 1_000, pids=(7,)),
            Progress(True, 6_000),
            Progress(True, 10_000),
        ),
        10_000,
        timeout_s=30,
        interval_s=0,
        on_ready=seen.append,
    )
    assert timing.events == 9_000
    assert timing.total_events == 10_000
    assert [p.pids for p in seen] == [(7,)]  # called once, with the ready progress
    assert timing.seconds >= 0 and timing.startup_s >= 0


async def test_too_little_left_after_ready_is_an_error() -> None:
    with pytest.raises(BenchError, match="only 100 of 10,000 records were left"):
        await time_drain(
            "case", scripted(Progress(True, 9_900)), 10_000, timeout_s=5, min_events=2_000
        )


async def test_a_stuck_consumer_times_out() -> None:
    with pytest.raises(BenchError, match="never ready"):
        await time_drain("case", scripted(Progress(False, 0)), 10, timeout_s=0, interval_s=0)


def stats(partitions: list[int], lag: list[int]) -> dict:
    return {"partitions": partitions, "lag": {p: 0 for p in lag}}


@pytest.mark.parametrize(
    ("members", "ready"),
    [
        ([stats([0, 1, 2, 3], [0, 1, 2, 3])], True),
        ([stats([0, 1], [0, 1]), stats([2, 3], [2, 3])], True),
        ([stats([0, 1, 2, 3], [0, 1, 2, 3]), stats([], [])], False),  # one not joined yet
        ([stats([0, 1], [0, 1]), stats([2, 3], [2])], False),  # partition 3 not restored
        ([stats([0, 1], [0, 1]), stats([2], [2])], False),  # partition 3 unassigned
    ],
)
def test_group_ready(members: list[dict], ready: bool) -> None:
    assert group_ready(members, 4) is ready


def test_process_counters_of_this_process() -> None:
    assert (rss_bytes(os.getpid()) or 0) > 1024 * 1024
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert rss_bytes(2**22 + 12345) is None  # beyond pid_max: no such process
    assert cpu_seconds(2**22 + 12345) is None


def test_cpu_seconds_include_the_children_that_ended() -> None:
    """Redis's AOF rewrites run in a forked child: its CPU counts for the server."""
    before_self = cpu_seconds(os.getpid()) or 0.0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert child > 0.05
    assert (cpu_seconds(os.getpid()) or 0.0) - before_self >= 0.8 * child


def test_cpu_meter_reports_cores_per_group() -> None:
    meter = CpuMeter({"consumer": [os.getpid()], "gone": [2**22 + 12345]})
    meter.start()
    sum(i * i for i in range(200_000))
    result = meter.result()
    assert result["gone_cpu_s"] == 0.0
    assert result["consumer_cpu_s"] >= 0.0
    assert {"consumer_cores", "machine_cores", "steal_cores", "other_cores"} <= set(result)
