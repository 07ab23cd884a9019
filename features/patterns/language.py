"""The pattern language: typed rule objects, and YAML loaded into them, validated at load.

A ``RuleSet`` is versioned configuration (``rtml_pattern_rules``, default
``features/patterns/rules.yaml``). A ``Rule`` is a sequence of ``Step``s over one card's events
(transactions, and profile changes the card observes) that must all happen ``within`` a time
bound. Each step says which event kind it takes, the conditions (``where``) on the event's
fields or on its computed fraud features, how many events it takes (``times``), whether they
must be the next events of their kind (``contiguity: strict``) or may have others in between
(``relaxed``), or - with ``negated: true`` - that no such event may occur between its
neighbours ("not followed by"). docs/patterns.md has the semantics and examples.

Every mistake is reported at load with where it is (``rules[0] (card_testing).steps[1]...``) and
what was expected, all at once (``RuleError``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.definitions import (
    DAY_MS,
    FRAUD_CARD,
    HOUR_MS,
    MINUTE_MS,
    PATTERN_FEATURE_RULES,
    SECOND_MS,
)
from features.errors import FeatureError
from rtml.errors import ConfigError

EventKind = Literal["transaction", "profile_change"]
Op = Literal["lt", "le", "gt", "ge", "eq", "ne", "in", "not_in"]

MAX_WITHIN_MS = DAY_MS  # partial matches live at most this long: bounded state
MAX_RULES = 64
MAX_PREDICATES = 63  # distinct step conditions of a rule set: one bit each in a 64-bit mask

# The fields a condition may name, per event kind: "number" or "string".
TRANSACTION_FIELDS: dict[str, str] = {
    "amount": "number",
    "lat": "number",
    "lon": "number",
    "event_time": "number",
    "merchant_id": "string",
    "merchant_category": "string",
    "currency": "string",
    "channel": "string",
    "user_id": "string",
}
# Computed fraud features of the transaction (features/definitions.py), all numbers.
FEATURE_FIELDS: dict[str, str] = dict.fromkeys(FRAUD_CARD.names, "number")
PROFILE_CHANGE_FIELDS: dict[str, str] = {
    "home_moved_km": "number",  # haversine km from the previous home to the new one
    "home_lat": "number",
    "home_lon": "number",
    "account_age_days": "number",
    "segment": "string",
}
FIELDS: dict[str, dict[str, str]] = {
    "transaction": {**TRANSACTION_FIELDS, **FEATURE_FIELDS},
    "profile_change": PROFILE_CHANGE_FIELDS,
}

_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 1, "s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


class RuleError(FeatureError, ConfigError):
    """A rule set that cannot be used (configuration: the CLI exits 2). ``problems``: one line
    per mistake, with its location."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        lines = "\n  ".join(problems)
        super().__init__(f"invalid pattern rules in {source}:\n  {lines}")
        self.source = source
        self.problems = list(problems)


def parse_duration(value: object) -> int:
    """``"10m"``, ``"1h"``, ``"30s"``, ``"500ms"``, ``"1.5h"``, or an int of milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '10m', '1h' or milliseconds, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            ms = float(match.group(1)) * _UNITS[match.group(2)]
            if ms == int(ms):
                return int(ms)
    raise ValueError(f"expected a duration like '10m', '1h', '30s' or milliseconds, got {value!r}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(_Frozen):
    """``field op value``. A null value (a feature with nothing to compare) never satisfies it."""

    field: str = Field(min_length=1)
    op: Op
    value: float | int | str | tuple[float | int | str, ...]

    @model_validator(mode="after")
    def _check_value(self) -> Condition:
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, tuple) or not self.value:
                raise ValueError(f"{self.field} {self.op}: expects a non-empty list of values")
        elif isinstance(self.value, tuple):
            raise ValueError(f"{self.field} {self.op}: expects one value, got a list")
        return self


class Times(_Frozen):
    """How many events a step takes: at least ``min``, at most ``max`` (None: no limit)."""

    min: int = Field(default=1, ge=1, le=1000)
    max: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> Times:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Step(_Frozen):
    """One element of a sequence: which events it takes, how many, how close together."""

    name: str = Field(pattern=_NAME)
    event: EventKind = "transaction"
    where: tuple[Condition, ...] = ()
    times: Times = Times(min=1, max=1)
    contiguity: Literal["strict", "relaxed"] = "relaxed"
    negated: bool = False

    @field_validator("where", mode="before")
    @classmethod
    def _where_mapping(cls, value: Any) -> Any:
        """``{field: {op: value, ...}, ...}`` (the YAML form) -> a tuple of Conditions."""
        if isinstance(value, Mapping):
            conditions: list[Any] = []
            for field_name, ops in value.items():
                if not isinstance(ops, Mapping) or not ops:
                    raise ValueError(
                        f"{field_name}: expected a mapping of operators to values, like "
                        f"{{lt: 2.0}}, got {ops!r}"
                    )
                for op, operand in ops.items():
                    if isinstance(operand, list):
                        operand = tuple(operand)
                    conditions.append({"field": field_name, "op": op, "value": operand})
            return tuple(conditions)
        return value

    @field_validator("times", mode="before")
    @classmethod
    def _times_int(cls, value: Any) -> Any:
        """``times: 3`` means exactly three."""
        if isinstance(value, int) and not isinstance(value, bool):
            return {"min": value, "max": value}
        return value

    @model_validator(mode="after")
    def _check_fields(self) -> Step:
        known = FIELDS[self.event]
        problems = []
        for cond in self.where:
            kind = known.get(cond.field)
            if kind is None:
                problems.append(
                    f"unknown field {cond.field!r} for {self.event} events; known: "
                    + ", ".join(sorted(known))
                )
                continue
            values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
            if kind == "number":
                if any(isinstance(v, str) for v in values):
                    problems.append(f"{cond.field} is a number; got {cond.value!r}")
            else:
                if cond.op in ("lt", "le", "gt", "ge"):
                    problems.append(f"{cond.field} is a string: use eq, ne, in or not_in")
                elif any(not isinstance(v, str) for v in values):
                    problems.append(f"{cond.field} is a string; got {cond.value!r}")
        if self.negated and self.times != Times(min=1, max=1):
            problems.append("a negated step takes no count (times)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Rule(_Frozen):
    """A named sequence pattern per card, ``within`` a time bound from its first to last event.

    ``feature``: the rule's matched flag and count are model features (it must then be one of
    ``features.definitions.PATTERN_FEATURE_RULES``). ``alert``: each match goes to fraud-alerts.
    """

    name: str = Field(pattern=_NAME)
    description: str = ""
    within: int = Field(gt=0, le=MAX_WITHIN_MS)
    steps: tuple[Step, ...] = Field(min_length=1, max_length=16)
    alert: bool = False
    feature: bool = False

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> int:
        return parse_duration(value)

    @model_validator(mode="after")
    def _check_steps(self) -> Rule:
        steps = self.steps
        names = [s.name for s in steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"step names must be unique; repeated: {', '.join(dup)}")
        if steps[0].negated or steps[-1].negated:
            raise ValueError(
                "a negated step must stand between two steps (a leading or trailing "
                "'not followed by' would need timers; bound the sequence instead)"
            )
        last = steps[-1]
        if last.times.max is not None and last.times.max != last.times.min:
            raise ValueError(
                f"the last step ({last.name}) completes the match at its min-th event; "
                "give it times: N (or {min: N}), not a max"
            )
        return self


class RuleSet(_Frozen):
    """A versioned set of rules: the content of the rules file."""

    version: int = Field(ge=1)
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_RULES)

    @model_validator(mode="after")
    def _check(self) -> RuleSet:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dup)}")
        return self

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


DEFAULT_RULES_PATH = Path(__file__).with_name("rules.yaml")
"""The rules rtml ships (``rtml_pattern_rules`` defaults to it)."""


def parse_rules(
    data: object,
    source: str = "<rules>",
    *,
    feature_rules: Sequence[str] = PATTERN_FEATURE_RULES,
) -> RuleSet:
    """A ``RuleSet`` from plain data (parsed YAML), or ``RuleError`` listing every mistake.

    ``feature_rules``: the rules whose features the model takes (each must be defined, with
    ``feature: true``); tests of other rule sets may pass ``()``.
    """
    if not isinstance(data, Mapping):
        raise RuleError(source, [f"expected a mapping with 'version' and 'rules', got {data!r}"])
    try:
        rule_set = RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleError(source, _problems(exc, data)) from None
    from features.patterns.compiler import check_rule_set

    problems = check_rule_set(rule_set, feature_rules)
    if problems:
        raise RuleError(source, problems)
    return rule_set


@cache
def shipped_rules() -> RuleSet:
    """The rule set in ``DEFAULT_RULES_PATH``, loaded once per process."""
    return load_rules(DEFAULT_RULES_PATH)


def load_rules(
    path: Path = DEFAULT_RULES_PATH, *, feature_rules: Sequence[str] = PATTERN_FEATURE_RULES
) -> RuleSet:
    """Read and validate a rules YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_rules(data, str(path), feature_rules=feature_rules)


def _problems(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    """Pydantic's errors as ``where: what`` lines, rules named by index and name."""
    out = []
    for err in exc.errors(include_url=False):
        parts: list[str] = []
        loc = list(err["loc"])
        node: Any = data
        for i, item in enumerate(loc):
            if isinstance(item, int):
                name = ""
                if isinstance(node, Sequence) and 0 <= item < len(node):
                    node = node[item]
                    if isinstance(node, Mapping) and isinstance(node.get("name"), str):
                        name = f" ({node['name']})"
                else:
                    node = None
                if parts:
                    parts[-1] += f"[{item}]{name}"
                else:
                    parts.append(f"[{item}]{name}")
            else:
                node = node.get(item) if isinstance(node, Mapping) else None
                if i and str(item).startswith(("function-", "tagged-union")):
                    continue
                parts.append(str(item))
        where = ".".join(parts) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/patterns.md)"
        elif err["type"] == "missing":
            message = "required"
        out.append(f"{where}: {message}")
    return out
