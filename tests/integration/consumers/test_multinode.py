"""The fraud pipeline on a real multi-node Ray cluster on this machine: a head and a worker
node (separate `ray start` processes, each advertising the `consumer` resource), consumer
actors spread over both, and the worker node killed (SIGKILL, every one of its processes)
mid-stream. The lost actor restarts on the head, its partitions are restored from their
changelogs, and every valid transaction still gets exactly one feature row (read_committed),
equal to the offline replay.

The cluster is private: free ports, its own --temp-dir, RAY_AUTH_MODE=disabled, and an
environment marker on every process it starts (Ray's workers inherit it from their raylet), so
teardown kills exactly these processes and never another engineer's Ray. The Ray driver is a
subprocess (multinode_driver.py): the pytest process keeps the session's local Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from infra.processes import free_port
from rtml.settings import Settings
from tests.integration.consumers.test_fraud_features_exactly_once import (
    check_rows,
    pipeline_settings,
    produce,
    profiles,
    read_committed,
    reference_rows,
    transactions,
)

ROOT = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("multinode_driver.py")
MARK = "RTML_TEST_RAY_CLUSTER"
PREFIX = b"@rtml-driver "  # multinode_driver.PREFIX
RAY = str(Path(sys.executable).with_name("ray"))
SOCKET_PATH_MAX = 107  # AF_UNIX
SOCKET_SUFFIX = "/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store"  # Ray's longest


def marked_pids(value: str) -> list[int]:
    """Processes whose environment holds ``MARK=value``: those this test started, and their
    descendants (a raylet's workers inherit its environment)."""
    needle = f"{MARK}={value}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def signal_marked(value: str, sig: signal.Signals) -> int:
    pids = marked_pids(value)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return len(pids)


class PrivateRayCluster:
    """`ray start --block` processes on free ports under one temp dir, each node marked."""

    def __init__(self, temp_dir: Path) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.temp_dir = temp_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._nodes: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, name: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        return os.environ | {
            MARK: f"{self.id}-{name}",
            "PYTHONPATH": path,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            # Declare a lost node dead within a few seconds (default: tens of seconds).
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }

    def start_node(self, name: str, *, head: bool, resources: dict[str, float]) -> None:
        common = [
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            f"--resources={json.dumps(resources)}",
            "--object-store-memory=100000000",
            f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
        ]
        if head:
            args = [
                "--head",
                f"--port={self.port}",
                f"--temp-dir={self.temp_dir}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-port={free_port()}",
                "--include-dashboard=false",
            ]
        else:
            args = [f"--address={self.address}"]
        log = (self.temp_dir.parent / f"{name}.log").open("ab")
        self._nodes[name] = subprocess.Popen(
            [RAY, "start", *args, *common],
            env=self.env(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def kill_node(self, name: str) -> None:
        """Node loss: SIGKILL every process of the node at once (raylet, agents, workers)."""
        assert signal_marked(f"{self.id}-{name}", signal.SIGKILL) > 0, f"{name} had no processes"
        self._nodes.pop(name).wait(timeout=30)

    def stop(self) -> None:
        """Graceful first (ray start's SIGTERM handler stops its node), then SIGKILL whatever
        of this cluster is left: never anything without our marker."""
        for process in self._nodes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self._nodes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for name in ("head", "worker", "driver"):
            signal_marked(f"{self.id}-{name}", signal.SIGKILL)
        for process in self._nodes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        left = [p for n in ("head", "worker", "driver") for p in marked_pids(f"{self.id}-{n}")]
        assert not left, f"processes of the test cluster survived: {left}"


@pytest.fixture
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRayCluster]:
    temp_dir = tmp_path_factory.mktemp("ray") / "t"
    if len(str(temp_dir) + SOCKET_SUFFIX) > SOCKET_PATH_MAX:
        pytest.fail(f"temp dir {temp_dir} is too long for Ray's sockets; set a shorter --basetemp")
    temp_dir.mkdir()
    cluster = PrivateRayCluster(temp_dir)
    try:
        cluster.start_node("head", head=True, resources={"consumer": 1})
        cluster.start_node("worker", head=False, resources={"consumer": 1})
        yield cluster
    finally:
        cluster.stop()


class Driver:
    """The multinode_driver.py subprocess: one JSON line per command."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, cluster: PrivateRayCluster, settings: Settings, actors: int) -> Driver:
        overrides = settings.model_dump(
            mode="json",
            include={
                "kafka_bootstrap_servers",
                "redis_url",
                "rtml_state_dir",
                "rtml_topics",
                "rtml_emit_feature_rows",
                "rtml_fraud_scoring",
                "rtml_delivery",
            },
        )
        log = (cluster.temp_dir.parent / "driver.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(DRIVER),
            cluster.address,
            json.dumps(overrides),
            str(actors),
            "2",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=cluster.env("driver"),
            cwd=ROOT,
        )
        log.close()
        return cls(process)

    async def read(self, timeout_s: float = 180.0) -> dict[str, Any]:
        """The driver's next message (Ray's own lines on its stdout are skipped)."""
        assert self._process.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = b""
            while not line.startswith(PREFIX):
                line = await self._process.stdout.readline()
                if not line:
                    code = await self._process.wait()
                    raise AssertionError(f"the driver exited ({code}); see driver.log")
        message = json.loads(line.removeprefix(PREFIX))
        assert message["event"] != "error", message
        return message

    async def command(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{command}\n".encode())
        await self._process.stdin.drain()
        return await self.read()

    async def wait_stats(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.command("stats")
            if message["event"] == "stats" and predicate(message):
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last: {message}")
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        assert (await self.command("stop"))["event"] == "stopped"
        assert await asyncio.wait_for(self._process.wait(), 60) == 0

    def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()


def processed(message: dict[str, Any]) -> int:
    return sum(s["records"] for s in message["stats"])


async def test_consumers_spread_over_nodes_lose_one_node_and_count_every_event_once(
    stack_settings: Settings,
    new_topic,
    producer: AIOKafkaProducer,
    ray_cluster: PrivateRayCluster,
) -> None:
    settings = await pipeline_settings(stack_settings, new_topic)
    topics = settings.rtml_topics
    await produce(producer, topics.user_profiles.name, profiles())
    records, _ = transactions(8_000, seed=4)
    await produce(producer, topics.transactions.name, records[:3_000])

    driver = await Driver.start(ray_cluster, settings, actors=2)
    try:
        started = await driver.read()
        head = next(n["id"] for n in started["nodes"] if n["head"])
        worker = next(n["id"] for n in started["nodes"] if not n["head"])

        before = await driver.wait_stats(
            lambda m: all(s["partitions"] for s in m["stats"]) and processed(m) >= 1_000,
            120,
            "both actors to own partitions and process",
        )
        # SPREAD placement over the nodes that advertise `consumer`: one actor on each.
        assert {s["node_id"] for s in before["stats"]} == {head, worker}
        lost_partitions = next(s["partitions"] for s in before["stats"] if s["node_id"] == worker)

        produce_rest = asyncio.create_task(
            produce(producer, topics.transactions.name, records[3_000:])
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(ray_cluster.kill_node, "worker")  # mid-batch, mid-transaction
        await produce_rest

        after = await driver.wait_stats(
            lambda m: (
                [n["id"] for n in m["nodes"]] == [head]
                and all(s["node_id"] == head for s in m["stats"])
                and set(lost_partitions) <= {p for s in m["stats"] for p in s["partitions"]}
            ),
            180,
            "the lost actor to restart on the head and its partitions to be reassigned",
        )
        assert len(after["stats"]) == 2

        reference = await reference_rows(settings)
        feature_records = await read_committed(settings, topics.fraud_features.name, len(reference))
        check_rows(feature_records, reference)
        await driver.stop()
    finally:
        driver.kill()
