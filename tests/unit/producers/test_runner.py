"""Produce runs against a sink that records instead of sending (no Kafka)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest

from contracts.codec import now_ms
from producers.config import GeneratorConfig
from producers.kafka_sink import KafkaSink
from producers.pacing import PacingSchedule
from producers.progress import ProduceSummary, RateMeter
from producers.records import Record, Stream
from producers.runner import EPOCH_MS, Window, produce_history, produce_live, produce_profiles
from producers.stream import EventGenerator, LiveTimeline
from rtml.settings import Settings

CONFIG = GeneratorConfig(seed=3, users=400, merchants=1_000, items=300)


class RecordingSink(KafkaSink):
    """A KafkaSink that keeps what it is given and delivers it at once."""

    def __init__(self, settings: Settings, send_labels: bool = False) -> None:
        super().__init__(settings, send_labels=send_labels)
        self.records: list[Record] = []

    async def start(self) -> None:
        pass

    async def send(self, records: Sequence[Record]) -> None:
        for record in records:
            self.records.append(record)
            topic = self.topics[record.stream]
            self.stats.sent[topic] += 1
            self.stats.delivered[topic] += 1
            if self.labels_topic and record.label is not None:
                self.stats.sent[self.labels_topic] += 1
                self.stats.delivered[self.labels_topic] += 1

    async def close(self) -> None:
        pass


@pytest.mark.timeout(60)
async def test_live_sends_the_count_in_order_with_slot_times() -> None:
    settings = Settings()
    sink = RecordingSink(settings, send_labels=True)
    lines: list[str] = []
    summary = await produce_live(
        settings, CONFIG, rate=4_000.0, count=6_000, report=lines.append, sink=sink
    )
    records = sink.records
    assert [r.seq for r in records] == list(range(6_000))
    # Record k is due k/4 ms after the start (4000/s); only delayed records are earlier.
    starts = Counter(r.event_time - r.seq // 4 for r in records)
    base, on_slot = starts.most_common(1)[0]
    assert on_slot / len(records) > 0.95 and base > 1_700_000_000_000
    assert summary.total == 6_000 and summary.labels == sum(r.label is not None for r in records)
    assert summary.failed == 0 and summary.delivered == summary.total + summary.labels
    assert summary.target_rate == 4_000.0
    # How fast simulated time runs, then a progress line per second (the run takes 1.5 s).
    assert "simulated time runs" in lines[0]
    assert lines[1:] and all("transactions" in x and "user-profiles" in x for x in lines[1:])


@pytest.mark.timeout(60)
async def test_live_duration_becomes_a_count() -> None:
    sink = RecordingSink(Settings())
    await produce_live(Settings(), CONFIG, rate=2_000.0, duration_s=0.5, sink=sink)
    assert len(sink.records) == 1_000


def _clock_base(records: list[Record]) -> int:
    """The run's clock start: the time most records have minus their slot (4,000/s: k/4 ms)."""
    return Counter(r.event_time - r.seq // 4 for r in records).most_common(1)[0][0]


@pytest.mark.timeout(60)
async def test_simulated_ahead_the_live_records_are_the_same() -> None:
    def relative(records: list[Record]) -> list[tuple]:
        base = _clock_base(records)
        return [(r.seq, r.stream, r.key, r.event_time - base, r.defect) for r in records]

    plain, ahead = RecordingSink(Settings(), send_labels=True), RecordingSink(Settings())
    await produce_live(Settings(), CONFIG, rate=4_000.0, count=5_000, sink=plain)
    clock: list[tuple[int, int]] = []  # (when the clock started, records sent by then)
    await produce_live(
        Settings(),
        CONFIG,
        rate=4_000.0,
        count=5_000,
        sink=ahead,
        simulate_ahead=True,
        on_start=lambda: clock.append((now_ms(), len(ahead.records))),
    )
    assert len(ahead.records) == 5_000
    assert relative(ahead.records) == relative(plain.records)
    # Stamped when sent, from the clock's start, not from when they were simulated.
    (started_ms, sent_before), base = clock[0], _clock_base(ahead.records)
    assert len(clock) == 1 and sent_before == 0
    assert 0 <= started_ms - base < 100


@pytest.mark.timeout(60)
async def test_simulated_records_are_stamped_when_taken() -> None:
    generator = EventGenerator(CONFIG, start_ms=EPOCH_MS)
    generator.live = LiveTimeline(0, PacingSchedule(4_000.0))
    batches = generator.simulate(2_500)
    generator.live = LiveTimeline(1_000_000, PacingSchedule(4_000.0))  # the clock starts now
    records = [r for batch in batches for r in batch]
    assert len(records) >= 2_500 and [r.seq for r in records] == list(range(len(records)))
    assert _clock_base(records) == 1_000_000


@pytest.mark.timeout(60)
@pytest.mark.parametrize("base_ms", [EPOCH_MS + 86_400_000, 1_000_000])
def test_encoded_ahead_the_records_are_the_same_bytes(base_ms: int) -> None:
    """Simulated ahead, events are encoded at once and stamped by writing their time's digits
    into the bytes; a time of another width (1,000,000 + k) is decoded and encoded again."""

    config = replace(CONFIG, fraud_rate=0.2, malformed_fraction=0.01)  # labels and defects too

    def records(ahead: bool) -> list[Record]:
        generator = EventGenerator(config, start_ms=EPOCH_MS)
        generator.live = LiveTimeline(base_ms, PacingSchedule(4_000.0))
        batches = generator.simulate(3_000) if ahead else generator.batches()
        out: list[Record] = []
        for batch in batches:
            out.extend(batch)
            if len(out) >= 3_000:
                return out[:3_000]
        return out

    ahead, plain = records(True), records(False)
    assert ahead == plain
    streams = Counter(r.stream for r in ahead if r.defect is None and r.label is None)
    assert streams[Stream.TRANSACTIONS] > 300 and streams[Stream.USER_PROFILES] > 100
    assert any(r.defect for r in ahead) and any(r.label for r in ahead)


@pytest.mark.timeout(60)
async def test_preloaded_profiles_leave_the_live_stream_to_activity() -> None:
    table = RecordingSink(Settings())
    assert await produce_profiles(Settings(), CONFIG, sink=table) == CONFIG.users
    assert {r.stream for r in table.records} == {Stream.USER_PROFILES}
    assert len({r.key for r in table.records}) == CONFIG.users
    live = RecordingSink(Settings())
    await produce_live(
        Settings(), CONFIG, rate=4_000.0, count=3_000, sink=live, announce_profiles=False
    )
    streams = Counter(r.stream for r in live.records)
    # Only the rare profile changes remain; by default a quarter or more are first-seen profiles.
    assert streams[Stream.USER_PROFILES] < 0.01 * len(live.records)
    default = RecordingSink(Settings())
    await produce_live(Settings(), CONFIG, rate=4_000.0, count=3_000, sink=default)
    assert Counter(r.stream for r in default.records)[Stream.USER_PROFILES] > CONFIG.users / 2


@pytest.mark.timeout(60)
async def test_history_to_kafka_sends_everything_in_emission_order() -> None:
    sink = RecordingSink(Settings())
    summary = await produce_history(Settings(), CONFIG, Window(0, 86_400_000), sink=sink)
    assert [r.seq for r in sink.records] == list(range(len(sink.records)))
    assert summary.total == len(sink.records) > 5_000
    streams = {r.stream for r in sink.records}
    assert streams == set(Stream)


@pytest.mark.timeout(60)
async def test_history_count_caps_the_run() -> None:
    sink = RecordingSink(Settings())
    await produce_history(Settings(), CONFIG, Window(0, 86_400_000), count=777, sink=sink)
    assert len(sink.records) == 777


def test_rate_meter_and_summary_lines() -> None:
    meter = RateMeter(["transactions", "user-events"], ["fraud-labels"])
    line = meter.line(1.0, {"transactions": 100, "user-events": 300, "fraud-labels": 5}, failed=0)
    assert "transactions 100/s" in line and "user-events 300/s" in line
    assert "fraud-labels 5/s" in line and "total 400 " in line  # labels are not records
    line = meter.line(2.0, {"transactions": 150, "user-events": 700}, failed=2)
    assert "transactions 50/s" in line and "user-events 400/s" in line and "errors 2" in line
    summary = ProduceSummary(
        records={"transactions": 1_000, "user-events": 3_000},
        elapsed_s=2.0,
        delivered=4_000,
        target_rate=2_000.0,
        destination="kafka x:1",
    )
    text = summary.describe()
    assert "4,000 records" in text and "(2,000/s, target 2,000/s)" in text
    assert "delivered 4,000, failed 0" in text
    unsent = ProduceSummary(
        records={"transactions": 10}, elapsed_s=1.0, labels=2, labels_sent=False
    )
    assert "labels 2 (not sent: --labels-topic sends them)" in unsent.describe()


@pytest.mark.timeout(60)
async def test_simulated_ahead_the_collector_is_paused_then_restored() -> None:
    """No automatic collections while the load is simulated, its records frozen while sent;
    after the run the collector is as it was (on, nothing frozen)."""
    seen: list[tuple[bool, int]] = []

    class Probe(RecordingSink):
        async def send(self, records: Sequence[Record]) -> None:
            seen.append((gc.isenabled(), gc.get_freeze_count()))
            await super().send(records)

    assert gc.isenabled() and gc.get_freeze_count() == 0
    await produce_live(
        Settings(), CONFIG, rate=4_000.0, count=500, sink=Probe(Settings()), simulate_ahead=True
    )
    assert seen and all(enabled and frozen > 0 for enabled, frozen in seen)
    assert gc.isenabled() and gc.get_freeze_count() == 0
