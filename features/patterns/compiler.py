"""Rules compiled for the per-event path: each distinct step condition becomes one bit.

An event's conditions are evaluated once, when it is processed, into a bit mask (bit j set when
predicate j holds); the NFA then only tests bits. The masks are what the keyed state buffers,
so they are tied to the rule set: ``fingerprint`` identifies it in the serialized state.
"""

from __future__ import annotations

import hashlib
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

_OPS: dict[str, str] = {  # a condition's op as a Python comparison
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "eq": "==",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
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


class CompiledRules:
    """A ``RuleSet`` ready to run: rules with bit masks, and the per-kind predicate checks."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.fingerprint = hashlib.sha256(rule_set.model_dump_json().encode()).hexdigest()[:16]
        keys: dict[tuple[int, tuple[Condition, ...]], int] = {}
        # Per kind: (bit, the step's conditions) of each distinct predicate.
        self._predicates: tuple[list[tuple[int, tuple[Condition, ...]]], ...] = ([], [])
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
                    self._predicates[kind].append((bit, step.where))
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
        self._masks = tuple(
            _mask_function(kind, predicates) for kind, predicates in enumerate(self._predicates)
        )
        self.max_within = max((r.within for r in self.rules), default=0)
        self.uses_profile_changes = any(
            s.kind == PROFILE_CHANGE or s.kill & self.kind_bits(PROFILE_CHANGE)
            for r in self.rules
            for s in r.steps
        )

    def kind_bits(self, kind: int) -> int:
        bits = 0
        for bit, _ in self._predicates[kind]:
            bits |= bit
        return bits

    def mask(self, kind: int, event: Any, row: Any) -> int:
        """The bits of the predicates ``event`` satisfies (null values satisfy nothing)."""
        return self._masks[kind](event, row)

    def mask_function(self, kind: int) -> Callable[[Any, Any], int]:
        """``mask`` for one kind, without the dispatch: for the per-event loop."""
        return self._masks[kind]


def _mask_function(
    kind: int, predicates: Sequence[tuple[int, tuple[Condition, ...]]]
) -> Callable[[Any, Any], int]:
    """A function ``(event, row) -> mask`` for the predicates of one event kind.

    Generated as straight-line Python: each field is read once, each condition is one
    comparison, and the operands are bound by name (never pasted into the source), so the
    per-event cost is a few bytecodes per condition instead of a call per check. Field names
    come from the language's closed field lists (identifiers), row indexes are ints.
    """
    names: dict[str, Any] = {}
    fields: dict[str, str] = {}  # field -> local variable holding its value
    lines: list[str] = []
    body: list[str] = []
    for bit, where in predicates:
        if not where:
            body.append(f"    m |= {bit}")
            continue
        tests = []
        for cond in where:
            var = fields.get(cond.field)
            if var is None:
                var = fields[cond.field] = f"v{len(fields)}"
                if kind == TRANSACTION and cond.field not in TRANSACTION_FIELDS:
                    lines.append(f"    {var} = row[{_ROW_INDEX[cond.field]:d}]")
                else:
                    if not cond.field.isidentifier():
                        raise ValueError(f"field {cond.field!r} is not a name")
                    lines.append(f"    {var} = event.{cond.field}")
            operand: Any = cond.value
            if cond.op in ("in", "not_in"):
                operand = frozenset(operand)
            name = f"c{len(names)}"
            names[name] = operand
            tests.append(f"{var} is not None and {var} {_OPS[cond.op]} {name}")
        body.append(f"    if {' and '.join(tests)}:")
        body.append(f"        m |= {bit}")
    source = "\n".join(["def mask(event, row):", *lines, "    m = 0", *body, "    return m", ""])
    exec(compile(source, f"<pattern masks, kind {kind}>", "exec"), names)
    mask: Callable[[Any, Any], int] = names["mask"]
    return mask


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
