"""The per-event cost of complex event patterns: ``PatternEngine`` with the shipped 3 rules and
with 10 rules, beside the card features it runs after.

Pure CPU, in the bench process (the engines are pure; Kafka and Redis play no part in this
cost): a seeded synthetic stream of ``min(transactions, 200,000)`` transactions on
``transactions / 10`` cards (each ~1 event per 10 minutes) with the shapes the rules look for
(bursts of small amounts, big purchases, far-apart places, 2% out of order by up to two
minutes) and profile updates that move a home. The card rows are computed once; each case
times one engine over the whole stream in batches of 500 (CPU time of the bench process).
Details: matches, cards and the serialized pattern state per card at the end.

Cases: ``card-features`` (``FraudFeatureEngine``), ``rules-3`` (the shipped rules),
``rules-10`` (those plus the 7 of ``EXTRA_RULES``).
"""

from __future__ import annotations

import random
import time
from typing import Any

import yaml

from bench.results import Sample
from bench.scenario import BenchContext, Case, Scenario
from contracts.events import Transaction, UserProfile
from features.fraud import FraudFeatureEngine
from features.patterns import PatternEngine, RuleSet, parse_rules, shipped_rules

MAX_EVENTS = 200_000
BATCH = 500
T0 = 1_700_000_000_000
PLACES = [(48.86, 2.35), (40.71, -74.01), (51.51, -0.13), (35.68, 139.69), (52.52, 13.40)]

EXTRA_RULES = """
- name: burst_online
  within: 2m
  alert: true
  steps:
    - {name: burst, where: {channel: {eq: online}}, times: {min: 5}}
    - {name: next, where: {channel: {eq: online}}}
- name: new_merchant_spree
  within: 30m
  alert: true
  steps:
    - {name: new, where: {is_new_merchant_24h: {eq: 1}}, times: {min: 4}, contiguity: strict}
    - {name: big, where: {amount: {gt: 300}}}
- name: probe_then_jewelry
  within: 15m
  alert: true
  steps:
    - {name: probe, where: {amount: {lt: 5}}}
    - {name: luxury, where: {merchant_category: {in: [jewelry, electronics]}, amount: {gt: 400}}}
- name: far_from_home_twice
  within: 1h
  alert: true
  steps:
    - {name: far, where: {distance_from_home_km: {gt: 1500}}, times: 2}
- name: quiet_then_big
  within: 1h
  alert: true
  steps:
    - {name: small, where: {amount: {lt: 20}}}
    - {name: no_pos, negated: true, where: {channel: {eq: pos}}}
    - {name: big, where: {amount: {gt: 800}}}
- name: velocity
  within: 5m
  alert: true
  steps:
    - {name: many, where: {transaction_count_5m: {ge: 5}}, times: 3}
- name: moved_then_far
  within: 2h
  alert: true
  steps:
    - {name: moved, event: profile_change, where: {home_moved_km: {gt: 100}}}
    - {name: far, where: {distance_from_home_km: {gt: 500}}}
"""


def ten_rules() -> RuleSet:
    shipped = shipped_rules()
    data = shipped.model_dump(mode="json")
    data["rules"] += yaml.safe_load(EXTRA_RULES)
    rules = parse_rules(data, "bench ten rules")
    assert len(rules.rules) == 10
    return rules


def workload(n: int, cards: int, seed: int) -> list[tuple[list[Transaction], dict]]:
    """Batches of transactions with the profile table each batch sees."""
    rng = random.Random(seed)
    homes = [rng.randrange(len(PLACES)) for _ in range(cards)]
    table: dict[str, UserProfile] = {}
    batches: list[tuple[list[Transaction], dict]] = []
    batch: list[Transaction] = []
    clock = T0
    for i in range(n):
        clock += rng.randint(0, 2 * 600_000 // cards + 1)  # a card: ~1 event per 10 minutes
        c = rng.randrange(cards)
        t = clock - (rng.randint(0, 120_000) if rng.random() < 0.02 else 0)
        r = rng.random()
        amount = rng.choice([0.5, 1.0, 1.5]) if r < 0.1 else round(rng.lognormvariate(3, 1.2), 2)
        place = PLACES[homes[c]] if rng.random() < 0.95 else rng.choice(PLACES)
        if rng.random() < 0.002:
            homes[c] = rng.randrange(len(PLACES))
            home = PLACES[homes[c]]
            table = {
                **table,
                f"u{c}": UserProfile(
                    user_id=f"u{c}",
                    home_lat=home[0],
                    home_lon=home[1],
                    account_age_days=100,
                    segment="s",
                    updated_at=t,
                ),
            }
        batch.append(
            Transaction(
                event_id=f"e{i}",
                card_id=f"c{c}",
                user_id=f"u{c}",
                merchant_id=f"m{rng.randrange(500)}",
                merchant_category=rng.choice(["grocery", "electronics", "jewelry", "travel"]),
                amount=max(amount, 0.01),
                currency="EUR",
                lat=place[0] + rng.uniform(-0.05, 0.05),
                lon=place[1] + rng.uniform(-0.05, 0.05),
                event_time=max(t, 0),
                channel=rng.choice(["pos", "online"]),
            )
        )
        if len(batch) == BATCH:
            batches.append((batch, table))
            batch = []
    if batch:
        batches.append((batch, table))
    return batches


class PatternsScenario(Scenario):
    name = "patterns"
    summary = "per-event CPU cost of complex event patterns (3 and 10 rules) beside card features"

    async def prepare(self, ctx: BenchContext) -> None:
        n = min(ctx.options.sizes.transactions, MAX_EVENTS)
        cards = max(n // 10, 1)
        batches = workload(n, cards, ctx.options.seed)
        fraud = FraudFeatureEngine()
        fraud.assign(0)
        rows = [fraud.process_batch(0, txs, table).rows for txs, table in batches]
        ctx.shared["patterns"] = (batches, rows, n)
        ctx.results.workloads["patterns"] = {"transactions": n, "cards": cards, "batch": BATCH}
        ctx.say(f"patterns: {n:,} synthetic transactions on {cards:,} cards")

    def cases(self, ctx: BenchContext) -> list[Case]:
        def case(name: str, label: str, run: Any) -> Case:
            return Case(self.name, name, label, "us/event", run, higher_is_better=False)

        return [
            case("card-features", "FraudFeatureEngine (the card features)", _card_features),
            case("rules-3", "PatternEngine, the 3 shipped rules", _patterns(shipped_rules)),
            case("rules-10", "PatternEngine, 10 rules", _patterns(ten_rules)),
        ]


async def _card_features(ctx: BenchContext, round_: int) -> Sample:
    batches, _, n = ctx.shared["patterns"]
    engine = FraudFeatureEngine()
    engine.assign(0)
    start = time.process_time()
    for txs, table in batches:
        engine.process_batch(0, txs, table)
    seconds = time.process_time() - start
    return Sample(round_, seconds / n * 1e6, {"events": n, "cpu_s": round(seconds, 3)})


def _patterns(rules_of: Any) -> Any:
    async def run(ctx: BenchContext, round_: int) -> Sample:
        batches, rows, n = ctx.shared["patterns"]
        rules = rules_of()
        engine = PatternEngine(rules)
        engine.assign(0)
        matches = 0
        start = time.process_time()
        for (txs, table), card_rows in zip(batches, rows, strict=True):
            matches += len(engine.process_batch(0, txs, card_rows, table).matches)
        seconds = time.process_time() - start
        keys = engine.keys(0)
        state = sum(len(engine.serialize(0, k) or b"") for k in keys)
        return Sample(
            round_,
            seconds / n * 1e6,
            {
                "events": n,
                "rules": len(rules.rules),
                "cpu_s": round(seconds, 3),
                "alert_matches": matches,
                "cards": len(keys),
                "state_bytes_per_card": round(state / max(len(keys), 1), 1),
            },
        )

    return run
