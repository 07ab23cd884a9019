"""The fraud pipeline's per-partition online-store writes: all in flight together, a failure
raised once all have ended, the stage's wall time recorded, and abandoned writes cancelled."""

from __future__ import annotations

import asyncio

import pytest

from consumers.pipelines.fraud_features import StoreWrites
from monitoring.pipeline_metrics import BatchStats
from rtml.errors import ServiceUnavailable


class StoreDouble:
    """Records the writes; a write of a row whose entity is ``fail`` raises after a delay."""

    def __init__(self, delay: float = 0.01, fail: str | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.started: list[list[str]] = []
        self.finished: list[list[str]] = []
        self.cancelled = 0

    async def write(self, group: str, rows: list[tuple[str, int, bytes]]) -> int:
        entities = [e for e, _, _ in rows]
        self.started.append(entities)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail in entities:
            raise ServiceUnavailable("redis", "online store write failed: boom")
        self.finished.append(entities)
        return len(rows)


async def test_writes_run_together_and_the_stage_is_their_wall_time() -> None:
    store, stats = StoreDouble(delay=0.05), BatchStats()
    writes = StoreWrites(store, "fraud", stats)  # type: ignore[arg-type]
    writes.start([("a", 1, b"x")])
    writes.start([("b", 2, b"y")])
    await asyncio.sleep(0)
    assert store.started == [["a"], ["b"]]  # both in flight before either ends
    await writes.wait()
    assert sorted(store.finished) == [["a"], ["b"]]
    assert stats.store_written
    assert 0.04 < stats.stages["store_write"] < 0.5  # concurrent: about one delay, not two


async def test_a_failed_write_fails_the_batch_after_the_others_end() -> None:
    store, stats = StoreDouble(fail="b"), BatchStats()
    writes = StoreWrites(store, "fraud", stats)  # type: ignore[arg-type]
    for entity in ("a", "b", "c"):
        writes.start([(entity, 1, b"x")])
    with pytest.raises(ServiceUnavailable, match="boom"):
        await writes.wait()
    assert sorted(store.finished) == [["a"], ["c"]]


async def test_no_writes_wait_for_nothing() -> None:
    stats = BatchStats()
    await StoreWrites(StoreDouble(), "fraud", stats).wait()  # type: ignore[arg-type]
    assert not stats.store_written and "store_write" not in stats.stages


async def test_abandoned_writes_are_cancelled_and_settled() -> None:
    store = StoreDouble(delay=10.0)
    writes = StoreWrites(store, "fraud", BatchStats())  # type: ignore[arg-type]
    writes.start([("a", 1, b"x")])
    writes.start([("b", 1, b"x")])
    await asyncio.sleep(0)
    await asyncio.wait_for(writes.abandon(), 1.0)
    assert store.cancelled == 2 and store.finished == []
