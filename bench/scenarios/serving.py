"""Serving: the model's own cost, and the recommendation path as a user sees it over HTTP.

- ``fraud-batch-512``: the FraudScorer replica's batch function (``serving.deployments
  .score_batch``) on a 512-row micro-batch of the production-shape MLP, ~1% of the rows
  explained, on a ``TorchWorker`` thread with the replicas' torch thread count: the work
  "inside the replica", in the bench process (no Ray RPC). Value: p99 ms over
  ``ITERATIONS`` calls.
- ``topk-100k``: the Recommender's ``recommend_batch``: exact top-50 over a 100,000-item
  catalog (D = 64) for one user, excluding 50 purchased items. Value: p99 ms.
- ``recsys-drain``: the recommendation feature pipeline (``RecsysFeaturesPipeline``, one
  in-process ``ConsumerRunner``, exactly once, top-K refresh on activity through the bench's
  Serve app) over a pre-produced history of user events: events/s. It also leaves fresh
  features in the online store for the HTTP case.
- ``http-recs-200``: ``GET /v1/recommendations/{user}?k=20`` on the Ingress replica's own HTTP
  port (Serve's direct ingress, on in throughput mode: the front a load balancer targets) at
  ``HTTP_RATE`` requests/s, open loop (each request is sent at its scheduled time whatever the
  previous ones do, and its latency counts from that time: no coordinated omission), over users
  with features in the online store, for ``load_seconds``. Value: p99 ms. The ingress answers
  a user whose stored top-K ranks their current features from it (``stored_top_k_share`` of
  the requests), the others through the Recommender.
- ``http-recs-200-proxy``: the same requests through Serve's HTTP proxy (the app's URL), which
  adds a Python hop and several ms of CPU per request on each side.
- ``http-recs-200-ranked``: the first case after deleting those users' stored top-Ks: every
  request is ranked by the Recommender (the path of a user whose features just changed).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from bench.environment import OffsetReader, create_topics, redis, scenario_topics
from bench.measure import BenchError, run_until, runner_probe, time_drain
from bench.results import Check, Sample
from bench.scenario import BenchContext, Case, Scenario
from bench.serving import bench_app
from bench.workload import generator_config
from producers.runner import Window, produce_history

ITERATIONS = 400
HTTP_RATE = 200.0
TOPK_ITEMS = 100_000
RECSYS_USERS = 20_000
RECSYS_DAYS = {"quick": 0.25, "full": 1.0}  # ~185k / ~740k user events
BATCH_TARGET_MS = 5.0
TOPK_TARGET_MS = 5.0
HTTP_TARGET_MS = 50.0
_USERS_KEY = "serving_users"


class ServingScenario(Scenario):
    name = "serving"
    summary = "model cost per micro-batch, exact top-K, recsys features, HTTP recommendations"
    needs_ray = True

    async def prepare(self, ctx: BenchContext) -> None:
        await bench_app(ctx)
        topics = scenario_topics(ctx.topic("recsys"), ctx.options.partitions)
        settings = ctx.stack.settings.model_copy(update={"rtml_topics": topics})
        await create_topics(settings, topics.all())
        topic = topics.user_events.name
        async with OffsetReader(settings) as reader:
            ends = await reader.end_offsets(topic, ctx.options.partitions)
        days = RECSYS_DAYS[ctx.options.mode]
        if not sum(ends.values()):
            config = replace(
                generator_config(RECSYS_USERS, ctx.options.seed),
                txns_per_user_day=0.0,
                sessions_per_user_day=3.0,
            )
            ctx.say(f"producing {days:g} day of user events of {RECSYS_USERS:,} users")
            await produce_history(settings, config, Window.last_days(days))
            async with OffsetReader(settings) as reader:
                ends = await reader.end_offsets(topic, ctx.options.partitions)
        ctx.shared["recsys_workload"] = (settings, topic, ends)
        ctx.results.workloads["recsys"] = {
            "topic": topic,
            "users": RECSYS_USERS,
            "days": days,
            "user_events": sum(ends.values()),
        }

    def cases(self, ctx: BenchContext) -> list[Case]:
        return [
            Case(
                self.name,
                "fraud-batch-512",
                "FraudScorer replica work, 512-row batch, p99",
                "ms",
                _fraud_batch,
                higher_is_better=False,
            ),
            Case(
                self.name,
                "topk-100k",
                f"Recommender top-50 of {TOPK_ITEMS:,} items, 1 user, p99",
                "ms",
                _topk,
                higher_is_better=False,
            ),
            Case(
                self.name,
                "recsys-drain",
                "recommendation features + top-K refresh, 1 in-process runner",
                "events/s",
                _recsys_drain,
            ),
            Case(
                self.name,
                f"http-recs-{HTTP_RATE:g}",
                f"GET /v1/recommendations at {HTTP_RATE:g} req/s, ingress port, p99",
                "ms",
                _http_direct,
                higher_is_better=False,
            ),
            Case(
                self.name,
                f"http-recs-{HTTP_RATE:g}-proxy",
                f"GET /v1/recommendations at {HTTP_RATE:g} req/s, via Serve's proxy, p99",
                "ms",
                _http_proxy,
                higher_is_better=False,
            ),
            Case(
                self.name,
                f"http-recs-{HTTP_RATE:g}-ranked",
                f"GET /v1/recommendations at {HTTP_RATE:g} req/s, ingress port, all ranked, p99",
                "ms",
                _http_ranked,
                higher_is_better=False,
            ),
        ]

    def checks(self, ctx: BenchContext) -> list[Check]:
        return [
            _median_check(ctx, "fraud-batch-512", "FraudScorer 512-row batch p99", BATCH_TARGET_MS),
            _median_check(ctx, "topk-100k", "top-50 of 100k items p99", TOPK_TARGET_MS),
            _median_check(
                ctx,
                f"http-recs-{HTTP_RATE:g}",
                f"GET /v1/recommendations p99 at {HTTP_RATE:g} req/s (ingress port)",
                HTTP_TARGET_MS,
            ),
        ]


# --- replica work -----------------------------------------------------------------------------


async def _fraud_batch(ctx: BenchContext, round_: int) -> Sample:
    import torch

    from models.fraud import LoadedFraudModel
    from serving import synthetic
    from serving.bench import timed
    from serving.config import AppArgs
    from serving.deployments import score_batch
    from serving.protocol import FraudScoreRequest
    from serving.replica import TorchWorker

    threads = AppArgs(models_dir=ctx.stack.state_dir).torch_threads
    worker = TorchWorker("bench-torch", threads)
    try:
        model = synthetic.mlp_fraud_model()
        fraud = LoadedFraudModel(model, "bench", torch.device("cpu"), manifest={})
        rows = synthetic.fraud_rows(512, seed=round_)
        threshold = float(np.quantile(fraud.predict(rows), 0.99))  # ~1% explained
        samples = await timed(
            worker, score_batch, (fraud, [FraudScoreRequest(rows, threshold)], 3), ITERATIONS
        )
    finally:
        worker.close()
    return _latency_sample(round_, samples, threads=threads)


async def _topk(ctx: BenchContext, round_: int) -> Sample:
    import torch

    from serving import synthetic
    from serving.bench import timed, user_rows
    from serving.config import AppArgs
    from serving.deployments import recommend_batch
    from serving.protocol import RecommendRequest
    from serving.replica import TorchWorker

    threads = AppArgs(models_dir=ctx.stack.state_dir).torch_threads
    worker = TorchWorker("bench-torch", threads)
    try:
        rec = synthetic.loaded_recommender(TOPK_ITEMS, dim=64, device=torch.device("cpu"))
        request = [RecommendRequest(user_rows(1, TOPK_ITEMS, seed=round_), k=50)]
        samples = await timed(worker, recommend_batch, (rec, request), ITERATIONS // 2)
    finally:
        worker.close()
    return _latency_sample(round_, samples, threads=threads)


def _latency_sample(round_: int, samples: list[float], **extra: Any) -> Sample:
    p50, p95, p99 = np.percentile(samples, [50, 95, 99])
    details = {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3)}
    details |= {"p99_ms": round(float(p99), 3), "n": len(samples), **extra}
    return Sample(round_, float(p99), details)


# --- recommendation features ------------------------------------------------------------------


async def _recsys_drain(ctx: BenchContext, round_: int) -> Sample:
    from aiokafka import TopicPartition

    from bench.environment import delete_topic, set_group_offsets
    from consumers.pipelines.recsys_features import RecsysFeaturesPipeline
    from consumers.runner import ConsumerRunner
    from infra.topics import describe_topics

    app = await bench_app(ctx)
    base, topic, ends = ctx.shared["recsys_workload"]
    settings = app.configure(base).model_copy(update={"rtml_recommend_on_activity": True})
    pipeline = RecsysFeaturesPipeline(settings)
    for name in (pipeline.changelog_topic, pipeline.slices_topic):
        if await describe_topics(settings, [name], internal=True):
            await delete_topic(settings, name)
    await set_group_offsets(
        settings, pipeline.group_id, {TopicPartition(topic, p): 0 for p in ends}
    )
    total = sum(ends.values())
    runner = ConsumerRunner(settings, pipeline)
    task = asyncio.create_task(runner.run())
    try:
        timing = await run_until(
            task,
            time_drain(
                "serving/recsys-drain",
                runner_probe([runner], len(ends), os.getpid()),
                total,
                timeout_s=180.0 + total / 500,
                min_events=total // 5,
            ),
        )
    finally:
        runner.stop()
        await task
        gc.unfreeze()
        gc.collect()
    details = {
        "events": timing.events,
        "seconds": round(timing.seconds, 3),
        "batches": runner.stats.batches,
        **{k: v for k, v in pipeline.stats().items() if isinstance(v, int | float)},
    }
    return Sample(round_, timing.rate, details)


async def _users_with_features(ctx: BenchContext) -> list[str]:
    users = ctx.shared.get(_USERS_KEY)
    if users:
        return users  # type: ignore[no-any-return]
    base = ctx.shared["recsys_workload"][0]
    prefix = "rtml:recsys:"
    found: list[str] = []
    async with redis(base) as client:
        async for key in client.scan_iter(match=f"{prefix}*", count=1_000):
            found.append(
                key.decode()[len(prefix) :] if isinstance(key, bytes) else key[len(prefix) :]
            )
            if len(found) >= 5_000:
                break
    if not found:
        raise BenchError("serving/http", "no user features in the online store (recsys-drain)")
    ctx.shared[_USERS_KEY] = found
    return found


# --- HTTP -------------------------------------------------------------------------------------


async def _http_ranked(ctx: BenchContext, round_: int) -> Sample:
    from store.online import RECS_GROUP, OnlineStore

    base = ctx.shared["recsys_workload"][0]
    users = await _users_with_features(ctx)
    store = OnlineStore.from_settings(base)
    keys = [store.key(RECS_GROUP, u) for u in users]
    await store.close()
    async with redis(base) as client:
        for start in range(0, len(keys), 1_000):
            await client.delete(*keys[start : start + 1_000])  # type: ignore[attr-defined]
    return await _http_direct(ctx, round_)


async def _http_direct(ctx: BenchContext, round_: int) -> Sample:
    app = await bench_app(ctx)
    if not app.direct_urls:
        raise BenchError(
            "serving/http", "the Ingress replica has no HTTP port of its own (Serve's direct "
            "ingress needs throughput mode: drop --serve-default-mode)"
        )  # fmt: skip
    return await _http_recommendations(ctx, round_, app.direct_urls[0])


async def _http_proxy(ctx: BenchContext, round_: int) -> Sample:
    app = await bench_app(ctx)
    return await _http_recommendations(ctx, round_, app.http_url)


async def _http_recommendations(ctx: BenchContext, round_: int, url: str) -> Sample:
    # aiohttp, not httpx: the client shares the 2 cores with the server, and httpx spent about
    # three times the CPU per request.
    import aiohttp

    users = await _users_with_features(ctx)
    seconds = ctx.options.sizes.load_seconds
    count = int(HTTP_RATE * seconds)
    rng = np.random.default_rng(round_)
    picks = [users[i] for i in rng.integers(0, len(users), size=count)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout) as client:
        for user in picks[:20]:  # warm up: connections, the proxy's routes
            async with client.get(f"/v1/recommendations/{user}?k=20") as response:
                await response.read()

        async def one(user: str, due: float) -> None:
            try:
                async with client.get(f"/v1/recommendations/{user}?k=20") as response:
                    await response.read()
                    if response.status != 200:
                        errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            latencies.append((time.perf_counter() - due) * 1000.0)

        started = time.perf_counter()
        tasks = []
        for i, user in enumerate(picks):
            due = started + i / HTTP_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(user, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    if not latencies:
        raise BenchError("serving/http", f"every request failed: {errors}")
    sample = _latency_sample(round_, latencies, achieved_rate=round(count / elapsed, 1))
    sample.details["errors"] = sum(errors.values())
    sample.details["error_kinds"] = errors
    sample.details["stored_top_k_share"] = await _stored_top_k_share(ctx, picks)
    return sample


async def _stored_top_k_share(ctx: BenchContext, users: list[str]) -> float:
    """The share of requests whose user has a stored top-K ranked from their current features
    (the ingress answers those without the Recommender; docs/serving.md)."""
    from store.online import RECS_GROUP, RECSYS_GROUP, OnlineStore

    store = OnlineStore.from_settings(ctx.shared["recsys_workload"][0])
    try:
        rows = await store.read_keys([(g, u) for u in users for g in (RECSYS_GROUP, RECS_GROUP)])
    finally:
        await store.close()
    features, stored = rows[0::2], rows[1::2]
    fresh = sum(
        1
        for f, s in zip(features, stored, strict=True)
        if f is not None and s is not None and f.event_time == s.event_time
    )
    return round(fresh / max(len(users), 1), 3)


def _median_check(ctx: BenchContext, case: str, name: str, target_ms: float) -> Check:
    measurement = ctx.results.measurement(f"serving/{case}")
    summary = measurement.summary() if measurement is not None else None
    if summary is None:
        return Check(name, f"< {target_ms:g} ms", "not measured", None)
    return Check(
        name,
        f"< {target_ms:g} ms (median of the rounds' p99)",
        f"{summary.median:,.2f} ms",
        summary.median < target_ms,
        f"rounds {summary.min:,.2f} - {summary.max:,.2f} ms",
    )
