"""Lag-driven autoscaling of one pipeline's consumer actors.

Two parts:

- ``ScalingPolicy``: pure decision logic. It is fed one ``Observation`` per interval (the
  group's lag and two counters: records committed by the group, records written to its input)
  and answers how many actors the group should have. Rates and the lag trend come from the
  observations inside a sliding window, so one noisy interval does not move the group.
- ``ConsumerAutoscaler``: the loop that reads Kafka's offsets (``monitoring.topic_rates``'s
  ``OffsetMonitor``, the same numbers ``rtml status`` prints) and resizes the
  ``ConsumerGroup``.

Scaling keeps the delivery guarantee: adding or removing an actor is a Kafka rebalance, and a
partition that moves is committed by its old owner (graceful stop), fenced by its new owner's
transactional producer and restored from its changelog before it is processed again (see
``consumers/partition_session.py``). A rebalance pauses the moved partitions for the restore,
so right after a change the rates are not representative: the window starts over and the
cooldowns hold further changes until the group has settled.

Up: when the lag is above ``scale_up_lag`` and, at the current drain rate (consumed minus
produced), would take longer than ``target_drain_s`` to clear; the target is the actor count
whose measured per-actor throughput covers the input rate plus the backlog over
``target_drain_s``. Down: one actor at a time, when the lag stayed at most ``scale_down_lag``
for a whole window and (where a capacity is known) the remaining actors would run at most at
``downscale_utilization``. The gap between the two lag thresholds is the hysteresis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rtml.errors import ConfigError, RtmlError, ServiceUnavailable
from rtml.settings import AutoscaleSettings, Settings

if TYPE_CHECKING:
    from consumers.actors import ConsumerGroup
    from monitoring.topic_rates import OffsetMonitor, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Observation:
    """The group at one moment: ``consumed`` and ``produced`` are monotonic counters."""

    at: float  # seconds, monotonic clock
    lag: int  # records written to the input but not yet committed by the group
    consumed: int  # sum of the group's committed offsets over the input partitions
    produced: int  # sum of the input partitions' end offsets


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second rates over the window (None until the window spans two observations)."""

    consumed: float
    produced: float
    lag_trend: float  # d(lag)/dt: positive while the group falls behind

    @property
    def drain(self) -> float:
        """Records/s by which the backlog shrinks."""
        return self.consumed - self.produced


@dataclass(frozen=True, slots=True)
class Decision:
    actors: int  # the group's size after this decision
    reason: str
    rates: Rates | None = None

    def changes(self, current: int) -> bool:
        return self.actors != current


class ScalingPolicy:
    """Decides the actor count from observations; holds no I/O, its clock is the caller's."""

    def __init__(self, config: AutoscaleSettings, *, max_actors: int) -> None:
        if max_actors < config.min_actors:
            raise ConfigError(
                f"autoscaling needs max_actors >= min_actors, got {max_actors} < "
                f"{config.min_actors} (max_actors is capped at the input's partition count)"
            )
        self.config = config
        self.min_actors = config.min_actors
        self.max_actors = max_actors
        self._window: deque[Observation] = deque()
        self._last_change: float | None = None
        # Records/s one actor commits while it has a backlog: its measured capacity.
        self.capacity_per_actor: float | None = None

    def observe(self, obs: Observation, current: int) -> Decision:
        """Record ``obs`` and decide how many actors the group (now ``current``) should have."""
        window = self._window
        if window and obs.at <= window[-1].at:
            raise ValueError(
                f"observations must move forward in time ({obs.at} after {window[-1].at})"
            )
        window.append(obs)
        while len(window) > 2 and obs.at - window[1].at >= self.config.window_s:
            window.popleft()  # keep the oldest one that still spans the whole window

        if current < self.min_actors:
            return Decision(self.min_actors, f"below the minimum of {self.min_actors}")
        if current > self.max_actors:
            return Decision(self.max_actors, f"above the maximum of {self.max_actors}")
        rates = self.rates()
        if rates is None:
            return Decision(current, "measuring")
        if current > 0 and obs.lag > self.config.scale_up_lag and rates.consumed > 0:
            # Saturated: what the actors commit now is what they can do.
            self.capacity_per_actor = rates.consumed / current
        return self._decide(obs, current, rates)

    def rates(self) -> Rates | None:
        if len(self._window) < 2:
            return None
        first, last = self._window[0], self._window[-1]
        elapsed = last.at - first.at
        return Rates(
            consumed=(last.consumed - first.consumed) / elapsed,
            produced=(last.produced - first.produced) / elapsed,
            lag_trend=(last.lag - first.lag) / elapsed,
        )

    def time_to_drain(self, lag: int, rates: Rates) -> float:
        """Seconds until the backlog is gone at the current rates (inf: it is not shrinking)."""
        if lag <= 0:
            return 0.0
        return lag / rates.drain if rates.drain > 0 else math.inf

    def _decide(self, obs: Observation, current: int, rates: Rates) -> Decision:
        cfg = self.config
        since_change = math.inf if self._last_change is None else obs.at - self._last_change
        drain_s = self.time_to_drain(obs.lag, rates)

        if obs.lag > cfg.scale_up_lag and drain_s > cfg.target_drain_s:
            if current >= self.max_actors:
                return Decision(current, f"lagging at the maximum of {self.max_actors}", rates)
            if since_change < cfg.upscale_cooldown_s:
                return Decision(current, "lagging, in the upscale cooldown", rates)
            needed = rates.produced + obs.lag / cfg.target_drain_s
            per_actor = rates.consumed / current if current else 0.0
            target = math.ceil(needed / per_actor) if per_actor > 0 else current + 1
            target = min(self.max_actors, max(current + 1, target))
            return Decision(
                target,
                f"lag {obs.lag:,} drains in {_seconds(drain_s)} > {cfg.target_drain_s:g}s "
                f"(in {rates.produced:,.0f}/s, out {rates.consumed:,.0f}/s)",
                rates,
            )

        quiet = all(o.lag <= cfg.scale_down_lag for o in self._window)
        spans_window = obs.at - self._window[0].at >= cfg.window_s
        if current > self.min_actors and quiet and spans_window:
            if since_change < cfg.downscale_cooldown_s:
                return Decision(current, "quiet, in the downscale cooldown", rates)
            capacity = self.capacity_per_actor
            if capacity is not None:
                load = rates.produced / (capacity * (current - 1))
                if load > cfg.downscale_utilization:
                    return Decision(
                        current, f"quiet, but {current - 1} actor(s) would run at {load:.0%}", rates
                    )
            return Decision(
                current - 1, f"lag <= {cfg.scale_down_lag:,} for {cfg.window_s:g}s", rates
            )
        return Decision(current, "steady", rates)

    def changed(self, at: float) -> None:
        """The group was resized at ``at``: start the cooldowns and a fresh window (the
        rebalance's pause would read as a trend)."""
        self._last_change = at
        self._window.clear()


def _seconds(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}s"


def observation(snapshot: Snapshot, group_id: str, topic: str) -> Observation:
    """One ``Observation`` from an ``OffsetMonitor`` snapshot."""
    committed = snapshot.committed.get(group_id, {}).get(topic, {})
    return Observation(
        at=snapshot.taken_at,
        lag=snapshot.lag(group_id, topic),
        consumed=sum(committed.values()),
        produced=snapshot.total(topic),
    )


class ConsumerAutoscaler:
    """Resizes a ``ConsumerGroup`` from Kafka offsets every ``interval_s``.

    ``group.scale`` blocks (a removed actor first commits its batch), so it runs in a thread.
    """

    def __init__(
        self,
        group: ConsumerGroup,
        monitor: OffsetMonitor,
        config: AutoscaleSettings,
        *,
        group_id: str,
        topic: str,
        partitions: int,
        on_change: Callable[[Decision], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        most = min(config.max_actors or partitions, partitions)
        self.group = group
        self.policy = ScalingPolicy(config, max_actors=most)
        self._monitor = monitor
        self._group_id = group_id
        self._topic = topic
        self._partitions = partitions
        self._on_change = on_change
        self._clock = clock
        self.decisions: list[Decision] = []  # the changes made, oldest first
        # A group that just started reads like one that just rebalanced: its actors restore
        # state before they commit anything. The cooldowns apply from here.
        self.policy.changed(clock())

    async def step(self) -> Decision:
        """Observe once and resize the group if the policy says so."""
        snapshot = await self._monitor.snapshot()
        current = self.group.size
        decision = self.policy.observe(observation(snapshot, self._group_id, self._topic), current)
        if decision.changes(current):
            log.info(
                "%s: %d -> %d actors (%s)",
                self.group.pipeline,
                current,
                decision.actors,
                decision.reason,
            )
            await asyncio.to_thread(self.group.scale, decision.actors, max_members=self._partitions)
            self.policy.changed(self._clock())
            self.decisions.append(decision)
            if self._on_change is not None:
                self._on_change(decision)
        return decision

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``interval_s`` until ``stop`` is set; fails if an actor died for good."""
        interval = self.policy.config.interval_s
        while not stop.is_set():
            errors = await asyncio.to_thread(self.group.failed)
            if errors:
                raise RtmlError(f"{self.group.pipeline} actor failed: {errors[0]}")
            try:
                await self.step()
            except ServiceUnavailable as exc:  # Kafka away: hold the size, try again later
                log.warning("%s: no autoscaling decision: %s", self.group.pipeline, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


async def autoscale_groups(
    settings: Settings,
    groups: list[ConsumerGroup],
    stop: asyncio.Event,
    *,
    on_change: Callable[[str, Decision], None] | None = None,
) -> None:
    """Autoscale every group (from ``settings.rtml_autoscale``) until ``stop`` is set.

    Each group starts at ``min_actors`` if it is smaller; one ``OffsetMonitor`` serves all.
    """
    from consumers.pipelines import GROUP_IDS, input_spec
    from monitoring.topic_rates import OffsetMonitor

    inputs = {g.pipeline: input_spec(settings, g.pipeline) for g in groups}
    monitor = OffsetMonitor(
        settings,
        sorted({spec.name for spec in inputs.values()}),
        [GROUP_IDS[g.pipeline] for g in groups],
    )
    await monitor.start()
    try:
        scalers = [
            ConsumerAutoscaler(
                group,
                monitor,
                settings.rtml_autoscale,
                group_id=GROUP_IDS[group.pipeline],
                topic=inputs[group.pipeline].name,
                partitions=inputs[group.pipeline].partitions,
                on_change=(None if on_change is None else _named(on_change, group.pipeline)),
            )
            for group in groups
        ]
        await asyncio.gather(*(scaler.run(stop) for scaler in scalers))
    finally:
        await monitor.stop()


def _named(callback: Callable[[str, Decision], None], pipeline: str) -> Callable[[Decision], None]:
    return lambda decision: callback(pipeline, decision)
