"""Offline replay: the same features over a historical event log, point-in-time correct.

Events are assigned to partitions as Kafka's default partitioner would (murmur2 of the UTF-8
key) and each partition is processed in log order by the same engines the consumers run, so a
replayed row equals the row the online pipeline computed for that event (given the same
partition count, lateness and, for recommendations, global counts).

The profile join (fraud) is "the profile table as of processing time". Replay takes one log of
transactions and profile records in production order (the generator's files carry that order
as ``seq``) and gives each transaction the table made of every profile record that precedes it
in the log (a tombstone deletes the user's profile).

Merchant risk (fraud) reads the fraud labels: pass every label of the history (``labels``).
A label counts only for transactions at least the label delay (event time) after its decision,
so giving the replay all labels up front is point-in-time correct: it computes what the online
actors computed, which held every label decided before that (docs/features.md).

Global view counts (recommendations) are exact here: pass 1 counts every view that its
partition accepts (late ones are dropped online, so here too) per 1-minute slice; pass 2
computes the features with them.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from contracts.codec import EventDecoder
from contracts.events import FraudLabel, Transaction, UserEvent, UserProfile
from features._engine import NO_TIME
from features.aggregates import GlobalViews, ViewSliceDelta, slice_start
from features.config import FeatureConfig
from features.definitions import FRAUD, RECOMMENDATION
from features.errors import ReplayInputError
from features.fraud import FraudFeatureEngine
from features.merchant_risk import MerchantRisk, append_merchant_risk
from features.partitioner import partition_for_key
from features.patterns import PatternEngine, RuleSet, shipped_rules
from features.recommendations import RecommendationFeatureEngine
from rtml.errors import InvalidEvent

E = TypeVar("E", Transaction, UserEvent, UserProfile)
T = TypeVar("T")

_CHUNK = 1_000  # events per process_batch call


class FeatureRecord(msgspec.Struct, frozen=True):
    """One processed event's features; training joins labels on ``event_id``."""

    event_id: str
    key: str
    event_time: int
    partition: int
    features: dict[str, Any]


@dataclass(slots=True)
class ReplayStats:
    """What a replay did: rows out, late events dropped, log lines that broke their contract."""

    processed: int = 0
    late: int = 0
    invalid: int = 0
    late_event_ids: list[str] = field(default_factory=list)


def split_partitions(
    events: Iterable[T], partitions: int, key: Callable[[T], str]
) -> list[list[T]]:
    """Each partition's events in log order, as Kafka's default partitioner assigns them."""
    if partitions < 1:
        raise ValueError(f"partitions must be a positive integer, got {partitions}")
    parts: list[list[T]] = [[] for _ in range(partitions)]
    cache: dict[str, int] = {}
    for event in events:
        k = key(event)
        p = cache.get(k)
        if p is None:
            p = cache[k] = partition_for_key(k.encode("utf-8"), partitions)
        parts[p].append(event)
    return parts


class ProfileTombstone(msgspec.Struct, frozen=True):
    """A deleted profile (a null value on the compacted user-profiles topic)."""

    user_id: str


ProfileRecord = UserProfile | ProfileTombstone
FraudLogRecord = Transaction | UserProfile | ProfileTombstone


def replay_fraud(
    log: Iterable[FraudLogRecord],
    *,
    partitions: int,
    config: FeatureConfig | None = None,
    stats: ReplayStats | None = None,
    rules: RuleSet | None = None,
    labels: Iterable[FraudLabel] = (),
) -> Iterator[FeatureRecord]:
    """Fraud features of every transaction that is not late, partition by partition.

    ``log``: transactions and profile records in production order; a transaction sees every
    profile record before it. ``rules``: the pattern rules (default: the shipped rule set,
    ``features/patterns/rules.yaml``; pass the online pipeline's ``rtml_pattern_rules``).
    ``labels``: the fraud labels (any order), for the merchant risk.
    """
    stats = stats if stats is not None else ReplayStats()
    config = config if config is not None else FeatureConfig()
    risk = MerchantRisk(config.label_delay_ms, prune=False)
    for label in labels:
        risk.add(label)
    changes: list[tuple[int, ProfileRecord]] = []
    positioned: list[tuple[int, Transaction]] = []
    for position, record in enumerate(log):
        if isinstance(record, Transaction):
            positioned.append((position, record))
        else:
            changes.append((position, record))
    parts = split_partitions(positioned, partitions, lambda item: item[1].card_id)
    engine = FraudFeatureEngine(config)
    patterns = PatternEngine(rules if rules is not None else shipped_rules(), config)
    for partition, txs in enumerate(parts):
        engine.assign(partition)
        patterns.assign(partition)
        table: dict[str, UserProfile] = {}
        applied = 0
        run: list[Transaction] = []
        for position, tx in txs:
            if applied < len(changes) and changes[applied][0] < position:
                # The profile table changes before this transaction: finish the run first.
                yield from _fraud_rows(engine, patterns, risk, partition, run, table, stats)
                run = []
                while applied < len(changes) and changes[applied][0] < position:
                    change = changes[applied][1]
                    if isinstance(change, UserProfile):
                        table[change.user_id] = change
                    else:
                        table.pop(change.user_id, None)
                    applied += 1
            run.append(tx)
            if len(run) >= _CHUNK:
                yield from _fraud_rows(engine, patterns, risk, partition, run, table, stats)
                run = []
        yield from _fraud_rows(engine, patterns, risk, partition, run, table, stats)
        engine.revoke(partition)
        patterns.revoke(partition)


def _fraud_rows(
    engine: FraudFeatureEngine,
    patterns: PatternEngine,
    risk: MerchantRisk,
    partition: int,
    txs: Sequence[Transaction],
    table: dict[str, UserProfile],
    stats: ReplayStats,
) -> Iterator[FeatureRecord]:
    if not txs:
        return
    result = engine.process_batch(partition, txs, table)
    card_and_patterns = patterns.process_batch(partition, txs, result.rows, table).rows
    rows = append_merchant_risk(txs, card_and_patterns, risk)
    for tx, row in zip(txs, rows, strict=True):
        if row is None:
            stats.late += 1
            stats.late_event_ids.append(tx.event_id)
            continue
        stats.processed += 1
        yield FeatureRecord(tx.event_id, tx.card_id, tx.event_time, partition, FRAUD.as_dict(row))


def global_views(
    parts: Sequence[Sequence[UserEvent]], config: FeatureConfig | None = None
) -> GlobalViews:
    """Exact global view counts per slice over all partitions (views that are not late)."""
    lateness = (config if config is not None else FeatureConfig()).allowed_lateness_ms
    slices: dict[int, ViewSliceDelta] = {}
    for events in parts:
        clock = NO_TIME
        for ev in events:
            t = ev.event_time
            if t < clock - lateness:
                continue  # late: the engine drops it
            if t > clock:
                clock = t
            if ev.event_type == "view":
                start = slice_start(t)
                delta = slices.get(start)
                if delta is None:
                    slices[start] = delta = ViewSliceDelta(start)
                delta.categories[ev.category] = delta.categories.get(ev.category, 0) + 1
                delta.items[ev.item_id] = delta.items.get(ev.item_id, 0) + 1
    views = GlobalViews()
    views.apply(slices.values())
    return views


def replay_recommendations(
    events: Iterable[UserEvent],
    *,
    partitions: int,
    config: FeatureConfig | None = None,
    stats: ReplayStats | None = None,
    views: GlobalViews | None = None,
) -> Iterator[FeatureRecord]:
    """Recommendation features of every user event that is not late.

    ``views``: the global counts to use; by default the exact counts of this log.
    """
    stats = stats if stats is not None else ReplayStats()
    parts = split_partitions(events, partitions, lambda ev: ev.user_id)
    if views is None:
        views = global_views(parts, config)
    engine = RecommendationFeatureEngine(config)
    for partition, evs in enumerate(parts):
        engine.assign(partition)
        for start in range(0, len(evs), _CHUNK):
            chunk = evs[start : start + _CHUNK]
            result = engine.process_batch(partition, chunk, views)
            engine.drain_view_deltas(partition)
            for ev, row in zip(chunk, result.rows, strict=True):
                if row is None:
                    stats.late += 1
                    stats.late_event_ids.append(ev.event_id)
                    continue
                stats.processed += 1
                yield FeatureRecord(
                    ev.event_id, ev.user_id, ev.event_time, partition, RECOMMENDATION.as_dict(row)
                )
        engine.revoke(partition)


# -- event logs on disk ---------------------------------------------------------------------


class _Envelope(msgspec.Struct, frozen=True):
    """One line of a generator stream file: the Kafka record's key and exact value bytes."""

    seq: int
    key: str
    value: msgspec.Raw = msgspec.Raw(b"")  # (msgspec cannot decode ``Raw | None``; null is b"null")
    value_b64: str | None = None
    defect: str | None = None


_envelope = msgspec.json.Decoder(_Envelope)


def read_log(
    path: Path, event_type: type[E], stats: ReplayStats | None = None, max_bytes: int = 64 * 1024
) -> Iterator[tuple[int, E | ProfileTombstone]]:
    """``(seq, event)`` of a generator stream file (``{"seq", "key", "value"}`` per line).

    Values are decoded from their exact bytes as the consumers decode them; values that break
    the contract are skipped and counted in ``stats.invalid`` (online they are dead-lettered
    and never reach the engines). A null value is a profile tombstone on the user-profiles
    stream and invalid elsewhere.
    """
    decoder = EventDecoder(event_type, max_bytes=max_bytes)
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = _envelope.decode(line)
            except msgspec.DecodeError as exc:
                message = f"not a stream file line: {exc}"
                raise ReplayInputError(str(path), message, line_no) from None
            if record.value_b64 is not None:
                payload: bytes | None = base64.b64decode(record.value_b64)
            else:
                raw = bytes(record.value)
                payload = None if raw in (b"", b"null") else raw
            if payload is None and event_type is UserProfile:
                yield record.seq, ProfileTombstone(record.key)
                continue
            try:
                yield record.seq, decoder.decode(payload).event
            except InvalidEvent:
                if stats is not None:
                    stats.invalid += 1


Kind = Literal["fraud", "recommendations"]


def replay_directory(
    input_dir: Path,
    kind: Kind,
    *,
    partitions: int,
    transactions_file: str = "transactions.jsonl",
    user_events_file: str = "user-events.jsonl",
    user_profiles_file: str = "user-profiles.jsonl",
    config: FeatureConfig | None = None,
    stats: ReplayStats | None = None,
    rules: RuleSet | None = None,
) -> Iterator[FeatureRecord]:
    """Replay the generator's files in ``input_dir`` (one JSON-lines file per stream).

    Fraud interleaves transactions and profiles by ``seq`` (production order).
    """
    stats = stats if stats is not None else ReplayStats()
    if kind == "fraud":
        sources = [read_log(_existing(input_dir / transactions_file), Transaction, stats)]
        profiles_path = input_dir / user_profiles_file
        if profiles_path.exists():
            sources.append(read_log(profiles_path, UserProfile, stats))  # type: ignore[arg-type]
        log = (record for _, record in heapq.merge(*sources, key=lambda item: item[0]))
        return replay_fraud(log, partitions=partitions, config=config, stats=stats, rules=rules)
    events = (
        event
        for _, event in read_log(_existing(input_dir / user_events_file), UserEvent, stats)
        if isinstance(event, UserEvent)
    )
    return replay_recommendations(events, partitions=partitions, config=config, stats=stats)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ReplayInputError(str(path), "does not exist (expected a generator stream file)")
    return path


_json = msgspec.json.Encoder()


def write_records(records: Iterable[FeatureRecord], path: Path) -> int:
    """Write records as JSON lines; returns how many."""
    count = 0
    with path.open("wb") as fh:
        for record in records:
            fh.write(_json.encode(record))
            fh.write(b"\n")
            count += 1
    return count
