"""The /proc readers of the bench: processes found by their title, and CPU per group."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.procs import CpuMeter, pids_titled


def test_pids_titled_finds_processes_by_the_start_of_their_command_line() -> None:
    title = f"rtml-test-{os.getpid()}"  # argv[0], as Ray's setproctitle writes it
    child = subprocess.Popen(
        [title, "-c", "import time; time.sleep(30)"], executable=sys.executable
    )
    try:
        deadline = time.monotonic() + 10
        while child.pid not in pids_titled(title) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd
        assert pids_titled(title) == [child.pid]
        assert child.pid not in pids_titled("ray::ConsumerActor")
    finally:
        child.kill()
        child.wait()


def test_cpu_meter_counts_the_cpu_of_each_group() -> None:
    meter = CpuMeter({"me": [os.getpid()], "gone": [2**22 + 1]})
    meter.start()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    cpu = meter.result()
    assert cpu["me_cpu_s"] >= 0.1
    assert cpu["gone_cpu_s"] == 0.0
    assert cpu["machine_cores"] >= cpu["me_cores"] * 0.5
