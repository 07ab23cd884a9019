"""The runner's heap policy (``rtml_gc_freeze``): between batches, at most every
``rtml_gc_collect_interval_s``, what the batches left behind in reference cycles is collected and
what survives is frozen, the frozen heap is never scanned again unless a periodic full
collection is configured, and Python's automatic collections are off while a runner runs."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from consumers.runner import ConsumerRunner
from rtml.gc_control import automatic_gc
from rtml.settings import Settings


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def runner(**settings: object) -> ConsumerRunner:
    pipeline = SimpleNamespace(group_id="g", input_topic="t", changelog_topic=None)
    return ConsumerRunner(Settings(**settings), pipeline)  # type: ignore[arg-type]


def cycle() -> weakref.ref[Node]:
    """A reference cycle nothing else points to: only the cyclic collector frees it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.collect()


def test_a_batch_s_cycles_are_collected_and_the_survivors_frozen() -> None:
    r = runner()
    garbage = cycle()
    kept = Node()
    r._collect_garbage()
    assert garbage() is None  # collected before the freeze, not frozen forever
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects(generation=2))  # frozen: never scanned


def test_without_a_full_collection_frozen_cycles_stay_until_one_is_configured() -> None:
    r = runner(rtml_gc_collect_interval_s=0)
    r._collect_garbage()
    frozen_cycle = cycle()
    gc.freeze()  # as if the cycle had become garbage after being frozen with the state
    r._collect_garbage()
    assert frozen_cycle() is not None
    due = runner(rtml_gc_full_collection_s=0.001, rtml_gc_collect_interval_s=0)
    due._next_full_gc = 0.0
    due._collect_garbage()
    assert frozen_cycle() is None


def test_gc_freeze_false_leaves_the_collector_alone() -> None:
    r = runner(rtml_gc_freeze=False)
    r._collect_garbage()
    assert gc.get_freeze_count() == 0


def test_between_batches_it_collects_at_most_once_per_interval_and_after_a_restore_at_once() -> (
    None
):
    r = runner(rtml_gc_collect_interval_s=3600)
    r._collect_garbage()
    garbage = cycle()
    r._collect_garbage()  # within the interval: nothing scanned, nothing frozen
    assert garbage() is not None
    assert r.stats.gc_collections == 1
    r._collect_garbage(now=True)  # after a restore
    assert garbage() is None
    assert r.stats.gc_collections == 2
    assert r.stats.gc_seconds > 0


def test_automatic_collections_are_off_while_any_runner_runs_and_on_after_the_last() -> None:
    assert gc.isenabled()
    with automatic_gc.paused(True):
        assert not gc.isenabled()
        with automatic_gc.paused(True):
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first runner still runs
    assert gc.isenabled()
    with automatic_gc.paused(False):
        assert gc.isenabled()


def test_the_collector_stays_off_after_the_runners_when_it_was_off_before() -> None:
    gc.disable()
    try:
        with automatic_gc.paused(True):
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


class IdleConsumer:
    """Just enough of an AIOKafkaConsumer for a loop that never gets records."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, topics: list[str], listener: object) -> None: ...

    def assignment(self) -> set[object]:
        return set()


async def test_an_idle_loop_collects_with_the_automatic_collector_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No batch ever comes, yet what the idle turns leave in cycles is collected."""

    async def nothing() -> None: ...

    pipeline = SimpleNamespace(
        group_id="g", input_topic="t", changelog_topic=None, start=nothing, stop=nothing
    )
    r = ConsumerRunner(Settings(rtml_gc_collect_interval_s=0), pipeline)  # type: ignore[arg-type]
    monkeypatch.setattr("consumers.runner.make_consumer", lambda *a, **k: IdleConsumer())
    garbage: list[weakref.ref[Node]] = []
    enabled: list[bool] = []

    async def idle_turn(consumer: object) -> None:
        enabled.append(gc.isenabled())
        if garbage:
            assert garbage[-1]() is None  # collected after the previous idle turn
        garbage.append(cycle())
        if len(garbage) == 3:
            r.stop()

    monkeypatch.setattr(r, "_poll_once", idle_turn)
    await r.run()
    assert enabled == [False, False, False]
    assert gc.isenabled()
    assert r.stats.gc_collections >= 3
