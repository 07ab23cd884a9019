"""The HTTP ingress: a FastAPI app on a Serve deployment, in front of the model deployments.

It validates requests at the edge (contracts, sizes, bounds), reads features from the Redis
online store (one round trip per group and request), and makes one handle call per request to
``FraudScorer`` or ``Recommender`` (which coalesce concurrent calls into shared forward passes).
The API is described in ``serving.http_api`` and docs/serving.md.
"""

# No `from __future__ import annotations`: FastAPI reads the route parameters' annotations
# (Request, str) at runtime, from the class Serve builds around these methods.

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import Awaitable

import msgspec
from fastapi import FastAPI, Request, Response
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from contracts.events import ScoredItem
from rtml.errors import ServiceUnavailable
from serving.config import INGRESS, AppArgs, deployment_options, parse_args
from serving.errors import InvalidRequest
from serving.http_api import (
    ErrorBody,
    HealthBody,
    ModelsBody,
    RecommendationsBody,
    ScoredTransaction,
    ScoreResponseBody,
    check_user_id,
    content_length,
    decode_score_request,
    encode,
    error_body,
    parse_k,
    too_large,
)
from serving.metrics import HttpMetrics
from serving.online import POPULARITY, read_fraud_features, read_user_features_and_top_k
from serving.protocol import FraudScoreRequest, ModelInfo, RecommendRequest
from serving.replica import replica_settings
from store.online import OnlineStore, connect_redis

log = logging.getLogger(__name__)

JSON = "application/json"
HEALTH_TIMEOUT_S = 5.0
# How old the ingress's knowledge of the Recommender's model version may get: a stored top-K is
# served only under the version the Recommender reported within this long.
MODEL_VERSION_TTL_S = 2.0
# Errors of a deployment that is missing, overloaded or restarting: the caller may retry.
_UNAVAILABLE = (ServiceUnavailable, BackPressureError, DeploymentUnavailableError, RayActorError)

app = FastAPI(
    title="rtml serving",
    description="Fraud scores and recommendations from the rtml models (see docs/serving.md).",
    version="1",
    redoc_url=None,
)


def _json(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(content=encode(body), status_code=status, media_type=JSON)


def _cause(exc: BaseException) -> BaseException:
    """The original exception of a RayTaskError raised through a handle (its own str() holds a
    remote traceback, which must not reach a client)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


@serve.deployment(name=INGRESS, **deployment_options(INGRESS))
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        args: AppArgs | dict,
        fraud_scorer: DeploymentHandle,
        recommender: DeploymentHandle,
    ) -> None:
        args = parse_args(args)
        settings = replica_settings(args)
        self._http = args.http
        self._threshold = (
            args.http.alert_threshold
            if args.http.alert_threshold is not None
            else settings.rtml_fraud_alert_threshold
        )
        self._feature_config = settings.rtml_features
        self._store = OnlineStore(connect_redis(settings), namespace=args.online_store_namespace)
        self._fraud = fraud_scorer
        self._recommender = recommender
        self._recs_version: str | None = None  # the Recommender's, as last reported
        self._recs_version_at = -float("inf")  # time.monotonic() of that report
        self._version_check: asyncio.Task[None] | None = None
        self._metrics = HttpMetrics()
        key = settings.rtml_api_key
        self._api_key = None if key is None else key.get_secret_value().encode()

    # -------------------------------------------------------------------------------------------
    # Routes

    @app.post("/v1/fraud/score")
    async def score(self, request: Request) -> Response:
        """Score a JSON batch of transactions; features from the online store or the request."""
        route = "/v1/fraud/score"
        return self._denied(route, request) or await self._answer(route, self._score(request))

    @app.get("/v1/recommendations/{user_id}")
    async def recommendations(self, user_id: str, request: Request) -> Response:
        """A user's top-k items (``?k=``), or the most viewed items for an unknown user."""
        route = "/v1/recommendations"
        k = request.query_params.get("k")
        return self._denied(route, request) or await self._answer(
            route, self._recommend(user_id, k)
        )

    @app.get("/v1/models")
    async def models(self, request: Request) -> Response:
        """The model versions the deployments serve (as one replica of each reports)."""
        route = "/v1/models"
        return self._denied(route, request) or await self._answer(route, self._models())

    @app.get("/healthz")
    async def healthz(self) -> Response:
        """200 when both models are loaded and the online store answers, else 503."""
        return await self._answer("/healthz", self._health())

    # -------------------------------------------------------------------------------------------
    # Handlers

    async def _score(self, request: Request) -> Response:
        body = await self._read_body(request)
        decoded = decode_score_request(body, self._http.max_transactions)
        threshold = self._threshold if decoded.threshold is None else decoded.threshold
        transactions = decoded.transactions
        features = await read_fraud_features(self._store, transactions, self._feature_config)
        self._metrics.sources("fraud", dict(Counter(features.sources)))
        self._metrics.feature_ages(
            "fraud",
            [t for t, src in zip(features.event_times, features.sources, strict=True)
             if src == "online_store"],
        )  # fmt: skip
        scored = await self._fraud.score.remote(FraudScoreRequest(features.rows, threshold))
        results = [
            ScoredTransaction(
                event_id=tx.event_id,
                card_id=tx.card_id,
                score=float(scored.scores[i]),
                alert=bool(scored.scores[i] >= threshold),
                reasons=scored.reasons.get(i, []),
                features_source=features.sources[i],
                features_event_id=features.event_ids[i],
                features_event_time=features.event_times[i],
                features=features.as_dict(i),
            )
            for i, tx in enumerate(transactions)
        ]
        return _json(ScoreResponseBody(scored.model_version, threshold, results))

    async def _recommend(self, user_id: str, raw_k: str | None) -> Response:
        check_user_id(user_id)
        k = parse_k(raw_k, self._http.default_k, self._http.max_k)
        user, stored = await read_user_features_and_top_k(self._store, user_id)
        if user is None:
            self._metrics.sources("recsys", {"popularity": 1})
            top = await self._store.top_counts(POPULARITY, k)
            items = [ScoredItem(item, float(count)) for item, count in top]
            return _json(RecommendationsBody(user_id, k, "popularity", None, None, items))
        self._metrics.feature_ages("recsys", [user.event_time])
        self._check_recs_version()
        if (
            stored is not None
            and stored.event_time == user.event_time
            and stored.model_version == self._recs_version
            and len(stored.items) >= k
        ):
            # The consumers ranked these exact features with the model now served.
            self._metrics.sources("recsys", {"stored_top_k": 1})
            return _json(
                RecommendationsBody(
                    user_id, k, "model", stored.model_version, user.event_time, stored.items[:k]
                )
            )
        self._metrics.sources("recsys", {"online_store": 1})
        response = await self._recommender.recommend.remote(RecommendRequest([user.row], k))
        self._note_recs_version(response.model_version)
        return _json(
            RecommendationsBody(
                user_id, k, "model", response.model_version, user.event_time, response.items[0]
            )
        )

    def _note_recs_version(self, version: str | None) -> None:
        self._recs_version = version
        self._recs_version_at = time.monotonic()

    def _check_recs_version(self) -> None:
        """Ask the Recommender for its model version in the background once the last answer is
        older than MODEL_VERSION_TTL_S; stored top-Ks of another version are not served."""
        if time.monotonic() - self._recs_version_at < MODEL_VERSION_TTL_S:
            return
        if self._version_check is not None and not self._version_check.done():
            return

        async def check() -> None:
            try:
                info: ModelInfo = await self._recommender.info.remote()
            except (TimeoutError, RayTaskError, *_UNAVAILABLE) as exc:
                # Until it answers, every top-K is ranked by the Recommender.
                log.warning("recommender version check failed: %s", _cause(exc))
                self._recs_version = None
                return
            self._note_recs_version(info.version)

        self._version_check = asyncio.create_task(check())

    async def _models(self) -> Response:
        infos = await asyncio.gather(self._fraud.info.remote(), self._recommender.info.remote())
        return _json(ModelsBody(list(infos)))

    async def _health(self) -> Response:
        problems: list[str] = []
        versions: dict[str, str | None] = {}

        async def model(name: str, handle: DeploymentHandle) -> None:
            try:
                info: ModelInfo = await asyncio.wait_for(
                    handle.info.remote(), timeout=HEALTH_TIMEOUT_S
                )
            except (TimeoutError, *_UNAVAILABLE) as exc:
                versions[name] = None
                problems.append(f"{name}: {type(_cause(exc)).__name__}: {_cause(exc)}")
                return
            versions[name] = info.version
            if info.version is None:
                problems.append(f"{name}: no model loaded")

        async def store() -> None:
            try:
                await asyncio.wait_for(self._store.ping(), timeout=HEALTH_TIMEOUT_S)
            except (TimeoutError, ServiceUnavailable) as exc:
                problems.append(f"online store: {exc}")

        await asyncio.gather(
            model("fraud", self._fraud), model("recommender", self._recommender), store()
        )
        status = "unavailable" if problems else "ok"
        return _json(HealthBody(status, versions, problems), 503 if problems else 200)

    async def _read_body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it is known to exceed the limit: from its
        declared Content-Length before reading anything, else while it streams in."""
        limit = self._http.max_body_bytes
        content_length(request.headers.get("content-length"), limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _denied(self, route: str, request: Request) -> Response | None:
        """None when no API key is configured or the request carries it (``X-API-Key`` or
        ``Authorization: Bearer``, compared in constant time); else a 401."""
        if self._api_key is None:
            return None
        presented = request.headers.get("x-api-key")
        if presented is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if presented is not None and hmac.compare_digest(presented.encode(), self._api_key):
            return None
        self._metrics.answered(route, 401, 0.0)
        response = _json(
            ErrorBody("unauthorized", "a valid API key is required: header X-API-Key"), 401
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def _answer(self, route: str, handler: Awaitable[Response]) -> Response:
        """Run a handler; turn expected failures into JSON errors, anything else into a bare
        500 (the traceback goes to this replica's log, never to the client)."""
        started = time.perf_counter()
        try:
            response = await handler
        except InvalidRequest as exc:  # here, or in a model deployment (through its handle)
            invalid = _cause(exc)
            assert isinstance(invalid, InvalidRequest)
            response = _json(error_body(invalid), invalid.status)
        except _UNAVAILABLE as exc:
            cause = _cause(exc)
            log.warning("%s unavailable: %s", route, cause)
            message = str(cause) if isinstance(cause, ServiceUnavailable) else "try again"
            response = _json(ErrorBody("unavailable", message), 503)
        except Exception:
            log.exception("%s failed", route)
            response = _json(ErrorBody("internal", "internal error; see the serving logs"), 500)
        self._metrics.answered(route, response.status_code, (time.perf_counter() - started) * 1e3)
        return response
