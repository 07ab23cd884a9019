"""Fault-injection harness (the fixtures are in conftest.py).

``PrivateStack``: a broker and a redis-server only one test module uses, to stop, start, freeze
and thaw. ``FraudWorkload``: fresh topics, a deterministic transaction stream (a few malformed
records), a test model, and the check every fault test ends with: each valid input has exactly
one score (read_committed) whose features equal the offline replay of the same input and whose
score is the model's on those features; each malformed input exactly one dead letter.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.kafka_io import start_client
from consumers.pipelines.fraud_features import FraudFeaturesPipeline
from consumers.runner import ConsumerRunner
from consumers.scoring import FraudScorerClient
from contracts.codec import EventDecoder
from contracts.events import AlertReason, DeadLetter, FraudScore, Transaction, UserProfile
from features.definitions import FRAUD_FEATURE_NAMES
from features.replay import replay_fraud
from infra import kafka_broker, processes, redis_server
from infra.topics import ensure_topics
from rtml.errors import InvalidEvent
from rtml.settings import Settings, Topics, TopicSpec, load_settings

T0 = 1_700_000_000_000
PARTITIONS = 2
AMOUNT = FRAUD_FEATURE_NAMES.index("amount")


@dataclass
class PrivateStack:
    """A broker and a redis-server that only this test module uses."""

    settings: Settings

    def stop_redis(self) -> None:
        redis_server.stop(self.settings, timeout_s=20.0)

    def start_redis(self) -> None:
        redis_server.start(self.settings, timeout_s=30.0)

    def stop_kafka(self) -> None:
        kafka_broker.stop(self.settings, timeout_s=30.0)

    def start_kafka(self) -> None:
        kafka_broker.start(self.settings, timeout_s=90.0)

    def kafka_pid(self) -> int:
        pid = kafka_broker.running_pid(self.settings)
        assert pid is not None, "the private broker is not running"
        return pid

    def freeze_kafka(self) -> int:
        """SIGSTOP the broker (a network partition, as its clients see it)."""
        pid = self.kafka_pid()
        os.kill(pid, signal.SIGSTOP)
        return pid

    def thaw_kafka(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)


def private_settings(state_dir: os.PathLike[str] | str) -> Settings:
    kafka, controller, redis_port = (processes.free_port() for _ in range(3))
    return load_settings(
        rtml_state_dir=state_dir,
        kafka_bootstrap_servers=f"127.0.0.1:{kafka}",
        kafka_controller_port=controller,
        kafka_managed=True,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_managed=True,
    )


# --- the test model -------------------------------------------------------------------------


@dataclass
class ModelAnswer:
    model_version: str
    scores: np.ndarray
    reasons: dict[int, list[AlertReason]]


def model_score(amount: float) -> float:
    return 1.0 / (1.0 + math.exp(5.0 - amount))


@dataclass
class AmountModel:
    """A ``FraudScorerClient`` whose score is ``sigmoid(amount - 5)``: every score proves which
    features it came from. ``delay_s`` makes it slow (per call); ``calls`` counts its calls."""

    delay_s: float = 0.0
    calls: int = 0
    rows: int = 0

    async def score(self, rows: np.ndarray, explain_threshold: float | None) -> ModelAnswer:
        self.calls += 1
        self.rows += len(rows)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        scores = 1.0 / (1.0 + np.exp(5.0 - rows[:, AMOUNT].astype(np.float64)))
        return ModelAnswer("test-model-1", scores, {})


# --- the workload ---------------------------------------------------------------------------


POISON_AMOUNT = 6.66  # the amount the scripted Serve model raises on


def transactions(
    n: int, seed: int, *, poison_every: int = 0, pad_bytes: int = 0
) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, value) records, slightly out of order, ~1% malformed (truncated JSON).

    ``poison_every``: every such record has ``POISON_AMOUNT`` (no other does). ``pad_bytes``:
    an extra field of that size (schema drift, accepted) to make records heavy.
    """
    rnd = random.Random(seed)
    records: list[tuple[bytes, bytes]] = []
    bad = 0
    for i in range(n):
        card = f"card-{rnd.randrange(200)}"
        tx = {
            "event_id": f"tx-{seed}-{i}",
            "card_id": card,
            "user_id": f"user-{card[5:]}",
            "merchant_id": f"m-{rnd.randrange(40)}",
            "merchant_category": "grocery",
            "amount": round(rnd.uniform(0.5, 9.5), 2),
            "currency": "EUR",
            "lat": 48.8 + rnd.random(),
            "lon": 2.3 + rnd.random(),
            "event_time": T0 + i * 200 - rnd.randrange(0, 5_000),
            "channel": rnd.choice(["pos", "online"]),
        }
        if tx["amount"] == POISON_AMOUNT:
            tx["amount"] = POISON_AMOUNT + 0.01
        if poison_every and i % poison_every == poison_every // 2:
            tx["amount"] = POISON_AMOUNT
        if pad_bytes:
            tx["note"] = "x" * pad_bytes
        value = json.dumps(tx).encode()
        if i % 101 == 50:
            value = value[:-7]
            bad += 1
        records.append((card.encode(), value))
    return records, bad


def profiles() -> list[tuple[bytes, bytes]]:
    return [
        (
            f"user-{u}".encode(),
            json.dumps(
                {
                    "user_id": f"user-{u}",
                    "home_lat": 48.85,
                    "home_lon": 2.35,
                    "account_age_days": u,
                    "segment": "regular",
                    "updated_at": T0,
                }
            ).encode(),
        )
        for u in range(0, 200, 2)
    ]


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until ``predicate()``; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process (Linux procfs)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


def report(fault: str, runner: ConsumerRunner, **seconds: float) -> None:
    """Print a measured recovery (pytest -s shows it; docs/operations.md quotes them)."""
    values = " ".join(f"{k}={v:.2f}s" for k, v in seconds.items())
    stats = runner.stats
    print(
        f"\nRECOVERY {fault}: {values} failed_batches={stats.failures} "
        f"recoveries={stats.recoveries}",
        flush=True,
    )


@dataclass
class FraudWorkload:
    settings: Settings
    topics: Topics
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    bad: int = 0

    @classmethod
    async def create(
        cls, base: Settings, name: str, n: int, seed: int, **options: int
    ) -> FraudWorkload:
        suffix = f"{name}-{uuid.uuid4().hex[:6]}"
        specs = {
            "transactions": TopicSpec(name=f"tx-{suffix}", partitions=PARTITIONS),
            "user_profiles": TopicSpec(
                name=f"profiles-{suffix}", config={"cleanup.policy": "compact"}
            ),
            "dead_letter": TopicSpec(name=f"dead-{suffix}"),
            "fraud_scores": TopicSpec(name=f"scores-{suffix}", partitions=PARTITIONS),
            "fraud_alerts": TopicSpec(name=f"alerts-{suffix}"),
            "fraud_labels": TopicSpec(name=f"labels-{suffix}"),  # the merchant-risk table
        }
        await ensure_topics(base, list(specs.values()))
        topics = Topics(**{k: v.model_dump() for k, v in specs.items()})
        settings = base.model_copy(update={"rtml_topics": topics, "rtml_fraud_scoring": True})
        records, bad = transactions(n, seed, **options)
        workload = cls(settings, topics, records, bad)
        await workload.produce_to(topics.user_profiles.name, profiles())
        return workload

    def runner(
        self,
        model: FraudScorerClient,
        *,
        group: str | None = None,
        max_poll_records: int = 100,
    ) -> ConsumerRunner:
        pipeline = FraudFeaturesPipeline(
            self.settings, group_id=group or f"faults-{uuid.uuid4().hex[:8]}", scorer=model
        )
        return ConsumerRunner(self.settings, pipeline, max_poll_records=max_poll_records)

    async def produce(self, start: int, stop: int) -> None:
        await self.produce_to(self.topics.transactions.name, self.records[start:stop])

    async def produce_to(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        producer = await start_client(
            AIOKafkaProducer(
                **self.settings.kafka_client_kwargs(), acks="all", enable_idempotence=True
            )
        )
        try:
            for key, value in records:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    async def read_committed(self, topic: str, expected: int, timeout_s: float = 60.0) -> list:
        consumer = AIOKafkaConsumer(
            topic,
            **self.settings.kafka_client_kwargs(),
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        records: list = []
        try:
            async with asyncio.timeout(timeout_s):
                while len(records) < expected:
                    batch = await consumer.getmany(timeout_ms=500)
                    records.extend(r for rs in batch.values() for r in rs)
            batch = await consumer.getmany(timeout_ms=1_500)  # duplicates would show up here
            records.extend(r for rs in batch.values() for r in rs)
        finally:
            await consumer.stop()
        return records

    async def reference(self) -> dict[str, dict[str, float | None]]:
        """The offline replay's features of every valid transaction, in production order."""
        topic = self.topics.transactions.name
        consumer = AIOKafkaConsumer(
            topic,
            **self.settings.kafka_client_kwargs(),
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        records: list = []
        try:
            async with asyncio.timeout(60):
                ends = await consumer.end_offsets(list(consumer.assignment()))
                while not all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    batch = await consumer.getmany(timeout_ms=500)
                    records.extend(r for rs in batch.values() for r in rs)
        finally:
            await consumer.stop()
        records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        decoder = EventDecoder(Transaction)
        profile_decoder = msgspec.json.Decoder(UserProfile)
        log: list[Transaction | UserProfile] = [profile_decoder.decode(v) for _, v in profiles()]
        for record in records:
            try:
                log.append(decoder.decode(record.value).event)
            except InvalidEvent:
                continue
        rows = replay_fraud(log, partitions=PARTITIONS, config=self.settings.rtml_features)
        return {row.event_id: row.features for row in rows}

    async def check_exactly_once(self, produced: int, *, poison: bool = False) -> None:
        """Every valid input scored exactly once with the replay's features; every malformed
        input dead-lettered exactly once; with ``poison``, every input with POISON_AMOUNT
        dead-lettered exactly once (processing_error) and not scored."""
        reference = await self.reference()
        bad = sum(1 for _, v in self.records[:produced] if not v.endswith(b"}"))
        assert len(reference) == produced - bad, "the replay should have every valid input"
        poisoned = {e for e, f in reference.items() if poison and f["amount"] == POISON_AMOUNT}
        for event_id in poisoned:
            del reference[event_id]
        scores = [
            msgspec.json.decode(r.value, type=FraudScore)
            for r in await self.read_committed(self.topics.fraud_scores.name, len(reference))
        ]
        counts = Counter(s.event_id for s in scores)
        duplicates = sorted(e for e, c in counts.items() if c > 1)
        assert not duplicates, f"{len(duplicates)} events scored more than once: {duplicates[:3]}"
        assert set(counts) == set(reference), (
            f"missing {len(set(reference) - set(counts))}, "
            f"unexpected {len(set(counts) - set(reference))}"
        )
        wrong = [s.event_id for s in scores if s.features != reference[s.event_id]]
        assert not wrong, f"{len(wrong)} scores used features that differ from the replay"
        off = [
            s.event_id
            for s in scores
            if not math.isclose(s.score, model_score(s.features["amount"]), rel_tol=1e-5)
        ]
        assert not off, f"{len(off)} scores are not the model's on their features"
        dead = [
            msgspec.json.decode(r.value, type=DeadLetter)
            for r in await self.read_committed(self.topics.dead_letter.name, bad + len(poisoned))
        ]
        kinds = Counter(d.error.kind for d in dead)
        expected = Counter({"malformed_json": bad, "processing_error": len(poisoned)})
        assert kinds == +expected
        for letter in dead:
            if letter.error.kind == "processing_error":
                assert "model failed" in letter.error.message
                assert json.loads(letter.payload or "")["event_id"] in poisoned
