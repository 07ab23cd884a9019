"""The Ray driver of test_multinode.py, run as its own process so that it can join the test's
private multi-node cluster while the pytest process keeps its session-wide local Ray.

    python multinode_driver.py HEAD_ADDRESS SETTINGS_JSON ACTORS NODES

Waits for NODES live nodes, starts ACTORS fraud consumer actors (``ConsumerGroup``, placement
from the settings) and then answers one command per stdin line with one line on stdout,
``PREFIX`` + JSON: ``stats`` (each actor's runner stats and node, and the cluster's live
nodes) and ``stop`` (graceful stop, then exit). Ray prints lines of its own there too (a lost
raylet, say); the prefix tells them apart.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from consumers.actors import ConsumerGroup
from rtml.settings import load_settings

PREFIX = "@rtml-driver "


def emit(message: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(message, default=str), flush=True)


def alive_nodes() -> list[dict[str, Any]]:
    return [
        {"id": node["NodeID"], "head": "node:__internal_head__" in node["Resources"]}
        for node in ray.nodes()
        if node["Alive"]
    ]


def main() -> int:
    address, overrides = sys.argv[1], json.loads(sys.argv[2])
    actors, nodes = int(sys.argv[3]), int(sys.argv[4])
    settings = load_settings(**overrides)
    ray.init(
        address=address,
        _node_ip_address="127.0.0.1",
        namespace="rtml-multinode-test",
        log_to_driver=False,
        configure_logging=False,
    )
    deadline = time.monotonic() + 120
    while len(alive_nodes()) < nodes:
        if time.monotonic() > deadline:
            emit({"event": "error", "error": f"{len(alive_nodes())} of {nodes} nodes joined"})
            return 1
        time.sleep(0.5)
    group = ConsumerGroup(settings, "fraud", runner_options={"max_poll_records": 300})
    group.scale(actors)
    emit({"event": "started", "nodes": alive_nodes()})
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            try:
                emit({"event": "stats", "stats": group.stats(), "nodes": alive_nodes()})
            except (GetTimeoutError, RayError) as exc:  # an actor restarting on another node
                emit({"event": "unavailable", "error": repr(exc)})
        elif command == "stop":
            group.stop()
            emit({"event": "stopped"})
            break
        else:
            emit({"event": "error", "error": f"unknown command {command!r}"})
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
