"""The bench's isolated settings, its topic names and the capped workload sink (no services)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from bench.environment import bench_settings, scenario_topics
from bench.options import QUICK, BenchOptions
from bench.workload import _CappedSink, generator_config, window_for
from producers.kafka_sink import KafkaSink
from producers.records import Record, Stream
from rtml.settings import Topics, load_settings


def options(**overrides: object) -> BenchOptions:
    base = BenchOptions(mode="quick", scenarios=("ceiling",), sizes=QUICK, out=Path("out"))
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_bench_settings_are_isolated(tmp_path: Path) -> None:
    notes: list[str] = []
    settings = bench_settings(options(), tmp_path, notes, cache_dir=tmp_path / "cache")
    assert settings.kafka_managed and settings.redis_managed
    assert settings.rtml_state_dir == tmp_path
    assert settings.rtml_cache_dir == tmp_path / "cache"
    assert settings.ray_address is None
    assert settings.rtml_fraud_scoring is False
    assert settings.rtml_delivery == "exactly_once"
    assert settings.kafka_controller_port != settings.kafka_port


def test_a_taken_port_is_replaced_and_noted(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        notes: list[str] = []
        settings = bench_settings(options(redis_port=port), tmp_path, notes)
        assert settings.redis_port != port
        assert f"Redis port {port} was taken; used {settings.redis_port}" in notes
        # With an explicit state dir the ports stay as given (a kept stack is found there).
        fixed = bench_settings(options(redis_port=port, state_dir=tmp_path), tmp_path, [])
        assert fixed.redis_port == port


def test_scenario_topics_rename_everything_and_set_partitions() -> None:
    topics = scenario_topics("run1.tx", 4)
    defaults = Topics()
    for name in Topics.model_fields:
        spec, default = getattr(topics, name), getattr(defaults, name)
        assert spec.name == f"run1.tx.{default.name}"
        assert spec.partitions == (4 if default.partitions > 1 else 1)
        assert spec.config == default.config
    assert len({spec.name for spec in topics.all()}) == len(topics.all())


def test_the_window_holds_at_least_the_transactions() -> None:
    config = generator_config(10_000, seed=1)
    assert config.sessions_per_user_day == 0
    window = window_for(30_000, config)  # one day's average
    assert window.end_ms - window.start_ms == 86_400_000
    assert window_for(10, config).end_ms - window_for(10, config).start_ms == 3_600_000


def record(seq: int, stream: Stream) -> Record:
    return Record(seq, stream, f"k{seq}", b"{}", 0, None, None)


async def test_the_sink_stops_at_exactly_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []

    async def capture(self: KafkaSink, records: list[Record]) -> None:
        sent.extend(r.seq for r in records)

    monkeypatch.setattr(KafkaSink, "send", capture)
    sink = _CappedSink(load_settings(), cap=3)
    tx, profile = Stream.TRANSACTIONS, Stream.USER_PROFILES
    await sink.send([record(0, profile), record(1, tx), record(2, tx)])
    await sink.send([record(3, profile), record(4, tx), record(5, profile), record(6, tx)])
    await sink.send([record(7, tx)])
    assert sent == [0, 1, 2, 3, 4]  # the profile after the cap goes nowhere either
    assert sink.transactions == 3
