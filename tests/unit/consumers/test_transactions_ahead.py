"""Transactions begun ahead of their commit: a batch's transaction begins before the batch is
processed, with the partitions it will most likely write already added (the changelog's and
those the last transaction wrote), so its commit is one produce and the EndTxn. A batch that
fails before its commit aborts it; the commit and the group-offset transaction reuse it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumers.partition_session import ADD_AHEAD_DELAY_S, OutRecord, PartitionSession
from consumers.runner import ConsumerRunner
from rtml.settings import Settings

TOPIC = "transactions"
CHANGELOG = "g-transactions-changelog"


class BuilderDouble:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp: int, key: bytes | None, value: bytes | None) -> object:
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        pass

    def record_count(self) -> int:
        return len(self.records)


class TxnManagerDouble:
    def __init__(self) -> None:
        self.added: list[set[TopicPartition]] = []
        self.fatal = False

    def maybe_add_partition_to_txn(self, tp: TopicPartition) -> None:
        self.added[-1].add(tp)

    def is_fatal_error(self) -> bool:
        return self.fatal


class ProducerDouble:
    """A transactional producer: the calls in order, and the partitions sent to."""

    def __init__(self) -> None:
        self._txn_manager = TxnManagerDouble()
        self.calls: list[str] = []
        self.sent_to: list[TopicPartition] = []
        self.fail_sends = False

    async def begin_transaction(self) -> None:
        self.calls.append("begin")
        self._txn_manager.added.append(set())

    async def commit_transaction(self) -> None:
        self.calls.append("commit")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")

    def create_batch(self) -> BuilderDouble:
        return BuilderDouble()

    async def send_batch(self, builder: BuilderDouble, topic: str, *, partition: int) -> Any:
        if self.fail_sends:
            raise OSError("broker gone")
        self.sent_to.append(TopicPartition(topic, partition))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.calls.append("offsets")

    async def stop(self) -> None:
        self.calls.append("stop")


class ProcessorDouble:
    def drain_changelog(self) -> list[tuple[bytes, bytes | None]]:
        return [(b"card-1", b"state")]


def session(*, exactly_once: bool = True) -> PartitionSession:
    return PartitionSession(
        tp=TopicPartition(TOPIC, 3),
        producer=ProducerDouble(),  # type: ignore[arg-type]
        processor=ProcessorDouble(),  # type: ignore[arg-type]
        next_offset=0,
        changelog_topic=CHANGELOG,
        consumer=None,  # type: ignore[arg-type]
        exactly_once=exactly_once,
    )


async def added(s: PartitionSession) -> None:
    """Past the moment a transaction begun ahead adds its partitions."""
    await asyncio.sleep(ADD_AHEAD_DELAY_S * 3)


async def commit(s: PartitionSession, outputs: list[OutRecord], next_offset: int) -> None:
    s.snapshot(outputs, next_offset, {"scores": 8, "alerts": 1})
    await s.commit_snapshot("g")


async def test_the_commit_reuses_the_transaction_begun_ahead_with_the_guessed_partitions() -> None:
    s = session()
    producer: ProducerDouble = s.producer  # type: ignore[assignment]
    await s.begin_ahead()
    await s.begin_ahead()  # idempotent until the commit
    assert producer.calls == ["begin"]
    assert producer._txn_manager.added == [set()]  # not at once: the markers are being written
    await added(s)
    assert producer._txn_manager.added == [{TopicPartition(CHANGELOG, 3)}]

    outputs = [
        OutRecord("scores", None, b"s", 1, partition=3),
        OutRecord("alerts", None, b"a", 1, 0),
    ]
    await commit(s, outputs, 10)
    assert producer.calls == ["begin", "commit"]  # no second begin
    assert set(producer.sent_to) == {
        TopicPartition("scores", 3),
        TopicPartition("alerts", 0),
        TopicPartition(CHANGELOG, 3),
    }
    assert s.next_offset == 10

    # The next one guesses what the last one wrote.
    await s.begin_ahead()
    await added(s)
    assert producer._txn_manager.added[-1] == {
        TopicPartition("scores", 3),
        TopicPartition("alerts", 0),
        TopicPartition(CHANGELOG, 3),
    }
    await commit(s, [OutRecord("scores", None, b"s", 2, partition=3)], 11)
    await s.begin_ahead()
    await added(s)
    assert producer._txn_manager.added[-1] == {
        TopicPartition("scores", 3),
        TopicPartition(CHANGELOG, 3),
    }


async def test_a_commit_before_the_partitions_are_added_leaves_them_to_its_sends() -> None:
    s = session()
    producer: ProducerDouble = s.producer  # type: ignore[assignment]
    await s.begin_ahead()
    await commit(s, [OutRecord("scores", None, b"s", 1, partition=3)], 10)
    await asyncio.sleep(ADD_AHEAD_DELAY_S * 3)
    assert producer._txn_manager.added == [set()]  # the timer was cancelled
    assert producer.calls == ["begin", "commit"]
    assert TopicPartition(CHANGELOG, 3) in producer.sent_to


async def test_without_a_transaction_begun_ahead_the_commit_begins_its_own() -> None:
    s = session()
    producer: ProducerDouble = s.producer  # type: ignore[assignment]
    await commit(s, [], 5)
    await s.commit_group_offset("g")
    assert producer.calls == ["begin", "commit", "begin", "offsets", "commit"]
    assert s.group_offset == 5


async def test_an_aborted_transaction_begun_ahead_is_not_reused() -> None:
    s = session()
    producer: ProducerDouble = s.producer  # type: ignore[assignment]
    await s.begin_ahead()
    await s.abort_ahead()
    await s.abort_ahead()  # nothing left to abort
    await s.commit_group_offset("g")
    assert producer.calls == ["begin", "abort", "begin", "offsets", "commit"]


async def test_a_failed_send_aborts_unless_the_producer_is_fenced() -> None:
    s = session()
    producer: ProducerDouble = s.producer  # type: ignore[assignment]
    producer.fail_sends = True
    await s.begin_ahead()
    with pytest.raises(OSError):
        await commit(s, [], 5)
    assert producer.calls == ["begin", "abort"]
    assert s.next_offset == 0

    producer._txn_manager.fatal = True  # fenced: it can only be closed
    with pytest.raises(OSError):
        await commit(s, [], 5)
    assert producer.calls == ["begin", "abort", "begin"]


async def test_a_session_closed_with_a_transaction_begun_ahead_adds_nothing_after() -> None:
    s = session()
    producer: ProducerDouble = s.producer  # type: ignore[assignment]
    await s.begin_ahead()
    await s.close()
    await added(s)
    assert producer._txn_manager.added == [set()]
    assert producer.calls == ["begin", "stop"]


async def test_at_least_once_begins_nothing_ahead() -> None:
    s = session(exactly_once=False)
    await s.begin_ahead()
    assert s.producer.calls == []  # type: ignore[attr-defined]


class FailingPipeline:
    group_id = "g"
    input_topic = TOPIC
    changelog_topic = CHANGELOG

    async def process(self, batches: Any) -> Any:
        raise OSError("redis unreachable")


@pytest.mark.parametrize("overlap", [False, True])
async def test_a_batch_that_fails_in_process_aborts_its_transactions(overlap: bool) -> None:
    settings = Settings(rtml_overlap_commits=overlap)
    runner = ConsumerRunner(settings, FailingPipeline())  # type: ignore[arg-type]
    s = session()
    runner._sessions = {3: s}
    batch = SimpleNamespace(partition=3, processor=s.processor, records=[])
    with pytest.raises(OSError):
        await runner._process_and_commit(None, [batch], None, 0.0, 0.0)  # type: ignore[arg-type, list-item]
    # Overlapped commits begin nothing ahead (the previous batch may still be committing).
    assert s.producer.calls == ([] if overlap else ["begin", "abort"])  # type: ignore[attr-defined]
