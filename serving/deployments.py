"""The model deployments: ``FraudScorer`` and ``Recommender``.

Each replica holds one model in a ``ModelSlot`` (hot reload through ``reconfigure``), runs its
forward passes on its own torch thread, and coalesces concurrent calls with ``@serve.batch``
counted in rows (see ``serving.batching``). The handle API (``score`` / ``recommend``) takes and
returns the structures of ``serving.protocol``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import numpy as np
from ray import serve
from ray.serve.exceptions import RayServeException

from models.artifacts import load_fraud, load_recommender
from models.fraud import LoadedFraudModel
from models.two_tower import LoadedRecommender
from serving.batching import (
    merge_fraud,
    merge_recommend,
    rows_in,
    rows_to_explain,
    skips_queue,
    split_fraud,
    split_recommend,
)
from serving.config import (
    FRAUD_SCORER,
    RECOMMENDER,
    AppArgs,
    deployment_options,
    parse_args,
    parse_user_config,
)
from serving.errors import InvalidRequest, ModelNotLoaded, ServingConfigError
from serving.metrics import ModelMetrics
from serving.models import Kind, Loaded, ModelSlot
from serving.protocol import (
    FraudScoreRequest,
    FraudScoreResponse,
    ModelInfo,
    RecommendRequest,
    RecommendResponse,
)
from serving.replica import TorchWorker, models_dir_of, replica_device, replica_settings

log = logging.getLogger(__name__)

M = TypeVar("M", LoadedFraudModel, LoadedRecommender)


def score_batch(
    model: LoadedFraudModel, requests: list[FraudScoreRequest], top_k: int
) -> list[FraudScoreResponse]:
    """A replica's work for one batch (on its torch thread): one forward pass over every
    request's rows, then explanations for the rows at or above their request's threshold."""
    rows, thresholds = merge_fraud(requests)  # [N, F], [N]
    scores = model.predict(rows)  # [N] float64
    explained = rows_to_explain(scores, thresholds)
    reasons = model.explain(rows[explained], top_k) if explained.size else []
    return split_fraud(requests, model.version, scores, explained, reasons)


def recommend_batch(
    model: LoadedRecommender, requests: list[RecommendRequest]
) -> list[RecommendResponse]:
    """A replica's work for one batch: exact top-k over the catalog for every request's users
    (the largest k of the batch, each response cut to its own)."""
    rows, exclude, k = merge_recommend(requests)
    items = model.topk(rows, k, exclude)  # type: ignore[arg-type]
    return split_recommend(requests, model.version, items)


class _ModelReplica(Generic[M]):
    """What both model deployments share: the slot, reconfigure, info and health."""

    name: str
    kind: Kind

    def _setup(self, args: AppArgs, loader: Any) -> None:
        settings = replica_settings(args)
        self._device = replica_device(args.device)
        self._torch = TorchWorker(f"{self.kind}-torch", args.torch_threads)
        self._delay_s = args.simulated_latency_ms / 1000.0
        self._metrics = ModelMetrics(self.name)
        self._in_progress = 0  # non-empty requests queued or computing (``skips_queue``)
        device = self._device
        self._slot: ModelSlot[M] = ModelSlot(
            self.kind,
            models_dir_of(args, settings),
            lambda path: loader(path, device),
            lambda model: model.version,
        )
        try:
            self._replica = serve.get_replica_context().replica_id.to_full_id_str()
        except RayServeException:  # constructed outside Serve (unit tests)
            self._replica = "local"

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Load the model ``user_config["model"]`` names and swap it in (hot reload)."""
        old = self._slot.current
        try:
            wanted = parse_user_config(self.name, user_config)
        except ServingConfigError as exc:
            if old is None:
                raise
            self._slot.last_error = str(exc)
            self._metrics.reloaded(False)
            log.error("%s: %s; still serving %s", self.name, exc, old.version)
            return
        ok = await self._slot.reload(wanted.model)
        self._metrics.reloaded(ok)
        new = self._slot.current
        if ok and new is not None:
            self._metrics.swapped(old.version if old else None, new.version)
            if old is None or old.version != new.version:
                log.info("%s serves %s (%s)", self.name, new.version, self._device)

    def _loaded(self) -> Loaded[M]:
        loaded = self._slot.current  # read once: everything that follows uses this model
        if loaded is None:
            raise ModelNotLoaded(self.name, "no model loaded yet")
        return loaded

    async def info(self) -> ModelInfo:
        loaded = self._slot.current
        return ModelInfo(
            deployment=self.name,
            version=loaded.version if loaded else None,
            requested=self._slot.requested,
            path=str(loaded.path) if loaded else None,
            device=str(self._device),
            loaded_at_ms=loaded.loaded_at_ms if loaded else None,
            replica=self._replica,
            last_error=self._slot.last_error,
        )

    async def check_health(self) -> None:
        """Serve's health check: a replica without a model is unhealthy."""
        self._loaded()

    def __del__(self) -> None:  # Serve calls it when the replica shuts down
        torch_worker = getattr(self, "_torch", None)
        if torch_worker is not None:
            torch_worker.close()

    async def _answer(
        self,
        request: Any,
        expected: type,
        empty: Callable[[str], Any],
        limit: int,
        batched: Callable[[Any], Awaitable[Any]],
    ) -> Any:
        """One handle call: an empty request answers at once; one that fills a batch or finds
        the replica idle runs a pass of its own at once; others coalesce in ``batched``
        (@serve.batch); counted in the metrics."""
        started = time.perf_counter()
        outcome = "error"
        try:
            if not isinstance(request, expected):
                raise InvalidRequest(
                    f"expected a {expected.__name__}, got {type(request).__name__}"
                )
            if len(request) == 0:
                response = empty(self._loaded().version)
            else:
                alone = skips_queue(request, limit, self._in_progress)
                self._in_progress += 1
                try:
                    if alone:
                        response = (await self._forward([request]))[0]
                    else:
                        response = await batched(request)
                finally:
                    self._in_progress -= 1
            outcome = "ok"
            return response
        finally:
            self._metrics.answered(outcome, (time.perf_counter() - started) * 1000.0)

    async def _forward(self, requests: list[Any]) -> list[Any]:
        """One forward pass over ``requests`` on the torch thread, with the model read once."""
        model = self._loaded().model
        started = time.perf_counter()
        responses: list[Any] = await self._torch.run(self._compute, model, requests)
        compute_ms = (time.perf_counter() - started) * 1000.0
        self._metrics.batch(sum(len(r) for r in requests), len(requests), compute_ms)
        return responses

    def _compute(self, model: M, requests: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _simulate_load(self) -> None:
        if self._delay_s:
            time.sleep(self._delay_s)  # on the torch thread, like a heavier model


@serve.deployment(name=FRAUD_SCORER, **deployment_options(FRAUD_SCORER))
class FraudScorer(_ModelReplica[LoadedFraudModel]):
    """Fraud probabilities (and reasons for alerts) for micro-batches of feature rows."""

    name = FRAUD_SCORER
    kind: Kind = "fraud"

    def __init__(self, args: AppArgs | dict[str, Any]) -> None:
        args = parse_args(args)
        self._setup(args, load_fraud)
        self._max_rows = args.fraud.max_batch_rows
        self._top_k = args.fraud.explain_top_k
        self._score_batch.set_max_batch_size(args.fraud.max_batch_rows)
        self._score_batch.set_batch_wait_timeout_s(args.fraud.batch_wait_timeout_s)

    async def score(self, request: FraudScoreRequest) -> FraudScoreResponse:
        """Scores of ``request.rows``; reasons for the rows at or above its threshold."""
        response: FraudScoreResponse = await self._answer(
            request,
            FraudScoreRequest,
            lambda version: FraudScoreResponse(version, np.zeros(0), {}),
            self._max_rows,
            self._score_batch,
        )
        return response

    # max_batch_size and batch_wait_timeout_s are set from AppArgs in __init__.
    @serve.batch(max_batch_size=4096, batch_wait_timeout_s=0.001, batch_size_fn=rows_in)
    async def _score_batch(self, requests: list[FraudScoreRequest]) -> list[FraudScoreResponse]:
        return await self._forward(requests)

    def _compute(
        self, model: LoadedFraudModel, requests: list[FraudScoreRequest]
    ) -> list[FraudScoreResponse]:
        self._simulate_load()
        return score_batch(model, requests, self._top_k)


@serve.deployment(name=RECOMMENDER, **deployment_options(RECOMMENDER))
class Recommender(_ModelReplica[LoadedRecommender]):
    """Exact top-K over the whole catalog for batches of users."""

    name = RECOMMENDER
    kind: Kind = "recsys"

    def __init__(self, args: AppArgs | dict[str, Any]) -> None:
        args = parse_args(args)
        self._setup(args, load_recommender)
        self._max_users = args.recommender.max_batch_users
        self._recommend_batch.set_max_batch_size(args.recommender.max_batch_users)
        self._recommend_batch.set_batch_wait_timeout_s(args.recommender.batch_wait_timeout_s)

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Each user's top ``request.k`` items, without their excluded (purchased) items."""
        response: RecommendResponse = await self._answer(
            request,
            RecommendRequest,
            lambda version: RecommendResponse(version, []),
            self._max_users,
            self._recommend_batch,
        )
        return response

    @serve.batch(max_batch_size=256, batch_wait_timeout_s=0.001, batch_size_fn=rows_in)
    async def _recommend_batch(self, requests: list[RecommendRequest]) -> list[RecommendResponse]:
        return await self._forward(requests)

    def _compute(
        self, model: LoadedRecommender, requests: list[RecommendRequest]
    ) -> list[RecommendResponse]:
        self._simulate_load()
        return recommend_batch(model, requests)
