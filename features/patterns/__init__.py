"""Complex event patterns: declarative per-card sequence rules, as features and alerts.

``language`` (the rule objects, YAML loading, validation), ``compiler`` (rules to bit masks),
``nfa`` (one rule's step over a card's runs), ``engine`` (``PatternEngine``: keyed state,
out-of-order handling, serialization). Rules: ``rules.yaml`` here, or ``rtml_pattern_rules``.
docs/patterns.md describes the language and its semantics.
"""

from features.patterns.compiler import CompiledRules
from features.patterns.engine import PatternBatch, PatternEngine, PatternMatch
from features.patterns.language import (
    DEFAULT_RULES_PATH,
    Condition,
    Rule,
    RuleError,
    RuleSet,
    Step,
    Times,
    load_rules,
    parse_rules,
    shipped_rules,
)
from features.patterns.state import PATTERN_KEY_PREFIX, PATTERN_META_KEY

__all__ = [
    "DEFAULT_RULES_PATH",
    "PATTERN_KEY_PREFIX",
    "PATTERN_META_KEY",
    "CompiledRules",
    "Condition",
    "PatternBatch",
    "PatternEngine",
    "PatternMatch",
    "Rule",
    "RuleError",
    "RuleSet",
    "Step",
    "Times",
    "load_rules",
    "parse_rules",
    "shipped_rules",
]
