"""Produce runs: live to Kafka at a rate, or historical to Kafka or to files as fast as possible.

The entry points for other code:

- ``produce_live(settings, config, rate=..., duration_s=... | count=...)``: benchmarks and demos;
- ``produce_history(settings, config, window)``: a past window into Kafka, for replay;
- ``write_history(config, directory, window)``: a past window into JSON-lines files, for training
  (``EventGenerator`` gives the same records in-process, without files).

Generation runs in a worker thread one chunk ahead of the sender, so the event loop only hands
records to the producer and sleeps; the pacing schedule decides how many records go out per tick.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from contracts.codec import now_ms
from producers.config import DAY_MS, GeneratorConfig
from producers.files import JsonlWriter
from producers.kafka_sink import KafkaSink
from producers.pacing import PacingSchedule
from producers.progress import ProduceSummary, RateMeter
from producers.records import Record
from producers.stream import EventGenerator, LiveTimeline, expected_records_per_day
from rtml.errors import ConfigError
from rtml.gc_control import automatic_gc
from rtml.settings import Settings

log = logging.getLogger(__name__)

# Simulated time starts here in live mode and, by default, historical windows end here: fixed, so
# the content never depends on the wall clock.
EPOCH_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
UNPACED_BATCH = 2_000  # records per hand-over when producing as fast as possible
REPORT_EVERY_S = 1.0

Report = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Window:
    """A historical window of simulated time, [start_ms, end_ms)."""

    start_ms: int
    end_ms: int

    @classmethod
    def last_days(cls, days: float) -> Window:
        """``days`` days ending at the fixed epoch (2025-01-01T00:00Z)."""
        if not days > 0:
            raise ConfigError(f"--historical-days must be positive, got {days}")
        return cls(EPOCH_MS - int(days * DAY_MS), EPOCH_MS)

    @classmethod
    def between(cls, start: datetime, end: datetime) -> Window:
        window = cls(_ms(start), _ms(end))
        if window.end_ms <= window.start_ms:
            raise ConfigError(
                f"--end ({end.isoformat()}) must be after --start ({start.isoformat()})"
            )
        return window


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


async def produce_live(
    settings: Settings,
    config: GeneratorConfig,
    *,
    rate: float,
    duration_s: float | None = None,
    count: int | None = None,
    send_labels: bool = False,
    report: Report | None = None,
    sink: KafkaSink | None = None,
    announce_profiles: bool = True,
    simulate_ahead: bool = False,
    on_start: Callable[[], None] | None = None,
) -> ProduceSummary:
    """Produce at ``rate`` records/s (all streams together) for ``duration_s`` or ``count``.

    ``announce_profiles=False``: the stream carries no first-seen profiles (every user counts as
    announced; see ``produce_profiles``), so the rate is activity and profile changes only. By
    default a user's profile is announced just before their first event, inside the stream.

    ``simulate_ahead=True``: simulate and encode every record before the clock starts (~9.5 s
    and 0.7 GB per million records here), and only stamp and send them on schedule: a load that
    shares the machine with the pipeline it measures takes less of it (the e2e bench at 20,000
    records/s: the simulation had 60% of its process's py-spy samples, and the process took
    0.40 - 0.44 cores with it ahead instead of 0.63). The records are the same either way.
    ``on_start`` is called when the clock starts, just before the first record is sent.

    Event times are the wall clock: record ``k`` has ``start + k / rate`` (minus its delay when
    it is out of order or late). Raises ``ServiceUnavailable`` when Kafka cannot be reached.
    ``sink`` replaces the Kafka sink (same interface), e.g. in tests.
    """
    schedule = PacingSchedule(rate, max_batch=max(int(rate * 0.05), 100))
    if (duration_s is None) == (count is None):
        raise ConfigError("give exactly one of duration_s and count")
    limit = count if count is not None else schedule.count_for(duration_s or 0.0)
    generator = EventGenerator(config, start_ms=EPOCH_MS)
    if report is not None:
        speedup = rate / (expected_records_per_day(config) / 86_400)
        report(
            f"{config.users:,} users at {rate:,.0f} records/s: simulated time runs "
            f"{speedup:,.1f}x the wall clock (more --users slows it down)"
        )

    def start_clock() -> None:
        generator.live = LiveTimeline(now_ms(), schedule)
        if on_start is not None:
            on_start()

    sink = sink or KafkaSink(settings, send_labels=send_labels)
    if not announce_profiles:
        generator.skip_announcements()
    if simulate_ahead:
        generator.live = LiveTimeline(now_ms(), schedule)  # the order; start_clock() sets the time
        # The simulated records live until sent and hold no cycles. Collections would walk
        # them all again and again: while they are made (a million took 15.9 s instead of 9.5)
        # and while they are sent (up to a tenth of a core at 20,000 records/s, in the e2e
        # bench's process). So no automatic collections meanwhile, then out of their sight.
        with automatic_gc.paused():
            batches = await asyncio.to_thread(generator.simulate, limit)
        gc.freeze()
    else:
        batches = generator.batches()
    try:
        async with sink:
            elapsed, labels = await _pump(sink, batches, schedule, limit, report, start_clock)
    finally:
        if simulate_ahead:
            gc.unfreeze()
    return _summary(sink, elapsed, labels, rate)


async def produce_profiles(
    settings: Settings, config: GeneratorConfig, *, sink: KafkaSink | None = None
) -> int:
    """Send the profile of every user of ``config`` as of now, as fast as the broker takes
    them: the profile table that exists before live traffic produced with
    ``announce_profiles=False``. Returns how many were sent."""
    generator = EventGenerator(config, start_ms=EPOCH_MS)
    profiles = await asyncio.to_thread(generator.announce_all, now_ms())
    sink = sink or KafkaSink(settings)
    async with sink:
        for start in range(0, len(profiles), UNPACED_BATCH):
            await sink.send(profiles[start : start + UNPACED_BATCH])
    return len(profiles)


async def produce_history(
    settings: Settings,
    config: GeneratorConfig,
    window: Window,
    *,
    count: int | None = None,
    rate: float | None = None,
    send_labels: bool = False,
    report: Report | None = None,
    sink: KafkaSink | None = None,
) -> ProduceSummary:
    """Produce a historical window to Kafka as fast as the broker takes it, or paced at
    ``rate`` records/s: a replay whose event times (the window's) run faster than the wall
    clock, e.g. days of traffic in minutes, for long-window state and memory tests."""
    generator = EventGenerator(config, start_ms=window.start_ms, end_ms=window.end_ms)
    sink = sink or KafkaSink(settings, send_labels=send_labels)
    return await produce_batches(sink, generator.batches(), count=count, rate=rate, report=report)


async def produce_batches(
    sink: KafkaSink,
    batches: Iterator[list[Record]],
    *,
    count: int | None = None,
    rate: float | None = None,
    report: Report | None = None,
) -> ProduceSummary:
    """Send ready-made records (``batches``, e.g. a bench's own key space) through ``sink``,
    as fast as the broker takes them or paced at ``rate`` records/s, until ``count``."""
    schedule = PacingSchedule(rate, max_batch=max(int(rate * 0.05), 100)) if rate else None
    async with sink:
        elapsed, labels = await _pump(sink, batches, schedule, count, report, lambda: None)
    return _summary(sink, elapsed, labels, rate)


def _summary(sink: KafkaSink, elapsed: float, labels: int, rate: float | None) -> ProduceSummary:
    stats = sink.stats
    sent = dict(stats.sent)
    if sink.labels_topic is not None:
        sent.pop(sink.labels_topic, None)
    return ProduceSummary(
        records=sent,
        labels=labels,
        labels_sent=sink.labels_topic is not None,
        elapsed_s=elapsed,
        delivered=sum(stats.delivered.values()),
        failed=sum(stats.failed.values()),
        first_error=stats.first_error,
        target_rate=rate,
        destination=f"kafka {sink.settings.kafka_bootstrap_servers}",
    )


class _Buffer:
    """Generated records waiting to be sent: a list and a read position (no per-record pops)."""

    def __init__(self) -> None:
        self._items: list[Record] = []
        self._pos = 0

    def __len__(self) -> int:
        return len(self._items) - self._pos

    def extend(self, records: list[Record]) -> None:
        if self._pos:
            self._items = self._items[self._pos :]
            self._pos = 0
        self._items.extend(records)

    def take(self, n: int) -> list[Record]:
        out = self._items[self._pos : self._pos + n]
        self._pos += len(out)
        return out


async def _pump(
    sink: KafkaSink,
    batches: Iterator[list[Record]],
    schedule: PacingSchedule | None,
    limit: int | None,
    report: Report | None,
    start_clock: Callable[[], None],
) -> tuple[float, int]:
    """Send records from ``batches`` on ``schedule`` (None: as fast as possible) until ``limit``
    records or the end of the stream. Returns the seconds from the first to the last hand-over,
    and how many of the records carried a fraud label."""
    loop = asyncio.get_running_loop()
    buffer = _Buffer()
    low_water = max(int(schedule.rate * 0.5), 5_000) if schedule else 4 * UNPACED_BATCH
    meter = RateMeter(list(sink.topics.values()), [sink.labels_topic] if sink.labels_topic else [])
    next_report = REPORT_EVERY_S
    sent, labels, exhausted = 0, 0, False
    prefetch: asyncio.Future[list[Record] | None] | None = None
    start_clock()
    start = loop.time()
    elapsed = 0.0
    while limit is None or sent < limit:
        if prefetch is None and not exhausted and len(buffer) < low_water:
            prefetch = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
        if prefetch is not None and (prefetch.done() or not buffer):
            batch = await prefetch
            prefetch = None
            if batch is None:
                exhausted = True
            else:
                buffer.extend(batch)
            continue
        if not buffer:
            break  # exhausted
        elapsed = loop.time() - start
        if schedule is None:
            n, wait = min(UNPACED_BATCH, len(buffer)), 0.0
            if limit is not None:
                n = min(n, limit - sent)
        else:
            n, wait = schedule.next_step(sent, elapsed, limit)
            n = min(n, len(buffer))
        if n:
            records = buffer.take(n)
            await sink.send(records)
            labels += sum(r.label is not None for r in records)
            sent += n
            elapsed = loop.time() - start
        if report is not None and elapsed >= next_report:
            stats = sink.stats
            report(meter.line(elapsed, stats.sent, sum(stats.failed.values())))
            next_report += REPORT_EVERY_S
        await asyncio.sleep(wait)
    if prefetch is not None:
        await prefetch  # let the worker thread finish before the generator goes away
    return elapsed, labels


def write_history(
    config: GeneratorConfig,
    directory: Path,
    window: Window,
    *,
    count: int | None = None,
) -> ProduceSummary:
    """Write a historical window to ``directory`` as JSON lines (see ``producers.files``)."""
    generator = EventGenerator(config, start_ms=window.start_ms, end_ms=window.end_ms)
    begin = time.perf_counter()
    written = 0
    with JsonlWriter(directory) as writer:
        for batch in generator.batches():
            if count is not None and written + len(batch) >= count:
                writer.write(batch[: count - written])
                written = count
                break
            writer.write(batch)
            written += len(batch)
        elapsed = time.perf_counter() - begin
        writer.write_manifest(
            {
                "config": config.to_dict(),
                "start_ms": window.start_ms,
                "end_ms": window.end_ms,
                "count_limit": count,
                "counts": dict(writer.counts),
            }
        )
    counts = dict(writer.counts)
    labels = counts.pop("labels", 0)
    return ProduceSummary(
        records=counts, labels=labels, elapsed_s=elapsed, destination=str(directory)
    )
