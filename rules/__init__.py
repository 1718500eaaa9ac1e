"""The rules engine: rulebook loading and validation, evaluation and alert lifecycle."""

from rules.lifecycle import RuleState, Transition, alert_id, evaluate_subject
from rules.rulebook import Rule, Rulebook, load_rulebook, parse_rulebook

__all__ = [
    "Rule",
    "RuleState",
    "Rulebook",
    "Transition",
    "alert_id",
    "evaluate_subject",
    "load_rulebook",
    "parse_rulebook",
]
