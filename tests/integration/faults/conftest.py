"""Fault injection on a private stack: tests here stop, restart and freeze Kafka and Redis, so
they never use the session's shared stack (other tests, and other engineers' runs, use that).

``private_stack`` (module)
    A ``harness.PrivateStack``: its own broker and redis-server on free ports, state in a temp
    dir, with methods to stop, start, freeze and thaw each service. Stopped after the module.

The workload and the exactly-once checks are in ``harness.py``.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator

import pytest

from infra import kafka_broker, stack
from rtml.errors import ServiceError
from tests.integration.faults.harness import PrivateStack, private_settings


@pytest.fixture(autouse=True)
def collect_garbage_after_each_test() -> Iterator[None]:
    """A client a fault leaves unclosed warns when collected: collect before the test ends, so
    the warning fails the test that leaked it rather than whichever test runs next."""
    yield
    gc.unfreeze()  # the runner freezes the heap between batches: frozen objects are never collected
    gc.collect()


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    if os.environ.get("RTML_TEST_KAFKA") or os.environ.get("RTML_TEST_REDIS"):
        pytest.skip("fault tests restart Kafka and Redis: they need a local stack")
    settings = private_settings(tmp_path_factory.mktemp("rtml-faults"))
    try:
        stack.up(settings, timeout_s=120.0, topics=[])
    except ServiceError:
        stack.down(settings, timeout_s=10.0)
        raise
    private = PrivateStack(settings)
    try:
        yield private
    finally:
        pid = kafka_broker.running_pid(settings)
        if pid is not None:  # a failed test may leave it frozen
            os.kill(pid, signal.SIGCONT)
        stack.down(settings, timeout_s=20.0)
