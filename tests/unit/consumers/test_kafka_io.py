"""Client construction: the transactional retry wait on every batch; failed starts are closed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.producer import sender

from consumers.kafka_io import (
    end_cancelled_fetches,
    make_consumer,
    make_producer,
    set_txn_retry_backoff,
    start_client,
)
from rtml.settings import Settings


async def test_transactional_producers_shorten_aiokafkas_concurrent_transactions_wait() -> None:
    original = sender.BACKOFF_OVERRIDE
    try:
        await make_producer(Settings(kafka_txn_retry_backoff_ms=3.0), transactional_id="t").stop()
        assert sender.BACKOFF_OVERRIDE == 0.003
        set_txn_retry_backoff(20.0)
        assert sender.BACKOFF_OVERRIDE == 0.02
        # A plain producer leaves it alone.
        await make_producer(Settings(kafka_txn_retry_backoff_ms=7.0)).stop()
        assert sender.BACKOFF_OVERRIDE == 0.02
    finally:
        sender.BACKOFF_OVERRIDE = original


async def test_a_client_whose_start_fails_is_stopped() -> None:
    # Port 9 (discard) on localhost refuses the connection: bootstrap fails at once.
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9")
    producer = make_producer(settings, request_timeout_ms=1_000)
    with pytest.raises(KafkaConnectionError):
        await start_client(producer)
    assert producer._closed is True  # no "Unclosed AIOKafkaProducer" when it is collected
    consumer = make_consumer(settings, group_id=None, request_timeout_ms=1_000)
    with pytest.raises(KafkaConnectionError):
        await start_client(consumer)
    assert consumer._closed is True


async def test_a_cancelled_getmany_no_longer_counts_as_polling() -> None:
    consumer = make_consumer(Settings(), group_id=None)
    state = consumer._subscription

    async def getmany_waiting() -> None:  # what getmany does around its wait for records
        with state.fetch_context():
            await asyncio.sleep(10)

    try:
        task = asyncio.create_task(getmany_waiting())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task])
        # aiokafka's own behaviour: the cancelled call stays counted, so the consumer never
        # looks idle and max_poll_interval_ms cannot fire (remove the repair once it is fixed).
        assert state._fetch_count == 1 and state.fetcher_idle_time == 0
        end_cancelled_fetches(consumer)
        assert state._fetch_count == 0
        await asyncio.sleep(0.01)
        assert state.fetcher_idle_time > 0
    finally:
        await consumer.stop()
