"""Client construction: the transactional retry wait on every batch; failed starts are closed."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.producer import sender

from consumers.kafka_io import make_consumer, make_producer, set_txn_retry_backoff, start_client
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
