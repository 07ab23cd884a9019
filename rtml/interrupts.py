"""SIGTERM stops a long command the way Ctrl-C does, so its cleanup runs.

``timeout``, a cancelled CI job or a process supervisor stop a command with SIGTERM. Python's
default for it ends the process at once, and after ``ray.init`` Ray's driver installs a handler
that aborts it: either way no ``finally`` runs, and ``rtml bench`` left its Kafka broker and
redis-server running (found here: an orphaned pair of a bench stopped by ``timeout``, still up an
hour later, on the ports the next runs wanted). With ``interrupt_on_sigterm`` SIGTERM raises
``KeyboardInterrupt`` in the main thread, as SIGINT does: the bench writes what it measured and
stops its stack, the demo stops its actors, the Serve app and Ray, and ``rtml`` exits 130.
"""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise ``KeyboardInterrupt`` (main thread only). Call it again after a
    ``ray.init`` made in the main thread: Ray's driver replaces the handler with its own."""
    signal.signal(signal.SIGTERM, _interrupt)
