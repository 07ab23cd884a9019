"""PatternEngine against a brute-force reference of the definitions, on generated streams with
out-of-order and late events, profile changes and several cards: every event's pattern
features and matches equal running the rules from scratch over its past (the key's processed
events with event_time <= t, in (event_time, processing order)). The same holds when the
engines are restored from their changelog (touched keys only, compacted) at random batch
boundaries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from contracts.events import Transaction, UserProfile
from features.config import FeatureConfig
from features.definitions import HOUR_MS, MINUTE_MS
from features.fraud import FraudFeatureEngine
from features.patterns import PatternEngine, RuleSet, parse_rules
from features.patterns.compiler import PROFILE_CHANGE, TRANSACTION, CompiledRules
from features.patterns.engine import ProfileChange, profile_change_id
from features.patterns.nfa import advance
from features.state import PARTITION_META_KEY

META = PARTITION_META_KEY.encode()

T0 = 1_700_000_000_000
CONFIG = FeatureConfig()
PLACES = [(48.8566, 2.3522), (40.7128, -74.0060), (51.5074, -0.1278), (48.86, 2.36)]
AMOUNTS = [0.5, 1.0, 1.5, 3.0, 50.0, 250.0, 600.0]

RULES_YAML = """
version: 1
rules:
  - name: card_testing
    within: 10m
    alert: true
    steps:
      - {name: probes, where: {amount: {lt: 2.0}}, times: {min: 2}}
      - {name: cashout, where: {amount: {gt: 200.0}}}
  - name: impossible_travel
    within: 6h
    alert: true
    steps:
      - {name: before}
      - {name: after, contiguity: strict, where: {speed_from_last_transaction_kmh: {gt: 900}}}
  - name: account_takeover
    within: 1h
    alert: true
    steps:
      - {name: moved, event: profile_change, where: {home_moved_km: {gt: 0}}}
      - {name: spend, where: {amount: {gt: 500}}}
  - name: guarded
    within: 30m
    alert: true
    steps:
      - {name: small, where: {amount: {lt: 2}}, times: {min: 1, max: 2}, contiguity: strict}
      - {name: no_pos, negated: true, where: {channel: {eq: pos}}}
      - {name: big, where: {amount: {gt: 200}}, contiguity: strict}
"""
RULES: RuleSet = parse_rules(yaml.safe_load(RULES_YAML), feature_rules=())
NAMES = tuple(r.name for r in RULES.rules)


def stream(seed: int) -> list[Transaction | UserProfile]:
    """Transactions of 3 cards and profile updates of their users, in processing order."""
    rng = random.Random(seed)
    out: list[Transaction | UserProfile] = []
    clock = T0
    for i in range(260):
        clock += rng.choice([0, rng.randint(1, 30_000), rng.randint(30_000, 5 * MINUTE_MS)])
        if rng.random() < 0.03:
            clock += rng.randint(10 * MINUTE_MS, 3 * HOUR_MS)
        t = clock
        if rng.random() < 0.15:
            t -= rng.randint(0, 70 * MINUTE_MS)  # out of order; some beyond the lateness
        card = f"c{rng.randint(0, 2)}"
        if rng.random() < 0.08:
            home = rng.choice(PLACES)
            out.append(
                UserProfile(
                    user_id="u-" + card,
                    home_lat=home[0],
                    home_lon=home[1],
                    account_age_days=10,
                    segment="s",
                    updated_at=max(0, t - rng.randint(0, 20 * MINUTE_MS)),
                )
            )
        place = rng.choice(PLACES)
        out.append(
            Transaction(
                event_id=f"e{i}",
                card_id=card,
                user_id="u-" + card,
                merchant_id="m",
                merchant_category="x",
                amount=rng.choice(AMOUNTS),
                currency="EUR",
                lat=place[0],
                lon=place[1],
                event_time=t,
                channel=rng.choice(["pos", "online"]),
            )
        )
    return out


@dataclass
class Outcome:
    features: dict[str, tuple[int, ...]] = field(default_factory=dict)
    matches: dict[str, dict[str, tuple[tuple[str, ...], int]]] = field(default_factory=dict)


def run_engine(events: list[Any], seed: int, restore: bool) -> Outcome:
    rng = random.Random(seed)
    fraud, patterns = FraudFeatureEngine(CONFIG), PatternEngine(RULES, CONFIG, feature_rules=NAMES)
    fraud.assign(0, changelog=restore)
    patterns.assign(0, changelog=restore)
    changelog: dict[tuple[int, bytes], bytes] = {}
    table: dict[str, UserProfile] = {}
    outcome = Outcome()
    pending: list[Transaction] = []

    def flush() -> None:
        nonlocal fraud, patterns
        if not pending:
            return
        rows = fraud.process_batch(0, pending, table).rows
        batch = patterns.process_batch(0, pending, rows, table)
        for tx, row in zip(pending, batch.rows, strict=True):
            if row is not None:
                outcome.features[tx.event_id] = tuple(row[-2 * len(NAMES) :])
        for m in batch.matches:
            outcome.matches.setdefault(pending[m.index].event_id, {})[m.rule] = (
                m.event_ids,
                m.matches,
            )
        pending.clear()
        if restore and rng.random() < 0.5:
            # The consumer's protocol: touched keys (None = tombstone) and the clock, then a
            # fresh pair of engines restored from the compacted log.
            for slot, engine in enumerate((fraud, patterns)):
                for key, value in engine.changelog(0):
                    if value is None:
                        changelog.pop((slot, key), None)
                    else:
                        changelog[(slot, key)] = value
                changelog[(slot, META)] = engine.serialize_partition(0)
            live = (fraud, patterns)
            fraud = FraudFeatureEngine(CONFIG)
            patterns = PatternEngine(RULES, CONFIG, feature_rules=NAMES)
            for slot, engine in enumerate((fraud, patterns)):
                engine.assign(0, changelog=True)
                engine.restore_partition(0, changelog[(slot, META)])
                for (s, key), value in changelog.items():
                    if s == slot and key != META:
                        engine.restore_record(0, key, value)
                for _ in engine.finish_restore(0):
                    pass
                # The log holds exactly the live state.
                before = live[slot]._partition(0).keys
                after = engine._partition(0).keys  # type: ignore[attr-defined]
                assert sorted(before) == sorted(after)
                for key, st in before.items():
                    assert engine._encode(after[key]) == live[slot]._encode(st), key  # type: ignore[attr-defined]

    for event in events:
        if isinstance(event, UserProfile):
            flush()  # the profile table changes between batches, as online
            table[event.user_id] = event
            continue
        pending.append(event)
        if rng.random() < 0.3:
            flush()
    flush()
    return outcome


def run_reference(events: list[Any]) -> Outcome:
    """The definitions, brute force: every event re-runs every rule over its whole past."""
    compiled = CompiledRules(RULES)
    fraud = FraudFeatureEngine(CONFIG)
    fraud.assign(0)
    table: dict[str, UserProfile] = {}
    history: dict[str, list[tuple[int, int, int, str]]] = {}  # card -> processed events
    seen_profile: dict[str, tuple[int, float, float]] = {}
    clock = None
    outcome = Outcome()
    for event in events:
        if isinstance(event, UserProfile):
            table[event.user_id] = event
            continue
        row = fraud.process_batch(0, [event], table).rows[0]
        if row is None:
            continue
        t = event.event_time
        clock = t if clock is None else max(clock, t)
        wm = clock - CONFIG.allowed_lateness_ms
        past = history.setdefault(event.card_id, [])
        found: dict[str, list[tuple[str, ...]]] = {}
        p = table.get(event.user_id)
        if p is not None:
            seen = seen_profile.get(event.card_id)
            if seen is None or p.updated_at > seen[0]:
                seen_profile[event.card_id] = (p.updated_at, p.home_lat, p.home_lon)
                at = min(p.updated_at, t)
                if seen is not None and at >= wm:
                    mask = compiled.mask(PROFILE_CHANGE, ProfileChange(p, seen[1], seen[2]), None)
                    past.append(
                        (at, PROFILE_CHANGE, mask, profile_change_id(p.user_id, p.updated_at))
                    )
                    for name, ids in evaluate(compiled, past, at)[1].items():
                        found.setdefault(name, []).extend(ids)
        past.append((t, TRANSACTION, compiled.mask(TRANSACTION, event, row), event.event_id))
        counts, completed = evaluate(compiled, past, t)
        for name, ids in completed.items():
            found.setdefault(name, []).extend(ids)
        values: list[int] = []
        for name in NAMES:
            values += [1 if counts[name] else 0, counts[name]]
        outcome.features[event.event_id] = tuple(values)
        for name, ids in found.items():
            if ids:
                outcome.matches.setdefault(event.event_id, {})[name] = (ids[0], len(ids))
    return outcome


def evaluate(
    compiled: CompiledRules, past: list[tuple[int, int, int, str]], t: int
) -> tuple[dict[str, int], dict[str, list[tuple[str, ...]]]]:
    """Counts of matches ending in (t - within, t] over the events <= t (the newest last among
    equal times), and the matches the newest of them completed."""
    # Stable: among equal times, processing order, so the newest event is last.
    ordered = sorted((e for e in past if e[0] <= t), key=lambda e: e[0])
    counts: dict[str, int] = {}
    completed: dict[str, list[tuple[str, ...]]] = {}
    for rule in compiled.rules:
        runs: list[Any] = []
        ends: list[int] = []
        last_done: list[tuple[str, ...]] = []
        for ev_t, kind, mask, event_id in ordered:
            last_done = []
            runs = advance(rule, runs, ev_t, kind, mask, event_id, last_done)
            ends += [ev_t] * len(last_done)
        counts[rule.name] = sum(1 for end in ends if t - rule.within < end <= t)
        completed[rule.name] = last_done
    return counts, completed


@pytest.mark.parametrize("seed", range(6))
def test_engine_equals_the_reference_and_survives_restores(seed: int) -> None:
    events = stream(seed)
    reference = run_reference(events)
    plain = run_engine(events, seed, restore=False)
    restored = run_engine(events, seed, restore=True)
    assert plain.features == reference.features
    assert plain.matches == reference.matches
    assert restored.features == plain.features
    assert restored.matches == plain.matches
    # The streams exercise every rule, and late events exist.
    for i, name in enumerate(NAMES):
        assert any(v[2 * i] for v in plain.features.values()), name
    assert len(plain.features) < sum(isinstance(e, Transaction) for e in events)
