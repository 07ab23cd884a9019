"""Python's automatic garbage collections, paused for as long as any part of the process needs.

Two parts of rtml build up large heaps of long-lived objects that a full collection would walk
again and again: a consumer's keyed state (the runner collects between batches instead,
``consumers.runner``) and a load simulated ahead (``producers.runner.produce_live``). Each
pauses the automatic collections with ``automatic_gc.paused``; they come back when the last
pause ends, unless they were off before the first.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


class AutomaticGc:
    """Counts the pauses of the process's automatic collections (not thread-safe: take and
    end them on one thread, the event loop's)."""

    def __init__(self) -> None:
        self._pauses = 0
        self._resume = False

    @contextmanager
    def paused(self, pause: bool = True) -> Iterator[None]:
        if not pause:
            yield
            return
        if self._pauses == 0:
            self._resume = gc.isenabled()
            gc.disable()
        self._pauses += 1
        try:
            yield
        finally:
            self._pauses -= 1
            if self._pauses == 0 and self._resume:
                gc.enable()


automatic_gc = AutomaticGc()
