"""Rulebook validation (file:line reasons) and the alert lifecycle."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from monitor.errors import RulebookError
from rules.lifecycle import RuleState, alert_id, evaluate_subject
from rules.rulebook import parse_duration, parse_rulebook, render_summary

GOOD = """\
rulebook: t
version: 3
rules:
  - id: low
    scope: loan
    severity: warning
    when: loan.coverage_ratio < loan.thresholds.warning
    for: 30m
    resolve_when: loan.coverage_ratio >= loan.thresholds.warning + 0.05
  - id: very-low
    scope: loan
    severity: critical
    when: loan.coverage_ratio < loan.thresholds.margin_call
    inhibits: [low]
"""


def facts(cov: float, now: float = 0.0) -> dict:  # type: ignore[type-arg]
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return {
        "loan": {"coverage_ratio": cov, "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1}},
        "window": {"start": t, "end": t},
        "now": t,
    }


def problems(text: str) -> list[str]:
    with pytest.raises(RulebookError) as info:
        parse_rulebook(textwrap.dedent(text), "book.yaml")
    return info.value.problems


def test_rules_check__default_rulebook_is_valid(rulebook) -> None:  # type: ignore[no-untyped-def]
    assert {r.id for r in rulebook.rules} >= {
        "coverage-below-warning",
        "coverage-below-margin-call",
        "coverage-below-close-out",
        "feed-silent",
        "quality-below-floor",
        "anomaly-persisting",
        "activity-drift-down",
    }


@pytest.mark.parametrize(
    ("snippet", "line", "needle"),
    [
        ("    when: loan.coverage_ratio <\n", 5, "CEL syntax error"),
        ("    when: loan.nonexistent < 1.0\n", 5, "does not exist"),
        ("    when: loan.coverage_ratio < 'x'\n", 5, "type error"),
        ("    when: loan.coverage_ratio\n", 5, "expected bool"),
        ("    when: loan.coverage_ratio < 1.0\n    severity: urgent\n", 6, "severity"),
        ("    when: loan.coverage_ratio < 1.0\n    for: soon\n", 6, "duration"),
        ("    when: loan.coverage_ratio < 1.0\n    inhibits: [ghost]\n", 4, "ghost"),
        ("    when: loan.coverage_ratio < 1.0\n    colour: red\n", 6, "unknown key"),
        ("    when: asset.quality_score < 0.5\n", 5, "does not exist for scope 'loan'"),
    ],
)
def test_rules_check__each_problem_has_file_line_and_reason(snippet: str, line: int, needle: str) -> None:
    text = "rulebook: t\nversion: 1\nrules:\n  - id: r1\n" + snippet
    found = problems(text)
    assert any(p.startswith(f"book.yaml:{line}:") and needle in p for p in found), found


def test_rules_check__duplicate_ids_and_yaml_errors() -> None:
    dup = "rulebook: t\nversion: 1\nrules:\n  - id: a\n    when: true\n  - id: a\n    when: true\n"
    assert any("duplicate rule id 'a'" in p and p.startswith("book.yaml:6:") for p in problems(dup))
    assert problems("rulebook: [\n")[0].startswith("book.yaml:")


def test_parse_duration__units() -> None:
    assert parse_duration("0s") == 0.0
    assert parse_duration("2d") == 172800.0
    with pytest.raises(ValueError):
        parse_duration("1w")


def test_render_summary__filters() -> None:
    assert render_summary("{{ loan.v | yuan }}", {"loan": {"v": 1234567.4}}) == "¥1,234,567"


def test_lifecycle__pending_for_then_firing_once_then_resolved_with_hysteresis() -> None:
    rb = parse_rulebook(GOOD)
    states: dict[str, RuleState] = {}
    seen = []
    for t, cov in [(0, 1.25), (600, 1.24), (1800, 1.25), (2400, 1.26), (3000, 1.31), (3600, 1.36), (4200, 1.36)]:
        seen += [(tr.rule.id, tr.status, tr.at) for tr in evaluate_subject(rb, "loan", "L1", facts(cov, t), states, t)]
    # pending from t=0, fires at 30 min, stays firing at 1.31 (hysteresis band), resolves at 1.36
    assert seen == [("low", "firing", 1800), ("low", "resolved", 3600)]


def test_lifecycle__inhibitor_keeps_lesser_rule_from_firing() -> None:
    rb = parse_rulebook(GOOD)
    states: dict[str, RuleState] = {}
    out = evaluate_subject(rb, "loan", "L1", facts(1.1, 0), states, 0)
    out += evaluate_subject(rb, "loan", "L1", facts(1.1, 3600), states, 3600)
    assert [(t.rule.id, t.status) for t in out] == [("very-low", "firing")]


def test_lifecycle__runtime_error_marks_rule_errored_and_others_keep_working() -> None:
    text = GOOD + "  - id: plain\n    scope: loan\n    when: loan.coverage_ratio < 1.15\n"
    rb = parse_rulebook(text)

    class Sensor:
        def __init__(self) -> None:
            self.errors: list[str] = []

        def on_rule_error(self, rule_id: str) -> None:
            self.errors.append(rule_id)

    sensor = Sensor()
    states: dict[str, RuleState] = {}
    t = dt.datetime.fromtimestamp(0, dt.UTC)
    missing_lines = {"loan": {"coverage_ratio": 1.1}, "window": {"start": t, "end": t}, "now": t}
    out = evaluate_subject(rb, "loan", "L1", missing_lines, states, 0, sensor)
    # each failing rule raises its rule-evaluation-error episode (case C27); the working rule fires as usual
    assert [(tr.rule.id, tr.status, tr.error is not None) for tr in out] == [
        ("very-low", "firing", True),
        ("low", "firing", True),
        ("plain", "firing", False),
    ]
    assert sorted(sensor.errors) == ["low", "very-low"]
    assert states["low|L1"].errored and states["very-low|L1"].errored and not states["plain|L1"].errored
    # the same failure at the next evaluation is the same episode; once the facts are whole it resolves
    assert [tr.rule.id for tr in evaluate_subject(rb, "loan", "L1", missing_lines, states, 60, sensor)] == []
    out = evaluate_subject(rb, "loan", "L1", facts(1.1, 120), states, 120, sensor)
    assert [(tr.rule.id, tr.status, tr.error) for tr in out if tr.error is not None] == [
        ("very-low", "resolved", ""),
        ("low", "resolved", ""),
    ]


def test_alert_id__deterministic_and_distinct_per_episode() -> None:
    assert alert_id("L1", "r", "L1", 100.0) == alert_id("L1", "r", "L1", 100.0)
    assert alert_id("L1", "r", "L1", 100.0) != alert_id("L1", "r", "L1", 200.0)


def test_lifecycle__a_shadow_rule_inhibits_nothing() -> None:
    rb = parse_rulebook(GOOD.replace("    inhibits: [low]\n", "    inhibits: [low]\n    mode: shadow\n"))
    states: dict[str, RuleState] = {}
    out = evaluate_subject(rb, "loan", "L1", facts(1.1, 0), states, 0)
    out += evaluate_subject(rb, "loan", "L1", facts(1.1, 3600), states, 3600)
    assert sorted((t.rule.id, t.rule.shadow) for t in out) == [("low", False), ("very-low", True)]
