"""Kafka clients for the consumer actors, built from settings.

The batched output path (``Outbox``, ``KeyPartitioner``) lives in ``rtml.kafka_batches``: the
producers' sink writes through it too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.producer import sender as aiokafka_sender

from rtml.settings import Settings

# Brokers accept batches up to message.max.bytes (1 MiB by default); stay under it.
MAX_BATCH_BYTES = 1_000_000

Client = TypeVar("Client", AIOKafkaConsumer, AIOKafkaProducer)


async def start_client(client: Client) -> Client:
    """Start an aiokafka client; one whose start fails (broker down, cancelled) is stopped.

    aiokafka leaves a client whose ``start()`` raised holding its connections, and warns when it
    is collected; a recovery that retries while the broker is down would leak one per try.
    """
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise
    return client


def make_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None,
    read_committed: bool = True,
    max_poll_records: int = 5_000,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits: offsets travel inside transactions or are explicit."""
    return AIOKafkaConsumer(
        *topics,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        max_poll_records=max_poll_records,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=300_000,
        # How long a rebalance waits for this member to rejoin. aiokafka defaults it to the
        # session timeout, but the member rejoins only after its rebalance listener returns,
        # which waits for the batch or the state restore in progress: past 10 s the member was
        # dropped, its partitions' next owner restored in turn, and the group never formed.
        # 300 s, like the Java client (max.poll.interval.ms); a dead member still leaves after
        # the session timeout.
        rebalance_timeout_ms=300_000,
        **(settings.kafka_client_kwargs() | overrides),
    )


def make_producer(
    settings: Settings, *, transactional_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """An idempotent producer; transactional when ``transactional_id`` is given."""
    kwargs: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": MAX_BATCH_BYTES,
        "compression_type": None,
        "transactional_id": transactional_id,
    }
    if transactional_id is not None:
        kwargs["transaction_timeout_ms"] = 60_000
        # A transaction that starts right after the previous one committed meets
        # CONCURRENT_TRANSACTIONS while the broker writes the markers (KAFKA-5477); aiokafka
        # then retries after retry_backoff_ms (100 by default) on several paths: that wait
        # lands on every record of the batch.
        kwargs["retry_backoff_ms"] = 20
        set_txn_retry_backoff(settings.kafka_txn_retry_backoff_ms)
    return AIOKafkaProducer(**(settings.kafka_client_kwargs() | kwargs | overrides))


def end_cancelled_fetches(consumer: AIOKafkaConsumer) -> None:
    """Undo what a cancelled ``getmany`` leaves in aiokafka's poll-liveness clock.

    aiokafka counts the ``getmany`` calls in flight (``SubscriptionState.fetch_context``) to
    measure how long the consumer has not polled: past ``max_poll_interval_ms`` the member
    leaves its group. The count is decremented after the ``yield`` of a generator context
    manager without ``try/finally``, so a ``getmany`` cancelled while it waited stays counted
    forever and the consumer looks busy polling even when its loop is stuck. Call this only
    when no ``getmany`` of ``consumer`` is in flight.
    """
    state = consumer._subscription
    if not hasattr(state, "_fetch_count") or not hasattr(state, "_last_fetch_ended"):
        raise RuntimeError(
            "aiokafka's SubscriptionState has no _fetch_count/_last_fetch_ended: check "
            "consumers.kafka_io.end_cancelled_fetches against the installed aiokafka"
        )
    if state._fetch_count:
        state._fetch_count = 0
        state._last_fetch_ended = time.monotonic()


def set_txn_retry_backoff(milliseconds: float) -> None:
    """The wait before aiokafka retries adding partitions to a new transaction that met
    CONCURRENT_TRANSACTIONS (the previous transaction's markers still being written).

    aiokafka fixes it at 20 ms (``BACKOFF_OVERRIDE``, process-wide), and the first add of every
    back-to-back transaction meets it: 20 ms on every batch, when the markers take 1 to 2 ms
    (measured: a one-record transaction takes 24 ms at 20, 4 ms at 2; see docs/benchmarks.md).
    """
    if not hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):
        raise RuntimeError(
            "aiokafka.producer.sender.BACKOFF_OVERRIDE is gone: this aiokafka version "
            "changed its transaction retry; review consumers/kafka_io.set_txn_retry_backoff"
        )
    aiokafka_sender.BACKOFF_OVERRIDE = milliseconds / 1000


def add_partitions_to_transaction(
    producer: AIOKafkaProducer, partitions: Iterable[TopicPartition]
) -> None:
    """Add ``partitions`` to the producer's open transaction now, before records are sent to
    them: the sender sends AddPartitionsToTxn at once (what a first send to a partition
    does), and the records sent later go out without it. aiokafka has no public call for it.
    """
    manager = producer._txn_manager
    if manager is None or not hasattr(manager, "maybe_add_partition_to_txn"):
        raise RuntimeError(
            "aiokafka's producer has no _txn_manager.maybe_add_partition_to_txn: check "
            "consumers.kafka_io.add_partitions_to_transaction against the installed aiokafka"
        )
    for tp in partitions:
        manager.maybe_add_partition_to_txn(tp)


def transaction_failed_fatally(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's transaction state is fatal (fenced...): it cannot abort, only
    close. What aiokafka's own ``transaction()`` context checks before aborting."""
    manager = producer._txn_manager
    return manager is not None and manager.is_fatal_error()
