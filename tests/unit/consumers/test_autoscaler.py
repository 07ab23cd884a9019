"""The consumer autoscaling policy on a simulated group with a fake clock: scale up under lag
(sized from measured throughput), cooldowns, hysteresis, one-at-a-time scale-down, bounds; and
the controller's step against a fake offset monitor and group."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pytest

from consumers.autoscaler import (
    ConsumerAutoscaler,
    Decision,
    Observation,
    ScalingPolicy,
    observation,
)
from monitoring.topic_rates import Snapshot
from rtml.errors import ConfigError
from rtml.settings import AutoscaleSettings, load_settings

CONFIG = AutoscaleSettings(
    min_actors=1,
    max_actors=8,
    interval_s=5.0,
    window_s=30.0,
    scale_up_lag=20_000,
    scale_down_lag=1_000,
    target_drain_s=60.0,
    upscale_cooldown_s=30.0,
    downscale_cooldown_s=120.0,
    downscale_utilization=0.6,
)


@dataclass
class SimulatedGroup:
    """A consumer group whose actors each commit up to ``capacity`` records/s."""

    policy: ScalingPolicy
    actors: int
    capacity: float = 1_000.0
    contention: float = 1.0  # throughput grows as actors ** contention (1: linear)
    now: float = 0.0
    produced: float = 0.0
    consumed: float = 0.0
    history: list[tuple[float, int, str]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.capacity * self.actors**self.contention

    @property
    def lag(self) -> int:
        return int(self.produced - self.consumed)

    def run(self, seconds: float, rate: float) -> Decision:
        """Produce at ``rate`` for ``seconds``, one policy step per interval."""
        decision = Decision(self.actors, "not run")
        for _ in range(int(seconds / CONFIG.interval_s)):
            step = CONFIG.interval_s
            self.produced += rate * step
            self.consumed = min(self.produced, self.consumed + self.throughput * step)
            self.now += step
            obs = Observation(self.now, self.lag, int(self.consumed), int(self.produced))
            decision = self.policy.observe(obs, self.actors)
            if decision.actors != self.actors:
                self.actors = decision.actors
                self.policy.changed(self.now)
                self.history.append((self.now, self.actors, decision.reason))
        return decision


def group(actors: int = 1, config: AutoscaleSettings = CONFIG, **kwargs) -> SimulatedGroup:
    return SimulatedGroup(
        ScalingPolicy(config, max_actors=config.max_actors or 8), actors, **kwargs
    )


def test_steady_load_within_capacity_keeps_the_size() -> None:
    g = group(actors=2)
    g.policy.capacity_per_actor = 1_000.0  # measured earlier, under a backlog
    decision = g.run(300, rate=1_000)
    assert g.history == []
    assert decision.reason.startswith("quiet, but 1 actor(s) would run at 100%") and g.lag == 0


def test_without_a_measured_capacity_one_probe_down_teaches_it_and_the_size_settles() -> None:
    g = group(actors=2)
    g.run(900, rate=1_500)
    # Quiet at 2 -> tries 1, which lags (and measures 1,000/s per actor) -> back to 2, stays.
    assert [actors for _, actors, _ in g.history] == [1, 2]
    assert g.policy.capacity_per_actor == pytest.approx(1_000)


def test_a_burst_scales_up_to_what_covers_input_plus_backlog() -> None:
    g = group(actors=1)
    g.run(30, rate=3_000)  # 1 actor at 1,000/s: lag grows by 2,000/s
    assert g.history, "should have scaled up"
    _at, actors, reason = g.history[0]
    # Sized from the measured 1,000/s per actor: 3,000/s in + backlog/60 s -> 4 or more.
    assert actors >= 4
    assert "drains in never" in reason
    assert g.policy.capacity_per_actor == pytest.approx(1_000)


def test_upscale_is_capped_at_max_actors_and_reports_it() -> None:
    config = CONFIG.model_copy(update={"max_actors": 2})
    g = SimulatedGroup(ScalingPolicy(config, max_actors=2), 1)
    decision = g.run(300, rate=5_000)
    assert [actors for _, actors, _ in g.history] == [2]
    assert decision.actors == 2 and "at the maximum of 2" in decision.reason


def test_upscale_cooldown_spaces_out_changes() -> None:
    config = CONFIG.model_copy(update={"max_actors": 16})
    g = SimulatedGroup(ScalingPolicy(config, max_actors=16), 1, contention=0.5)
    g.run(240, rate=6_000)  # actors share a CPU: the first step up is too small
    times = [at for at, _, _ in g.history]
    assert len(times) >= 2 and g.actors == 16
    assert all(b - a >= CONFIG.upscale_cooldown_s for a, b in itertools.pairwise(times))


def test_lag_that_drains_fast_enough_does_not_scale_up() -> None:
    g = group(actors=2)
    g.consumed = 0
    g.produced = 50_000  # a backlog above scale_up_lag...
    g.run(60, rate=1_000)  # ...that 2,000/s drains at 1,000/s net: 50 s < 60 s target
    assert g.history == []


def test_hysteresis_lag_between_thresholds_neither_scales_up_nor_down() -> None:
    policy = ScalingPolicy(CONFIG, max_actors=8)
    decision = None
    for i in range(20):  # lag steady at 5,000: above scale_down_lag, below scale_up_lag
        decision = policy.observe(Observation(i * 5.0, 5_000, i * 1_000, i * 1_000 + 5_000), 3)
    assert decision is not None and decision.actors == 3 and decision.reason == "steady"


def test_scale_down_after_a_quiet_window_one_actor_at_a_time_with_cooldown() -> None:
    g = group(actors=1)
    g.run(60, rate=3_000)  # burst: scales up, capacity measured
    peak = g.actors
    assert peak >= 4
    g.run(600, rate=300)  # quiet: lag drains, then actors leave one by one
    downs = [(at, n) for at, n, _ in g.history if n < peak]
    assert downs[0][1] == peak - 1
    steps = [n for _, n in downs]
    assert all(a - b == 1 for a, b in zip([peak, *steps], steps, strict=False))
    times = [at for at, _ in downs]
    assert all(b - a >= CONFIG.downscale_cooldown_s for a, b in itertools.pairwise(times))
    assert g.actors == CONFIG.min_actors  # 300/s fits one actor at 30%


def test_no_scale_down_when_the_remaining_actors_would_run_hot() -> None:
    g = group(actors=1)
    g.run(60, rate=3_000)
    assert g.actors >= 4
    peak = g.actors
    g.run(900, rate=2_500)  # quiet, but 3 actors would run at 2,500 / 3,000 = 83% > 60%
    assert g.actors == peak >= math.ceil(2_500 / 1_000)
    assert g.lag <= CONFIG.scale_down_lag


def test_bounds_are_restored_first() -> None:
    policy = ScalingPolicy(CONFIG.model_copy(update={"min_actors": 2}), max_actors=4)
    assert policy.observe(Observation(0, 0, 0, 0), 0).actors == 2
    assert policy.observe(Observation(1, 0, 0, 0), 6).actors == 4
    with pytest.raises(ValueError, match="forward in time"):
        policy.observe(Observation(1, 0, 0, 0), 2)
    with pytest.raises(ConfigError, match="max_actors >= min_actors"):
        ScalingPolicy(CONFIG.model_copy(update={"min_actors": 3}), max_actors=2)


def test_measuring_until_the_window_has_two_observations_after_a_change() -> None:
    policy = ScalingPolicy(CONFIG, max_actors=8)
    assert policy.observe(Observation(0, 50_000, 0, 50_000), 1).reason == "measuring"
    assert policy.observe(Observation(5, 60_000, 5_000, 65_000), 1).actors > 1
    policy.changed(5)
    assert policy.observe(Observation(10, 70_000, 10_000, 80_000), 2).reason == "measuring"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"RTML_AUTOSCALE__MIN_ACTORS": "4", "RTML_AUTOSCALE__MAX_ACTORS": "2"}, "max_actors"),
        ({"RTML_AUTOSCALE__SCALE_DOWN_LAG": "50000"}, "hysteresis"),
        ({"RTML_AUTOSCALE__WINDOW_S": "6"}, "two intervals"),
    ],
)
def test_settings_check_the_autoscaler_across_fields(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], match: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=match):
        load_settings()


def test_settings_take_a_partial_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_AUTOSCALE__MAX_ACTORS", "4")
    autoscale = load_settings().rtml_autoscale
    assert autoscale.max_actors == 4 and autoscale.scale_up_lag == 20_000


# --- the controller ---------------------------------------------------------------------------


class FakeMonitor:
    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []

    async def snapshot(self) -> Snapshot:
        return self.snapshots.pop(0)


class FakeGroup:
    pipeline = "fraud"

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls: list[tuple[int, int | None]] = []

    def scale(self, n: int, *, max_members: int | None = None) -> None:
        self.calls.append((n, max_members))
        self.size = n

    def failed(self) -> list[BaseException]:
        return []


def snapshot(at: float, produced: int, committed: int) -> Snapshot:
    half = committed // 2
    return Snapshot(
        at,
        {"tx": {0: produced // 2, 1: produced - produced // 2}},
        {"g": {"tx": {0: half, 1: committed - half}}},
    )


def test_observation_reads_lag_and_counters_from_a_snapshot() -> None:
    obs = observation(snapshot(3.0, 1_000, 400), "g", "tx")
    assert obs == Observation(3.0, 600, 400, 1_000)
    assert observation(snapshot(3.0, 10, 0), "other", "tx").lag == 10


async def test_controller_scales_the_group_within_its_partitions() -> None:
    monitor, grp = FakeMonitor(), FakeGroup(1)
    clock = iter([0.0, 100.0])
    changes: list[Decision] = []
    scaler = ConsumerAutoscaler(
        grp,  # type: ignore[arg-type]
        monitor,  # type: ignore[arg-type]
        CONFIG,  # max_actors 8, but the topic has 2 partitions
        group_id="g",
        topic="tx",
        partitions=2,
        on_change=changes.append,
        clock=lambda: next(clock),
    )
    monitor.snapshots = [snapshot(90.0, 100_000, 10_000), snapshot(95.0, 150_000, 15_000)]
    assert (await scaler.step()).reason == "measuring"
    decision = await scaler.step()
    assert decision.actors == 2 and grp.calls == [(2, 2)]
    assert changes == [decision] and scaler.decisions == [decision]


# --- the CLI ----------------------------------------------------------------------------------


def test_consume_and_demo_take_autoscale() -> None:
    from rtml.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["consume", "--autoscale", "--actors", "2"]).autoscale
    assert not parser.parse_args(["consume"]).autoscale
    assert parser.parse_args(["demo", "--autoscale"]).autoscale


def test_bad_autoscale_settings_are_one_line_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtml.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RTML_AUTOSCALE__SCALE_DOWN_LAG", "50000")
    assert main(["consume", "--autoscale"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rtml: error: invalid settings: rtml_autoscale")
    assert "hysteresis" in line
