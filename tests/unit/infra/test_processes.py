"""Pid files, liveness, detached starts, stops and ports (local processes only, no services)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import processes
from rtml.errors import ConfigError

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)",
]


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(SLEEPER)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9092", "127.0.0.1", 9092),
        ("localhost:1", "localhost", 1),
        ("[::1]:6379", "::1", 6379),
        (" kafka.internal:65535 ", "kafka.internal", 65535),
    ],
)
def test_parse_host_port(text: str, host: str, port: int) -> None:
    parsed = processes.parse_host_port(text)
    assert (parsed.host, parsed.port) == (host, port)


@pytest.mark.parametrize("text", ["9092", "host:", ":9092", "host:0", "host:65536", "host:x"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        processes.parse_host_port(text)


def test_host_port_str_brackets_ipv6() -> None:
    assert str(processes.HostPort("::1", 9092)) == "[::1]:9092"
    assert str(processes.HostPort("127.0.0.1", 9092)) == "127.0.0.1:9092"


def test_pid_file_round_trip(tmp_path: Path) -> None:
    pid_file = tmp_path / "sub" / "x.pid"
    assert processes.read_pid(pid_file) is None
    processes.write_pid(pid_file, 4242)
    assert pid_file.read_text() == "4242\n"
    assert processes.read_pid(pid_file) == 4242
    assert not list(pid_file.parent.glob("*.partial"))
    processes.remove_pid(pid_file)
    processes.remove_pid(pid_file)  # idempotent
    assert not pid_file.exists()


@pytest.mark.parametrize("content", ["", "abc", "-5", "0", "12 34", "\x00"])
def test_read_pid_of_garbage_is_none(tmp_path: Path, content: str) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(content)
    assert processes.read_pid(pid_file) is None


def test_pid_alive_and_zombie(child: subprocess.Popen[bytes]) -> None:
    assert processes.pid_alive(child.pid)
    child.kill()
    # Not reaped yet: a zombie, which must count as dead.
    assert processes.wait_until(lambda: not processes.pid_alive(child.pid), 5)


def test_live_pid_keeps_ours_and_drops_stale(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    pid_file = tmp_path / "svc.pid"
    processes.write_pid(pid_file, child.pid)
    assert processes.live_pid(pid_file, ["time.sleep(60)"]) == child.pid

    # A live process that is not the service (pid recycled): stale, file removed, not touched.
    assert processes.live_pid(pid_file, ["kafka.Kafka"]) is None
    assert not pid_file.exists()
    assert child.poll() is None

    child.kill()
    child.wait()
    processes.write_pid(pid_file, child.pid)
    assert processes.live_pid(pid_file, []) is None  # dead
    assert not pid_file.exists()

    pid_file.write_text("garbage")
    assert processes.live_pid(pid_file, []) is None
    assert not pid_file.exists()


def test_command_line_of_self() -> None:
    cmdline = processes.command_line(os.getpid())
    assert cmdline is not None and "python" in cmdline.lower()


def test_stop_process_terminates(child: subprocess.Popen[bytes]) -> None:
    assert processes.stop_process(child.pid, timeout_s=5) is True
    assert child.wait(timeout=1) == -signal.SIGTERM


def test_stop_process_kills_after_timeout() -> None:
    proc = subprocess.Popen(STUBBORN, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        started = time.monotonic()
        assert processes.stop_process(proc.pid, timeout_s=0.5) is False
        assert time.monotonic() - started < 5
        assert proc.wait(timeout=1) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_stop_process_of_a_gone_pid_is_fine(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()
    assert processes.stop_process(child.pid, timeout_s=1) is True


def test_start_detached_runs_outside_our_process_tree(tmp_path: Path) -> None:
    log_path, pid_file = tmp_path / "logs" / "out.log", tmp_path / "svc.pid"
    pid = processes.start_detached(
        [sys.executable, "-c", "import os, time; print('hello', os.getsid(0)); time.sleep(60)"],
        log_path=log_path,
        pid_file=pid_file,
        cwd=tmp_path,
    )
    try:
        assert processes.read_pid(pid_file) == pid
        assert processes.wait_until(lambda: "hello" in log_path.read_text(), 10)
        assert log_path.read_text().split() == ["hello", str(pid)]  # its own session
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # not our child: nothing for us to reap
    finally:
        assert processes.stop_process(pid, timeout_s=5)
    assert not processes.pid_alive(pid)


def test_start_detached_reports_an_exec_failure_in_the_log(tmp_path: Path) -> None:
    log_path = tmp_path / "out.log"
    processes.start_detached(
        [str(tmp_path / "no-such-binary")], log_path=log_path, pid_file=tmp_path / "x.pid"
    )
    assert processes.wait_until(lambda: "cannot run" in log_path.read_text(), 5)


def test_port_in_use_and_accepts() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert processes.port_in_use("127.0.0.1", port)  # bound, not listening
        assert not processes.port_accepts("127.0.0.1", port, 0.2)
        server.listen(1)
        assert processes.port_in_use("127.0.0.1", port)
        assert processes.port_accepts("127.0.0.1", port, 0.5)
    assert not processes.port_in_use("127.0.0.1", port)


def test_free_port_is_bindable() -> None:
    port = processes.free_port()
    assert 0 < port < 65536
    assert not processes.port_in_use("127.0.0.1", port)


def test_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    assert processes.tail(path) == ""
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert processes.tail(path, 3) == "line 97\nline 98\nline 99"


def test_wait_until_times_out() -> None:
    started = time.monotonic()
    assert processes.wait_until(lambda: False, 0.2, 0.05) is False
    assert 0.2 <= time.monotonic() - started < 2


def test_file_lock_is_reentrant_across_calls(tmp_path: Path) -> None:
    lock = tmp_path / "dir" / ".lock"
    with processes.file_lock(lock):
        assert lock.exists()
    with processes.file_lock(lock):
        pass
