"""How a model replica routes a call: at once when idle or full, through the batch queue when
other calls are in progress (``_ModelReplica._answer``; the forward pass and the queue are
stand-ins here, Serve's ``@serve.batch`` is exercised by the integration tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from serving.deployments import _ModelReplica
from serving.protocol import N_FRAUD_FEATURES, FraudScoreRequest


class _Metrics:
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def answered(self, outcome: str, latency_ms: float) -> None:
        self.outcomes.append(outcome)


class _Replica(_ModelReplica[Any]):
    """The routing of ``_answer`` with a forward pass that waits for ``release``."""

    def __init__(self) -> None:
        self._in_progress = 0
        self._metrics = _Metrics()  # type: ignore[assignment]
        self.release = asyncio.Event()
        self.routes: list[str] = []

    async def _forward(self, requests: list[Any]) -> list[Any]:
        self.routes.append("alone")
        await self.release.wait()
        return [len(r) for r in requests]

    async def batched(self, request: Any) -> Any:
        self.routes.append("queued")
        await self.release.wait()
        return len(request)

    async def call(self, rows: int) -> Any:
        request = FraudScoreRequest(np.zeros((rows, N_FRAUD_FEATURES), np.float32), None)
        return await self._answer(request, FraudScoreRequest, lambda v: 0, 64, self.batched)


async def test_an_idle_replica_runs_a_call_at_once_and_queues_the_calls_behind_it() -> None:
    replica = _Replica()
    first = asyncio.create_task(replica.call(3))
    await asyncio.sleep(0)
    second = asyncio.create_task(replica.call(5))
    full = asyncio.create_task(replica.call(64))
    await asyncio.sleep(0)
    assert replica.routes == ["alone", "queued", "alone"]  # the full one never waits
    replica.release.set()
    assert await asyncio.gather(first, second, full) == [3, 5, 64]
    assert replica._in_progress == 0
    await replica.call(2)  # idle again
    assert replica.routes[-1] == "alone"
    assert replica._metrics.outcomes == ["ok"] * 4


async def test_a_failed_call_leaves_the_replica_idle() -> None:
    replica = _Replica()

    async def broken(requests: list[Any]) -> list[Any]:
        raise RuntimeError("forward failed")

    replica._forward = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="forward failed"):
        await replica.call(3)
    assert replica._in_progress == 0
    assert replica._metrics.outcomes == ["error"]
