"""The fraud pipeline written the obvious way: one event at a time, two round trips each.

Over the shared pre-produced transactions (``ctx.transactions()``), in the bench process:

    async for record in consumer:                 # aiokafka, auto-commit (at least once)
        tx = decode(record)                       # the contracts' decoder; bad -> dead letter
        row = features(state[tx.card_id], tx)     # bench.reference_features: a list per card
        await store.write("fraud", [row])         # 1 Redis round trip (the online store)
        await handle.score.remote(request[1 row]) # 1 Serve call: the rtml app's FraudScorer
        producer.send(fraud-scores, score)        # and fraud-alerts above the threshold

The features are the engine's (``tests/unit/bench/test_reference_features.py``), the profile
join is the same (``consumers.profile_table.ProfileTable``, loaded before the clock starts), the
model is the one ``bench.serving`` deploys for every scenario, the outputs are the pipeline's
(``consumers.scoring.score_outputs``). What differs from rtml is the shape: no batching, no
exactly-once, no changelog; late transactions are scored, not dead-lettered.

It is slow (under a few hundred events/s on 2 cores), so a round is bounded: it stops after
``seconds`` of scoring (quick 10 s, full 30 s) or at the end of the topic, and reports the
events it scored in that time. The clock starts once the first ``WARMUP_EVENTS`` are scored
(group join, first Serve call). Nothing is extrapolated.
"""

from __future__ import annotations

import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from bench.environment import create_topics, scenario_topics
from bench.measure import BenchError
from bench.procs import CpuMeter
from bench.reference_features import CardState, new_state, update
from bench.results import Check, Sample
from bench.scenario import BenchContext, Case, Scenario
from bench.serving import BenchApp, bench_app
from bench.stats import ratio_summary
from bench.workload import TransactionsWorkload
from consumers.kafka_io import make_producer
from consumers.pipelines.dead_letters import DeadLetters
from consumers.pipelines.fraud_features import FeatureRow
from consumers.profile_table import ProfileTable
from consumers.scoring import PendingScore, encode_rows, features_json, score_outputs
from contracts.codec import EventDecoder, encode
from contracts.events import Transaction
from features.definitions import FRAUD_CARD, FRAUD_FEATURE_NAMES
from rtml.errors import InvalidEvent
from rtml.settings import Settings, TopicSpec
from serving.config import FRAUD_SCORER
from serving.protocol import FraudScoreRequest
from store.online import FRAUD_GROUP, OnlineStore

SECONDS = {"quick": 10.0, "full": 30.0}
WARMUP_EVENTS = 20
TARGET_RATIO = 10.0  # the issue: the fraud pipeline at least 10x the naive pipeline
CHECK_NAME = "fraud pipeline vs the naive per-event pipeline"


class NaiveScenario(Scenario):
    name = "naive"
    summary = "the fraud pipeline per event: one Redis write and one Serve call each"
    needs_ray = True

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self.seconds = seconds

    async def prepare(self, ctx: BenchContext) -> None:
        workload = await ctx.transactions()
        await create_topics(workload.settings, _output_topics(ctx, workload))
        await bench_app(ctx)

    def cases(self, ctx: BenchContext) -> list[Case]:
        seconds = self.seconds or SECONDS[ctx.options.mode]

        async def run(ctx: BenchContext, round_: int) -> Sample:
            return await _run(ctx, round_, seconds)

        return [
            Case(
                self.name,
                "per-event",
                "naive: aiokafka loop, 1 Redis write + 1 Serve call per event",
                "events/s",
                run,
            )
        ]

    def checks(self, ctx: BenchContext) -> list[Check]:
        return [ratio_check(ctx)]


def _output_topics(ctx: BenchContext, workload: TransactionsWorkload) -> list[TopicSpec]:
    out = scenario_topics(ctx.topic("naive"), workload.partitions)
    return [out.fraud_scores, out.fraud_alerts, out.dead_letter]


def _settings(ctx: BenchContext, workload: TransactionsWorkload, app: BenchApp) -> Settings:
    """The workload's input and profile topics; the naive outputs; scoring with the app."""
    out = scenario_topics(ctx.topic("naive"), workload.partitions)
    topics = workload.settings.rtml_topics.model_copy(
        update={
            "fraud_scores": out.fraud_scores,
            "fraud_alerts": out.fraud_alerts,
            "dead_letter": out.dead_letter,
        }
    )
    return app.configure(workload.settings).model_copy(update={"rtml_topics": topics})


class NaivePipeline:
    """The fraud pipeline one event at a time: what ``handle`` does to each record."""

    def __init__(self, settings: Settings, app: BenchApp, namespace: str) -> None:
        self._topics = settings.rtml_topics
        self._threshold = settings.rtml_fraud_alert_threshold
        self._profiles = ProfileTable(settings)
        # Its own rows (a namespace per run): the guarded write never skips one as older.
        self._store = OnlineStore.from_settings(settings, namespace=namespace)
        self._producer = make_producer(settings)
        self._handle = app.fraud_handle()
        self._decoder = EventDecoder(Transaction, max_bytes=settings.rtml_max_record_bytes)
        self._dead_letters = DeadLetters(self._topics.dead_letter.name)
        self._states: dict[str, CardState] = {}
        self.scored = self.dead = self.alerts = 0

    async def start(self) -> None:
        await self._profiles.start()  # the profile table, read to its end
        await self._producer.start()

    async def stop(self) -> None:
        try:
            await self._producer.flush()
        finally:
            await self._producer.stop()
            await self._profiles.stop()
            await self._store.close()

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            tx = self._decoder.decode(record.value).event
        except InvalidEvent as exc:
            out = self._dead_letters.of(record, exc)
            await self._producer.send(out.topic, out.value, key=out.key)
            self.dead += 1
            return
        profile = self._profiles.get(tx.user_id)
        joined = (
            None
            if profile is None
            else (profile.home_lat, profile.home_lon, profile.account_age_days)
        )
        row = update(
            self._states.setdefault(tx.card_id, new_state()),
            tx.event_time,
            tx.amount,
            tx.merchant_id,
            tx.lat,
            tx.lon,
            tx.channel == "online",
            joined,
        )
        now_ms = time.time_ns() // 1_000_000
        # The card features; the rest of the model's inputs (pattern and label features) the
        # obvious pipeline does not compute: null, which the model reads as missing.
        card = dict(zip(FRAUD_CARD.names, row, strict=True))
        row = tuple(card.get(name) for name in FRAUD_FEATURE_NAMES)
        features = dict(zip(FRAUD_FEATURE_NAMES, row, strict=True))
        payload = encode(FeatureRow(tx.event_id, tx.card_id, tx.event_time, features, now_ms))
        await self._store.write(FRAUD_GROUP, [(tx.card_id, tx.event_time, payload)])
        pending = [PendingScore(record.partition, tx, row, record.timestamp, features_json(row))]
        request = FraudScoreRequest(encode_rows(pending), self._threshold)
        response = await self._handle.score.remote(request)
        outputs = score_outputs(
            pending,
            response,
            threshold=self._threshold,
            scores_topic=self._topics.fraud_scores.name,
            alerts_topic=self._topics.fraud_alerts.name,
            scored_at=time.time_ns() // 1_000_000,
        )
        for out in outputs[record.partition]:
            await self._producer.send(out.topic, out.value, key=out.key)
            self.alerts += out.topic == self._topics.fraud_alerts.name
        self.scored += 1


async def _run(ctx: BenchContext, round_: int, seconds: float) -> Sample:
    """One run from the beginning of the topic: ``seconds`` of scoring after the warm-up."""
    workload = await ctx.transactions()
    app = await bench_app(ctx)
    pipeline = NaivePipeline(
        _settings(ctx, workload, app), app, namespace=f"{ctx.prefix}naive-{round_}"
    )
    consumer = AIOKafkaConsumer(
        workload.topic,
        group_id=f"bench-naive-{uuid.uuid4().hex[:8]}",  # new: starts at the beginning
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        **workload.settings.kafka_client_kwargs(),
    )
    meter = CpuMeter(
        {
            "consumer": [os.getpid()],
            "serve": app.replica_pids(FRAUD_SCORER),
            "broker": [p for p in [ctx.stack.broker_pid] if p],
            "redis": [p for p in [ctx.stack.redis_pid] if p],
        }
    )
    ends = {p: end for p, end in workload.ends.items() if end > 0}
    positions: dict[int, int] = {}
    started = 0.0
    base = {"scored": 0, "dead": 0, "alerts": 0}
    await pipeline.start()
    try:
        await consumer.start()
        async for record in consumer:
            positions[record.partition] = record.offset + 1
            await pipeline.handle(record)
            if not started and pipeline.scored >= WARMUP_EVENTS:
                meter.start()
                started = time.monotonic()
                base = {"scored": pipeline.scored, "dead": pipeline.dead, "alerts": pipeline.alerts}
            elif started and time.monotonic() - started >= seconds:
                break
            if all(positions.get(p, 0) >= end for p, end in ends.items()):
                break  # a small workload runs out
        elapsed = time.monotonic() - started
        cpu = meter.result() if started else {}
    finally:
        await consumer.stop()
        await pipeline.stop()
    events = pipeline.scored - base["scored"]
    if not started or events <= 0:
        raise BenchError(
            "naive/per-event", f"only {pipeline.scored} events scored; nothing to time"
        )
    details = {
        "events": events,
        "seconds": round(elapsed, 4),
        "dead_letters": pipeline.dead - base["dead"],
        "alerts": pipeline.alerts - base["alerts"],
        "bounded_by": "time" if elapsed >= seconds else "end of topic",
        "total_events": workload.transactions,
    }
    details |= {k: round(v, 4) for k, v in cpu.items()}
    if "consumer_cpu_s" in cpu:
        details["consumer_cpu_us_per_event"] = round(cpu["consumer_cpu_s"] / events * 1e6, 3)
    return Sample(round_, events / elapsed, details)


def ratio_check(ctx: BenchContext) -> Check:
    """rtml over naive, paired by round: the end-to-end pipeline (``e2e/...``) when it was
    measured, else the feature stage alone (``features/...``, no model: a weaker comparison,
    said in the result)."""
    naive = ctx.results.measurement("naive/per-event")
    target = f">= {TARGET_RATIO:g}x naive (median of paired rounds)"
    if naive is None or not naive.samples:
        return Check(CHECK_NAME, target, "naive not measured", None)
    scenario, rtml = "", []
    for scenario in ("e2e", "features"):
        rtml = [
            m
            for m in ctx.results.measurements
            if m.scenario == scenario and m.unit in ("events/s", "tx/s") and m.samples
        ]
        if rtml:
            break
    if not rtml:
        return Check(CHECK_NAME, target, "no e2e/ or features/ throughput measured", None)
    best = max(rtml, key=lambda m: m.summary().median)  # type: ignore[union-attr]
    ratio = ratio_summary(best.pairs(), naive.pairs())
    if ratio is None:
        return Check(CHECK_NAME, target, f"{best.id} and naive share no round", None)
    naive_summary = naive.summary()
    assert naive_summary is not None
    detail = (
        f"{best.id} / naive/per-event per round: {ratio.min:,.1f} - {ratio.max:,.1f}x; "
        f"naive median {naive_summary.median:,.0f} events/s"
    )
    if scenario == "features":
        detail += " (no e2e results: the feature stage has no model call, naive has one)"
    value = f"{ratio.median:,.1f}x ({best.id})"
    return Check(CHECK_NAME, target, value, ratio.median >= TARGET_RATIO, detail)
