"""The model fails under a running fraud pipeline: a poison input that makes it raise, a Serve
replica killed (SIGKILL) mid-request, a slow model (backpressure). Kafka, Redis and Ray are the
session's shared stack (nothing here restarts them); the model is a small Serve deployment
scripted for the faults, called through the real handle path (``ServeFraudScorer``)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from ray import serve

from consumers.scoring import ServeFraudScorer
from rtml.settings import Settings
from serving.protocol import FraudScoreRequest, FraudScoreResponse
from tests.integration.faults.harness import (
    AMOUNT,
    POISON_AMOUNT,
    AmountModel,
    FraudWorkload,
    report,
    rss_bytes,
    wait_for,
)

APP = f"faults-{uuid.uuid4().hex[:6]}"


@serve.deployment(name="FraudScorer", max_ongoing_requests=4)
class ScriptedScorer:
    """``sigmoid(amount - 5)``; raises ValueError on a row with POISON_AMOUNT; ``delay_s`` per
    call (set through ``user_config``) makes it slow."""

    def __init__(self) -> None:
        self._delay_s = 0.0

    def reconfigure(self, config: dict) -> None:
        self._delay_s = float(config.get("delay_s", 0.0))

    async def score(self, request: FraudScoreRequest) -> FraudScoreResponse:
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        amounts = request.rows[:, AMOUNT].astype(np.float64)
        if np.any(np.isclose(amounts, POISON_AMOUNT, rtol=0, atol=1e-4)):
            raise ValueError(f"cannot score amount {POISON_AMOUNT}")
        return FraudScoreResponse("scripted-1", 1.0 / (1.0 + np.exp(5.0 - amounts)), {})

    async def pid(self) -> int:
        return os.getpid()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deploy(delay_s: float) -> None:
    serve.run(
        ScriptedScorer.options(
            user_config={"delay_s": delay_s}, ray_actor_options={"num_cpus": 0.1}
        ).bind(),
        name=APP,
        route_prefix=None,
    )


@pytest.fixture(scope="module")
def scripted_app(ray_session: None) -> Iterator[str]:
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    deploy(0.0)
    try:
        yield APP
    finally:
        serve.delete(APP)
        serve.shutdown()


def settings_for(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"rtml_serve_app": APP})


async def run_to(runner, records: int, timeout_s: float = 120.0) -> None:
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(
            lambda: runner.stats.records >= records or task.done(), timeout_s, f"{records} records"
        )
        if task.done():
            task.result()
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)


async def test_poison_input_is_dead_lettered_not_retried_forever(
    scripted_app: str, stack_settings: Settings
) -> None:
    deploy(0.0)
    work = await FraudWorkload.create(
        settings_for(stack_settings), "poison", 2_000, seed=21, poison_every=400
    )
    scorer = ServeFraudScorer(APP)
    runner = work.runner(scorer, max_poll_records=500)
    await work.produce(0, 2_000)
    started = time.monotonic()
    await run_to(runner, 2_000, timeout_s=120)
    assert runner.stats.failures == 0, "a poison row must not fail (and retry) its batch"
    counts = runner.pipeline.stats()["dead_letters"]
    assert counts.get("processing_error") == 5
    report("poison x5", runner, processed=time.monotonic() - started)
    await work.check_exactly_once(2_000, poison=True)


async def test_serve_replica_killed_mid_request(
    scripted_app: str, stack_settings: Settings
) -> None:
    deploy(0.3)  # every call is in flight for 0.3 s: the kill lands mid-request
    work = await FraudWorkload.create(settings_for(stack_settings), "replica", 2_000, seed=22)
    runner = work.runner(ServeFraudScorer(APP), max_poll_records=100)
    await work.produce(0, 2_000)
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(lambda: runner.stats.records >= 200, 120, "the runner to start")
        handle = serve.get_deployment_handle("FraudScorer", APP)
        pid = await handle.pid.remote()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        batches = runner.stats.batches
        # The in-flight call either fails (the batch is aborted and retried from committed
        # state) or Serve retries it on the new replica: either way, exactly once.
        first = await wait_for(lambda: runner.stats.batches > batches, 120, "the first commit")
        await wait_for(lambda: runner.stats.records >= 2_000, 180, "every record")
        assert await handle.pid.remote() != pid, "Serve should have started a new replica"
        report(
            "serve replica SIGKILL", runner, first_commit=first, caught_up=time.monotonic() - killed
        )
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)
    await work.check_exactly_once(2_000)


async def test_slow_model_grows_lag_not_memory_and_recovers(stack_settings: Settings) -> None:
    """Backpressure: with a model 50x slower than the input, the lag grows in Kafka while the
    consumer holds at most about a poll batch plus the fetcher's buffer; when the model is fast
    again the lag drains to zero."""
    n, pad = 6_000, 8_000  # ~48 MB of input, far more than the consumer may hold
    work = await FraudWorkload.create(stack_settings, "slow", n, seed=23, pad_bytes=pad)
    model = AmountModel(delay_s=1.0)
    runner = work.runner(model, max_poll_records=100)
    task = asyncio.create_task(runner.run())
    try:
        await work.produce(0, 300)
        await wait_for(lambda: runner.stats.records >= 100, 60, "the runner to start")
        baseline = rss_bytes()
        await work.produce(300, n)
        peak = baseline

        def lagging() -> bool:
            nonlocal peak
            peak = max(peak, rss_bytes())
            return sum(runner.stats.lag.values()) >= n // 2

        await wait_for(lagging, 60, "the lag to grow")
        for _ in range(30):  # hold the slow phase a little: memory must stay flat
            peak = max(peak, rss_bytes())
            await asyncio.sleep(0.1)
        lag = sum(runner.stats.lag.values())
        model.delay_s = 0.0
        recovered = await wait_for(
            lambda: runner.stats.records >= n, 120, "the lag to drain after the model sped up"
        )
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)
    grown_mb = (peak - baseline) / 1e6
    backlog_mb = (n - 300) * pad / 1e6
    print(
        f"\nBACKPRESSURE lag={lag} records rss_growth={grown_mb:.1f}MB "
        f"backlog={backlog_mb:.0f}MB drained_in={recovered:.2f}s",
        flush=True,
    )
    assert grown_mb < backlog_mb / 2, "the consumer must not buffer the backlog in memory"
    await work.check_exactly_once(n)
