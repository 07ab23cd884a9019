"""The rule language: the shipped rules load, Python objects equal their YAML, and every kind of
bad rule is refused at load with where it is and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from features.definitions import HOUR_MS, MINUTE_MS, PATTERN_FEATURE_RULES
from features.patterns import (
    DEFAULT_RULES_PATH,
    Condition,
    Rule,
    RuleError,
    RuleSet,
    Step,
    Times,
    load_rules,
    parse_rules,
)
from features.patterns.language import parse_duration
from rtml.settings import Settings


def test_the_shipped_rules_load_and_are_the_default_setting() -> None:
    rules = load_rules()
    assert Settings().rtml_pattern_rules == DEFAULT_RULES_PATH
    assert [r.name for r in rules.rules] == list(PATTERN_FEATURE_RULES)
    card_testing = rules.rule("card_testing")
    assert card_testing.within == 10 * MINUTE_MS
    assert card_testing.steps[0].times == Times(min=3, max=None)
    assert card_testing.steps[0].where == (Condition(field="amount", op="lt", value=2.0),)
    assert rules.rule("account_takeover").steps[0].event == "profile_change"
    assert rules.rule("impossible_travel").steps[1].contiguity == "strict"


def test_python_objects_equal_the_yaml_form() -> None:
    in_python = RuleSet(
        version=3,
        rules=(
            Rule(
                name="card_testing",
                within=10 * MINUTE_MS,
                feature=True,
                steps=(
                    Step(
                        name="probes",
                        where=(Condition(field="amount", op="lt", value=2.0),),
                        times=Times(min=3),
                    ),
                    Step(name="cashout", where=(Condition(field="amount", op="gt", value=200.0),)),
                ),
            ),
        ),
    )
    text = """
version: 3
rules:
  - name: card_testing
    within: 10m
    feature: true
    steps:
      - {name: probes, where: {amount: {lt: 2.0}}, times: {min: 3}}
      - {name: cashout, where: {amount: {gt: 200.0}}}
"""
    from_yaml = parse_rules(yaml.safe_load(text), feature_rules=("card_testing",))
    assert from_yaml == in_python


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("10m", 600_000), ("1h", HOUR_MS), ("1.5h", 5_400_000)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms
    assert parse_duration(ms) == ms


def rule(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "r",
        "within": "10m",
        "steps": [
            {"name": "a", "where": {"amount": {"lt": 2.0}}},
            {"name": "b", "where": {"amount": {"gt": 200.0}}},
        ],
    }
    base.update(overrides)
    return base


def problems(*rules: dict[str, Any], **top: Any) -> str:
    data = {"version": 1, "rules": list(rules), **top}
    with pytest.raises(RuleError) as info:
        parse_rules(data, "test.yaml", feature_rules=())
    assert str(info.value).startswith("invalid pattern rules in test.yaml:")
    return str(info.value)


def test_unknown_field_names_the_step_and_the_known_fields() -> None:
    message = problems(rule(steps=[{"name": "a", "where": {"amout": {"lt": 2}}}]))
    assert "rules[0] (r).steps[0] (a)" in message
    assert "unknown field 'amout' for transaction events" in message
    assert "amount" in message and "speed_from_last_transaction_kmh" in message


def test_type_errors_in_conditions() -> None:
    message = problems(
        rule(
            steps=[
                {"name": "a", "where": {"amount": {"lt": "two"}}},
                {"name": "b", "where": {"channel": {"gt": "online"}}},
                {"name": "c", "where": {"channel": {"in": []}}},
                {"name": "d", "where": {"amount": {"about": 3}}},
            ]
        )
    )
    assert "amount is a number; got 'two'" in message
    assert "channel is a string: use eq, ne, in or not_in" in message
    assert "channel in: expects a non-empty list of values" in message
    assert "steps[3] (d).where[0].op: Input should be 'lt', 'le'" in message


def test_profile_change_fields_are_not_transaction_fields() -> None:
    message = problems(
        rule(steps=[{"name": "a", "event": "profile_change", "where": {"amount": {"gt": 1}}}])
    )
    assert "unknown field 'amount' for profile_change events" in message
    assert "home_moved_km" in message


def test_structure_errors() -> None:
    assert "a negated step must stand between two steps" in problems(
        rule(steps=[{"name": "a", "negated": True}, {"name": "b"}])
    )
    assert "a negated step must stand between two steps" in problems(
        rule(steps=[{"name": "a"}, {"name": "b", "negated": True}])
    )
    assert "step names must be unique; repeated: a" in problems(
        rule(steps=[{"name": "a"}, {"name": "a"}])
    )
    assert "completes the match at its min-th event" in problems(
        rule(steps=[{"name": "a"}, {"name": "b", "times": {"min": 1, "max": 3}}])
    )
    assert "max (2) must be >= min (3)" in problems(
        rule(steps=[{"name": "a", "times": {"min": 3, "max": 2}}, {"name": "b"}])
    )
    assert "a negated step takes no count" in problems(
        rule(steps=[{"name": "a"}, {"name": "n", "negated": True, "times": 2}, {"name": "b"}])
    )
    assert "rules[0] (r).steps: Tuple should have at least 1 item" in problems(rule(steps=[]))
    assert "rule names must be unique; repeated: r" in problems(rule(), rule())


def test_bad_values_and_typos_are_located() -> None:
    message = problems(rule(within="ten minutes"), rule(name="Bad Name"), rule(name="x", wehre={}))
    assert "rules[0] (r).within: expected a duration like '10m'" in message
    assert "rules[1] (Bad Name).name: String should match pattern" in message
    assert "rules[2] (x).wehre: unknown key" in message
    assert "rules[0] (r).within" in problems(rule(within="2d"))  # more than a day
    assert "version: Input should be a valid integer" in problems(rule(), version="one")
    with pytest.raises(RuleError, match="version: required"):
        parse_rules({"rules": []}, feature_rules=())


def test_the_models_feature_rules_must_be_defined() -> None:
    with pytest.raises(RuleError, match="has the features of rule 'card_testing'"):
        parse_rules({"version": 1, "rules": [rule()]}, feature_rules=("card_testing",))
    with pytest.raises(RuleError, match=r"rules\[0\] \(r\).feature: not a model feature"):
        parse_rules({"version": 1, "rules": [rule(feature=True)]}, feature_rules=())


def test_files_that_are_not_rules(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [\n")
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rules(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(RuleError, match="expected a mapping with 'version' and 'rules'"):
        load_rules(bad)
