"""Consumer actors on Ray, and the driver-side handle that starts, scales and stops a group.

Each ``ConsumerActor`` runs one group member (``ConsumerRunner``) of one pipeline. Partitions
are the unit of parallelism: up to one actor per input partition; Kafka's group protocol
rebalances partitions when actors come and go, and each partition's state follows it through
its changelog. Actors restart after a crash (``max_restarts=-1``) and Ray retries the
interrupted ``run`` call on the new instance (``max_task_retries=-1``), which restores the
state and resumes at the last committed transaction.

Placement (``settings.rtml_placement``): on a cluster whose CPU nodes advertise the custom
resource ``consumer`` (cluster.yaml, the KubeRay manifest), each actor asks for a share of it,
so consumers stay off the head and the GPU nodes; without that resource (one machine) the
request is left out and the actors go wherever there is CPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import ray

from consumers.runner import ConsumerRunner, Pipeline
from rtml.errors import ConfigError
from rtml.settings import PlacementSettings, Settings

log = logging.getLogger(__name__)

PipelineFactory = Callable[[Settings], Pipeline]


def pipeline_factories() -> dict[str, PipelineFactory]:
    """The pipelines a consumer actor can run, by name."""
    from consumers.pipelines import factories

    return factories()


def consumer_actor_options(
    placement: PlacementSettings, cluster_resources: dict[str, float]
) -> dict[str, Any]:
    """Ray actor options for a consumer: CPU share, the consumer resource where the cluster
    has it, the spread strategy."""
    options: dict[str, Any] = {"num_cpus": placement.num_cpus}
    resource = placement.consumer_resource
    present = resource is not None and cluster_resources.get(resource, 0.0) > 0
    if resource is not None and (present or placement.require_consumer_resource):
        options["resources"] = {resource: placement.num_cpus}
    if placement.spread:
        options["scheduling_strategy"] = "SPREAD"
    return options


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0.25)
class ConsumerActor:
    def __init__(
        self, settings: Settings, pipeline: str, member: int, runner_options: dict[str, Any]
    ) -> None:
        logging.basicConfig(level=settings.rtml_log_level)
        factory = pipeline_factories()[pipeline]
        self._member = member
        self._runner = ConsumerRunner(settings, factory(settings), **runner_options)
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Consume until ``stop``; raises if the loop dies (Ray then restarts the actor)."""
        self._task = asyncio.current_task()
        await self._runner.run()

    async def stop(self) -> None:
        self._runner.stop()

    async def stats(self) -> dict[str, Any]:
        return {
            "member": self._member,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "partitions": self._runner.assigned,
            **asdict(self._runner.stats),
            "pipeline": self._runner.pipeline.stats(),
            "metrics": self._runner.metrics.summary(),
        }

    async def pid(self) -> int:
        return os.getpid()


class ConsumerGroup:
    """Driver-side handle on the actors of one pipeline."""

    def __init__(
        self,
        settings: Settings,
        pipeline: str,
        *,
        runner_options: dict[str, Any] | None = None,
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        if pipeline not in pipeline_factories():
            known = ", ".join(sorted(pipeline_factories()))
            raise ConfigError(f"unknown pipeline {pipeline!r}; known: {known}")
        self.settings = settings
        self.pipeline = pipeline
        self._runner_options = runner_options or {}
        self._extra_actor_options = actor_options or {}
        self._actor_options: dict[str, Any] | None = None  # resolved on the first scale
        self._members: list[tuple[Any, ray.ObjectRef]] = []
        self._next_member = 0

    @property
    def size(self) -> int:
        return len(self._members)

    def actors(self) -> list[Any]:
        return [actor for actor, _ in self._members]

    def scale(self, n: int, *, max_members: int | None = None) -> None:
        """Grow or shrink to ``n`` actors (at most the input topic's partition count)."""
        if n < 0:
            raise ConfigError(f"actor count must be >= 0, got {n}")
        if max_members is not None and n > max_members:
            raise ConfigError(f"{n} actors for {max_members} partitions: extra actors would idle")
        if len(self._members) < n and self._actor_options is None:
            resources = ray.cluster_resources() if ray.is_initialized() else {}
            placement = consumer_actor_options(self.settings.rtml_placement, resources)
            self._actor_options = placement | self._extra_actor_options
        while len(self._members) < n:
            assert self._actor_options is not None
            actor = ConsumerActor.options(**self._actor_options).remote(
                self.settings, self.pipeline, self._next_member, self._runner_options
            )
            self._next_member += 1
            self._members.append((actor, actor.run.remote()))
        while len(self._members) > n:
            actor, done = self._members.pop()
            ray.get(actor.stop.remote())
            ray.get(done, timeout=120)
            ray.kill(actor, no_restart=True)

    def stats(self) -> list[dict[str, Any]]:
        return ray.get([actor.stats.remote() for actor, _ in self._members], timeout=30)

    def failed(self) -> list[BaseException]:
        """Errors of members whose run ended with an error (not restarted)."""
        errors = []
        for _, done in self._members:
            ready, _ = ray.wait([done], timeout=0)
            if ready:
                try:
                    ray.get(done)
                except Exception as exc:  # noqa: BLE001 - surfaced to the caller as data
                    errors.append(exc)
        return errors

    def stop(self) -> None:
        """Graceful: each actor finishes and commits its batch, then leaves the group."""
        self.scale(0)
