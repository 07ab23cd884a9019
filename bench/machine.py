"""What the numbers were measured on: CPU, cores, memory, versions, the git commit.

Linux facts come from /proc; a fact that cannot be read is left out rather than guessed.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rtml.settings import KAFKA_VERSION

PACKAGES = ("ray", "aiokafka", "redis", "msgspec", "numpy", "pydantic")


def describe_machine(repo: Path | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions(),
    }
    info |= git_state(repo or Path.cwd())
    return info


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["kafka"] = KAFKA_VERSION
    redis_server = _command_output(["redis-server", "--version"])
    if redis_server:
        # "Redis server v=7.0.15 sha=... malloc=jemalloc-5.3.0 bits=64 build=..."
        for part in redis_server.split():
            if part.startswith("v="):
                out["redis-server"] = part[2:]
    java = _command_output(["java", "-version"], stderr=True)
    if java:
        out["java"] = java.splitlines()[0].replace('"', "")
    return out


def git_state(repo: Path) -> dict[str, Any]:
    commit = _command_output(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if not commit:
        return {"git_commit": None, "git_dirty": None}
    status = _command_output(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"]
    )
    return {"git_commit": commit.strip(), "git_dirty": bool(status and status.strip())}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        return None
    return None


def _command_output(argv: list[str], *, stderr: bool = False) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stderr if stderr else done.stdout
