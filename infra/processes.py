"""Local processes of the stack: pid files, detached starts, liveness, stops and port probes.

Everything here is synchronous on purpose: it is called from the ``rtml infra`` commands (and
from tests through ``asyncio.to_thread``), never from an event loop.

A process counts as ours only when its pid file in our state dir names a live process whose
command line still carries the marks we expect (``kafka.Kafka`` and our ``server.properties``;
``redis-server`` and our port). A pid that was recycled by an unrelated process is treated as
stale: we never signal a process we did not start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rtml.errors import ConfigError

log = logging.getLogger(__name__)

# Runs in a tiny, single-threaded interpreter: forks the service into its own session and exits
# at once, so the service is re-parented to init and never becomes a zombie of the caller (a
# pytest session, say). Prints the service's pid on stdout.
_LAUNCHER = r"""
import os, sys
log_path, argv = sys.argv[1], sys.argv[2:]
out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
null = os.open(os.devnull, os.O_RDONLY)
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"rtml launcher: cannot run {argv[0]}: {exc}\n".encode())
    os._exit(127)
print(pid, flush=True)
"""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(value: str) -> HostPort:
    """``"127.0.0.1:9092"``, ``"localhost:9092"`` or ``"[::1]:9092"`` -> HostPort."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{value!r} is not host:port with a port in 1..65535")
    return HostPort(host, int(port))


# --- pid files ---------------------------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The pid in a pid file; None when the file is missing, empty or not a positive integer."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(path: Path, pid: int) -> None:
    """Write a pid file atomically (a reader never sees a half-written pid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{pid}\n", encoding="ascii")
    partial.replace(path)


def remove_pid(path: Path) -> None:
    path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a running process (a zombie that only waits to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return _proc_state(pid) not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None  # no procfs (macOS) or just exited
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    rest = stat.rpartition(")")[2].split()
    return rest[0] if rest else None


def command_line(pid: int) -> str | None:
    """The process's command line joined by spaces, or None where procfs cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace").strip()


def is_our_process(pid: int, marks: Sequence[str]) -> bool:
    """Alive, and its command line contains every mark (liveness alone where procfs is absent)."""
    if not pid_alive(pid):
        return False
    cmdline = command_line(pid)
    if cmdline is None:
        return True
    return all(mark in cmdline for mark in marks)


def live_pid(pid_file: Path, marks: Sequence[str]) -> int | None:
    """The pid from ``pid_file`` if that process is ours and running; removes a stale file."""
    pid = read_pid(pid_file)
    if pid is None:
        if pid_file.exists():
            log.warning("removing unreadable pid file %s", pid_file)
            remove_pid(pid_file)
        return None
    if is_our_process(pid, marks):
        return pid
    log.info("removing stale pid file %s (pid %d is gone or is not ours)", pid_file, pid)
    remove_pid(pid_file)
    return None


# --- starting and stopping ---------------------------------------------------------------------


def start_detached(
    argv: Sequence[str], *, log_path: Path, pid_file: Path, cwd: Path | None = None
) -> int:
    """Start ``argv`` in its own session, stdout and stderr appended to ``log_path``.

    Returns its pid, also written to ``pid_file``. The process is not our child: it outlives us
    and is reaped by init.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    launched = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(log_path), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    pid_text = launched.stdout.strip()
    if launched.returncode != 0 or not pid_text.isdigit():
        raise OSError(f"could not launch {argv[0]}: {launched.stderr.strip() or pid_text}")
    pid = int(pid_text)
    write_pid(pid_file, pid)
    return pid


def stop_process(
    pid: int,
    *,
    timeout_s: float = 30.0,
    kill_timeout_s: float = 10.0,
    sig: signal.Signals = signal.SIGTERM,
) -> bool:
    """Send ``sig``, wait up to ``timeout_s`` for the exit, then SIGKILL.

    Returns True on a clean exit, False when SIGKILL was needed.
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    if wait_until(lambda: _gone(pid), timeout_s):
        return True
    log.warning("pid %d did not exit %.0f s after %s; sending SIGKILL", pid, timeout_s, sig.name)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: _gone(pid), kill_timeout_s):
        raise OSError(f"pid {pid} survived SIGKILL for {kill_timeout_s:.0f} s")
    return False


def _gone(pid: int) -> bool:
    # A child of ours that exited stays a zombie until its owner reaps it; pid_alive counts
    # zombies as gone, so we never reap a process behind its owner's back (Popen, say).
    return not pid_alive(pid)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


# --- ports -------------------------------------------------------------------------------------


def port_in_use(host: str, port: int) -> bool:
    """True when a server could not bind ``host:port`` now (someone holds it).

    Binds with SO_REUSEADDR, as Kafka and Redis do, so connections lingering in TIME_WAIT after a
    restart do not count as "in use".
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (for tests and fallbacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- files -------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (two ``up``s never race on one dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a (log) file; empty when it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])
