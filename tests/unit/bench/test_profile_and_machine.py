"""The profile's breakdown by area, and the machine description."""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

import pytest

from bench.machine import describe_machine
from bench.scenarios.features import area_of, breakdown


@pytest.mark.parametrize(
    ("func", "area"),
    [
        (("/repo/features/fraud.py", 113, "process_batch"), "features engine (features/)"),
        (("/repo/consumers/pipelines/fraud_features.py", 1, "process"), "fraud pipeline glue"),
        (("/repo/consumers/runner.py", 1, "_poll_once"), "runner, sessions, outbox"),
        (("/venv/site-packages/aiokafka/consumer/fetcher.py", 1, "f"), "aiokafka"),
        (("/venv/site-packages/redis/asyncio/connection.py", 1, "f"), "redis-py"),
        (("~", 0, "<method 'decode' of 'msgspec.json.Decoder' objects>"), "msgspec"),
        (("~", 0, "<method 'poll' of 'select.epoll' objects>"), "waiting for I/O"),
        (("~", 0, "<built-in method builtins.len>"), "builtins (C)"),
        (("/usr/lib/python3.11/json/decoder.py", 1, "decode"), "other Python"),
    ],
)
def test_area_of(func: tuple[str, int, str], area: str) -> None:
    assert area_of(func).startswith(area)


def test_breakdown_shares_add_up() -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    sorted(str(i) for i in range(20_000))
    profiler.disable()
    parts = breakdown(pstats.Stats(profiler))
    assert parts
    assert sum(share for _, _, share in parts) == pytest.approx(1.0)
    assert [s for _, s, _ in parts] == sorted((s for _, s, _ in parts), reverse=True)


def test_machine_description() -> None:
    info = describe_machine(Path(__file__).parent)
    assert info["cores"] >= 1
    assert info["versions"]["python"].count(".") == 2
    assert {"ray", "aiokafka", "kafka"} <= set(info["versions"])
    assert "git_commit" in info and "git_dirty" in info
