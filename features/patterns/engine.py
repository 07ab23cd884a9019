"""Complex event patterns per card: one NFA per rule over the card's events in event-time order.

The engine runs beside ``FraudFeatureEngine`` on the same transactions (after it: conditions may
read the transaction's computed fraud features) and shares its partition clock and lateness
(``KeyedEngine``). Per card it keeps

- a buffer of the card's recent events (time, kind, condition mask, id), sorted by
  ``(event_time, processing order)``, newer than ``watermark - 2 * max within``;
- per rule, the partial matches (runs, ``features.patterns.nfa``) and the times of the matches
  completed within the rule's ``within``;
- the last profile the card joined, to see profile changes.

An in-order event advances the runs (O(runs) per rule). An out-of-order one (event time below
the card's newest) is inserted in the buffer; its own features come from re-running the rules
over its past ``(t - 2 * within, t]``, and the live runs are rebuilt from the buffer, so every
event sees exactly the matches of its past in event-time order whatever the arrival order. The
definitions are in docs/patterns.md.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import asin, cos, radians, sin, sqrt
from typing import Any

from contracts.events import Transaction, UserProfile
from features._engine import CLEAN, NO_TIME, KeyedEngine, KeyState
from features.config import FeatureConfig
from features.definitions import EARTH_RADIUS_KM, PATTERN_FEATURE_RULES
from features.patterns.compiler import PROFILE_CHANGE, TRANSACTION, CompiledRules
from features.patterns.language import RuleError, RuleSet
from features.patterns.nfa import Run, advance
from features.patterns.state import (
    PatternHeadV3,
    PatternSliceV3,
    PatternStateV1,
    PatternStateV2,
    pattern_slice_decoder,
    pattern_state_decoder,
)
from features.state import SLICE_MS, encoder

# A buffered event: (event_time, kind, condition mask, event id).
Event = tuple[int, int, int, str]
_NOTHING: list[tuple[str, ...]] = []  # no matches (shared; never appended to)

# Per rule, the partial matches and the times of recent matches. Most cards have none: they
# share one tuple of empty tuples (per rule count), and a list is made for the outer sequence
# and for a rule's entry only when it gets one (``_step``), so a new card costs no list per
# rule to allocate, nor to scan in each garbage collection.
RuleRuns = list[list[Run] | tuple[()]] | tuple[tuple[()], ...]
RuleDone = list[list[int] | tuple[()]] | tuple[tuple[()], ...]
_NONE_PER_RULE: dict[int, tuple[tuple[()], ...]] = {}


def _none_per_rule(n_rules: int) -> tuple[tuple[()], ...]:
    none = _NONE_PER_RULE.get(n_rules)
    if none is None:
        none = _NONE_PER_RULE[n_rules] = ((),) * n_rules
    return none


class ProfileChange:
    """A change of the card holder's profile, as the card observes it (condition fields)."""

    __slots__ = ("account_age_days", "home_lat", "home_lon", "home_moved_km", "segment")

    def __init__(self, profile: UserProfile, old_lat: float, old_lon: float) -> None:
        self.home_lat = profile.home_lat
        self.home_lon = profile.home_lon
        self.home_moved_km = haversine_km(old_lat, old_lon, profile.home_lat, profile.home_lon)
        self.account_age_days = profile.account_age_days
        self.segment = profile.segment


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The haversine of docs/features.md, in degrees in, km out."""
    p1, p2 = radians(lat1), radians(lat2)
    s_phi = sin((p2 - p1) * 0.5)
    s_lam = sin((radians(lon2) - radians(lon1)) * 0.5)
    a = s_phi * s_phi + cos(p1) * cos(p2) * s_lam * s_lam
    return 2.0 * EARTH_RADIUS_KM * asin(sqrt(a if a < 1.0 else 1.0))


def profile_change_id(user_id: str, updated_at: int) -> str:
    """The id a profile change carries in matches and alerts (it has no event id of its own)."""
    return f"profile:{user_id}@{updated_at}"


class PatternState(KeyState):
    __slots__ = ("done", "events", "profile", "runs", "times")

    def __init__(self, n_rules: int) -> None:
        super().__init__()
        self.times: list[int] = []
        self.events: list[Event] = []
        self.runs: RuleRuns = _none_per_rule(n_rules)
        self.done: RuleDone = _none_per_rule(n_rules)
        self.profile: tuple[int, float, float] | None = None


@dataclass(frozen=True, slots=True)
class PatternMatch:
    """Matches of one rule completed by the transaction at ``index`` of the batch.

    ``event_ids``: the events of the earliest-started of those matches, in event-time order;
    ``matches``: how many matches of the rule that transaction completed.
    """

    rule: str
    index: int
    event_ids: tuple[str, ...]
    matches: int


@dataclass(slots=True)
class PatternBatch:
    """Card + pattern rows (``FRAUD_CARD`` then ``FRAUD_PATTERNS`` values; None where late; the
    merchant risk completes them to ``FRAUD`` rows) and alert matches."""

    rows: list[tuple[Any, ...] | None] = field(default_factory=list)
    matches: list[PatternMatch] = field(default_factory=list)


class PatternEngine(KeyedEngine[PatternState]):
    """Pattern features and matches of transactions, keyed by card_id. One per consumer actor.

    ``process_batch`` takes the transactions and the rows ``FraudFeatureEngine`` computed for
    them (None for late ones: the two engines share clock and lateness, so they agree). The
    changelog is sliced (``features._engine``): ``PatternHeadV3`` and ``PatternSliceV3``.
    """

    _sliced = True

    def __init__(
        self,
        rules: RuleSet | CompiledRules,
        config: FeatureConfig | None = None,
        *,
        feature_rules: Sequence[str] = PATTERN_FEATURE_RULES,
    ) -> None:
        super().__init__(config)
        compiled = rules if isinstance(rules, CompiledRules) else CompiledRules(rules)
        self.rules = compiled
        self._rules = compiled.rules
        index = {r.name: i for i, r in enumerate(self._rules)}
        missing = [name for name in feature_rules if name not in index]
        if missing:
            raise RuleError(
                "<rule set>", [f"no rule {name!r} for the pattern features" for name in missing]
            )
        self._feature_rules = tuple(index[name] for name in feature_rules)
        self._alert_rules = tuple(i for i, r in enumerate(self._rules) if r.alert)
        self._starts = tuple((r, r.steps[0].kind, r.steps[0].bit) for r in self._rules)
        self._withins = tuple(r.within for r in self._rules)
        self._span = 2 * compiled.max_within  # buffer: what an out-of-order event's past needs
        self._profiles = compiled.uses_profile_changes
        horizon = self._span
        if self._profiles:
            # Remember the joined profile as long as the card's previous transaction.
            horizon = max(horizon, self.config.previous_transaction_horizon_ms)
        self._set_horizon(max(horizon, 1))
        self._cap = self.config.max_events_per_key
        self.reset_keys = 0  # restored keys whose state was for another rule set

    def process_batch(
        self,
        partition: int,
        transactions: Sequence[Transaction],
        card_rows: Sequence[tuple[Any, ...] | None],
        profiles: Mapping[str, UserProfile],
        *,
        now_ms: int | None = None,
    ) -> PatternBatch:
        """Extend each card row with the pattern features; collect the matches to alert on."""
        part = self._partition(partition)
        keys, touched = part.keys, part.touched
        n_rules = len(self._rules)
        lateness, span = self._lateness, self._span
        max_time, wm = part.max_time, part.watermark
        mask_of = self.rules.mask_function(TRANSACTION)
        feature_rules, alert_rules = self._feature_rules, self._alert_rules
        bucket_ms = self._bucket_ms
        rows: list[tuple[Any, ...] | None] = []
        matches: list[PatternMatch] = []
        for index, (tx, row) in enumerate(zip(transactions, card_rows, strict=True)):
            if row is None:
                rows.append(None)
                continue
            t = tx.event_time
            if t > max_time:
                max_time = t
                wm = t - lateness
            key = tx.card_id
            st = keys.get(key)
            if st is None:
                st = keys[key] = PatternState(n_rules)
            if st.times and st.times[0] <= wm - span:
                self._trim(st, wm)
            changed: list[list[tuple[str, ...]]] | None = None
            if self._profiles:
                profile = profiles.get(tx.user_id)
                if profile is not None:
                    changed = self._observe(st, tx, profile, t, wm)
            mask = mask_of(tx, row)
            done, completed = self._feed(st, t, TRANSACTION, mask, tx.event_id)
            extra: list[int] = []
            for r in feature_rules:
                c = len(done[r])
                extra.append(1 if c else 0)
                extra.append(c)
            if t > st.last:
                st.last = t
                if t // bucket_ms != st.bucket:
                    self._rebucket(part, key, st)
            touched.add(key)
            rows.append((*row, *extra))
            for r in alert_rules:
                found = completed[r] if changed is None else changed[r] + completed[r]
                if found:
                    matches.append(PatternMatch(self._rules[r].name, index, found[0], len(found)))
        self._end_batch(part, max_time, wm, now_ms if transactions else None)
        return PatternBatch(rows, matches)

    def _observe(
        self,
        st: PatternState,
        tx: Transaction,
        profile: UserProfile,
        t: int,
        wm: int,
    ) -> list[list[tuple[str, ...]]] | None:
        """Feed a profile change when the card joins a newer profile than the last one it saw;
        returns the matches it completed (None when there was no change to feed)."""
        seen = st.profile
        if seen is not None and profile.updated_at <= seen[0]:
            return None
        st.profile = (profile.updated_at, profile.home_lat, profile.home_lon)
        if seen is None:
            return None  # the first profile this card sees: nothing to compare with
        at = min(profile.updated_at, t)
        if at < wm:
            return None  # older than the watermark, like a late event
        change = ProfileChange(profile, seen[1], seen[2])
        mask = self.rules.mask(PROFILE_CHANGE, change, None)
        event_id = profile_change_id(tx.user_id, profile.updated_at)
        return self._feed(st, at, PROFILE_CHANGE, mask, event_id)[1]

    def _feed(
        self, st: PatternState, t: int, kind: int, mask: int, event_id: str
    ) -> tuple[list[list[int]], list[list[tuple[str, ...]]]]:
        """Add one event to the card; returns per rule the times of the matches counted at it
        (ending in ``(t - within, t]`` of its past; read them before the card's next event) and
        the matches it completed."""
        times, events = st.times, st.events
        event = (t, kind, mask, event_id)
        if t < st.low:
            st.low = t
        if len(times) >= self._cap:
            self._note_dropped(st, times, 1)
            del times[0]
            del events[0]
        if not times or t >= times[-1]:
            times.append(t)
            events.append(event)
            st.runs, st.done, completed = self._step(st.runs, st.done, event)
            return st.done, completed
        pos = bisect_right(times, t)
        times.insert(pos, t)
        events.insert(pos, event)
        span = self._span
        # The event's view: its past only, replayed in event-time order.
        _, done, completed = self._replay(events[bisect_right(times, t - span) : pos + 1])
        # The live runs: the whole buffer in event-time order, as if nothing had been late.
        st.runs, st.done, _ = self._replay(events[bisect_right(times, times[-1] - span) :])
        return done, completed

    def _step(
        self, runs: RuleRuns, done: RuleDone, event: Event
    ) -> tuple[RuleRuns, RuleDone, list[list[tuple[str, ...]]]]:
        """Advance every rule by ``event``; returns the runs and done (lists where a rule got
        some, copied from the shared empty tuples then; a rule's runs list is updated in place)
        and the matches completed per rule."""
        t, kind, mask, event_id = event
        out: list[list[tuple[str, ...]]] = []
        for r, (rule, first_kind, first_bit) in enumerate(self._starts):
            live = runs[r]
            times = done[r]
            if live or (kind == first_kind and mask & first_bit):
                completed: list[tuple[str, ...]] = []
                after = advance(rule, live, t, kind, mask, event_id, completed)
                if after is live:  # the card's list, updated in place
                    if not after:
                        runs[r] = ()  # type: ignore[index]
                elif after:
                    if isinstance(runs, tuple):
                        runs = list(runs)
                    runs[r] = after
                if completed:
                    if isinstance(done, tuple):
                        done = list(done)
                    if isinstance(times, tuple):
                        times = done[r] = []
                    times.extend([t] * len(completed))
                out.append(completed)
            else:
                out.append(_NOTHING)
            if times and times[0] <= t - rule.within:
                del times[: bisect_right(times, t - rule.within)]  # type: ignore[arg-type]
        return runs, done, out

    def _replay(
        self, events: Sequence[Event]
    ) -> tuple[RuleRuns, RuleDone, list[list[tuple[str, ...]]]]:
        n = len(self._rules)
        runs: RuleRuns = _none_per_rule(n)
        done: RuleDone = _none_per_rule(n)
        completed: list[list[tuple[str, ...]]] = [[] for _ in range(n)]
        for event in events:
            runs, done, completed = self._step(runs, done, event)
        return runs, done, completed

    # -- state hooks ------------------------------------------------------------------------

    def _trim(self, st: PatternState, watermark: int) -> bool:
        """Forget events no non-late event can need, runs that cannot end in time, old matches."""
        if watermark == NO_TIME:
            return False
        times = st.times
        k = bisect_right(times, watermark - self._span)
        if k:
            self._note_dropped(st, times, k)
            del times[:k]
            del st.events[:k]
        empty = not times and st.profile is None
        all_runs, all_done = st.runs, st.done
        for r, within in enumerate(self._withins):
            oldest = watermark - within
            runs = all_runs[r]
            if runs:
                for run in runs:  # usually none is too old: copy the list only when one is
                    if run[2] < oldest:
                        all_runs[r] = runs = [run for run in runs if run[2] >= oldest]
                        break
            done = all_done[r]
            if done and done[0] <= oldest:
                del done[: bisect_right(done, oldest)]
            if runs or done:
                empty = False
        return empty

    def _encode(self, st: PatternState) -> bytes:
        return encoder.encode(
            PatternStateV2(self.rules.fingerprint, st.last, st.events, st.runs, st.done, st.profile)
        )

    def _entry_times(self, st: PatternState) -> list[int]:
        return st.times

    def _encode_head(self, st: PatternState) -> bytes:
        return encoder.encode(
            PatternHeadV3(self.rules.fingerprint, st.last, st.runs, st.done, st.profile)
        )

    def _encode_slice(self, st: PatternState, lo: int, hi: int) -> bytes:
        return encoder.encode(PatternSliceV3(st.events[lo:hi]))

    def _decode_head(self, data: bytes) -> PatternState | PatternHeadV3:
        rec = pattern_state_decoder.decode(data)
        if isinstance(rec, PatternHeadV3):
            return rec
        return self._build(rec)  # a whole-state record

    def _complete(self, rec: PatternHeadV3, slices: list[bytes]) -> PatternState:
        events = [e for data in slices for e in pattern_slice_decoder.decode(data).events]
        whole = PatternStateV2(rec.rules, rec.last, events, rec.runs, rec.done, rec.profile)
        return self._build(whole, sliced=True)

    def _build(self, rec: PatternStateV1 | PatternStateV2, *, sliced: bool = False) -> PatternState:
        """The engine's state from a decoded record (validated: it may come from anywhere).

        A key restored from a whole-state record is written whole until its buffer grows."""
        if isinstance(rec, PatternStateV1):
            rec = _upgrade(rec)
        n_rules = len(self._rules)
        st = PatternState(n_rules)
        if sliced:
            st.low = CLEAN
        st.last = rec.last
        st.profile = rec.profile
        if rec.rules != self.rules.fingerprint:
            # Written under another rule set: its masks and runs mean nothing here. Keep the
            # profile (rule-independent); matches start afresh. Its slice records go at its
            # next drain.
            self.reset_keys += 1
            if sliced:
                st.dead = sorted({e[0] // SLICE_MS for e in rec.events})
            return st
        events = rec.events
        times = [e[0] for e in events]
        if any(times[i] > times[i + 1] for i in range(len(times) - 1)):
            raise ValueError("pattern state event times must be non-decreasing")
        if times and times[-1] > rec.last:
            raise ValueError("pattern state events must be no newer than its last event time")
        if len(rec.done) != n_rules or len(rec.runs) != n_rules:
            raise ValueError(
                f"pattern state has {len(rec.done)}/{len(rec.runs)} rules, expected {n_rules}"
            )
        for r, runs in enumerate(rec.runs):
            steps = len(self._rules[r].steps)
            if any(not 0 <= run[0] < steps for run in runs):
                raise ValueError(f"pattern state run of rule {r} is past its {steps} steps")
        st.times = times
        st.events = events
        # A card without runs or matches shares the empty ones, as a new card does.
        st.runs = rec.runs if any(rec.runs) else _none_per_rule(n_rules)
        st.done = rec.done if any(rec.done) else _none_per_rule(n_rules)
        return st


def _upgrade(rec: PatternStateV1) -> PatternStateV2:
    """A V1 record (times as ages before ``last``, flat runs) as V2."""
    last = rec.last
    n = len(rec.ages)
    if not len(rec.kinds) == len(rec.masks) == len(rec.ids) == n:
        raise ValueError("pattern state columns have different lengths")
    if any(a < 0 for a in rec.ages) or any(rec.ages[i] < rec.ages[i + 1] for i in range(n - 1)):
        raise ValueError("pattern state ages must be >= 0 and non-increasing")
    events = [
        (last - age, kind, mask, event_id)
        for age, kind, mask, event_id in zip(rec.ages, rec.kinds, rec.masks, rec.ids, strict=True)
    ]
    runs: list[list[tuple[int, int, int, tuple[str, ...]]]] = [[] for _ in rec.done]
    for r, step, taken, age, ids in rec.runs:
        if not 0 <= r < len(runs):
            raise ValueError(f"pattern state run of rule {r} is not in the rule set")
        runs[r].append((step, taken, last - age, tuple(ids)))
    done = [[last - age for age in ages] for ages in rec.done]
    return PatternStateV2(rec.rules, last, events, runs, done, rec.profile)
