"""`rtml produce` on the real broker: live at a rate into per-test topics, then read back."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from aiokafka import ConsumerRecord

from contracts.codec import EventDecoder, now_ms
from contracts.events import FraudLabel, Transaction, UserEvent, UserProfile
from features.partitioner import partition_for_key
from infra import processes
from producers.config import GeneratorConfig
from producers.pacing import PacingSchedule
from producers.records import Stream
from producers.runner import EPOCH_MS, produce_live
from producers.stream import EventGenerator, LiveTimeline
from rtml.errors import InvalidEvent, ServiceUnavailable
from rtml.settings import Settings, Topics, TopicSpec

NewTopic = Callable[..., Awaitable[str]]
ReadTopic = Callable[..., Awaitable[list[ConsumerRecord]]]

CONFIG = GeneratorConfig(
    seed=21,
    users=800,
    merchants=1_000,
    items=1_000,
    fraud_rate=0.05,
    malformed_fraction=0.02,
    out_of_order_fraction=0.05,
    late_fraction=0.01,
    profile_delete_rate=0.2,  # the stream is compressed: some tombstones within 3000 records
)
COUNT = 3_000
RATE = 1_000.0
EVENT_TYPES = {
    Stream.TRANSACTIONS: Transaction,
    Stream.USER_EVENTS: UserEvent,
    Stream.USER_PROFILES: UserProfile,
}


async def _test_settings(stack_settings: Settings, new_topic: NewTopic) -> Settings:
    topics = Topics(
        transactions=TopicSpec(name=await new_topic(partitions=3), partitions=3),
        user_events=TopicSpec(name=await new_topic(partitions=3), partitions=3),
        user_profiles=TopicSpec(
            name=await new_topic(partitions=1, config={"cleanup.policy": "compact"})
        ),
        fraud_labels=TopicSpec(name=await new_topic(partitions=1)),
    )
    return stack_settings.model_copy(update={"rtml_topics": topics})


def _expected_defects() -> Counter[tuple[Stream, str | None]]:
    """The same run offline: live content does not depend on the clock, only event times do."""
    generator = EventGenerator(CONFIG, start_ms=EPOCH_MS)
    generator.live = LiveTimeline(0, PacingSchedule(RATE))
    return Counter((r.stream, r.defect) for r in itertools.islice(generator, COUNT))


@pytest.mark.timeout(120)
async def test_live_produce_round_trip(
    stack_settings: Settings, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    settings = await _test_settings(stack_settings, new_topic)
    started = now_ms()
    lines: list[str] = []
    summary = await produce_live(
        settings, CONFIG, rate=RATE, count=COUNT, send_labels=True, report=lines.append
    )
    names = {
        Stream.TRANSACTIONS: settings.rtml_topics.transactions.name,
        Stream.USER_EVENTS: settings.rtml_topics.user_events.name,
        Stream.USER_PROFILES: settings.rtml_topics.user_profiles.name,
    }
    assert summary.failed == 0 and summary.first_error is None
    assert summary.delivered == summary.total + summary.labels
    assert sum(summary.records[names[s]] for s in Stream) == summary.total == COUNT
    # Paced: 3000 records at 1000/s take about 3 s (loosely: the machine is shared).
    assert summary.rate == pytest.approx(RATE, rel=0.1)
    assert len(lines) >= 2

    expected = _expected_defects()
    topic_specs = settings.rtml_topics
    partition_counts = {
        Stream.TRANSACTIONS: topic_specs.transactions.partitions,
        Stream.USER_EVENTS: topic_specs.user_events.partitions,
        Stream.USER_PROFILES: topic_specs.user_profiles.partitions,
    }
    transaction_ids = set()
    for stream, topic in names.items():
        records = await read_topic(topic)
        assert len(records) == summary.records[topic]
        decoder = EventDecoder(EVENT_TYPES[stream], max_bytes=settings.rtml_max_record_bytes)
        got: Counter[tuple[Stream, str | None]] = Counter()
        for record in records:
            if stream is Stream.USER_PROFILES and record.value is None:
                got[(stream, None)] += 1  # a tombstone
                continue
            try:
                event = decoder.decode(record.value).event
            except InvalidEvent as exc:
                got[(stream, exc.reason)] += 1
                continue
            got[(stream, None)] += 1
            key = event.card_id if stream is Stream.TRANSACTIONS else event.user_id
            assert record.key == key.encode()
            # Batched per partition by the sink, on the partition Kafka's partitioner gives.
            assert record.partition == partition_for_key(record.key, partition_counts[stream])
            time = event.updated_at if stream is Stream.USER_PROFILES else event.event_time
            assert started - 3 * CONFIG.allowed_lateness_ms <= time <= now_ms()
            if stream is Stream.TRANSACTIONS:
                transaction_ids.add(event.event_id)
        assert got == Counter({k: v for k, v in expected.items() if k[0] is stream})

    labels = await read_topic(settings.rtml_topics.fraud_labels.name)
    assert len(labels) == summary.labels > 0
    for record in labels:
        # The contract the merchant-risk features read, keyed by merchant.
        label = msgspec.json.decode(record.value, type=FraudLabel)
        assert label.event_id in transaction_ids and label.label == "fraud"
        assert label.merchant_id and record.key == label.merchant_id.encode()
        assert label.decided_at == label.event_time


async def test_unreachable_broker_is_one_clear_error() -> None:
    port = processes.free_port()
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_request_timeout_ms=2_000)
    with pytest.raises(ServiceUnavailable, match=f"kafka: cannot connect to 127.0.0.1:{port}"):
        await produce_live(settings, CONFIG, rate=100.0, count=10)


@pytest.mark.timeout(60)
async def test_missing_topic_is_one_clear_error(stack_settings: Settings) -> None:
    topics = Topics(transactions=TopicSpec(name="rtml-test-no-such-topic"))
    settings = stack_settings.model_copy(
        update={"rtml_topics": topics, "kafka_request_timeout_ms": 2_000}
    )
    with pytest.raises(ServiceUnavailable, match="'rtml-test-no-such-topic' has no partitions"):
        await produce_live(settings, CONFIG, rate=100.0, count=10)
