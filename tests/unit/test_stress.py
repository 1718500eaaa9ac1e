"""``pledgewatch stress``: shocked values follow the valuation formula, coverage falls monotonically."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from monitor.backtest import load_loan_book, pledged_assets, read_telemetry, run_backtest
from monitor.cli import app
from monitor.errors import ConfigError
from monitor.stress import Shock, shocked_value, stress
from rules.rulebook import load_rulebook
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def portfolio():  # type: ignore[no-untyped-def]
    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    sample = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
    res = run_backtest(
        book, read_telemetry(sample, pledged_assets(book)), load_rulebook(ROOT / "rules/rulebooks/default.yaml")
    )
    return {s.loan_id: s for s in res.of("loan-risk")}, {v.asset_id: v for v in res.valuations}


def test_stress__no_shock_changes_nothing_and_a_shock_follows_the_formula(portfolio) -> None:  # type: ignore[no-untyped-def]
    loans, vals = portfolio
    for r in stress(loans.values(), vals, Shock()):
        assert r.collateral_after == pytest.approx(r.collateral_before) and r.line_after == r.line_before
    v = vals["akl-routes-9xx"]
    got = shocked_value(v, Shock(activity_drop=0.3, quality_drop=0.1))
    want = v.appraisal_value * min(v.activity_index * 0.7, 1.0) * min(v.quality_score * 0.9 / v.quality_baseline, 1.0)
    assert got == pytest.approx(want) and got < v.value


def test_stress__a_shock_on_one_asset_moves_only_its_loan(portfolio) -> None:  # type: ignore[no-untyped-def]
    loans, vals = portfolio
    res = {r.loan_id: r for r in stress(loans.values(), vals, Shock(0.5, 0.0, frozenset({"akl-routes-7xx"})))}
    assert res["L-AKL-002"].crosses and res["L-AKL-002"].line_after in {"margin_call", "close_out"}
    assert res["L-AKL-002"].required_top_up_collateral > 0
    for other in ("L-AKL-001", "L-AKL-003"):
        assert res[other].collateral_after == pytest.approx(res[other].collateral_before)


@settings(max_examples=30, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_property__a_bigger_drop_never_raises_coverage(portfolio, a: float, b: float, q: float) -> None:  # type: ignore[no-untyped-def]
    loans, vals = portfolio
    lo, hi = sorted((a, b))
    small = {r.loan_id: r.coverage_after for r in stress(loans.values(), vals, Shock(lo, q))}
    big = {r.loan_id: r.coverage_after for r in stress(loans.values(), vals, Shock(hi, q))}
    assert all(big[k] <= small[k] + 1e-12 for k in small)


def test_shock__drops_outside_0_1_are_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"activity_drop: got 30.0, expected a ratio between 0 and 1"):
        Shock(activity_drop=30.0)


def test_stress_cli__json_lists_every_loan_with_the_line_it_would_cross() -> None:
    out = CliRunner().invoke(app, ["stress", "--activity-drop", "0.3", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {r["loan_id"] for r in rows} == {"L-AKL-001", "L-AKL-002", "L-AKL-003"}
    assert all(r["crosses"] and r["coverage_after"] < r["coverage_before"] for r in rows)
    # amounts exact to the fen, as every message writes them (C26): at most two decimals
    amounts = [r[k] for r in rows for k in ("outstanding", "collateral_before", "collateral_after")]
    assert all(round(x, 2) == x for x in amounts), amounts
    bad = CliRunner().invoke(app, ["stress", "--source", "nowhere"])
    assert bad.exit_code == 1 and "source: got 'nowhere', expected 'backtest' or 'topics'" in bad.output
    # a misspelled asset is refused, never read as a portfolio that survives the shock
    typo = CliRunner().invoke(app, ["stress", "--activity-drop", "0.3", "--asset", "akl-routes-7XX"])
    assert typo.exit_code == 1 and "asset: got akl-routes-7XX, expected a pledged asset: akl-routes-" in typo.output


def test_stress_written_to_a_pipe_never_cuts_a_number() -> None:
    """Issue 20 point 3: piped, rich assumed 80 columns and cut yuan amounts ('¥1,872,6…')."""
    import re

    from typer.testing import CliRunner

    from monitor.cli import app

    out = CliRunner().invoke(app, ["stress", "--activity-drop", "0.5"])  # CliRunner's output is not a terminal
    assert out.exit_code == 0, out.output
    assert "…" not in out.output
    amounts = re.findall(r"¥[\d,]+", out.output)
    assert len(amounts) >= 6 and all(len(a) > 2 for a in amounts)
    assert "top-up (collateral)" in out.output and "or repayment" in out.output  # headers whole too
