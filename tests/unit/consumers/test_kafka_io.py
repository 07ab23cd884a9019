"""Client construction: the transactional retry wait that lands on every batch."""

from __future__ import annotations

from aiokafka.producer import sender

from consumers.kafka_io import make_producer, set_txn_retry_backoff
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
