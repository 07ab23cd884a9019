"""Training data: an event log on disk (generated or given), replayed into point-in-time features.

An event log is a directory of JSON-lines files, one per topic (``transactions.jsonl``,
``user-events.jsonl``, ``user-profiles.jsonl``) plus ``labels.jsonl`` (``{"event_id": ...,
"label": 1}`` per fraudulent transaction; unlabeled transactions are legit). A line is either a
contract record (``{"event_id": ..., ...}``) or the generator's envelope (``{"seq": ..., "key":
..., "value": {...}}``); both are read, and values that break their contract are skipped and
counted, as the consumers dead-letter them.

Features come only from ``features.replay`` (the engines the consumers run), so training sees the
rows serving will see. Everything is split by event time (``TimeSplit``).
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np

from contracts.codec import EventDecoder
from contracts.events import FraudLabel, Transaction, UserEvent, UserProfile
from features.config import FeatureConfig
from features.definitions import DAY_MS, FRAUD_FEATURE_NAMES, HOUR_MS, RECOMMENDATION_FEATURE_NAMES
from features.errors import ReplayInputError
from features.patterns import RuleSet
from features.replay import (
    FraudLogRecord,
    ReplayStats,
    replay_fraud,
    replay_recommendations,
)
from features.replay import read_log as replay_read_log
from rtml.errors import ConfigError, InvalidEvent

log = logging.getLogger(__name__)

E = TypeVar("E", Transaction, UserEvent, UserProfile)

TRANSACTIONS_FILE = "transactions.jsonl"
USER_EVENTS_FILE = "user-events.jsonl"
USER_PROFILES_FILE = "user-profiles.jsonl"
LABELS_FILE = "labels.jsonl"


# -----------------------------------------------------------------------------------------------
# Event logs


@dataclass
class EventLog:
    """The events of one log and the fraud labels (event_id -> 1).

    ``fraud_log`` holds transactions and profile records (tombstones included) in production
    order, as ``features.replay.replay_fraud`` wants them; ``user_events`` is in log order.
    """

    fraud_log: list[FraudLogRecord] = field(default_factory=list)
    user_events: list[UserEvent] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    # Analysts' decisions with their times (labels.jsonl lines in the fraud-labels contract):
    # the merchant-risk features' input. Empty for a generated log (see decision_log).
    decisions: list[FraudLabel] = field(default_factory=list)
    stats: ReplayStats = field(default_factory=ReplayStats)  # .invalid: lines skipped
    source: dict[str, Any] = field(default_factory=dict)  # for the manifest

    @property
    def transactions(self) -> int:
        return sum(isinstance(r, Transaction) for r in self.fraud_log)


class _LabelLine(msgspec.Struct):
    """A generator label (``{"event_id", "label": 1, ...}``) or a fraud-labels record
    (``contracts.events.FraudLabel``, label ``"fraud"`` or ``"legitimate"``)."""

    event_id: str
    label: int | str = 1
    card_id: str | None = None
    merchant_id: str | None = None
    event_time: int | None = None
    decided_at: int | None = None

    def is_fraud(self) -> bool:
        return self.label == "fraud" if isinstance(self.label, str) else self.label > 0

    def decision(self) -> FraudLabel | None:
        """The analyst's decision when the line is a fraud-labels record."""
        if self.decided_at is None or self.merchant_id is None or self.card_id is None:
            return None
        if self.event_time is None or self.label not in ("fraud", "legitimate"):
            return None
        return FraudLabel(
            self.event_id,
            self.card_id,
            self.merchant_id,
            "fraud" if self.is_fraud() else "legitimate",
            self.event_time,
            self.decided_at,
        )


def _is_envelope(path: Path) -> bool:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith(b'{"seq"')
    return True


def _read_plain(path: Path, event_type: type[E], stats: ReplayStats, max_bytes: int) -> list[E]:
    """Contract records, one per line; invalid ones are skipped and counted."""
    decoder = EventDecoder(event_type, max_bytes=max_bytes)
    events: list[E] = []
    with path.open("rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(decoder.decode(line).event)
            except InvalidEvent:
                stats.invalid += 1
    return events


def _read_stream(
    path: Path, event_type: type[E], stats: ReplayStats, max_bytes: int
) -> list[tuple[int, Any]]:
    """``(position, event)`` of one file: the generator's ``seq`` for its envelope format; for
    plain contract records, their time (``event_time``, or ``updated_at`` for profiles): with no
    production order on record, a profile change applies to the transactions after it in time."""
    if _is_envelope(path):
        return list(replay_read_log(path, event_type, stats, max_bytes))
    events = _read_plain(path, event_type, stats, max_bytes)
    if event_type is UserProfile:
        return [(ev.updated_at, ev) for ev in events]
    return [(ev.event_time, ev) for ev in events]


def read_log(
    directory: Path, *, fraud: bool = True, recsys: bool = True, max_bytes: int = 64 * 1024
) -> EventLog:
    """Read the files of ``directory`` that the requested models need."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"input directory {directory} does not exist")
    result = EventLog(source={"input": str(directory)})
    stats = result.stats
    try:
        if fraud:
            tx_path = _required(directory / TRANSACTIONS_FILE)
            streams = [_read_stream(tx_path, Transaction, stats, max_bytes)]
            profiles = directory / USER_PROFILES_FILE
            if profiles.is_file():
                if _is_envelope(profiles) != _is_envelope(tx_path):
                    raise ConfigError(
                        f"{TRANSACTIONS_FILE} and {USER_PROFILES_FILE} in "
                        f"{directory} are in different formats"
                    )
                streams.append(_read_stream(profiles, UserProfile, stats, max_bytes))
            merged = heapq.merge(*streams, key=lambda item: item[0])
            result.fraud_log = [event for _, event in merged]
            result.labels, result.decisions = read_label_file(directory / LABELS_FILE)
        if recsys:
            path = _required(directory / USER_EVENTS_FILE)
            result.user_events = [
                ev
                for _, ev in _read_stream(path, UserEvent, stats, max_bytes)
                if isinstance(ev, UserEvent)
            ]
    except ReplayInputError as exc:
        raise ConfigError(str(exc)) from exc
    return result


def _required(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"{path.parent} has no {path.name}")
    return path


def read_labels(path: Path) -> dict[str, int]:
    """``labels.jsonl``: event_id -> label (1 fraud, 0 legit). A missing file is an error: an
    unlabeled log would train a model that never flags anything."""
    return read_label_file(path)[0]


def read_label_file(path: Path) -> tuple[dict[str, int], list[FraudLabel]]:
    """The labels (event_id -> 1 fraud, 0 legit), and the lines that are analysts' decisions
    (fraud-labels records: with merchant_id and decided_at), for the merchant risk."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist (fraud training needs labels)")
    decoder = msgspec.json.Decoder(_LabelLine)
    labels = {}
    decisions: list[FraudLabel] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise ConfigError(f"{path}:{number}: not a label line: {exc}") from exc
            labels[item.event_id] = int(item.is_fraud())
            decision = item.decision()
            if decision is not None:
                decisions.append(decision)
    return labels, decisions


GENERATED_DECISION_LAG_MS = DAY_MS


def decision_log(event_log: EventLog) -> list[FraudLabel]:
    """The labels the merchant-risk features read while replaying ``event_log``.

    A log exported from the fraud-labels topic carries the analysts' decisions: those. A
    generated log only knows the truth, so every transaction is decided
    ``GENERATED_DECISION_LAG_MS`` after it, fraud if labeled so, else legitimate (the generated
    world learns every outcome a day later; online, only alerted transactions get a decision,
    see docs/features.md).
    """
    if event_log.decisions:
        return event_log.decisions
    labels = event_log.labels
    return [
        FraudLabel(
            tx.event_id,
            tx.card_id,
            tx.merchant_id,
            "fraud" if labels.get(tx.event_id, 0) else "legitimate",
            tx.event_time,
            tx.event_time + GENERATED_DECISION_LAG_MS,
        )
        for tx in event_log.fraud_log
        if isinstance(tx, Transaction)
    ]


def generate_log(
    directory: Path,
    *,
    seed: int,
    days: float,
    users: int,
    fraud: bool = True,
    recsys: bool = True,
) -> dict[str, Any]:
    """Run the generator's historical mode (``producers.runner.write_history``: ``days`` days
    ending 2025-01-01T00:00Z) into ``directory``. Streams no model needs are switched off; each
    stream has its own random generator, so the others do not change. Returns a description for
    the manifest."""
    from producers.config import GeneratorConfig
    from producers.runner import Window, write_history

    overrides: dict[str, Any] = {"seed": seed, "users": users}
    if not recsys:
        overrides["sessions_per_user_day"] = 0.0
    if not fraud:
        overrides["txns_per_user_day"] = 0.0
        overrides["legit_burst_rate"] = 0.0
    config = GeneratorConfig(**overrides)
    window = Window.last_days(days)
    summary = write_history(config, directory, window)
    return {
        "generator": config.to_dict(),
        "start_ms": window.start_ms,
        "end_ms": window.end_ms,
        "records": dict(summary.records),
    }


# -----------------------------------------------------------------------------------------------
# Time splits


@dataclass(frozen=True)
class TimeSplit:
    """Train on [train_start, val_start), validate on [val_start, test_start), test on
    [test_start, end). Rows before ``train_start`` (the warm-up: windows still filling) are
    used by nobody. Times are epoch ms."""

    train_start: int
    val_start: int
    test_start: int
    end: int

    @classmethod
    def by_fractions(
        cls, times: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    ) -> TimeSplit:
        """Boundaries at fractions of the time span after a warm-up (a tenth of the span, at
        most a day), rounded to whole days when the span is at least 5 days, else to hours."""
        if times.size == 0:
            raise ConfigError("no rows to split")
        if any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
            raise ConfigError(f"split fractions must be positive and sum to 1, got {fractions}")
        start, end = int(times.min()), int(times.max()) + 1
        span = end - start
        unit = DAY_MS if span >= 5 * DAY_MS else HOUR_MS
        warmup = min(DAY_MS, span // 10)
        usable = span - warmup

        def at(share: float) -> int:
            t = start + warmup + share * usable
            return int(round(t / unit) * unit) if unit < span / 4 else int(t)

        split = cls(at(0.0), at(fractions[0]), at(fractions[0] + fractions[1]), end)
        if not split.train_start < split.val_start < split.test_start < split.end:
            raise ConfigError(f"the data spans too little time to split: {split.describe()}")
        return split

    def masks(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        train = (times >= self.train_start) & (times < self.val_start)
        val = (times >= self.val_start) & (times < self.test_start)
        test = (times >= self.test_start) & (times < self.end)
        return train, val, test

    def describe(self) -> dict[str, str]:
        def iso(ms: int) -> str:
            return np.datetime64(ms, "ms").astype(str) + "Z"

        return {
            "train": f"{iso(self.train_start)} .. {iso(self.val_start)}",
            "validation": f"{iso(self.val_start)} .. {iso(self.test_start)}",
            "test": f"{iso(self.test_start)} .. {iso(self.end)}",
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_start_ms": self.train_start,
            "val_start_ms": self.val_start,
            "test_start_ms": self.test_start,
            "end_ms": self.end,
            **self.describe(),
        }


# -----------------------------------------------------------------------------------------------
# Fraud examples


@dataclass
class FraudExamples:
    """One row per transaction the replay did not drop as late, in replay order."""

    x: np.ndarray  # [n, F] float32 in FRAUD_FEATURE_NAMES order, NaN = null
    y: np.ndarray  # [n] int64: 1 fraud, 0 legit
    event_time: np.ndarray  # [n] int64 epoch ms
    card_id: np.ndarray  # [n] str
    stats: ReplayStats

    def __len__(self) -> int:
        return self.y.size

    def subset(self, mask: np.ndarray) -> FraudExamples:
        return FraudExamples(
            self.x[mask], self.y[mask], self.event_time[mask], self.card_id[mask], self.stats
        )


def fraud_examples(
    event_log: EventLog,
    *,
    partitions: int,
    config: FeatureConfig | None = None,
    rules: RuleSet | None = None,
) -> FraudExamples:
    """Point-in-time fraud features of every transaction, joined with the labels.

    ``rules``: the pattern rules (default: the shipped ones); the pipeline's must be the same.
    The merchant risk reads the log's decisions (``decision_log``).
    """
    stats = ReplayStats()
    records = replay_fraud(
        event_log.fraud_log,
        partitions=partitions,
        stats=stats,
        config=config,
        rules=rules,
        labels=decision_log(event_log),
    )
    rows, labels, times, cards = [], [], [], []
    nan = math.nan
    names = FRAUD_FEATURE_NAMES
    for r in records:
        f = r.features
        rows.append([nan if f[n] is None else f[n] for n in names])
        labels.append(event_log.labels.get(r.event_id, 0))
        times.append(r.event_time)
        cards.append(r.key)
    if not rows:
        raise ConfigError("the event log has no transactions to train on")
    return FraudExamples(
        np.asarray(rows, dtype=np.float32),
        np.asarray(labels, dtype=np.int64),
        np.asarray(times, dtype=np.int64),
        np.asarray(cards),
        stats,
    )


# -----------------------------------------------------------------------------------------------
# Recommendation examples


@dataclass
class RecsysExamples:
    """Next-item examples: the user's features as of an event, the next other item they touch.

    ``rows`` are recommendation rows (tuples in ``RECOMMENDATION_FEATURE_NAMES`` order).
    """

    rows: list[tuple[Any, ...]]
    target: list[str]  # item id of the next interaction with another item
    event_time: np.ndarray  # [n] int64: the event's time (the split is by this)
    target_time: np.ndarray  # [n] int64: the next interaction's time
    user_id: list[str]
    item_category: dict[str, str]  # every item of the log -> its category
    interactions: list[tuple[int, str]]  # (event_time, item_id) of every non-late event
    stats: ReplayStats

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: np.ndarray) -> RecsysExamples:
        idx = np.flatnonzero(mask)
        return RecsysExamples(
            [self.rows[i] for i in idx],
            [self.target[i] for i in idx],
            self.event_time[idx],
            self.target_time[idx],
            [self.user_id[i] for i in idx],
            self.item_category,
            self.interactions,
            self.stats,
        )


def recsys_examples(event_log: EventLog, *, partitions: int) -> RecsysExamples:
    """For each user event (view, click or purchase) that the replay did not drop as late: the
    user's recommendation features as of that event (the event included) and, as the target,
    the item of the user's next event (by event time) whose item differs from this event's item.
    Events with no such later event give no example."""
    by_id = {ev.event_id: ev for ev in event_log.user_events}
    stats = ReplayStats()
    names = RECOMMENDATION_FEATURE_NAMES
    per_user: dict[str, list[tuple[int, int, str, tuple[Any, ...]]]] = {}
    order = 0
    for record in replay_recommendations(event_log.user_events, partitions=partitions, stats=stats):
        ev = by_id[record.event_id]
        row = tuple(record.features[n] for n in names)
        per_user.setdefault(record.key, []).append((record.event_time, order, ev.item_id, row))
    item_category = {ev.item_id: ev.category for ev in event_log.user_events}
    rows, targets, times, target_times, users = [], [], [], [], []
    interactions = []
    for user, events in per_user.items():
        events.sort(key=lambda e: (e[0], e[1]))
        interactions.extend((t, item) for t, _, item, _ in events)
        first: tuple[str, int] | None = None  # (item, time) of the nearest later event
        second: tuple[str, int] | None = None  # the nearest later one with another item
        for t, _, item, row in reversed(events):
            if first is not None:
                target = first if first[0] != item else second
                if target is not None:
                    rows.append(row)
                    targets.append(target[0])
                    times.append(t)
                    target_times.append(target[1])
                    users.append(user)
            if first is not None and first[0] != item:
                second = first
            first = (item, t)
    if not rows:
        raise ConfigError("the event log has no user events to train on")
    return RecsysExamples(
        rows,
        targets,
        np.asarray(times, dtype=np.int64),
        np.asarray(target_times, dtype=np.int64),
        users,
        item_category,
        interactions,
        stats,
    )


def describe_log(event_log: EventLog) -> dict[str, Any]:
    transactions = event_log.transactions
    return {
        **event_log.source,
        "transactions": transactions,
        "profile_records": len(event_log.fraud_log) - transactions,
        "user_events": len(event_log.user_events),
        "fraud_labels": sum(event_log.labels.values()),
        "invalid_lines": event_log.stats.invalid,
    }
