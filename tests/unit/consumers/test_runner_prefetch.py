"""The runner's prefetch: records taken while a batch is processed are kept only for the session
they were taken under (a session that closed was followed by a seek: keeping them would skip or
repeat records)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from consumers.runner import ConsumerRunner
from rtml.settings import Settings

TOPIC = "transactions"


def record(partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


class FetcherDouble:
    """getmany returns the queued polls in order, then waits (as an idle fetcher does)."""

    def __init__(self, polls: list[dict[TopicPartition, list[ConsumerRecord]]]) -> None:
        self.polls = polls
        self.max_records: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.max_records.append(max_records)
        if self.polls:
            return self.polls.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def runner(max_poll_records: int) -> ConsumerRunner:
    pipeline = SimpleNamespace(group_id="g", input_topic=TOPIC, changelog_topic=None)
    return ConsumerRunner(Settings(), pipeline, max_poll_records=max_poll_records)  # type: ignore[arg-type]


async def test_prefetch_stops_at_max_poll_records_and_skips_partitions_it_does_not_own() -> None:
    r = runner(max_poll_records=5)
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    r._sessions = {0: object()}  # type: ignore[dict-item]
    fetcher = FetcherDouble(
        [
            {p0: [record(0, 0), record(0, 1)], p1: [record(1, 0)]},
            {p0: [record(0, 2), record(0, 3), record(0, 4)]},
            {p0: [record(0, 5)]},
        ]
    )
    await asyncio.wait_for(r._prefetch(fetcher), 5)  # type: ignore[arg-type]
    assert fetcher.max_records == [5, 3]  # stopped with 5 taken: the third poll is not taken
    taken = r._take_carry()
    assert [x.offset for x in taken[p0]] == [0, 1, 2, 3, 4]
    assert p1 not in taken  # no session: its next session seeks to its own offset
    assert r._take_carry() == {}


async def test_records_taken_under_a_closed_session_are_dropped() -> None:
    r = runner(max_poll_records=100)
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    first, kept = object(), object()
    r._sessions = {0: first, 1: kept}  # type: ignore[dict-item]
    fetcher = FetcherDouble([{p0: [record(0, 7)], p1: [record(1, 3)]}])
    task = asyncio.create_task(r._prefetch(fetcher))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait([task])
    r._sessions[0] = object()  # partition 0 was recovered or reassigned: reopened with a seek
    taken = r._take_carry()
    assert list(taken) == [p1]
    assert [x.offset for x in taken[p1]] == [3]


async def test_max_poll_records_comes_from_the_settings_unless_given() -> None:
    pipeline = SimpleNamespace(group_id="g", input_topic=TOPIC, changelog_topic=None)
    configured = ConsumerRunner(Settings(rtml_max_poll_records=7), pipeline)  # type: ignore[arg-type]
    configured._sessions = {0: object()}  # type: ignore[dict-item]
    fetcher = FetcherDouble([{TopicPartition(TOPIC, 0): [record(0, i) for i in range(7)]}])
    await asyncio.wait_for(configured._prefetch(fetcher), 5)  # type: ignore[arg-type]
    assert fetcher.max_records == [7]
    assert runner(max_poll_records=3)._max_poll_records == 3
    assert ConsumerRunner(Settings(), pipeline)._max_poll_records == 10_000  # type: ignore[arg-type]
