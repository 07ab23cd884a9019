"""The recommendation feature pipeline on the real broker and Redis: per-user features equal an
uninterrupted offline run, the global view counts are published exactly once across members and
restarts, and item popularity reaches the online store."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import msgspec
from aiokafka import AIOKafkaProducer

from consumers.global_views import GlobalViewsFollower
from consumers.pipelines.recsys_features import RecsysFeaturesPipeline, UserFeatureRow
from consumers.runner import ConsumerRunner
from contracts.events import UserEvent
from features.aggregates import GlobalViews, slice_start
from features.definitions import RECOMMENDATION_FEATURE_NAMES
from features.partitioner import partition_for_key
from features.recommendations import RecommendationFeatureEngine
from rtml.settings import Settings, Topics
from store.online import OnlineStore

PARTITIONS = 4
T0 = 1_700_000_000_000
CATEGORIES = ["books", "music", "garden", "toys", "sports", "games", "beauty", "food"]


def user_events(n: int, seed: int) -> list[UserEvent]:
    rnd = random.Random(seed)
    events = []
    for i in range(n):
        item = rnd.randrange(80)
        events.append(
            UserEvent(
                event_id=f"ue-{seed}-{i}",
                user_id=f"user-{rnd.randrange(60)}",
                item_id=f"item-{item}",
                category=CATEGORIES[item % len(CATEGORIES)],
                event_type=rnd.choices(["view", "click", "purchase"], [8, 3, 1])[0],
                event_time=T0 + i * 500 - rnd.randrange(0, 10_000),
            )
        )
    return events


def is_bad(index: int) -> bool:
    return index % 157 == 3


async def produce(
    producer: AIOKafkaProducer, topic: str, events: list[UserEvent], first: int
) -> int:
    bad = 0
    for i, event in enumerate(events, start=first):
        value = msgspec.json.encode(event)
        if is_bad(i):
            value = json.dumps({"user_id": event.user_id}).encode()  # missing fields
            bad += 1
        await producer.send(topic, value, key=event.user_id.encode())
    await producer.flush()
    return bad


async def wait_until(predicate, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_user_features_and_global_views_exactly_once(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, redis_client, redis_prefix
) -> None:
    topics = Topics(
        user_events={"name": await new_topic(PARTITIONS), "partitions": PARTITIONS},
        dead_letter={"name": await new_topic(1)},
    )  # type: ignore[arg-type]
    settings = stack_settings.model_copy(
        update={"rtml_topics": topics, "rtml_recommend_on_activity": False}
    )
    events = user_events(3_000, seed=7)
    bad = await produce(producer, topics.user_events.name, events[:1_500], 0)
    store = OnlineStore(redis_client, namespace=redis_prefix.rstrip(":"))
    group = f"test-recsys-{uuid.uuid4().hex[:8]}"

    pipelines = [
        RecsysFeaturesPipeline(settings, group_id=group, store=store, popularity_interval_s=0.0)
        for _ in range(2)
    ]
    first, second = (ConsumerRunner(settings, p, max_poll_records=200) for p in pipelines)
    tasks = [asyncio.create_task(first.run())]
    await wait_until(lambda: first.stats.records >= 500, 60)
    tasks.append(asyncio.create_task(second.run()))  # a rebalance mid-stream
    bad += await produce(producer, topics.user_events.name, events[1_500:], 1_500)
    await wait_until(lambda: first.stats.records + second.stats.records >= len(events), 90)
    # The global counts each member followed equal the exact counts of every view.
    exact = GlobalViews()
    valid = [e for i, e in enumerate(events) if not is_bad(i)]
    for event in valid:
        if event.event_type == "view":
            exact.add_view(event.event_time, event.category, event.item_id)
    last_slice = slice_start(max(e.event_time for e in valid)) + 60_000
    follower = GlobalViewsFollower(settings, pipelines[0].slices_topic)
    await follower.start()
    await follower.stop()
    assert follower.views.item_views(last_slice) == exact.item_views(last_slice)
    assert follower.views.idf_table(last_slice).counts == exact.idf_table(last_slice).counts

    first.stop()
    second.stop()
    await asyncio.gather(*tasks)

    # Partition-local features equal an uninterrupted run of the engine (category interest
    # depends on how far other partitions had published, so only its support is compared).
    reference_engine = RecommendationFeatureEngine(settings.rtml_features)

    by_partition: dict[int, list[UserEvent]] = {p: [] for p in range(PARTITIONS)}
    for event in valid:
        by_partition[partition_for_key(event.user_id.encode(), PARTITIONS)].append(event)
    newest: dict[str, tuple[int, dict]] = {}
    for partition, partition_events in by_partition.items():
        reference_engine.assign(partition)
        result = reference_engine.process_batch(partition, partition_events, exact)
        for event, row in zip(partition_events, result.rows, strict=True):
            if row is not None and newest.get(event.user_id, (-1,))[0] <= event.event_time:
                newest[event.user_id] = (
                    event.event_time,
                    dict(zip(RECOMMENDATION_FEATURE_NAMES, row, strict=True)),
                )
    users = sorted(newest)
    rows = await store.read("recsys", users)
    decoder = msgspec.json.Decoder(UserFeatureRow)
    for user, row in zip(users, rows, strict=True):
        assert row is not None, user
        online = decoder.decode(row.payload).features
        expected = newest[user][1]
        for name in ("view_count_30m", "click_count_5m", "recent_items", "purchased_items"):
            assert online[name] == expected[name], (user, name)
        assert set(online["category_interest"]) == set(expected["category_interest"])
        assert row.event_time == newest[user][0]

    top = await store.top_counts("item_views_1h", 5)
    assert top and all(count > 0 for _, count in top)
    assert sum(p.dead_letters.counts["missing_field"] for p in pipelines) == bad
