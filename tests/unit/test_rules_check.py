"""``pledgewatch rules check``: one broken rulebook per error kind, each with its line and message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app

HEAD = "rulebook: t\nversion: 1\nrules:\n"
RULE = "  - id: r1\n    scope: loan\n    severity: warning\n    when: loan.coverage_ratio < 1.3\n"

CASES = [
    ("yaml-error", "rulebook: [\n", 2, "YAML error"),
    ("not-a-mapping", "- just a list\n", 1, "expected a mapping"),
    ("unknown-top-key", "rulebook: t\nversion: 1\nowner: me\nrules: []\n", 3, "unknown key 'owner'"),
    ("missing-version", "rulebook: t\nrules: []\n", 1, "version: got None"),
    ("rules-not-a-list", HEAD.replace("rules:\n", "rules: 3\n"), 3, "expected a list of rules"),
    ("unknown-rule-key", HEAD + RULE + "    colour: red\n", 8, "unknown key 'colour'"),
    ("duplicate-id", HEAD + RULE + RULE, 8, "duplicate rule id 'r1'"),
    ("unknown-severity", HEAD + RULE.replace("severity: warning", "severity: urgent"), 6, "severity: got 'urgent'"),
    ("unknown-scope", HEAD + RULE.replace("scope: loan", "scope: borrower"), 5, "scope: got 'borrower'"),
    ("unknown-action", HEAD + RULE + "    action: page_me\n", 8, "action: got 'page_me'"),
    (
        "margin-call-on-asset",
        HEAD
        + RULE.replace("scope: loan", "scope: asset").replace("loan.coverage_ratio", "asset.quality_score")
        + "    action: margin_call\n",
        8,
        "needs scope 'loan'",
    ),
    ("cel-syntax", HEAD + RULE.replace("< 1.3", "<"), 7, "CEL syntax error"),
    (
        "unknown-fact",
        HEAD + RULE.replace("coverage_ratio", "coverage_ration"),
        7,
        "refers to fact 'coverage_ration' that does not exist",
    ),
    (
        "fact-of-other-scope",
        HEAD + RULE.replace("loan.coverage_ratio", "asset.quality_score"),
        7,
        "refers to fact 'asset' that does not exist for scope 'loan'",
    ),
    ("type-error", HEAD + RULE.replace("< 1.3", "< 'low'"), 7, "type error"),
    ("not-bool", HEAD + RULE.replace(" < 1.3", ""), 7, "expected bool"),
    ("bad-resolve-when", HEAD + RULE + "    resolve_when: loan.nope > 1.0\n", 8, "resolve_when: refers to fact 'nope'"),
    ("inhibits-unknown", HEAD + RULE + "    inhibits: [ghost]\n", 4, "rule 'ghost' does not exist"),
    ("bad-for", HEAD + RULE + "    for: soon\n", 8, "for: got 'soon'"),
    ("bad-keep-firing-for", HEAD + RULE + "    keep_firing_for: 5 minutes\n", 8, "keep_firing_for: got '5 minutes'"),
    ("unknown-mode", HEAD + RULE + "    mode: canary\n", 8, "mode: got 'canary'"),
    (
        "summary-unknown-fact",
        HEAD + RULE + "    summary: 'cov {{ loan.cov | pct }}'\n",
        8,
        "placeholder names fact 'cov'",
    ),
]


@pytest.mark.parametrize(("kind", "text", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_rules_check__rejects_each_error_kind_with_line_and_reason(
    kind: str, text: str, line: int, message: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["rules", "check", str(path)])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert any(ln.startswith(f"{path}:{line}:") and message in ln for ln in lines), lines


def test_rules_check__valid_rulebook_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(HEAD + RULE)
    result = CliRunner().invoke(app, ["rules", "check", str(path)])
    assert result.exit_code == 0 and "1 rules OK" in result.output


def test_rules_check__a_summary_is_named_by_the_language_it_was_written_in_and_a_missing_file_has_no_line(
    tmp_path: Path,
) -> None:
    """Issue 20: an English-only summary was reported as '(zh)' too; a missing file at line 0."""
    runner = CliRunner()
    f = tmp_path / "rb.yaml"
    f.write_text(HEAD + RULE + '    summary:\n      en: "cov {{ loan.coverage_ratoi | pct }}"\n')
    out = runner.invoke(app, ["rules", "check", str(f)])
    assert out.exit_code == 1
    text = " ".join(out.output.split())
    assert "summary (en): placeholder names fact 'coverage_ratoi'" in text and "(zh)" not in text
    f.write_text(HEAD + RULE + '    summary: "cov {{ loan.coverage_ratoi | pct }}"\n')
    text = " ".join(runner.invoke(app, ["rules", "check", str(f)]).output.split())
    assert text.count("placeholder names fact") == 1 and "summary: placeholder" in text  # one text: one problem
    missing = tmp_path / "nonexistent.yaml"
    text = " ".join(runner.invoke(app, ["rules", "check", str(missing)]).output.split())
    assert f"{missing}: cannot read rulebook" in text and ":0:" not in text
