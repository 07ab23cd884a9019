"""End-to-end latency percentiles and alert counts from fraud-scores records."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from monitoring.latency import ScoreLatency
from rtml.settings import load_settings


def score_record(ingested_at_ms: float, score: float) -> SimpleNamespace:
    return SimpleNamespace(value=json.dumps({"ingested_at": int(ingested_at_ms), "score": score}))


def test_percentiles_over_read_latencies_and_alerts_above_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    monkeypatch.setattr("monitoring.latency.time.time", lambda: now)  # a loaded machine is slow
    tracker = ScoreLatency(load_settings(), threshold=0.9)
    now_ms = now * 1000
    records = [score_record(now_ms - lat, 0.95 if lat >= 99 else 0.1) for lat in range(1, 101)]
    tracker.apply(records)
    summary = tracker.summary()
    assert summary.count == 100
    assert summary.alerts == 2
    assert summary.p50_ms is not None and 49 <= summary.p50_ms <= 52
    assert summary.p99_ms is not None and summary.p99_ms >= summary.p95_ms  # type: ignore[operator]
    assert summary.window_count == 100


def test_old_samples_leave_the_window() -> None:
    tracker = ScoreLatency(load_settings(), window_s=0.05, threshold=0.5)
    tracker.apply([score_record(time.time() * 1000 - 5, 0.1)])
    time.sleep(0.1)
    summary = tracker.summary()
    assert summary.p50_ms is None and summary.count == 1
    assert summary.window_count == 0
