"""Restoring a changelog partition yields to the event loop between slices of keys, so a large
state (1M cards: 250k keys a partition) cannot hold the loop past the group's session timeout."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumers import partition_session
from consumers.partition_session import RESTORE_SLICE_KEYS, restore_changelog
from rtml.settings import Settings

TP = TopicPartition("changelog", 0)


class FakeReader:
    """The changelog reader: ``n`` records, one per key, in one fetch."""

    def __init__(self, n: int) -> None:
        self.records = [SimpleNamespace(key=f"k{i}".encode(), value=b"v") for i in range(n)]
        self.read = False

    def assign(self, tps: list[TopicPartition]) -> None:
        assert tps == [TP]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: len(self.records)}

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.read = False

    async def position(self, tp: TopicPartition) -> int:
        return len(self.records) if self.read else 0

    async def getmany(self, tp: TopicPartition, timeout_ms: int) -> dict[Any, Any]:
        self.read = True
        return {TP: self.records}

    async def stop(self) -> None:
        pass


class Processor:
    def __init__(self) -> None:
        self.keys: list[bytes] = []

    def restore(self, key: bytes, value: bytes | None) -> None:
        self.keys.append(key)

    def finish_restore(self) -> Iterator[int]:
        yield len(self.keys)


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


async def test_a_large_restore_lets_the_loop_run_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 5 * RESTORE_SLICE_KEYS + 7
    reader = FakeReader(n)

    async def started(client: Any) -> Any:
        return reader

    monkeypatch.setattr(partition_session, "make_consumer", lambda *a, **k: None)
    monkeypatch.setattr(partition_session, "start_client", started)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    processor = Processor()
    restored, covers = await restore_changelog(Settings(), TP, processor)  # type: ignore[arg-type]
    done = True
    await task
    assert (restored, covers) == (n, None)
    assert len(processor.keys) == n
    assert ticks >= 5  # the loop ran at least once per slice
    assert gc.get_freeze_count() > 0  # restored state frozen as it came
