"""The runner's heap policy between batches (``rtml_gc_freeze``): what a batch left behind in
reference cycles is collected, what survives is frozen, and the frozen heap is never scanned
again unless a periodic full collection is configured."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from consumers.runner import ConsumerRunner
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
    r = runner()
    r._collect_garbage()
    frozen_cycle = cycle()
    gc.freeze()  # as if the cycle had become garbage after being frozen with the state
    r._collect_garbage()
    assert frozen_cycle() is not None
    due = runner(rtml_gc_full_collection_s=0.001)
    due._next_full_gc = 0.0
    due._collect_garbage()
    assert frozen_cycle() is None


def test_gc_freeze_false_leaves_the_collector_alone() -> None:
    r = runner(rtml_gc_freeze=False)
    r._collect_garbage()
    assert gc.get_freeze_count() == 0
