"""SIGTERM raises KeyboardInterrupt, so a command's cleanup runs as on Ctrl-C."""

from __future__ import annotations

import os
import signal

import pytest

from rtml.interrupts import interrupt_on_sigterm


def test_sigterm_raises_keyboard_interrupt() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        interrupt_on_sigterm()
        cleaned = False
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.pause()  # the handler runs before this returns (never reached)
            finally:
                cleaned = True
        assert cleaned
    finally:
        signal.signal(signal.SIGTERM, previous)
