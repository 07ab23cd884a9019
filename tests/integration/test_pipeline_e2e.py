"""Kafka in, predictions out: the fraud and recommendation pipelines wired to a deployed Serve
app, on the real broker, Redis and Ray Serve.

The fraud model is a synthetic artifact in the real format that scores
``sigmoid(amount - 5)``, so every score proves it came from the model on the exact features.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from ray import serve

from consumers.pipelines.fraud_features import FraudFeaturesPipeline
from consumers.pipelines.recsys_features import RecsysFeaturesPipeline
from consumers.runner import ConsumerRunner
from contracts.events import (
    FraudAlert,
    FraudScore,
    Recommendation,
    Transaction,
    UserEvent,
    decode_fraud_alert,
)
from features.replay import replay_fraud
from rtml.settings import Settings, Topics
from serving.config import FRAUD_SCORER, INGRESS, RECOMMENDER, AppArgs, serve_config
from serving.deploy import deploy
from serving.synthetic import save_fraud_model, save_recommender_model
from store.online import FRAUD_GROUP, OnlineStore

APP = f"e2e-{uuid.uuid4().hex[:6]}"
T0 = 1_700_000_000_000
THRESHOLD = 0.5
ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1}


@dataclass(frozen=True)
class App:
    fraud_version: str
    recommender_version: str
    item_ids: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(
    ray_session: None, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    models: Path = tmp_path_factory.mktemp("e2e-models")
    fraud = save_fraud_model(models, bias=-5.0, now=datetime(2025, 1, 1, tzinfo=UTC))
    rec = save_recommender_model(models, n_items=60, dim=8)
    args = AppArgs(
        models_dir=models,
        device="cpu",
        redis_url=stack_settings.redis_url,
        online_store_namespace=f"test:{APP}",
        fraud={"model": fraud.name, "num_cpus": 0.25},
        recommender={"num_cpus": 0.25},
        http={"num_cpus": 0.1},
    )
    config = serve_config(
        args,
        app_name=APP,
        port=free_port(),
        deployments={
            FRAUD_SCORER: {"autoscaling_config": ONE_REPLICA},
            RECOMMENDER: {"autoscaling_config": ONE_REPLICA},
            INGRESS: {"autoscaling_config": ONE_REPLICA},
        },
    )
    deploy(config, timeout_s=180.0)
    try:
        yield App(fraud.name, rec.name, 60)
    finally:
        serve.delete(APP)
        serve.shutdown()


async def read_all(settings: Settings, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list = []
    try:
        async with asyncio.timeout(60):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(r for rs in batch.values() for r in rs)
        batch = await consumer.getmany(timeout_ms=1_500)  # duplicates would show up here
        records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return records


async def run_until(runner: ConsumerRunner, records: int, timeout_s: float = 90.0) -> None:
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(timeout_s):
            while runner.stats.records < records:
                if task.done():
                    task.result()
                await asyncio.sleep(0.1)
    finally:
        runner.stop()
        await task


async def test_every_transaction_gets_one_score_from_the_model_and_alerts_above_threshold(
    app: App,
    stack_settings: Settings,
    new_topic,
    producer: AIOKafkaProducer,
    redis_client,
    redis_prefix,
) -> None:
    topics = Topics(
        transactions={"name": await new_topic(4), "partitions": 4},
        user_profiles={"name": await new_topic(1, {"cleanup.policy": "compact"})},
        dead_letter={"name": await new_topic(1)},
        fraud_scores={"name": await new_topic(4), "partitions": 4},
        fraud_alerts={"name": await new_topic(1)},
    )  # type: ignore[arg-type]
    settings = stack_settings.model_copy(
        update={
            "rtml_topics": topics,
            "rtml_serve_app": APP,
            "rtml_fraud_alert_threshold": THRESHOLD,
        }
    )
    rnd = random.Random(5)
    txs = [
        Transaction(
            event_id=f"e2e-{i}",
            card_id=f"card-{rnd.randrange(40)}",
            user_id=f"user-{rnd.randrange(40)}",
            merchant_id=f"m-{rnd.randrange(20)}",
            merchant_category="grocery",
            amount=round(rnd.uniform(0.5, 9.5), 2),
            currency="EUR",
            lat=48.8,
            lon=2.3,
            event_time=T0 + i * 1_000,
            channel="pos",
        )
        for i in range(1_000)
    ]
    for tx in txs:
        await producer.send(
            topics.transactions.name, msgspec.json.encode(tx), key=tx.card_id.encode()
        )
    await producer.flush()

    group = f"test-e2e-{uuid.uuid4().hex[:6]}"
    store = OnlineStore(redis_client, namespace=redis_prefix.rstrip(":"))
    pipeline = FraudFeaturesPipeline(settings, group_id=group, store=store)
    await run_until(ConsumerRunner(settings, pipeline), len(txs))

    scores = [
        msgspec.json.decode(r.value, type=FraudScore)
        for r in await read_all(settings, topics.fraud_scores.name, len(txs))
    ]
    assert Counter(s.event_id for s in scores) == Counter(tx.event_id for tx in txs)
    replayed = {row.event_id: row.features for row in replay_fraud(txs, partitions=4)}
    by_id = {tx.event_id: tx for tx in txs}
    for score in scores:
        assert score.model_version == app.fraud_version
        assert score.features == replayed[score.event_id]  # exactly what the model saw
        assert score.score == pytest.approx(1 / (1 + math.exp(5 - by_id[score.event_id].amount)))
        assert score.scored_at >= score.ingested_at > 0
    alerts = [
        decode_fraud_alert(r.value)
        for r in await read_all(
            settings, topics.fraud_alerts.name, sum(s.score >= THRESHOLD for s in scores)
        )
    ]
    # Small amounts in one place: no pattern rule matches, every alert is the model's.
    assert all(isinstance(a, FraudAlert) for a in alerts)
    assert {a.event_id for a in alerts} == {s.event_id for s in scores if s.score >= THRESHOLD}
    assert all(a.threshold == THRESHOLD for a in alerts)
    assert all(a.reasons and a.reasons[0].feature == "amount" for a in alerts)
    # The online store has every card's newest row (written beside the model call).
    newest: dict[str, int] = {}
    for tx in txs:
        newest[tx.card_id] = max(newest.get(tx.card_id, 0), tx.event_time)
    cards = sorted(newest)
    rows = await store.read(FRAUD_GROUP, cards)
    assert [row.event_time if row else None for row in rows] == [newest[c] for c in cards]


async def test_user_activity_refreshes_recommendations_without_purchased_items(
    app: App,
    stack_settings: Settings,
    new_topic,
    producer: AIOKafkaProducer,
    redis_client,
    redis_prefix,
) -> None:
    topics = Topics(
        user_events={"name": await new_topic(2), "partitions": 2},
        dead_letter={"name": await new_topic(1)},
        recommendations={"name": await new_topic(2), "partitions": 2},
    )  # type: ignore[arg-type]
    settings = stack_settings.model_copy(
        update={
            "rtml_topics": topics,
            "rtml_serve_app": APP,
            "rtml_recommend_interval_s": 0.0,
            "rtml_recommend_k": 10,
        }
    )
    rnd = random.Random(9)
    events = [
        UserEvent(
            event_id=f"ue-{i}",
            user_id=f"user-{i % 10}",
            item_id=f"item-{rnd.randrange(app.item_ids)}",
            category=f"cat-{rnd.randrange(5)}",
            event_type="purchase" if i % 7 == 0 else "view",
            event_time=T0 + i * 500,
        )
        for i in range(300)
    ]
    for event in events:
        await producer.send(
            topics.user_events.name, msgspec.json.encode(event), key=event.user_id.encode()
        )
    await producer.flush()
    store = OnlineStore(redis_client, namespace=redis_prefix.rstrip(":"))
    group = f"test-e2e-recs-{uuid.uuid4().hex[:6]}"
    pipeline = RecsysFeaturesPipeline(settings, group_id=group, store=store)
    await run_until(ConsumerRunner(settings, pipeline), len(events))

    recs = [
        msgspec.json.decode(r.value, type=Recommendation)
        for r in await read_all(settings, topics.recommendations.name, 1)
    ]
    assert recs and {r.model_version for r in recs} == {app.recommender_version}
    for rec in recs:  # nothing the user bought up to the recommendation's event
        assert 0 < len(rec.items) <= 10
        bought = {
            e.item_id
            for e in events
            if e.user_id == rec.user_id
            and e.event_type == "purchase"
            and e.event_time <= rec.event_time
        }
        assert not bought & {item.item_id for item in rec.items}
    stored = await store.read("recs", sorted({r.user_id for r in recs}))
    assert all(row is not None for row in stored)
