"""The runner's advisory group offsets: the offsets a restart resumes from travel in the
changelog transactions, so the consumer group's are committed in the background at most once
per interval, for the assigned partitions whose offset moved, and once more when it stops or
loses partitions (through a transaction: it needs no group generation); a failed commit is
retried at the next interval."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from consumers.partition_session import PartitionSession
from consumers.runner import ConsumerRunner
from rtml.settings import Settings

TOPIC = "transactions"


class CommitterDouble:
    """What the runner uses of the consumer here: its assignment and ``commit``."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = False

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise CommitFailedError("rebalance in progress")
        self.commits.append(dict(offsets))


class TransactionsDouble:
    """The session's transactional producer: offsets sent to a transaction, by group."""

    _txn_manager = None

    def __init__(self) -> None:
        self.sent: list[tuple[dict[TopicPartition, int], str]] = []
        self.transactions: list[str] = []

    async def begin_transaction(self) -> None:
        self.transactions.append("begin")

    async def commit_transaction(self) -> None:
        self.transactions.append("commit")

    async def abort_transaction(self) -> None:
        self.transactions.append("abort")

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self.sent.append((dict(offsets), group_id))

    async def stop(self) -> None:
        pass


def session(partition: int, next_offset: int, group_offset: int | None) -> PartitionSession:
    return PartitionSession(
        tp=TopicPartition(TOPIC, partition),
        producer=TransactionsDouble(),  # type: ignore[arg-type]
        processor=None,  # type: ignore[arg-type]
        next_offset=next_offset,
        changelog_topic="changelog",
        consumer=None,  # type: ignore[arg-type]
        group_offset=group_offset,
    )


def runner(interval_s: float) -> ConsumerRunner:
    pipeline = SimpleNamespace(group_id="g", input_topic=TOPIC, changelog_topic="changelog")
    settings = Settings(rtml_group_offset_commit_interval_s=interval_s)
    return ConsumerRunner(settings, pipeline)  # type: ignore[arg-type]


async def settle(r: ConsumerRunner) -> None:
    if r._advice is not None:
        await asyncio.wait_for(r._advice, 5)


async def test_commits_moved_offsets_of_assigned_partitions_once_per_interval() -> None:
    r = runner(interval_s=300.0)
    moved, unmoved, revoked = session(0, 40, 10), session(1, 7, 7), session(2, 9, None)
    r._sessions = {0: moved, 1: unmoved, 2: revoked}
    consumer: Any = CommitterDouble({moved.tp, unmoved.tp})

    await r._advise_group_offsets(consumer)
    await settle(r)
    assert consumer.commits == [{moved.tp: 40}]
    assert moved.group_offset == 40 and moved.group_offset_due() is None

    moved.next_offset = 55  # a later batch committed: not before the interval has passed
    await r._advise_group_offsets(consumer)
    await settle(r)
    assert consumer.commits == [{moved.tp: 40}]

    # The member stops: at once, in a transaction (no group generation needed: the group may
    # be rebalancing because another member left first).
    await r._advise_group_offsets(consumer, final=True)
    assert consumer.commits == [{moved.tp: 40}]
    assert moved.producer.sent == [({moved.tp: 55}, "g")]  # type: ignore[attr-defined]
    assert moved.producer.transactions == ["begin", "commit"]  # type: ignore[attr-defined]
    assert moved.group_offset == 55
    assert unmoved.producer.sent == revoked.producer.sent == []  # type: ignore[attr-defined]


async def test_a_failed_commit_is_retried_at_the_next_interval() -> None:
    r = runner(interval_s=0.05)
    s = session(0, 12, None)
    r._sessions = {0: s}
    consumer: Any = CommitterDouble({s.tp})
    consumer.fail = True

    await r._advise_group_offsets(consumer)
    await settle(r)  # logged, not raised: the group's offsets are advisory
    assert consumer.commits == [] and s.group_offset_due() == 12

    consumer.fail = False
    await asyncio.sleep(0.06)
    await r._advise_group_offsets(consumer)
    await settle(r)
    assert consumer.commits == [{s.tp: 12}] and s.group_offset == 12


async def test_revoked_partitions_commit_their_offsets_before_they_go() -> None:
    """A rebalance takes partitions away: their offsets go to the group first, in their own
    transactions (a member that then stops mid-restore would leave them behind otherwise)."""
    r = runner(interval_s=300.0)
    moved, kept, synced = session(0, 40, 10), session(1, 8, 3), session(2, 9, 9)
    r._sessions = {0: moved, 1: kept, 2: synced}
    r._assigned = {0, 1, 2}

    await r.on_partitions_revoked([moved.tp, synced.tp])

    assert moved.producer.sent == [({moved.tp: 40}, "g")]  # type: ignore[attr-defined]
    assert synced.producer.sent == kept.producer.sent == []  # type: ignore[attr-defined]
    assert set(r._sessions) == {1} and r._assigned == {1}
