"""The pacing schedule, driven by simulated clocks: rate, batching, catch-up, no drift."""

from __future__ import annotations

import itertools
import random

import pytest

from producers.pacing import PacingSchedule


def _simulate(
    schedule: PacingSchedule,
    limit: int,
    send_cost_s: float = 0.0,
    jitter_s: float = 0.0,
    stalls: dict[int, float] | None = None,
    seed: int = 0,
) -> tuple[list[tuple[float, int]], float]:
    """Run the sender loop on a fake clock: each tick sends ``next_step`` records (taking
    ``send_cost_s`` per record), then sleeps what it says plus random oversleep up to
    ``jitter_s``; ``stalls`` adds a pause at given tick numbers. Returns (time, sent) after each
    tick, and the time of the last send."""
    rnd = random.Random(seed)
    now, sent, tick, history = 0.0, 0, 0, []
    last_send = 0.0
    while sent < limit:
        n, wait = schedule.next_step(sent, now, limit)
        assert 0 <= n <= schedule.max_batch
        if n:
            assert sent + n <= schedule.due(now)  # never ahead of the schedule
            now += n * send_cost_s
            sent += n
            last_send = now
        history.append((now, sent))
        now += wait + rnd.random() * jitter_s + (stalls or {}).get(tick, 0.0)
        tick += 1
        assert tick < 10 * limit + 1000, "the loop does not progress"
    return history, last_send


def test_due_and_offsets() -> None:
    schedule = PacingSchedule(rate=4.0)
    assert [schedule.due(t) for t in (-1.0, 0.0, 0.24, 0.25, 0.99, 1.0)] == [0, 1, 1, 2, 4, 5]
    assert [schedule.offset_ms(k) for k in range(5)] == [0, 250, 500, 750, 1000]
    assert schedule.due_at(8) == 2.0
    assert schedule.count_for(2.0) == 8 and schedule.count_for(2.1) == 9
    assert PacingSchedule(rate=20_000).offset_ms(1_000_000) == 50_000


def test_exact_rate_on_a_perfect_clock() -> None:
    schedule = PacingSchedule(rate=20_000.0)
    limit = schedule.count_for(10.0)
    _, last = _simulate(schedule, limit)
    assert limit == 200_000
    # The last record goes out at its slot (within one tick), so the rate is the target.
    assert last == pytest.approx(schedule.due_at(limit - 1), abs=schedule.tick_s)


def test_batches_are_about_rate_times_tick() -> None:
    schedule = PacingSchedule(rate=20_000.0, tick_s=0.005)
    history, _ = _simulate(schedule, 20_000)
    sizes = [b - a for (_, a), (_, b) in itertools.pairwise(history) if b > a]
    assert 90 <= sorted(sizes)[len(sizes) // 2] <= 110


@pytest.mark.parametrize("rate", [10.0, 1_000.0, 50_000.0])
def test_noisy_clock_and_stalls_do_not_drift(rate: float) -> None:
    """Oversleeping, slow sends and a 2-second stall: the sender catches up and ends on time."""
    schedule = PacingSchedule(rate=rate, max_batch=max(int(rate * 0.05), 100))
    limit = schedule.count_for(30.0)
    history, last = _simulate(
        schedule, limit, send_cost_s=2e-6, jitter_s=0.004, stalls={20: 2.0}, seed=int(rate)
    )
    # The last record goes out within a tick or two of its slot: the stall left no debt.
    assert last == pytest.approx(schedule.due_at(limit - 1), abs=0.01)
    assert limit / last == pytest.approx(rate, rel=0.01)
    # Behind right after the stall, back on schedule a little later.
    lag = [schedule.due(t) - s for t, s in history]
    assert max(lag) >= min(int(rate * 2.0), limit) - schedule.max_batch - 1
    assert all(lag_after <= schedule.max_batch + rate * 0.01 for lag_after in lag[-10:])


def test_never_sends_past_the_limit() -> None:
    schedule = PacingSchedule(rate=1_000.0)
    n, wait = schedule.next_step(sent=995, elapsed_s=60.0, limit=1_000)
    assert (n, wait) == (5, 0.0)
    assert schedule.next_step(sent=1_000, elapsed_s=61.0, limit=1_000) == (0, 0.0)


def test_sleeps_until_the_next_slot_at_low_rates() -> None:
    schedule = PacingSchedule(rate=2.0, tick_s=0.005)
    assert schedule.next_step(sent=0, elapsed_s=0.0) == (1, 0.5)
    n, wait = schedule.next_step(sent=1, elapsed_s=0.2)
    assert n == 0 and wait == pytest.approx(0.3)


def test_when_behind_it_does_not_sleep() -> None:
    schedule = PacingSchedule(rate=1_000.0, max_batch=100)
    assert schedule.next_step(sent=0, elapsed_s=1.0) == (100, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.0}, "rate must be a positive number"),
        ({"rate": -5.0}, "rate must be a positive number"),
        ({"rate": float("inf")}, "rate must be a positive number"),
        ({"rate": 10.0, "max_batch": 0}, "max_batch must be at least 1"),
        ({"rate": 10.0, "tick_s": 0.0}, "tick_s must be positive"),
    ],
)
def test_invalid_schedules(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PacingSchedule(**kwargs)
