"""The compiled step masks equal a plain evaluation of the rules' conditions.

``CompiledRules`` generates one straight-line function per event kind; this checks it bit by
bit against the conditions read directly from the rule set, on random events with nulls, for
every operator, multi-condition steps and steps without conditions.
"""

from __future__ import annotations

import operator
import random
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from features.definitions import FRAUD_CARD
from features.patterns import parse_rules, shipped_rules
from features.patterns.compiler import KIND_CODES, PROFILE_CHANGE, TRANSACTION, CompiledRules
from features.patterns.language import TRANSACTION_FIELDS, Condition, RuleSet

OPS = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
    "in": lambda value, options: value in options,
    "not_in": lambda value, options: value not in options,
}

# Every operator, multi-condition steps, a step without conditions, both event kinds (the
# shipped rules, tested too, add a computed feature of the row).
RULES = """
version: 1
rules:
  - name: every_op
    within: 1h
    alert: true
    steps:
      - name: a
        where: {amount: {ge: 10}, transaction_count_1h: {le: 3}, channel: {eq: online}}
      - name: b
        where: {currency: {ne: EUR}, merchant_category: {not_in: [grocery, fuel]}}
      - name: c
        event: profile_change
        where: {account_age_days: {lt: 30}, segment: {ne: basic}}
  - name: anything_then_moved
    within: 1h
    alert: true
    steps:
      - {name: any}
      - name: moved
        event: profile_change
        where: {home_moved_km: {gt: 0.0}, segment: {in: [gold, vip]}}
"""


def _holds(cond: Condition, value: Any) -> bool:
    if value is None:
        return False
    operand = cond.value
    if cond.op in ("in", "not_in"):
        operand = frozenset(operand)
    return bool(OPS[cond.op](value, operand))


def _plain_mask(rules: RuleSet, kind: int, event: Any, row: tuple[Any, ...] | None) -> int:
    """Bit j for the j-th distinct (kind, conditions) of the rule set, set when all hold."""
    bits: dict[tuple[int, Any], int] = {}
    mask = 0
    for rule in rules.rules:
        for step in rule.steps:
            step_kind = KIND_CODES[step.event]
            key = (step_kind, step.where)
            if key not in bits:
                bits[key] = 1 << len(bits)
            if step_kind != kind:
                continue
            values = []
            for cond in step.where:
                if kind == TRANSACTION and cond.field not in TRANSACTION_FIELDS:
                    assert row is not None
                    values.append(row[FRAUD_CARD.names.index(cond.field)])
                else:
                    values.append(getattr(event, cond.field))
            if all(_holds(c, v) for c, v in zip(step.where, values, strict=True)):
                mask |= bits[key]
    return mask


def _unconditional_bits(rules: RuleSet, kind: int) -> int:
    """The bits (numbered as in ``_plain_mask``) of the steps of ``kind`` without conditions."""
    bits: dict[tuple[int, Any], int] = {}
    always = 0
    for rule in rules.rules:
        for step in rule.steps:
            key = (KIND_CODES[step.event], step.where)
            bit = bits.setdefault(key, 1 << len(bits))
            if key[0] == kind and not step.where:
                always |= bit
    return always


def _maybe(rng: random.Random, value: Any) -> Any:
    return None if rng.random() < 0.15 else value


def _transaction(rng: random.Random) -> tuple[SimpleNamespace, tuple[Any, ...]]:
    event = SimpleNamespace(
        amount=rng.choice([0.5, 1.99, 2.0, 10.0, 200.0, 200.01, 500.0, 900.0]),
        lat=rng.uniform(-90, 90),
        lon=rng.uniform(-180, 180),
        event_time=rng.randrange(10**12),
        merchant_id=f"m{rng.randrange(5)}",
        merchant_category=rng.choice(["grocery", "fuel", "jewelry", "electronics"]),
        currency=rng.choice(["EUR", "USD"]),
        channel=rng.choice(["online", "pos"]),
        user_id="u1",
    )
    row = tuple(
        _maybe(rng, rng.choice([0, 1, 3, 4, 899.0, 900.0, 901.0, 5000.0])) for _ in FRAUD_CARD.names
    )
    return event, row


def _profile_change(rng: random.Random) -> SimpleNamespace:
    return SimpleNamespace(
        home_moved_km=rng.choice([0.0, 0.1, 100.0]),
        home_lat=1.0,
        home_lon=2.0,
        account_age_days=_maybe(rng, rng.choice([1, 29, 30, 400])),
        segment=rng.choice(["gold", "vip", "basic", "mass"]),
    )


@pytest.mark.parametrize(
    "rules",
    [parse_rules(yaml.safe_load(RULES), feature_rules=()), shipped_rules()],
    ids=["all-ops", "shipped"],
)
def test_compiled_masks_equal_the_plain_evaluation(rules: RuleSet) -> None:
    compiled = CompiledRules(rules)
    rng = random.Random(7)
    seen: dict[int, list[int]] = {TRANSACTION: [], PROFILE_CHANGE: []}
    for _ in range(3_000):
        event, row = _transaction(rng)
        mask = compiled.mask(TRANSACTION, event, row)
        assert mask == _plain_mask(rules, TRANSACTION, event, row)
        assert compiled.mask_function(TRANSACTION)(event, row) == mask
        change = _profile_change(rng)
        changed = compiled.mask(PROFILE_CHANGE, change, None)
        assert changed == _plain_mask(rules, PROFILE_CHANGE, change, None)
        seen[TRANSACTION].append(mask)
        seen[PROFILE_CHANGE].append(changed)
    # The events exercise every condition both ways: each bit is set by some event, and only
    # the bits of steps without conditions are set by all of them.
    for kind, masks in seen.items():
        union, always = 0, ~0
        for mask in masks:
            union |= mask
            always &= mask
        assert union == compiled.kind_bits(kind)
        assert always == _unconditional_bits(rules, kind)


def test_operands_are_bound_not_pasted_into_the_source() -> None:
    rules = parse_rules(
        yaml.safe_load(
            """
version: 1
rules:
  - name: quoted
    within: 1m
    steps:
      - name: a
        where: {merchant_id: {eq: "x\\" or True or \\""}}
      - name: b
        where: {amount: {gt: 1}}
"""
        ),
        feature_rules=(),
    )
    compiled = CompiledRules(rules)
    event, row = _transaction(random.Random(1))
    assert compiled.mask(TRANSACTION, event, row) == _plain_mask(rules, TRANSACTION, event, row)
    event.merchant_id = 'x" or True or "'
    assert compiled.mask(TRANSACTION, event, row) & 1
