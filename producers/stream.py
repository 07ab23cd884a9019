"""The generator: every source merged into one stream of ``Record``s in emission order.

Simulated time advances in chunks sized to hold a few thousand events. For each chunk the sources
add drafts (legit transactions, fraud, sessions), first-seen profiles and profile changes follow,
the corruptor assigns each draft a delay and maybe a defect, and the drafts join those carried
over from earlier chunks (sessions and scenarios that run past a chunk's end, delayed records).
Everything due before the chunk's end goes out in order; the rest waits.

Two timelines:

- historical (``live=None``): event times are simulated times from ``start_ms``; records go out in
  order of event time plus delay, so delayed records really arrive after newer ones;
- live (``LiveTimeline``): records go out in simulated order and record ``k`` gets
  ``event_time = base_ms + slot(k) - delay``, where ``slot(k)`` is when the pacing schedule sends
  it: event times are "now" at the configured rate, and a delayed record carries an older time.
  The world keeps its own density, so at a rate above ``expected_records_per_day / 86400`` its
  time runs faster than the wall clock (the runner reports by how much).

The content (ids, amounts, places, who does what in which order) is the same in both and depends
only on the config. ``seq`` numbers records in emission order (labels are not records).
"""

from __future__ import annotations

import hashlib
import itertools
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

from contracts.codec import encode
from producers.config import DAY_MS, GeneratorConfig
from producers.corruption import REASON, Corruptor
from producers.fraud_scenarios import FraudSource
from producers.pacing import PacingSchedule
from producers.profiles import ProfileSource
from producers.records import Drafts, EventIds, Record, Stream
from producers.transactions import TransactionMaker, TransactionSource, expected_legit_per_day
from producers.user_activity import SessionSource
from producers.world import World

CHUNK_EVENTS = 4_000  # target events per chunk of simulated time...
NOMINAL_EVENTS_PER_USER_DAY = 20.0  # ...at the default activity
MIN_CHUNK_MS = 1_000
MAX_CHUNK_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class LiveTimeline:
    """Live event times: ``base_ms`` (wall clock at the start) plus the record's send slot."""

    base_ms: int
    schedule: PacingSchedule


class EventGenerator:
    """An endless (live) or bounded (historical) stream of records from one config.

    >>> gen = EventGenerator(GeneratorConfig(seed=7, users=500), start_ms=0, end_ms=DAY_MS)
    >>> records = list(gen)  # one simulated day, in emission order
    """

    def __init__(
        self,
        config: GeneratorConfig,
        *,
        start_ms: int,
        end_ms: int | None = None,
        live: LiveTimeline | None = None,
    ) -> None:
        if end_ms is not None and end_ms <= start_ms:
            raise ValueError(f"end_ms ({end_ms}) must be after start_ms ({start_ms})")
        self.config = config
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.live = live
        # One random stream per source: turning a source off or changing its rate leaves the
        # others' content as it was.
        seeds = np.random.SeedSequence(config.seed).spawn(7)
        rngs = [np.random.default_rng(s) for s in seeds]
        self.tag = hashlib.blake2s(str(config.seed).encode(), digest_size=3).hexdigest()
        self.world = World.build(config, rngs[0])
        maker = TransactionMaker(self.world, EventIds("tx", self.tag))
        self.transactions = TransactionSource(self.world, config, rngs[1], maker, rngs[6])
        self.fraud = FraudSource(self.world, config, rngs[2], maker, self.tag)
        self.sessions = SessionSource(self.world, config, rngs[3], EventIds("ue", self.tag))
        self.profiles = ProfileSource(self.world, config, rngs[4], start_ms)
        self.corruptor = Corruptor(config, seeds[5])
        self.chunk_ms = _chunk_ms(config)
        self._drafts_made = itertools.count()

    def __iter__(self) -> Iterator[Record]:
        return itertools.chain.from_iterable(self.batches())

    def announce_all(self, time_ms: int) -> list[Record]:
        """The profile of every user not announced yet, as of ``time_ms``, marked announced:
        a profile table that exists before the traffic starts (the stream then carries only
        activity and changes). Their ``seq`` is -1: they are not part of the paced stream."""
        pop = self.world.population
        out = []
        for user in np.flatnonzero(~pop.announced).tolist():
            # As of the stream's start (account age), stamped with ``time_ms``.
            profile = self.profiles.profile(user, self.start_ms)
            profile = msgspec.structs.replace(profile, updated_at=time_ms)
            value = encode(profile)
            out.append(
                Record(-1, Stream.USER_PROFILES, profile.user_id, value, time_ms, None, None)
            )
        self.skip_announcements()
        return out

    def skip_announcements(self) -> None:
        """Count every user as announced: the stream then carries no first-seen profiles (their
        table was sent beforehand, e.g. by ``announce_all`` on a generator of the same config)."""
        self.world.population.announced[:] = True

    def batches(self) -> Iterator[list[Record]]:
        """Lists of records in emission order, one per chunk of simulated time (may be empty)."""
        return self._finished(self._drafts())

    def simulate(self, count: int) -> Iterator[list[Record]]:
        """Simulate the first ``count`` records (at least) now, and give them as ``batches()``
        would, each list stamped only when it is taken.

        The simulation is most of the generator's CPU (about 3/4 here): a live load that runs it
        beforehand leaves the machine to what it feeds while it is sent. The events are encoded
        now too (``_Encoded``): stamping one then writes the digits of its live time into its
        bytes instead of replacing and encoding it (1.3 instead of 3.0 us per record taken
        here), and the records are the same bytes. Set ``live`` first (the timeline decides the
        order); its ``base_ms`` may still change until the first list is taken.
        """
        drafted: list[list[tuple]] = []
        total = 0
        for ready in self._drafts():
            drafted.append([_encoded_ahead(draft) for draft in ready])
            total += len(ready)
            if total >= count:
                break
        drafted.reverse()  # popped from the end as they are taken: memory goes as they go
        return self._finished(_popping(drafted))

    def _drafts(self) -> Iterator[list[tuple]]:
        """The drafts due per chunk, in emission order, not yet stamped nor encoded."""
        pending: list[tuple] = []  # (emit_at, draft number, draft...), sorted
        t0, end = self.start_ms, self.end_ms
        while end is None or t0 < end:
            t1 = t0 + self.chunk_ms if end is None else min(t0 + self.chunk_ms, end)
            pending.extend(self._chunk(t0, t1))
            pending.sort()
            due = bisect_left(pending, (t1,))
            ready, pending = pending[:due], pending[due:]
            yield ready
            t0 = t1
        # Bounded: drop what would happen after the end, flush what is only delayed.
        yield [p for p in pending if p[2] < end]

    def _finished(self, drafts: Iterator[list[tuple]]) -> Iterator[list[Record]]:
        emitted = 0
        for ready in drafts:
            batch = self._finish(ready, emitted)
            emitted += len(batch)
            yield batch

    def _chunk(self, t0: int, t1: int) -> list[tuple]:
        drafts = Drafts()
        self.transactions.generate(t0, t1, drafts)
        self.fraud.generate(t0, t1, drafts)
        self.sessions.generate(t0, t1, drafts)
        self.profiles.announce(drafts)
        self.profiles.changes(t0, t1, drafts)
        n = len(drafts)
        if n == 0:
            return []
        protected = np.fromiter(
            (
                label is not None or event is None
                for label, event in zip(drafts.labels, drafts.events, strict=True)
            ),
            dtype=bool,
            count=n,
        )
        delays, defects = self.corruptor.plan(drafts.streams, protected)
        emit_at = (
            drafts.times if self.live is not None else (np.asarray(drafts.times) + delays).tolist()
        )
        return list(
            zip(
                emit_at,
                itertools.islice(self._drafts_made, n),
                drafts.times,
                delays.tolist(),
                defects,
                drafts.streams,
                drafts.keys,
                drafts.events,
                drafts.labels,
                strict=True,
            )
        )

    def _finish(self, ready: list[tuple], first_seq: int) -> list[Record]:
        """Final event times, encoding and defects: the records as they will be sent."""
        live, corrupt = self.live, self.corruptor.corrupt
        replace, out = msgspec.structs.replace, []
        seq = first_seq
        for _, _, time, delay, defect, stream, key, event, label in ready:
            if live is not None:
                time = live.base_ms + live.schedule.offset_ms(seq) - delay
                if type(event) is _Encoded:
                    out.append(Record(seq, stream, key, event.stamped(time), time, None, None))
                    seq += 1
                    continue
                if event is not None:
                    event = replace(event, **{_time_field(stream): time})
            elif type(event) is _Encoded:
                raise RuntimeError("events encoded ahead need a live timeline")
            value = None if event is None else encode(event)
            if defect is not None:
                value = corrupt(value, stream, defect)
            if label is not None:
                label = encode(replace(label, event_time=time) if live is not None else label)
            out.append(Record(seq, stream, key, value, time, REASON.get(defect), label))
            seq += 1
        return out


def _time_field(stream: Stream) -> str:
    """The field of an event that holds its time: what live stamping rewrites."""
    return "updated_at" if stream is Stream.USER_PROFILES else "event_time"


@dataclass(frozen=True, slots=True)
class _Encoded:
    """An event encoded ahead of its live time: ``value[at : at + width]`` are the digits of
    the time it was encoded with, the only place that time is written."""

    value: bytes
    at: int
    width: int
    event_type: type[msgspec.Struct]
    field: str

    def stamped(self, time: int) -> bytes:
        """The value ``encode`` gives for the event with its time field set to ``time``."""
        digits = b"%d" % time
        if len(digits) == self.width:
            return self.value[: self.at] + digits + self.value[self.at + self.width :]
        event = msgspec.json.decode(self.value, type=self.event_type)  # fewer or more digits
        return encode(msgspec.structs.replace(event, **{self.field: time}))


def _encoded_ahead(draft: tuple) -> tuple:
    """``draft`` with its event encoded (``_Encoded``), when stamping it can be a splice: a
    valid event (defects corrupt the bytes) without a label (stamped too), whose time appears
    once in its JSON."""
    _, _, _, _, defect, stream, _, event, label = draft
    if event is None or defect is not None or label is not None:
        return draft
    field = _time_field(stream)
    value = encode(event)
    digits = b"%d" % getattr(event, field)
    marker = b'"%s":%s' % (field.encode(), digits)
    at = value.find(marker)
    end = at + len(marker)
    if at < 0 or value.find(marker, end) >= 0 or value[end : end + 1] not in (b",", b"}"):
        return draft
    encoded = _Encoded(value, end - len(digits), len(digits), type(event), field)
    return (*draft[:7], encoded, None)


def _popping(items: list[list[tuple]]) -> Iterator[list[tuple]]:
    """``items`` from the last to the first, each dropped from the list as it is given."""
    while items:
        yield items.pop()


def expected_records_per_day(config: GeneratorConfig) -> float:
    """Records per simulated day once every user has been announced (on average)."""
    transactions = expected_legit_per_day(config) / (1 - config.fraud_rate)
    sessions = config.sessions_per_user_day * config.users * config.user_events_per_session
    profiles = (config.profile_update_rate + config.profile_delete_rate) * config.users
    return transactions + sessions + profiles


def _chunk_ms(config: GeneratorConfig) -> int:
    """About ``CHUNK_EVENTS`` events' worth of simulated time at a nominal activity of
    ``NOMINAL_EVENTS_PER_USER_DAY`` (bounded to [1 s, 1 h]). It depends on the population only,
    never on the rates, so changing one stream's rate does not move the others' random draws."""
    per_day = NOMINAL_EVENTS_PER_USER_DAY * config.users
    return int(np.clip(CHUNK_EVENTS / per_day * DAY_MS, MIN_CHUNK_MS, MAX_CHUNK_MS))
