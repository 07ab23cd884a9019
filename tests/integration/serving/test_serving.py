"""The Serve app on real Ray Serve and the real Redis: the handle API, the HTTP API, hot reload
under traffic and autoscaling.

One app for the module (deploying takes the longest), from a Serve config as `rtml serve`
deploys it, so a model change is a real in-place ``reconfigure``. The models are synthetic
artifacts in the real format: fraud scores ``sigmoid(amount + bias)`` with bias -5 (old) or -3
(new), so every response's scores prove which model produced them.
"""

from __future__ import annotations

import asyncio
import copy
import math
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import redis
from ray import serve

from consumers.pipelines.fraud_features import FeatureRow
from consumers.pipelines.recsys_features import UserFeatureRow
from contracts.codec import encode
from contracts.events import Recommendation, ScoredItem
from features.definitions import FRAUD_FEATURE_NAMES, RECOMMENDATION_FEATURE_NAMES
from rtml.settings import Settings
from serving.config import FRAUD_SCORER, INGRESS, RECOMMENDER, AppArgs, serve_config
from serving.deploy import deploy, direct_ingress_urls, serve_url, with_models
from serving.protocol import FraudScoreRequest, RecommendRequest
from serving.synthetic import save_fraud_model, save_recommender_model
from store.online import OnlineStore

APP = f"serving-test-{uuid.uuid4().hex[:6]}"
T = 1_700_000_000_000
OLD_BIAS, NEW_BIAS = -5.0, -3.0
MAX_BATCH_ROWS = 256
TIMEOUT = aiohttp.ClientTimeout(total=30)

# Test-only autoscaling: 1-2 replicas, metrics pushed every 0.25 s, decisions within a second
# or two (metrics_interval_s is deprecated in Serve but the only per-deployment knob).
FAST_AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 0.5,
    "downscale_delay_s": 2.0,
    "look_back_period_s": 1.0,
    "metrics_interval_s": 0.25,
}
ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1}


@dataclass(frozen=True)
class Served:
    url: str
    config: dict[str, Any]
    namespace: str
    fraud_old: str
    fraud_new: str
    recommender: str
    settings: Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(
    ray_session: None, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    models: Path = tmp_path_factory.mktemp("serving-models")
    old = save_fraud_model(models, bias=OLD_BIAS, now=datetime(2025, 1, 1, tzinfo=UTC))
    new = save_fraud_model(models, bias=NEW_BIAS, now=datetime(2025, 1, 2, tzinfo=UTC))
    rec = save_recommender_model(models, n_items=200, dim=16)
    namespace = f"test:{APP}"
    args = AppArgs(
        models_dir=models,
        device="cpu",
        redis_url=stack_settings.redis_url,
        online_store_namespace=namespace,
        fraud={"model": old.name, "num_cpus": 0.5, "max_batch_rows": MAX_BATCH_ROWS},
        recommender={"num_cpus": 0.5},
        http={"num_cpus": 0.25, "max_body_bytes": 64 * 1024, "max_transactions": 50, "max_k": 50},
        simulated_latency_ms=5.0,  # room for requests to pile up (batching, autoscaling)
    )
    config = serve_config(
        args,
        app_name=APP,
        port=free_port(),
        deployments={
            FRAUD_SCORER: {"autoscaling_config": FAST_AUTOSCALING},
            RECOMMENDER: {"autoscaling_config": ONE_REPLICA},
            INGRESS: {"autoscaling_config": ONE_REPLICA},
        },
    )
    deploy(config, timeout_s=180.0)
    try:
        yield Served(
            serve_url(),
            config,
            namespace,
            old.name,
            new.name,
            rec.name,
            stack_settings,
        )
    finally:
        serve.delete(APP)
        serve.shutdown()
        client = redis.Redis.from_url(
            stack_settings.redis_url, **stack_settings.redis_client_kwargs()
        )
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def amount_rows(amounts: list[float] | np.ndarray) -> np.ndarray:
    rows = np.full((len(amounts), len(FRAUD_FEATURE_NAMES)), np.nan, dtype=np.float32)
    rows[:, 0] = amounts
    return rows


def fraud_handle() -> Any:
    return serve.get_deployment_handle(FRAUD_SCORER, APP)


def recommender_handle() -> Any:
    return serve.get_deployment_handle(RECOMMENDER, APP)


# -----------------------------------------------------------------------------------------------
# Handle API


async def test_a_poll_batch_gets_one_score_per_row_and_reasons_above_the_threshold(
    served: Served,
) -> None:
    amounts = np.linspace(0.0, 10.0, 1000)  # > MAX_BATCH_ROWS: scored at once, in one pass
    response = await fraud_handle().score.remote(FraudScoreRequest(amount_rows(amounts), 0.8))
    assert response.model_version == served.fraud_old
    assert response.scores.shape == (1000,) and response.scores.dtype == np.float64
    expected = np.array([sigmoid(a + OLD_BIAS) for a in amounts])
    np.testing.assert_allclose(response.scores, expected, rtol=1e-5)
    assert set(response.reasons) == {i for i in range(1000) if expected[i] >= 0.8}
    for i, reasons in response.reasons.items():
        assert 1 <= len(reasons) <= 3
        assert reasons[0].feature == "amount"
        assert reasons[0].value == pytest.approx(amounts[i], rel=1e-6)
    quiet = await fraud_handle().score.remote(FraudScoreRequest(amount_rows(amounts[:10]), None))
    assert quiet.reasons == {}
    empty = await fraud_handle().score.remote(FraudScoreRequest(amount_rows([]), 0.5))
    assert len(empty) == 0 and empty.model_version == served.fraud_old


async def test_concurrent_requests_share_batches_and_get_their_own_rows_back(
    served: Served,
) -> None:
    handle = fraud_handle()
    requests = [
        FraudScoreRequest(amount_rows([float(i % 9)] * (1 + i % 7)), 0.5 if i % 2 else None)
        for i in range(40)
    ]
    responses = await asyncio.wait_for(
        asyncio.gather(*(handle.score.remote(r) for r in requests)), 60.0
    )
    for i, (request, response) in enumerate(zip(requests, responses, strict=True)):
        assert len(response) == len(request)
        np.testing.assert_allclose(response.scores, sigmoid(i % 9 + OLD_BIAS), rtol=1e-5)
        explained = i % 2 == 1 and sigmoid(i % 9 + OLD_BIAS) >= 0.5
        assert set(response.reasons) == (set(range(len(request))) if explained else set())


async def test_recommendations_exclude_purchases(served: Served) -> None:
    handle = recommender_handle()
    row = ({"cat-001": 0.8, "cat-002": 0.6}, 4, 1, ["item-000001", "item-000002"], [])
    (top,) = (await handle.recommend.remote(RecommendRequest([row], k=10))).items
    assert len(top) == 10
    assert [s.score for s in top] == sorted((s.score for s in top), reverse=True)
    purchased = [s.item_id for s in top[:3]]
    bought = (*row[:4], purchased)
    response = await handle.recommend.remote(RecommendRequest([bought, row], k=10))
    assert response.model_version == served.recommender
    assert not {s.item_id for s in response.items[0]} & set(purchased)
    assert len(response.items[0]) == 10
    assert [s.item_id for s in response.items[1]] == [s.item_id for s in top]
    explicit = await handle.recommend.remote(
        RecommendRequest([row], k=300, exclude=[{top[0].item_id}])
    )
    assert len(explicit.items[0]) == 199  # the whole catalog but the excluded item


# -----------------------------------------------------------------------------------------------
# HTTP API


def transaction(event_id: str, card: str, amount: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "card_id": card,
        "user_id": "u-1",
        "merchant_id": "m-1",
        "merchant_category": "food",
        "amount": amount,
        "currency": "EUR",
        "lat": 48.85,
        "lon": 2.35,
        "event_time": T,
        "channel": "online",
    }


async def test_http_score_uses_stored_features_else_the_requests(served: Served) -> None:
    store = OnlineStore.from_settings(served.settings, namespace=served.namespace)
    features: dict[str, float | None] = dict.fromkeys(FRAUD_FEATURE_NAMES, 1.0)
    features["amount"] = 9.0
    features["distance_from_home_km"] = None
    row = FeatureRow("e-0", "card-stored", T - 1000, features, T)
    try:
        await store.write("fraud", [("card-stored", T - 1000, encode(row))])
    finally:
        await store.close()
    body = {"transactions": [transaction("e-1", "card-stored", 2.0), transaction("e-2", "c-x", 6)]}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(f"{served.url}/v1/fraud/score", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        result = await response.json()
    assert result["model_version"] == served.fraud_old
    assert result["threshold"] == 0.8  # settings.rtml_fraud_alert_threshold
    stored, computed = result["results"]
    assert stored["features_source"] == "online_store"
    assert stored["features_event_id"] == "e-0"
    assert stored["features"]["amount"] == 9.0
    assert stored["features"]["distance_from_home_km"] is None
    assert stored["score"] == pytest.approx(sigmoid(9.0 + OLD_BIAS), rel=1e-5)
    assert stored["alert"] and stored["reasons"][0]["feature"] == "amount"
    assert computed["features_source"] == "request"
    assert computed["features_event_id"] == "e-2"
    assert computed["features"]["amount"] == 6.0
    assert computed["features"]["transaction_count_1h"] == 1.0
    assert computed["score"] == pytest.approx(sigmoid(6.0 + OLD_BIAS), rel=1e-5)
    assert not computed["alert"] and computed["reasons"] == []


@pytest.mark.parametrize(
    ("payload", "status", "error", "field"),
    [
        (b"{not json", 400, "malformed_json", None),
        (b'{"transactions": []}', 422, "invalid_request", "$.transactions"),
        (
            b'{"transactions": [{"event_id": "e"}]}',
            422,
            "invalid_request",
            "$.transactions[0]",
        ),
        (
            b'{"transactions": [{"event_id": "e", "card_id": "c", "user_id": "u", '
            b'"merchant_id": "m", "merchant_category": "f", "amount": 0, "currency": "EUR", '
            b'"lat": 0, "lon": 0, "event_time": 1, "channel": "pos"}]}',
            422,
            "invalid_request",
            "$.transactions[0].amount",
        ),
        (b'{"transactions": [], "extra": 1}', 422, "invalid_request", None),
    ],
)
async def test_http_invalid_requests_get_4xx_with_the_field(
    served: Served, payload: bytes, status: int, error: str, field: str | None
) -> None:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(
            f"{served.url}/v1/fraud/score",
            data=payload,
            headers={"content-type": "application/json"},
        ) as response,
    ):
        text = await response.text()
        assert response.status == status, text
        body = await response.json()
    assert body["error"] == error and body["field"] == field
    assert body["message"] and "Traceback" not in text


async def test_http_oversize_bodies_are_refused_before_parsing(served: Served) -> None:
    big = b'{"transactions": [' + b" " * (70 * 1024) + b"]}"

    async def chunks() -> Any:  # no Content-Length: refused while it streams in
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for data in (big, chunks()):
            async with http.post(f"{served.url}/v1/fraud/score", data=data) as response:
                assert response.status == 413
                body = await response.json()
                assert body["error"] == "payload_too_large"
                assert "65536" in body["message"]
        many = {"transactions": [transaction(f"e{i}", "c", 1.0) for i in range(51)]}
        async with http.post(f"{served.url}/v1/fraud/score", json=many) as response:
            assert response.status == 413
            assert "at most 50 transactions" in (await response.json())["message"]


async def test_http_recommendations_from_features_or_popularity(served: Served) -> None:
    store = OnlineStore.from_settings(served.settings, namespace=served.namespace)
    features = dict(
        zip(
            RECOMMENDATION_FEATURE_NAMES,
            ({"cat-003": 1.0}, 3, 1, ["item-000010"], ["item-000011"]),
            strict=True,
        )
    )
    try:
        await store.write(
            "recsys", [("u-known", T, encode(UserFeatureRow("u-known", "e", T, features, T)))]
        )
        await store.replace_counts(
            "item_views_1h", {"item-000005": 50, "item-000007": 70, "item-000009": 10}
        )
    finally:
        await store.close()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        async with http.get(f"{served.url}/v1/recommendations/u-known", params={"k": 5}) as r:
            assert r.status == 200, await r.text()
            known = await r.json()
        async with http.get(f"{served.url}/v1/recommendations/u-unknown?k=2") as r:
            assert r.status == 200, await r.text()
            unknown = await r.json()
        for k in ("0", "51", "many"):
            async with http.get(f"{served.url}/v1/recommendations/u-known?k={k}") as r:
                assert r.status == 422
                body = await r.json()
                assert body["field"] == "k" and "[1, 50]" in body["message"]
    assert known["source"] == "model" and known["model_version"] == served.recommender
    assert known["features_event_time"] == T
    assert len(known["items"]) == 5
    assert "item-000011" not in {i["item_id"] for i in known["items"]}  # purchased
    # Purchases are excluded from the whole ranking, not just cut from the top 5.
    (full,) = (
        await recommender_handle().recommend.remote(
            RecommendRequest([tuple(features.values())], k=5, exclude=[[]])
        )
    ).items
    ranked = [s.item_id for s in full if s.item_id != "item-000011"][:4]
    assert [i["item_id"] for i in known["items"]][:4] == ranked
    assert unknown["source"] == "popularity" and unknown["model_version"] is None
    assert [(i["item_id"], i["score"]) for i in unknown["items"]] == [
        ("item-000007", 70.0),
        ("item-000005", 50.0),
    ]


async def test_http_recommendations_use_the_stored_top_k_only_when_it_ranks_these_features(
    served: Served,
) -> None:
    """The recommendation consumers store each active user's top-K (``recs`` group) with the
    event time of the features it was ranked from; the ingress answers from it when that is the
    user's current features and the model now served, and ranks afresh otherwise."""
    store = OnlineStore.from_settings(served.settings, namespace=served.namespace)
    features = dict(
        zip(
            RECOMMENDATION_FEATURE_NAMES,
            ({"cat-001": 1.0}, 2, 0, ["item-000020"], []),
            strict=True,
        )
    )
    # Items and scores the model would never produce, so an answer shows where it came from.
    marked = [ScoredItem(f"item-{i:06d}", 0.5 - i / 1000) for i in range(190, 200)]

    def stored(user: str, event_time: int, version: str) -> tuple[str, int, bytes]:
        rec = Recommendation(user, marked, version, event_time, event_time, event_time)
        return (user, event_time, encode(rec))

    users = {
        "u-fresh": (T, served.recommender),  # ranked from these features by this model
        "u-older": (T - 1, served.recommender),  # ranked from older features
        "u-other-model": (T, "some-older-model"),
    }
    try:
        await store.write(
            "recsys",
            [(u, T, encode(UserFeatureRow(u, "e", T, features, T))) for u in users],
        )
        await store.write("recs", [stored(u, t, v) for u, (t, v) in users.items()])
    finally:
        await store.close()

    async def items(http: aiohttp.ClientSession, user: str, k: int) -> list[str]:
        async with http.get(f"{served.url}/v1/recommendations/{user}?k={k}") as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert body["source"] == "model" and body["features_event_time"] == T
        return [i["item_id"] for i in body["items"]]

    mark = [s.item_id for s in marked]
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        # The ingress learns the served model's version in the background (within 2 s).
        deadline = time.monotonic() + 20
        while await items(http, "u-fresh", 5) != mark[:5]:
            assert time.monotonic() < deadline, "the stored top-K was never served"
            await asyncio.sleep(0.2)
        assert await items(http, "u-older", 5) != mark[:5]
        assert await items(http, "u-other-model", 5) != mark[:5]
        assert await items(http, "u-fresh", 20) != mark[:10]  # more than were stored: ranked


async def test_http_models_and_health(served: Served) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        async with http.get(f"{served.url}/v1/models") as r:
            assert r.status == 200
            models = {m["deployment"]: m for m in (await r.json())["models"]}
        async with http.get(f"{served.url}/healthz") as r:
            assert r.status == 200, await r.text()
            health = await r.json()
        async with http.get(f"{served.url}/nope") as r:
            assert r.status == 404
    assert models[FRAUD_SCORER]["version"] == served.fraud_old
    assert models[FRAUD_SCORER]["device"] == "cpu"
    assert models[RECOMMENDER]["version"] == served.recommender
    assert models[RECOMMENDER]["last_error"] is None
    assert health == {
        "status": "ok",
        "models": {"fraud": served.fraud_old, "recommender": served.recommender},
        "problems": [],
    }


async def test_the_ingress_replica_answers_on_its_own_port_as_the_proxy_does(
    served: Served,
) -> None:
    (direct,) = direct_ingress_urls(APP)  # one Ingress replica, serving HTTP itself
    assert direct != served.url
    answers = {}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for url in (served.url, direct):
            async with http.get(f"{url}/v1/models") as r:
                assert r.status == 200
                versions = sorted(
                    (m["deployment"], m["version"]) for m in (await r.json())["models"]
                )
            async with http.get(f"{url}/v1/recommendations/nobody-{uuid.uuid4().hex}?k=3") as r:
                assert r.status == 200
                unknown = (await r.json())["source"]
            async with http.get(f"{url}/v1/recommendations/u1?k=0") as r:
                invalid = (r.status, (await r.json())["field"])
            answers[url] = (versions, unknown, invalid)
    assert answers[direct] == answers[served.url]
    assert answers[direct][1:] == ("popularity", (422, "k"))


# -----------------------------------------------------------------------------------------------
# Hot reload and autoscaling


async def test_hot_reload_under_traffic_fails_no_request(served: Served) -> None:
    handle = fraud_handle()
    rows = amount_rows([5.0, 1.0])
    expected = {
        served.fraud_old: sigmoid(5.0 + OLD_BIAS),
        served.fraud_new: sigmoid(5.0 + NEW_BIAS),
    }
    seen: list[tuple[float, float, str, float]] = []  # (sent, answered, version, score)
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = await handle.score.remote(FraudScoreRequest(rows, 0.5))
            except Exception as exc:  # noqa: BLE001 - recorded; the test asserts there are none
                errors.append(exc)
                continue
            seen.append((sent, time.monotonic(), response.model_version, float(response.scores[0])))

    tasks = [asyncio.create_task(traffic()) for _ in range(2)]
    try:
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await asyncio.to_thread(
            deploy, with_models(served.config, APP, fraud=served.fraud_new), timeout_s=120.0
        )
        done = time.monotonic()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30.0)
    assert errors == []
    assert {version for _, _, version, _ in seen} == {served.fraud_old, served.fraud_new}
    for sent, answered, version, score in seen:
        assert score == pytest.approx(expected[version], rel=1e-5)  # the named model scored it
        if answered < started:
            assert version == served.fraud_old
        if sent > done:
            assert version == served.fraud_new
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(f"{served.url}/v1/models") as r,
    ):
        models = {m["deployment"]: m for m in (await r.json())["models"]}
    assert models[FRAUD_SCORER]["version"] == served.fraud_new


async def test_a_bad_reload_keeps_serving_the_current_model(served: Served) -> None:
    current = (await fraud_handle().info.remote()).version
    bad = with_models(served.config, APP, fraud="fraud-does-not-exist")
    await asyncio.to_thread(deploy, bad, timeout_s=120.0)
    info = await fraud_handle().info.remote()
    assert info.version == current and info.requested == "fraud-does-not-exist"
    assert "no fraud model version 'fraud-does-not-exist'" in info.last_error
    response = await fraud_handle().score.remote(FraudScoreRequest(amount_rows([1.0]), None))
    assert response.model_version == current
    malformed = copy.deepcopy(bad)
    malformed["applications"][0]["deployments"][0]["user_config"] = {"modle": current}
    await asyncio.to_thread(deploy, malformed, timeout_s=120.0)
    info = await fraud_handle().info.remote()
    assert info.version == current and "user_config must be {model:" in info.last_error
    await asyncio.to_thread(deploy, served.config, timeout_s=120.0)  # back to the first model
    assert (await fraud_handle().info.remote()).version == served.fraud_old


def fraud_replicas() -> int:
    status = serve.status().applications[APP].deployments[FRAUD_SCORER]
    return status.replica_states.get("RUNNING", 0)


async def wait_replicas(wanted: int, timeout_s: float) -> float:
    started = time.monotonic()
    while fraud_replicas() != wanted:
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"FraudScorer has {fraud_replicas()} replicas, not {wanted}")
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def test_replicas_go_up_under_load_and_down_after(served: Served) -> None:
    await wait_replicas(1, 60.0)
    handle = fraud_handle()
    rows = amount_rows([3.0] * 64)
    stop = asyncio.Event()

    async def caller() -> int:
        answered = 0
        while not stop.is_set():
            await handle.score.remote(FraudScoreRequest(rows, None))
            answered += 1
        return answered

    callers = [asyncio.create_task(caller()) for _ in range(12)]
    try:
        await wait_replicas(2, 90.0)
    finally:
        stop.set()
        answered = await asyncio.wait_for(asyncio.gather(*callers), 60.0)
    assert sum(answered) > 0
    await wait_replicas(1, 90.0)
