"""Event times: out-of-order and late records in historical mode, wall-clock slots in live mode."""

from __future__ import annotations

import itertools
from dataclasses import replace

import msgspec
import pytest

from producers.fraud_scenarios import FraudLabel
from producers.pacing import PacingSchedule
from producers.records import Stream
from producers.stream import EventGenerator, LiveTimeline


def _disorder(records, stream: Stream, lateness_ms: int) -> tuple[float, float]:
    """(share out of order, share late) of ``stream``: a record is out of order when a record
    emitted before it has a later event time, late when it is behind by more than the lateness."""
    newest, ooo, late, n = 0, 0, 0, 0
    for r in records:
        if r.stream is not stream:
            continue
        n += 1
        ooo += r.event_time < newest
        late += r.event_time < newest - lateness_ms
        newest = max(newest, r.event_time)
    return ooo / n, late / n


def test_late_and_out_of_order_fractions(generated) -> None:
    config = generated.config
    lateness = config.allowed_lateness_ms
    for stream in Stream:
        ooo, late = _disorder(generated.records, stream, lateness)
        assert late == pytest.approx(config.late_fraction, rel=0.3), stream
        assert ooo <= config.out_of_order_fraction + config.late_fraction + 0.005
    # The densest stream shows nearly every delay as disorder.
    ooo, _ = _disorder(generated.records, Stream.USER_EVENTS, lateness)
    assert ooo > 0.8 * (config.out_of_order_fraction + config.late_fraction)


def test_no_disorder_when_switched_off(make_stream, test_config) -> None:
    clean = make_stream(
        replace(test_config, out_of_order_fraction=0.0, late_fraction=0.0, users=300), days=1
    )
    for stream in Stream:
        assert _disorder(clean.records, stream, 0) == (0.0, 0.0)


def test_delays_stay_within_their_bounds(generated) -> None:
    """Records go out in order of event time plus delay, and no delay exceeds twice the
    lateness plus a minute: nothing trails the newest event time by more."""
    config = generated.config
    newest = 0
    bound = 2 * config.allowed_lateness_ms + 60_000
    for r in generated.records:
        assert r.event_time >= newest - bound
        newest = max(newest, r.event_time)


def test_live_event_times_are_the_send_slots() -> None:
    schedule = PacingSchedule(rate=500.0)
    base = 1_750_000_000_000
    config = replace(
        _live_config(), out_of_order_fraction=0.05, late_fraction=0.01, malformed_fraction=0.0
    )
    generator = EventGenerator(config, start_ms=0)
    generator.live = LiveTimeline(base, schedule)
    records = list(itertools.islice(generator, 20_000))
    assert [r.seq for r in records] == list(range(len(records)))
    behind = [base + schedule.offset_ms(r.seq) - r.event_time for r in records]
    assert all(b >= 0 for b in behind)
    on_time = sum(b == 0 for b in behind) / len(records)
    assert on_time == pytest.approx(1 - 0.06, abs=0.01)
    late = sum(b > config.allowed_lateness_ms for b in behind) / len(records)
    assert late == pytest.approx(0.01, rel=0.3)
    assert all(b <= config.max_delay_ms for b in behind if b <= config.allowed_lateness_ms)
    for r in records:
        if r.value is not None:
            field = b'"updated_at":' if r.stream is Stream.USER_PROFILES else b'"event_time":'
            assert field + str(r.event_time).encode() in r.value
        if r.label is not None:
            assert msgspec.json.decode(r.label, type=FraudLabel).event_time == r.event_time


def test_live_content_does_not_depend_on_the_clock() -> None:
    """Two live runs started at different times differ only in their event times."""

    def run(base: int) -> list[tuple]:
        generator = EventGenerator(_live_config(), start_ms=0)
        generator.live = LiveTimeline(base, PacingSchedule(rate=100.0))
        return [
            (r.key, r.value.replace(str(r.event_time).encode(), b"T") if r.value else None)
            for r in itertools.islice(generator, 3_000)
        ]

    assert run(1_750_000_000_000) == run(1_760_000_000_000)


def _live_config():
    from producers.config import GeneratorConfig

    return GeneratorConfig(seed=9, users=500, merchants=1_000, items=500, malformed_fraction=0.0)
