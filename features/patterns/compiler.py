"""Rules compiled for the per-event path: each distinct step condition becomes one bit.

An event's conditions are evaluated once, when it is processed, into a bit mask (bit j set when
predicate j holds); the NFA then only tests bits. The masks are what the keyed state buffers,
so they are tied to the rule set: ``fingerprint`` identifies it in the serialized state.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from features.definitions import FRAUD_CARD, PATTERN_FEATURE_RULES
from features.patterns.language import (
    MAX_PREDICATES,
    TRANSACTION_FIELDS,
    Condition,
    EventKind,
    RuleSet,
)

TRANSACTION = 0
PROFILE_CHANGE = 1
KIND_CODES: dict[EventKind, int] = {"transaction": TRANSACTION, "profile_change": PROFILE_CHANGE}
UNBOUNDED = 1 << 30  # times.max when there is none

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
    "in": lambda value, options: value in options,
    "not_in": lambda value, options: value not in options,
}
_ROW_INDEX = {name: i for i, name in enumerate(FRAUD_CARD.names)}


@dataclass(frozen=True, slots=True)
class CompiledStep:
    """A positive step. ``kill``: predicates of the negated steps just before it."""

    kind: int
    bit: int
    min: int
    max: int
    strict: bool
    kill: int


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    within: int
    steps: tuple[CompiledStep, ...]
    alert: bool
    feature: bool


# A compiled condition: (getter, test, operand). Getters take (event, row) for transactions
# and (change, None) for profile changes.
_Check = tuple[Callable[[Any, Any], Any], Callable[[Any, Any], bool], Any]


class CompiledRules:
    """A ``RuleSet`` ready to run: rules with bit masks, and the per-kind predicate checks."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.fingerprint = hashlib.sha256(rule_set.model_dump_json().encode()).hexdigest()[:16]
        keys: dict[tuple[int, tuple[Condition, ...]], int] = {}
        self._checks: tuple[list[tuple[int, list[_Check]]], ...] = ([], [])
        rules = []
        for rule in rule_set.rules:
            steps: list[CompiledStep] = []
            kill = 0
            for step in rule.steps:
                kind = KIND_CODES[step.event]
                key = (kind, step.where)
                bit = keys.get(key)
                if bit is None:
                    bit = keys[key] = 1 << len(keys)
                    if len(keys) > MAX_PREDICATES:
                        raise ValueError(f"more than {MAX_PREDICATES} distinct step conditions")
                    self._checks[kind].append((bit, [_compile(kind, c) for c in step.where]))
                if step.negated:
                    kill |= bit
                    continue
                high = UNBOUNDED if step.times.max is None else step.times.max
                steps.append(
                    CompiledStep(kind, bit, step.times.min, high, step.contiguity == "strict", kill)
                )
                kill = 0
            rules.append(
                CompiledRule(rule.name, rule.within, tuple(steps), rule.alert, rule.feature)
            )
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.max_within = max((r.within for r in self.rules), default=0)
        self.uses_profile_changes = any(
            s.kind == PROFILE_CHANGE or s.kill & self.kind_bits(PROFILE_CHANGE)
            for r in self.rules
            for s in r.steps
        )

    def kind_bits(self, kind: int) -> int:
        bits = 0
        for bit, _ in self._checks[kind]:
            bits |= bit
        return bits

    def mask(self, kind: int, event: Any, row: Any) -> int:
        """The bits of the predicates ``event`` satisfies (null values satisfy nothing)."""
        mask = 0
        for bit, checks in self._checks[kind]:
            for get, test, operand in checks:
                value = get(event, row)
                if value is None or not test(value, operand):
                    break
            else:
                mask |= bit
        return mask


def _compile(kind: int, cond: Condition) -> _Check:
    name = cond.field
    getter: Callable[[Any, Any], Any]
    if kind == TRANSACTION and name not in TRANSACTION_FIELDS:
        index = _ROW_INDEX[name]
        getter = lambda _event, row: row[index]  # noqa: E731
    else:
        getter = lambda event, _row: getattr(event, name)  # noqa: E731
    operand: Any = cond.value
    if cond.op in ("in", "not_in"):
        operand = frozenset(operand)
    return getter, _OPS[cond.op], operand


def check_rule_set(
    rule_set: RuleSet, feature_rules: Sequence[str] = PATTERN_FEATURE_RULES
) -> list[str]:
    """Problems a rule set has beyond its own shape: the model's feature rules, the bit budget."""
    problems = []
    flagged = {r.name for r in rule_set.rules if r.feature}
    for name in feature_rules:
        if name not in flagged:
            problems.append(
                f"rules: the fraud model's input has the features of rule {name!r} "
                "(features/definitions.py PATTERN_FEATURE_RULES); define it with feature: true"
            )
    for i, rule in enumerate(rule_set.rules):
        if rule.feature and rule.name not in feature_rules:
            problems.append(
                f"rules[{i}] ({rule.name}).feature: not a model feature; features are fixed by "
                "features/definitions.py PATTERN_FEATURE_RULES (a model input change: add it "
                "there and bump FEATURE_SET_VERSION), or use alert: true only"
            )
    try:
        CompiledRules(rule_set)
    except ValueError as exc:
        problems.append(f"rules: {exc}")
    return problems
