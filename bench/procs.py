"""Process and machine counters from Linux's /proc: RSS, CPU time per process, machine load.

Measured CPU tells what a wall-clock rate cannot on a shared 2-core machine: how many cores the
consumer actually got, how much the broker and Redis took, and how much went to other jobs.
Every reader returns None (or skips the process) when /proc does not have the answer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid``; None when it is gone or /proc is unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used (all its threads), with those of its children
    that ended and were waited for (Redis's AOF rewrites run in a forked child)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing ")" do not.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        # utime, stime, cutime, cstime (fields 14 - 17)
        return sum(int(f) for f in fields[11:15]) / _TICKS
    except (IndexError, ValueError):
        return None


def pids_titled(prefix: str) -> list[int]:
    """Processes whose command line starts with ``prefix``: Ray's workers are titled by what
    they run (``ray::ConsumerActor``, ``ray::ServeReplica:<app>:<deployment>``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(prefix.encode()):
            found.append(int(entry.name))
    return sorted(found)


@dataclass(frozen=True)
class MachineTimes:
    busy: float  # CPU seconds spent on anything but idle/iowait, all cores together
    steal: float  # stolen by the hypervisor

    @classmethod
    def read(cls) -> MachineTimes | None:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if first[0] != "cpu":
            return None
        values = [int(v) for v in first[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
        busy = user + nice + system + irq + softirq
        return cls(busy / _TICKS, steal / _TICKS)


class CpuMeter:
    """CPU used by named groups of processes, and by the whole machine, between two reads.

    ``result()`` gives cores (CPU seconds / wall seconds) per group, the machine's busy and
    stolen cores, and ``other_cores``: busy cores no tracked group explains (other jobs, Ray's
    own daemons, the kernel).
    """

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self._groups = {name: sorted(set(pids)) for name, pids in groups.items()}
        self._start: dict[int, float] = {}
        self._machine: MachineTimes | None = None
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine = MachineTimes.read()
        self._start = {}
        for pids in self._groups.values():
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    self._start[pid] = seconds

    def result(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        if elapsed <= 0:
            return {}
        out: dict[str, float] = {}
        tracked = 0.0
        for name, pids in self._groups.items():
            used = 0.0
            for pid in pids:
                now = cpu_seconds(pid)
                if now is not None and pid in self._start:
                    used += now - self._start[pid]
            out[f"{name}_cpu_s"] = used
            out[f"{name}_cores"] = used / elapsed
            tracked += used
        machine = MachineTimes.read()
        if machine is not None and self._machine is not None:
            busy = machine.busy - self._machine.busy
            out["machine_cores"] = busy / elapsed
            out["steal_cores"] = (machine.steal - self._machine.steal) / elapsed
            out["other_cores"] = max(0.0, busy - tracked) / elapsed
        return out
