"""Data quality of the input topics and drift of the model's inputs, read from Kafka.

``InputQuality`` follows a raw input topic (from its end) and keeps, per contract field, the
share of null or missing values over a sliding window, plus counts of values the contract
rejects (out of range, wrong type, by field), of unknown fields (schema drift) and of
``schema_version`` changes. ``ScoreDrift`` follows fraud-scores, whose records carry exactly
the feature values the model saw, and compares them and the score with the reference
distributions in the artifact of the model version that scored them (``monitoring.drift``).

Both sample at most ``max_per_poll`` records of each poll batch (evenly spaced), so following a
fast topic costs a bounded amount of CPU.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumers.topic_follower import TopicFollower
from contracts.codec import EventDecoder
from contracts.events import InputEvent
from models.errors import ArtifactError
from monitoring.drift import DriftWindow
from rtml.errors import InvalidEvent
from rtml.settings import Settings

log = logging.getLogger(__name__)

_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]+)`")
_MISSING = re.compile(r"required field `([A-Za-z0-9_]+)`")


def _sample(records: Sequence[ConsumerRecord], most: int) -> Sequence[ConsumerRecord]:
    if len(records) <= most:
        return records
    step = len(records) / most
    return [records[int(i * step)] for i in range(most)]


class _FromEnd(TopicFollower):
    async def seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        await consumer.seek_to_end(*partitions)


class InputQuality(_FromEnd):
    def __init__(
        self,
        settings: Settings,
        topic: str,
        event_type: type[InputEvent],
        *,
        window_s: float = 60.0,
        max_per_poll: int = 2_000,
    ) -> None:
        super().__init__(settings, topic)
        self._decoder = EventDecoder(event_type, max_bytes=settings.rtml_max_record_bytes)
        self.fields = [f for f in event_type.__struct_fields__ if f != "schema_version"]
        self._known = frozenset(event_type.__struct_fields__)
        self._window_s = window_s
        self._max = max_per_poll
        # (at, records, nulls per field, schema drift: unknown fields and version changes)
        self._slots: deque[tuple[float, int, Counter[str], Counter[str]]] = deque()
        self.rejected: Counter[str] = Counter()  # "field:reason", cumulative
        self.unknown_fields: Counter[str] = Counter()
        self.schema_versions: Counter[Any] = Counter()
        self.schema_version_changes = 0
        self._last_version: Any = None
        self._drift_names: set[str] = set()
        self.records = 0

    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        records = _sample(list(records), self._max)
        if not records:
            return
        nulls: Counter[str] = Counter()
        drift: Counter[str] = Counter()
        decode = self._decoder.decode
        for record in records:
            try:
                decode(record.value)
            except InvalidEvent as exc:
                where = _FIELD.search(exc.message) or _MISSING.search(exc.message)
                self.rejected[f"{where.group(1) if where else 'record'}:{exc.reason}"] += 1
            try:
                raw = msgspec.json.decode(record.value) if record.value is not None else None
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                raw = None
            if not isinstance(raw, dict):
                nulls.update(self.fields)  # nothing readable: every field is missing
                continue
            for name in self.fields:
                if raw.get(name) is None:
                    nulls[name] += 1
            version = raw.get("schema_version")
            self.schema_versions[version] += 1
            if self._last_version is not None and version != self._last_version:
                self.schema_version_changes += 1
                drift["schema_version"] += 1
            self._last_version = version
            for key in raw:
                if key not in self._known:
                    self.unknown_fields[key] += 1
                    drift[key] += 1
        self.records += len(records)
        self._drift_names.update(drift)
        self._slots.append((time.time(), len(records), nulls, drift))
        self._trim(time.time())

    def _trim(self, now: float) -> None:
        while self._slots and self._slots[0][0] < now - self._window_s:
            self._slots.popleft()

    def null_ratios(self, min_records: int = 1) -> dict[str, float]:
        """``"topic.field" -> share`` of null or missing values in the window."""
        self._trim(time.time())
        total = sum(n for _, n, _, _ in self._slots)
        if total < min_records:
            return {}
        nulls: Counter[str] = Counter()
        for _, _, counts, _ in self._slots:
            nulls.update(counts)
        return {f"{self.topic}.{name}": nulls[name] / total for name in self.fields}

    def schema_drift(self, min_records: int = 1) -> dict[str, float]:
        """``"topic.field" -> share`` of the window's sampled records that carry a field the
        contract lacks, and ``"topic.schema_version"`` -> changes of the version per record;
        names seen before and absent from the window report 0, so a rule sees the drift end."""
        self._trim(time.time())
        total = sum(n for _, n, _, _ in self._slots)
        if total < min_records:
            return {}
        seen: Counter[str] = Counter()
        for _, _, _, drift in self._slots:
            seen.update(drift)
        return {f"{self.topic}.{name}": seen[name] / total for name in self._drift_names}


class _ScoreRow(msgspec.Struct):
    features: dict[str, float | None]
    score: float
    model_version: str


_score_decoder = msgspec.json.Decoder(_ScoreRow)


class ScoreDrift(_FromEnd):
    """PSI and Jensen-Shannon divergence of each model input and of the score, per model
    version, over a sliding window, against the references of that version's artifact."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        models_dir: Path,
        *,
        window_s: float = 300.0,
        max_per_poll: int = 2_000,
    ) -> None:
        super().__init__(settings, topic)
        self._models_dir = models_dir
        self._window_s = window_s
        self._max = max_per_poll
        self._windows: dict[str, DriftWindow | None] = {}  # model version -> window
        self.undecodable = 0

    def _window(self, version: str) -> DriftWindow | None:
        if version not in self._windows:
            from features.definitions import FRAUD_FEATURE_NAMES
            from models.artifacts import read_manifest

            try:
                manifest = read_manifest(self._models_dir / "fraud" / version)
            except ArtifactError as exc:
                log.warning("no drift reference for model %s: %s", version, exc)
                self._windows[version] = None
                return None
            if not manifest.reference:
                log.warning("model %s has no reference distributions (retrain it)", version)
                self._windows[version] = None
                return None
            names = [*FRAUD_FEATURE_NAMES, "score"]
            self._windows[version] = DriftWindow(names, manifest.reference, window_s=self._window_s)
        return self._windows[version]

    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        by_version: dict[str, list[_ScoreRow]] = {}
        for record in _sample(list(records), self._max):
            try:
                row = _score_decoder.decode(record.value)
            except msgspec.DecodeError:
                self.undecodable += 1
                continue
            by_version.setdefault(row.model_version, []).append(row)
        now = time.time()
        for version, rows in by_version.items():
            window = self._window(version)
            if window is None:
                continue
            self.add(window, rows, now)

    @staticmethod
    def add(window: DriftWindow, rows: list[_ScoreRow], now: float) -> None:
        from features.definitions import FRAUD_FEATURE_NAMES

        matrix = np.empty((len(rows), len(FRAUD_FEATURE_NAMES) + 1), dtype=np.float64)
        for i, row in enumerate(rows):
            get = row.features.get
            values = [get(name) for name in FRAUD_FEATURE_NAMES]
            matrix[i, :-1] = [np.nan if v is None else v for v in values]
            matrix[i, -1] = row.score
        window.add(now, matrix)

    def statistics(self, min_records: int) -> dict[str, dict[str, tuple[float, float, float]]]:
        """model version -> column -> (PSI, JS divergence, null share over the reference's)."""
        now = time.time()
        return {
            version: window.statistics(now)
            for version, window in self._windows.items()
            if window is not None and window.count(now) >= min_records
        }
