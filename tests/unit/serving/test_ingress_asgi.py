"""The HTTP ingress in-process (its FastAPI app over ASGI, no Ray, no Redis): any body gets an
answer with a JSON reason (2xx, 4xx or 503), never a crash, a hang or a stack trace; the
optional API key is enforced in constant time; the same request twice is scored identically.

The model handles and the online store are test doubles: the route logic, validation and
error mapping are the real ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray import serve

from features.definitions import FRAUD_FEATURE_NAMES
from rtml.errors import ServiceUnavailable
from serving import ingress
from serving.config import AppArgs
from serving.http_api import ErrorBody
from serving.protocol import FraudScoreRequest, FraudScoreResponse, ModelInfo

AMOUNT = FRAUD_FEATURE_NAMES.index("amount")
TX = {
    "event_id": "e1",
    "card_id": "c1",
    "user_id": "u1",
    "merchant_id": "m1",
    "merchant_category": "food",
    "amount": 12.5,
    "currency": "EUR",
    "lat": 48.85,
    "lon": 2.35,
    "event_time": 1_700_000_000_000,
    "channel": "pos",
}
KEY = "k3y-with-enough-entropy"


class _Remote:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    async def remote(self, *args: Any) -> Any:
        return self._fn(*args)


class FraudHandle:
    """Scores ``sigmoid(amount - 5)``, like the synthetic fraud model."""

    def __init__(self) -> None:
        self.score = _Remote(self._score)
        self.info = _Remote(lambda: ModelInfo("fraud", "v-test", "latest", None, "cpu", 1, "f1"))

    @staticmethod
    def _score(request: FraudScoreRequest) -> FraudScoreResponse:
        amounts = request.rows[:, AMOUNT].astype(np.float64)
        return FraudScoreResponse("v-test", 1.0 / (1.0 + np.exp(5.0 - amounts)), {})


class RecommenderHandle:
    def __init__(self) -> None:
        self.info = _Remote(lambda: ModelInfo("recs", "r-test", "latest", None, "cpu", 1, "r1"))


@dataclass
class EmptyStore:
    """An online store that knows no entity (features then come from the request)."""

    down: bool = False

    async def read(self, group: str, entities: list[str]) -> list[None]:
        return await self.read_keys([(group, entity) for entity in entities])

    async def read_keys(self, keys: list[tuple[str, str]]) -> list[None]:
        if self.down:
            raise ServiceUnavailable("redis", "online store read failed: connection refused")
        return [None] * len(keys)

    async def top_counts(self, name: str, n: int) -> list[tuple[str, int]]:
        return []

    async def ping(self) -> None:
        if self.down:
            raise ServiceUnavailable("redis", "not reachable")


class Metrics:
    def __init__(self) -> None:
        self.statuses: list[int] = []

    def answered(self, route: str, status: int, ms: float) -> None:
        self.statuses.append(status)

    def sources(self, group: str, counts: dict[str, int]) -> None:
        pass


def make_ingress(monkeypatch: pytest.MonkeyPatch, api_key: str | None) -> Any:
    if api_key is None:
        monkeypatch.delenv("RTML_API_KEY", raising=False)
    else:
        monkeypatch.setenv("RTML_API_KEY", api_key)
    monkeypatch.setattr(ingress, "HttpMetrics", Metrics)
    user_class = ingress.Ingress.func_or_class.__mro__[1]
    instance = object.__new__(user_class)
    args = AppArgs(redis_url="redis://127.0.0.1:1/0", http={"max_body_bytes": 4096})
    user_class.__init__(instance, args, FraudHandle(), RecommenderHandle())
    instance._store = EmptyStore()
    return instance


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(make_ingress(monkeypatch, None)) as http:
        yield http


@dataclass
class ReplicaContext:
    servable_object: Any


def _client(instance: Any) -> httpx.AsyncClient:
    # Serve injects the replica's instance as ``self`` from its replica context.
    serve.get_replica_context = lambda: ReplicaContext(instance)
    transport = httpx.ASGITransport(app=ingress.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://rtml.test", timeout=10)


def check_error(response: httpx.Response, status: int | None = None) -> ErrorBody:
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = msgspec.json.decode(response.content, type=ErrorBody)
    assert body.error and body.message
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


async def test_a_valid_request_is_scored_and_the_same_request_twice_identically(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps({"transactions": [TX, {**TX, "event_id": "e2"}]}).encode()
    first = await client.post("/v1/fraud/score", content=body)
    second = await client.post("/v1/fraud/score", content=body)
    assert first.status_code == 200, first.text
    assert first.json() == second.json()
    assert [r["event_id"] for r in first.json()["results"]] == ["e1", "e2"]


PROPERTY = settings(
    max_examples=150,
    deadline=2_000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=6000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.sampled_from(sorted(TX)), json_values).map(
        lambda fv: json.dumps({"transactions": [{**TX, fv[0]: fv[1]}]}).encode()
    ),
    st.just(b'{"transactions": [' + b"[" * 3000 + b"]" * 3000 + b"]}"),
    st.just(json.dumps({"transactions": [TX]}).replace("12.5", "NaN").encode()),
    st.just(json.dumps({"transactions": [TX]}).replace("12.5", "1e999").encode()),
    st.just(json.dumps({"transactions": [TX]}).encode("utf-16")),
)


@PROPERTY
@given(bodies)
async def test_any_body_gets_an_answer_with_a_reason(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        "/v1/fraud/score", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 400, 413, 422), response.text
    if response.status_code != 200:
        check_error(response)
        if len(body) > 4096:
            assert response.status_code == 413


@PROPERTY
@given(st.text(max_size=300), st.text(max_size=30))
async def test_any_user_id_and_k_get_an_answer(
    client: httpx.AsyncClient, user_id: str, k: str
) -> None:
    response = await client.get(f"/v1/recommendations/{quote(user_id, safe='')}", params={"k": k})
    assert response.status_code in (200, 307, 404, 422), response.text  # 307: trailing /
    if response.status_code == 422:
        check_error(response)


async def test_oversize_bodies_are_refused_before_they_are_read(
    client: httpx.AsyncClient,
) -> None:
    check_error(await client.post("/v1/fraud/score", content=b"x" * 5000), 413)

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b"x" * 1000

    check_error(await client.post("/v1/fraud/score", content=stream()), 413)


async def test_an_unavailable_store_is_a_503_without_details(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance = make_ingress(monkeypatch, None)
    instance._store = EmptyStore(down=True)
    async with _client(instance) as http:
        body = json.dumps({"transactions": [TX]}).encode()
        error = check_error(await http.post("/v1/fraud/score", content=body), 503)
    assert error.error == "unavailable"


async def test_an_unexpected_error_is_a_bare_500(monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make_ingress(monkeypatch, None)

    async def broken(group: str, entities: list[str]) -> list[None]:
        raise KeyError("secret internal detail")

    instance._store.read = broken
    async with _client(instance) as http:
        body = json.dumps({"transactions": [TX]}).encode()
        response = await http.post("/v1/fraud/score", content=body)
    error = check_error(response, 500)
    assert "secret internal detail" not in response.text and error.error == "internal"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-api-key": "wrong"}, 401),
        ({"x-api-key": KEY[:-1]}, 401),
        ({"authorization": f"Basic {KEY}"}, 401),
        ({"x-api-key": "é".encode()}, 401),  # non-ASCII bytes
        ({"x-api-key": KEY}, 200),
        ({"authorization": f"Bearer {KEY}"}, 200),
    ],
)
async def test_the_api_key_guards_every_v1_route(
    monkeypatch: pytest.MonkeyPatch, headers: dict[str, Any], status: int
) -> None:
    instance = make_ingress(monkeypatch, KEY)
    body = json.dumps({"transactions": [TX]}).encode()
    async with _client(instance) as http:
        responses = [
            await http.post("/v1/fraud/score", content=body, headers=headers),
            await http.get("/v1/recommendations/u1", headers=headers),
            await http.get("/v1/models", headers=headers),
        ]
        health = await http.get("/healthz")  # for load balancers: no key needed
    for response in responses:
        assert response.status_code == status, response.text
        if status == 401:
            assert check_error(response).error == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            assert KEY not in response.text
    assert health.status_code == 200, health.text


@pytest.fixture(autouse=True)
def _restore_serve() -> Any:
    original = serve.get_replica_context
    yield
    serve.get_replica_context = original
