"""What both feature engines share: partitions, watermarks, idle advance, touched keys, expiry.

Keyed state lives per input partition (a key is in exactly one partition, Kafka's partitioner
sees to that). A partition's event-time clock is the greatest event_time it has processed; its
watermark is that minus the allowed lateness. Events older than the watermark are late.

Each key sits in an expiry wheel bucket by the slice of time of its last event: a minute, or
1/1024 of the engine's horizon when that is longer (about 10 minutes for the 7-day card horizon),
so a wheel never holds more than ~1024 buckets of the horizon, however many keys pass through.
When the watermark passes ``bucket end + horizon`` every key of that bucket has no state any
future (non-late) event could see, and is dropped (and reported as touched, so the consumer
writes a tombstone): at most one bucket after its horizon.

The changelog (``changelog``, ``restore_record``, ``finish_restore``). An engine whose state is
a time-sorted buffer plus a little else (cards, patterns: ``_sliced``) writes a touched key as a
head record and the buffer's changed slices (``features.state.SLICE_MS`` of event time each),
like the time-keyed segments of Kafka Streams' window stores: the bytes written per event stay
the same however long the buffer grows. Each slice record holds exactly the live entries of its
slice; a slice whose entries were all trimmed gets a tombstone. A key with a short buffer (at
most ``WHOLE_MAX_ENTRIES``, most cards) is written as one whole-state record until it grows
past that. Other engines write one whole-state record per key.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from sys import getsizeof
from typing import Any, Generic, TypeVar

import msgspec

from features.config import FeatureConfig
from features.definitions import MINUTE_MS
from features.errors import PartitionNotAssigned, StateDecodeError
from features.state import (
    ESCAPE_PREFIX,
    SLICE_KEY_PREFIX,
    SLICE_MS,
    PartitionMetaV1,
    encoder,
    partition_meta_decoder,
)

NO_TIME = -(1 << 62)
"""The clock and watermark of a partition that has processed nothing: nothing is late."""

CLEAN = 1 << 62
"""``KeyState.low`` of a sliced key whose buffer gained nothing since the last changelog drain."""

WHOLE_MAX_ENTRIES = 8
"""A key is written as one whole-state record while its buffer holds at most this many entries
(cheaper to encode than a head and a slice); past it, as a head and slices, for good."""

_MIN_BUCKET_MS = MINUTE_MS
_WHEEL_BUCKETS = 1_024  # buckets per horizon, at most
# A wheel bucket's set is rebuilt when its hash table has more than this many bytes per member
# (a right-sized set has 32 - 64): see KeyedEngine._compact.
_SPARSE_BYTES_PER_KEY = 128
_SPARSE_BYTES_MIN = 256
_COMPACT_MIN_MOVES = 4_096


class KeyState:
    """Per-key state base: ``last`` is the key's greatest event time, ``bucket`` its wheel slot.

    For the sliced changelog: ``low``, the earliest event time added to the buffer since the
    last drain (``CLEAN``: none), or ``NO_TIME`` while the key is written whole (it has no
    slice records); ``dead``, the slices entries were trimmed from since the last drain (kept
    only while tracking).
    """

    __slots__ = ("bucket", "dead", "last", "low")

    def __init__(self) -> None:
        self.last = NO_TIME
        self.bucket: int | None = None
        self.low = NO_TIME
        self.dead: list[int] | None = None


S = TypeVar("S", bound=KeyState)


class Partition(Generic[S]):
    """One input partition's keyed state and clock."""

    __slots__ = (
        "extra",
        "gone",
        "id",
        "idle_base",
        "keys",
        "last_event_at",
        "max_time",
        "moves",
        "next_sweep",
        "pending",
        "pending_slices",
        "swept_below",
        "touched",
        "watermark",
        "wheel",
    )

    def __init__(self, partition: int, now_ms: int | None) -> None:
        self.id = partition
        self.keys: dict[str, S] = {}
        self.max_time = NO_TIME
        self.watermark = NO_TIME
        self.touched: set[str] = set()
        self.wheel: dict[int, set[str]] = {}
        self.moves = 0  # keys moved out of a wheel bucket since the last compaction
        self.swept_below: int | None = None  # lowest wheel bucket not yet swept
        self.next_sweep = NO_TIME  # watermark at which the next bucket becomes droppable
        self.last_event_at = now_ms  # processing time of the last batch, for advance_idle
        self.idle_base = NO_TIME  # max_time when that batch ended
        self.extra: Any = None  # engine-specific per-partition data
        self.gone: dict[str, list[int]] = {}  # swept keys' slices, until the changelog drain
        self.pending: dict[str, Any] = {}  # restore: key -> decoded head waiting for its slices
        self.pending_slices: dict[str, list[tuple[int, bytes]]] = {}  # restore: key -> slices


@dataclass(slots=True)
class BatchResult:
    """Feature rows of one batch, aligned with its input: ``rows[i]`` is None when event i was
    late (its index is then in ``late``, in input order)."""

    rows: list[tuple[Any, ...] | None] = field(default_factory=list)
    late: list[int] = field(default_factory=list)


class KeyedEngine(Generic[S]):
    """Partition bookkeeping shared by the fraud and recommendation engines."""

    #: A key is dropped once watermark >= its last event time + this (``_set_horizon``).
    _horizon_ms: int
    _bucket_ms: int  # the expiry wheel's bucket width

    #: True for engines that write the sliced changelog (they implement the slice hooks).
    _sliced = False

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()
        self._lateness = self.config.allowed_lateness_ms
        self._parts: dict[int, Partition[S]] = {}
        # Whether trims and expiry remember the slices they empty, for ``changelog``. Off until
        # a partition is assigned with a changelog: an offline replay would keep them forever.
        self._track = False

    # -- partitions -------------------------------------------------------------------------

    def assign(self, partition: int, *, now_ms: int | None = None, changelog: bool = False) -> None:
        """Start owning ``partition`` with empty state (restore it next, if it has a changelog).

        ``changelog``: its state will be written with ``changelog`` (the engine then tracks
        the slices it changes, for all its partitions)."""
        if partition < 0:
            raise ValueError(f"partition must be >= 0, got {partition}")
        if changelog:
            self._track = True
        if partition not in self._parts:
            self._parts[partition] = Partition(partition, now_ms)

    def revoke(self, partition: int) -> None:
        """Drop everything held for ``partition`` (it now belongs to another consumer)."""
        self._parts.pop(partition, None)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def watermark(self, partition: int) -> int | None:
        """Events with event_time below this are late; None before the first event."""
        wm = self._partition(partition).watermark
        return None if wm == NO_TIME else wm

    def key_count(self, partition: int) -> int:
        return len(self._partition(partition).keys)

    def keys(self, partition: int) -> list[str]:
        return list(self._partition(partition).keys)

    def _partition(self, partition: int) -> Partition[S]:
        part = self._parts.get(partition)
        if part is None:
            raise PartitionNotAssigned(partition)
        return part

    # -- time -------------------------------------------------------------------------------

    def advance_idle(self, now_ms: int) -> list[int]:
        """Move the clock of partitions idle for at least ``idle_timeout_ms`` (processing time).

        A partition whose last batch ended at processing time ``a`` with clock ``c`` gets clock
        ``max(clock, c + (now_ms - a))`` once ``now_ms - a >= idle_timeout_ms``: event time is
        assumed to have kept pace with processing time while nothing arrived. Expired keys are
        dropped (and reported as touched). Returns the partitions whose watermark moved.
        """
        moved = []
        timeout = self.config.idle_timeout_ms
        for part in self._parts.values():
            if part.last_event_at is None or part.idle_base == NO_TIME:
                continue
            idle = now_ms - part.last_event_at
            if idle < timeout:
                continue
            clock = part.idle_base + idle
            if clock > part.max_time:
                part.max_time = clock
                part.watermark = clock - self._lateness
                self._sweep(part)
                moved.append(part.id)
        return moved

    def _end_batch(self, part: Partition[S], max_time: int, wm: int, now_ms: int | None) -> None:
        """Store the batch's clock; ``now_ms`` (None for an empty batch) restarts the idle timer."""
        part.max_time = max_time
        part.watermark = wm
        if now_ms is not None:
            part.last_event_at = now_ms
            part.idle_base = max_time
        if wm >= part.next_sweep:
            self._sweep(part)

    # -- expiry -----------------------------------------------------------------------------

    def _set_horizon(self, horizon_ms: int) -> None:
        """Called by each engine's __init__: how long a quiet key lives, and the wheel's width."""
        self._horizon_ms = horizon_ms
        self._bucket_ms = max(_MIN_BUCKET_MS, horizon_ms // _WHEEL_BUCKETS)

    def _rebucket(self, part: Partition[S], key: str, st: S) -> None:
        """File ``key`` under the wheel bucket of ``st.last`` (call after ``st.last`` grew)."""
        bucket = st.last // self._bucket_ms
        old = st.bucket
        if bucket == old:
            return
        wheel = part.wheel
        if old is not None:
            members = wheel.get(old)
            if members is not None:
                members.discard(key)
                if not members:
                    del wheel[old]
                part.moves += 1
                if part.moves > _COMPACT_MIN_MOVES and part.moves > len(part.keys):
                    self._compact(part)
        members = wheel.get(bucket)
        if members is None:
            wheel[bucket] = members = set()
        members.add(key)
        st.bucket = bucket
        if part.swept_below is None or bucket < part.swept_below:
            part.swept_below = bucket
            due = (bucket + 1) * self._bucket_ms - 1 + self._horizon_ms
            if due < part.next_sweep:
                part.next_sweep = due

    @staticmethod
    def _compact(part: Partition[S]) -> None:
        """Rebuild the wheel buckets that most of their keys have left.

        A Python set keeps its hash table when members leave, and a key leaves its bucket each
        time it has a newer event. Without this, every minute bucket would hold the table of its
        busiest moment until the horizon sweeps it: the wheel would grow with the events of a
        whole horizon (7 days for cards) instead of with the keys. Runs after as many moves as
        there are keys, so its cost per event is constant.
        """
        wheel = part.wheel
        for bucket, members in wheel.items():
            if getsizeof(members) > _SPARSE_BYTES_MIN + _SPARSE_BYTES_PER_KEY * len(members):
                wheel[bucket] = set(members)
        part.moves = 0

    def _sweep(self, part: Partition[S]) -> None:
        """Drop every key whose last event is at least one horizon behind the watermark."""
        horizon, width = self._horizon_ms, self._bucket_ms
        # Keys in bucket b have last < (b + 1) * width; all droppable once
        # watermark >= (b + 1) * width - 1 + horizon.
        limit = (part.watermark - horizon + 1) // width - 1
        wheel = part.wheel
        if part.swept_below is not None and part.swept_below <= limit:
            if limit - part.swept_below > len(wheel):
                due = sorted(b for b in wheel if b <= limit)
            else:
                due = range(part.swept_below, limit + 1)
            keys, touched = part.keys, part.touched
            sliced = self._sliced and self._track
            for bucket in due:
                for key in wheel.pop(bucket, ()):
                    st = keys.pop(key)
                    touched.add(key)
                    if sliced:
                        self._note_gone(part, key, st)
            part.swept_below = limit + 1
        part.next_sweep = (limit + 2) * width - 1 + horizon

    def _forget(self, part: Partition[S], key: str) -> None:
        st = part.keys.pop(key, None)
        if st is not None and st.bucket is not None:
            members = part.wheel.get(st.bucket)
            if members is not None:
                members.discard(key)

    # -- state ------------------------------------------------------------------------------

    def drain_touched(self, partition: int) -> list[str]:
        """Keys whose state changed (or expired) since the last drain; clears the set.

        Write ``serialize(partition, key)`` for each to the changelog (None: a tombstone).
        """
        return list(self.take_touched(partition))

    def serialize(self, partition: int, key: str) -> bytes | None:
        """The key's state as compact msgpack, or None when it has none left (a tombstone)."""
        part = self._partition(partition)
        st = part.keys.get(key)
        if st is None:
            return None
        if part.watermark != NO_TIME and self._trim(st, part.watermark):
            self._forget(part, key)
            return None
        return self._encode(st)

    def restore(self, partition: int, key: str, data: bytes | None) -> None:
        """Load one changelog record for ``key``; None or empty (a tombstone) removes the key."""
        part = self._partition(partition)
        if not data:
            self._forget(part, key)
            return
        try:
            st = self._decode(data)
        except (msgspec.DecodeError, ValueError) as exc:
            raise StateDecodeError(partition, key, str(exc)) from exc
        self._forget(part, key)
        self._install(part, key, st)

    def serialize_partition(self, partition: int) -> bytes:
        """The partition's clock (restore it with ``restore_partition`` before its keys)."""
        part = self._partition(partition)
        max_time = None if part.max_time == NO_TIME else part.max_time
        return encoder.encode(PartitionMetaV1(max_time))

    def restore_partition(self, partition: int, data: bytes, *, now_ms: int | None = None) -> None:
        """Restore the partition's clock; ``now_ms`` restarts its idle timer."""
        part = self._partition(partition)
        try:
            meta = partition_meta_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise StateDecodeError(partition, None, str(exc)) from exc
        if meta.max_event_time is not None and meta.max_event_time > part.max_time:
            part.max_time = meta.max_event_time
            part.watermark = part.max_time - self._lateness
            part.idle_base = part.max_time
        part.last_event_at = now_ms
        part.next_sweep = NO_TIME  # re-evaluate expiry at the next batch

    # -- changelog --------------------------------------------------------------------------

    def changelog(self, partition: int, prefix: bytes = b"") -> list[tuple[bytes, bytes | None]]:
        """The changelog records of every key touched since the last call (None: a tombstone).

        Keys are ``prefix`` + the key (and, for slices, ``prefix`` + ``slice_key``); restore
        them with ``restore_record`` (prefix removed), then ``finish_restore``. Write the
        partition's clock beside them (``serialize_partition``).
        """
        keys = self.drain_touched(partition)
        heads, slices = self.changelog_parts(partition, keys, prefix)
        records = [(prefix + entity_key(k), v) for k, v in zip(keys, heads, strict=True)]
        records += slices
        return records

    def holds(self, partition: int, key: str) -> bool:
        """Whether ``key`` has state, or a restored head waiting for ``finish_restore``."""
        part = self._partition(partition)
        return key in part.keys or key in part.pending

    def take_touched(self, partition: int) -> set[str]:
        """The keys touched since the last call (the engine starts a new set)."""
        part = self._partition(partition)
        touched, part.touched = part.touched, set()
        return touched

    def changelog_parts(
        self, partition: int, keys: Sequence[str], prefix: bytes = b""
    ) -> tuple[list[bytes | None], list[tuple[bytes, bytes | None]]]:
        """The changelog of ``keys`` (touched or not) in two parts: per key in order, the value
        of its record under ``prefix`` + the key (its whole state or head; None: a tombstone),
        and the other records (its slices, keyed as in ``changelog``).

        For a caller that writes the key record elsewhere, e.g. one record with another
        engine's state for the same key (``consumers.pipelines.fraud_partition``)."""
        part = self._partition(partition)
        if not self._sliced:
            return [self.serialize(partition, k) for k in keys], []
        if not self._track:
            raise RuntimeError("assign the partition with changelog=True before writing it")
        heads: list[bytes | None] = []
        put = heads.append
        out: list[tuple[bytes, bytes | None]] = []
        add = out.append
        states, gone, wm = part.keys, part.gone, part.watermark
        trim, whole, head, encode_slice, entry_times = (
            self._trim,
            self._encode,
            self._encode_head,
            self._encode_slice,
            self._entry_times,
        )
        width, fmt = SLICE_MS, _SLICE_FMT
        for key in keys:
            dead = gone.pop(key, None) if gone else None
            st = states.get(key)
            if st is not None:
                # A key with an event within the lateness is written as it is (its events trim
                # it): nothing of it expires now. The others are trimmed, maybe to nothing.
                if st.last < wm and trim(st, wm):
                    self._forget(part, key)
                    dead = _union(dead, st.dead)
                    st = None
                elif st.dead:
                    dead = _union(dead, st.dead)
                    st.dead = None
            if st is None:
                put(None)
                if dead:
                    kb = entity_key(key)
                    out.extend((fmt % (prefix, s, kb), None) for s in sorted(set(dead)))
                continue
            times = entry_times(st)
            low = st.low
            if low == NO_TIME and len(times) <= WHOLE_MAX_ENTRIES:
                put(whole(st))  # a small key: one record, no slices
                if dead:  # slices of a sliced key that expired since, and came back
                    kb = entity_key(key)
                    out.extend((fmt % (prefix, s, kb), None) for s in sorted(set(dead)))
                continue
            put(head(st))
            kb = entity_key(key)
            if low == CLEAN:
                written: list[int] = []
            else:
                # Every slice from the one of the earliest entry added since the last drain.
                st.low = CLEAN
                n = len(times)
                s = low // width
                i = bisect_left(times, s * width)
                if dead is None and i < n and times[-1] < (s + 1) * width:  # the usual: one slice
                    add((fmt % (prefix, s, kb), encode_slice(st, i, n)))
                    continue
                written = []
                while i < n:
                    s = times[i] // width
                    j = bisect_left(times, (s + 1) * width, i)
                    add((fmt % (prefix, s, kb), encode_slice(st, i, j)))
                    written.append(s)
                    i = j
            if dead:
                for s in sorted(set(dead).difference(written)):
                    i = bisect_left(times, s * width)
                    j = bisect_left(times, (s + 1) * width, i)
                    add((fmt % (prefix, s, kb), encode_slice(st, i, j) if j > i else None))
        return heads, out

    def restore_record(self, partition: int, key: bytes, data: bytes | None) -> None:
        """Load one changelog record written by ``changelog`` (its prefix removed). A whole
        state is restored at once; a head waits for its slices: call ``finish_restore`` once
        every record of the partition is in."""
        if not self._sliced:
            self.restore(partition, entity_of(key), data)
            return
        part = self._partition(partition)
        if key.startswith(SLICE_KEY_PREFIX):
            try:
                colon = key.index(b":", len(SLICE_KEY_PREFIX))
                s = int(key[len(SLICE_KEY_PREFIX) : colon])
            except ValueError as exc:
                raise StateDecodeError(partition, None, f"bad slice key {key!r}") from exc
            if data:
                entity = entity_of(key[colon + 1 :])
                part.pending_slices.setdefault(entity, []).append((s, data))
            return
        entity = entity_of(key)
        part.pending.pop(entity, None)
        self._forget(part, entity)
        if not data:
            return
        try:
            head = self._decode_head(data)
        except (msgspec.DecodeError, ValueError) as exc:
            raise StateDecodeError(partition, entity, str(exc)) from exc
        if isinstance(head, KeyState):
            self._install(part, entity, head)  # type: ignore[arg-type]
        else:
            part.pending[entity] = head

    def finish_restore(self, partition: int, chunk: int = 2_000) -> Iterator[int]:
        """Complete the heads ``restore_record`` kept with their slices, ``chunk`` keys at a
        time, yielding in between (a caller on an event loop lets it run); the values yielded
        add up to the number of keys with state. Slices without a head are ignored."""
        part = self._partition(partition)
        heads, part.pending = part.pending, {}
        slices, part.pending_slices = part.pending_slices, {}
        for count, (key, head) in enumerate(heads.items(), 1):
            parts = slices.get(key, [])
            parts.sort()
            try:
                st = self._complete(head, [data for _, data in parts])
            except (msgspec.DecodeError, ValueError) as exc:
                raise StateDecodeError(partition, key, str(exc)) from exc
            self._install(part, key, st)
            if count % chunk == 0:
                yield 0
        yield len(part.keys)

    def _install(self, part: Partition[S], key: str, st: S) -> None:
        part.keys[key] = st
        self._rebucket(part, key, st)

    def _note_dropped(self, st: S, times: Sequence[int], k: int) -> None:
        """``times[:k]`` are leaving ``st``'s buffer: remember their slices for the changelog."""
        if self._track and k and st.low != NO_TIME:
            st.dead = _slices(times, k, st.dead)

    def _note_gone(self, part: Partition[S], key: str, st: S) -> None:
        """``key`` left the partition (expired): its slice records need tombstones."""
        if st.low == NO_TIME:
            return  # written whole: it has no slice records
        times = self._entry_times(st)
        dead = _union(_slices(times, len(times), None), st.dead)
        part.gone[key] = _union(part.gone.get(key), dead) or []

    # -- subclass hooks ---------------------------------------------------------------------

    def _trim(self, st: S, watermark: int) -> bool:
        """Drop what no non-late event can see any more; True when nothing is left."""
        raise NotImplementedError

    def _encode(self, st: S) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> S:
        """A whole-state record (sliced engines: a head alone is an error)."""
        st = self._decode_head(data)
        if not isinstance(st, KeyState):
            raise ValueError("a state head without its slices (use finish_restore)")
        return st  # type: ignore[return-value]

    # Sliced engines only.

    def _entry_times(self, st: S) -> Sequence[int]:
        """The event times of the key's buffer, sorted."""
        raise NotImplementedError

    def _encode_head(self, st: S) -> bytes:
        """The key's state without its buffer."""
        raise NotImplementedError

    def _encode_slice(self, st: S, lo: int, hi: int) -> bytes:
        """Buffer entries ``lo:hi`` (one slice)."""
        raise NotImplementedError

    def _decode_head(self, data: bytes) -> Any:
        """A head record's key state when it holds the whole state, else the decoded head."""
        raise NotImplementedError

    def _complete(self, head: Any, slices: list[bytes]) -> S:
        """The key's state from its decoded head and its slices, in order."""
        raise NotImplementedError


_SLICE_FMT = b"%b" + SLICE_KEY_PREFIX + b"%d:%b"  # prefix, slice, key


def entity_key(key: str) -> bytes:
    """``key`` as a changelog key. Event ids may start with NUL, as every reserved key does
    (clocks, slices, the pattern prefix, the offset): those get ``ESCAPE_PREFIX`` first."""
    kb = key.encode("utf-8")
    return ESCAPE_PREFIX + kb if kb[:1] == b"\x00" else kb


def entity_of(key: bytes) -> str:
    """The entity key of a changelog key written by ``entity_key``."""
    return (key[len(ESCAPE_PREFIX) :] if key.startswith(ESCAPE_PREFIX) else key).decode("utf-8")


def slice_key(s: int, key: bytes, prefix: bytes = b"") -> bytes:
    """The changelog key of slice ``s`` of ``key``'s buffer."""
    return _SLICE_FMT % (prefix, s, key)


def _slices(times: Sequence[int], k: int, into: list[int] | None) -> list[int]:
    """``into`` plus the distinct slices of ``times[:k]`` (sorted times)."""
    out = [] if into is None else into
    i = 0
    while i < k:
        s = times[i] // SLICE_MS
        out.append(s)
        i = bisect_left(times, (s + 1) * SLICE_MS, i, k)
    return out


def _union(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    if not a:
        return b
    if not b:
        return a
    return a + b
