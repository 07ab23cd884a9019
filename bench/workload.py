"""The data the throughput scenarios read: synthetic transactions pre-produced to Kafka.

``prepare_transactions`` creates a scenario's topics (every rtml topic renamed
``<prefix>.<name>``, the input with ``partitions`` partitions) and produces a historical window
of the synthetic world with ``producers.runner.produce_history``, as fast as the broker takes
it: transactions only (no user events), each user's profile before its first transaction.
The window is sized from the users' daily rate and the run stops sending at exactly
``transactions`` transactions, so the same options give the same records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.environment import OffsetReader, create_topics, scenario_topics
from producers.config import GeneratorConfig
from producers.kafka_sink import KafkaSink
from producers.records import Record, Stream
from producers.runner import Window, produce_history
from rtml.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransactionsWorkload:
    settings: Settings  # the stack's settings with this workload's topics
    topic: str
    partitions: int
    ends: dict[int, int]  # end offset per input partition once produced
    users: int
    profiles: int
    produce_seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        return sum(self.ends.values())


def generator_config(users: int, seed: int) -> GeneratorConfig:
    """Transactions only: the fraud stage never reads user events."""
    return GeneratorConfig(seed=seed, users=users, sessions_per_user_day=0.0)


def window_for(transactions: int, config: GeneratorConfig) -> Window:
    """A window ending at the fixed epoch with at least ``transactions`` transactions.

    Users pay ``txns_per_user_day`` times a day on average, but a window that is not whole
    days sees more (it covers the busy evening first): sized on the average, it is long enough.
    """
    days = transactions / (config.users * config.txns_per_user_day)
    return Window.last_days(max(days, 1 / 24))


class _CappedSink(KafkaSink):
    """Sends records until ``cap`` transactions went out, then drops the rest (the profiles of
    users who would only pay later are of no use)."""

    def __init__(self, settings: Settings, cap: int) -> None:
        super().__init__(settings)
        self.cap = cap
        self.transactions = 0

    async def send(self, records: Sequence[Record]) -> None:
        if self.transactions >= self.cap:
            return
        kept = []
        for record in records:
            kept.append(record)
            if record.stream is Stream.TRANSACTIONS:
                self.transactions += 1
                if self.transactions >= self.cap:
                    break
        await super().send(kept)


async def prepare_transactions(
    settings: Settings,
    *,
    prefix: str,
    transactions: int,
    users: int,
    partitions: int,
    seed: int,
    say: Callable[[str], None],
) -> TransactionsWorkload:
    topics = scenario_topics(prefix, partitions)
    settings = settings.model_copy(update={"rtml_topics": topics})
    topic = topics.transactions.name
    async with OffsetReader(settings) as offsets:
        await create_topics(settings, topics.all())
        ends = await offsets.end_offsets(topic, partitions)
    if sum(ends.values()) >= transactions:  # a kept stack (--state-dir) has them already
        say(f"reusing {sum(ends.values()):,} transactions in {topic}")
        return TransactionsWorkload(settings, topic, partitions, ends, users, -1, 0.0)
    config = generator_config(users, seed)
    say(
        f"producing {transactions:,} transactions of {users:,} users "
        f"({partitions} partitions) to {topic}"
    )
    sink = _CappedSink(settings, transactions)
    started = time.perf_counter()
    summary = await produce_history(settings, config, window_for(transactions, config), sink=sink)
    elapsed = time.perf_counter() - started
    if summary.failed:
        from rtml.errors import ServiceError

        raise ServiceError("kafka", f"producing the workload failed: {summary.first_error}")
    async with OffsetReader(settings) as offsets:
        ends = await offsets.end_offsets(topic, partitions)
    profiles = summary.records.get(topics.user_profiles.name, 0)
    say(
        f"produced {sum(ends.values()):,} transactions and {profiles:,} profiles in "
        f"{elapsed:.1f} s ({summary.total / elapsed:,.0f} records/s)"
    )
    return TransactionsWorkload(
        settings,
        topic,
        partitions,
        ends,
        users,
        profiles,
        elapsed,
        info={"generator_seed": seed},
    )
