"""Field cases of the third reliability round (``../shared/cases/CASES.md``: C22–C27, issue 21).

Each test is named after its case and asserts the right value the case states; each fails on 76a1efa.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.backtest import BacktestResult, load_loan_book, pledged_assets, read_telemetry, run_backtest
from monitor.sources.auckland import Poll, events_from_polls
from tests.conftest import shared_path


def case_input(name: str) -> Path:
    """A file of ``../shared/cases/inputs`` (skips off CI when ../shared is absent, fails under CI=true)."""
    return shared_path("cases", "inputs", name)


def run_case(name: str, rulebook: Any) -> BacktestResult:
    """``pledgewatch backtest --telemetry inputs/<name> --loan-book inputs/loan-book-c22-c24.jsonl``, in-process."""
    book = load_loan_book(case_input("loan-book-c22-c24.jsonl"))
    return run_backtest(book, read_telemetry(case_input(name), pledged_assets(book), book), rulebook)


def dead_letters(result: BacktestResult) -> list[str]:
    return [o.message.reason for o in result.outputs if o.topic == "dead-letter"]


def test_case_c22_a_cancelled_trip_is_never_service(rulebook: Any) -> None:
    result = run_case("c22-canceled-trip.jsonl.gz", rulebook)
    first = result.valuations[0]
    assert first.activity == 1.0  # T1 ran and left; T2 was CANCELED throughout (2.0 on 76a1efa)
    assert sum(v.activity for v in result.valuations) == 1.0
    assert dead_letters(result) == []


def test_case_c23_the_runs_of_a_frequency_based_trip_are_two_trips(rulebook: Any) -> None:
    result = run_case("c23-frequency-trips.jsonl.gz", rulebook)
    assert sum(v.activity for v in result.valuations) == 2.0  # one completion on 76a1efa
    # two runs of one trip_id are not each other's contradictions (stop 5 then stop 1 is two buses)
    assert all(v.quality["consistency"] == v.quality["normativity"] for v in result.valuations)
    assert dead_letters(result) == []


def test_case_c24_a_poll_whose_header_time_is_0_keeps_its_trips_and_counts_as_a_defect(rulebook: Any) -> None:
    result = run_case("c24-header-timestamp-zero.jsonl.gz", rulebook)
    assert sum(v.activity for v in result.valuations) == 2.0  # 1 on 76a1efa
    assert dead_letters(result) == []  # 3 implausible_time on 76a1efa
    # the defect is visible: the window holding the poll is less accurate than its other dimensions
    first = result.valuations[0]
    assert first.quality["accuracy"] < first.quality["normativity"]


def _poll(ts: float | None, *trips: dict[str, Any]) -> Poll:
    return Poll(
        ts,
        [
            {
                "trip_update": {
                    "trip": {"route_id": "27401-x", **t},
                    "timestamp": (ts or 1_000_000.0) - 5,
                    "stop_time_update": {"stop_sequence": 3, "departure": {"delay": 30}},
                }
            }
            for t in trips
        ],
    )


def _kinds(polls: list[Poll]) -> list[tuple[str, str]]:
    evs = events_from_polls(polls, {"akl-routes-2xx"})
    return [(e.kind, e.event_id) for e in evs if e.kind in ("trip_completed", "trip_cancelled")]


def test_case_c22_schedule_relationships_follow_the_gtfs_realtime_reference() -> None:
    t = 1_500_000_000.0
    # ADDED (1) and DUPLICATED (6, told apart by its start time) runs are service; CANCELED by name too
    polls = [
        _poll(t, {"trip_id": "A", "schedule_relationship": 1}, {"trip_id": "D", "schedule_relationship": 0}),
        _poll(t + 30, {"trip_id": "D", "schedule_relationship": 6, "start_time": "09:10:00"}),
        _poll(t + 60, {"trip_id": "X", "schedule_relationship": "CANCELED"}),
        _poll(t + 90, {"trip_id": "X", "schedule_relationship": "CANCELED"}),
        _poll(t + 120),
    ]
    got = _kinds(polls)
    done = sorted(i for k, i in got if k == "trip_completed")
    assert done == ["akl:done:A@1499999995", "akl:done:D//09:10:00@1500000025", "akl:done:D@1499999995"]
    assert [i for k, i in got if k == "trip_cancelled"] == ["akl:cancel:X"]  # once, not per poll


def test_case_c22_a_run_cancelled_after_it_was_seen_running_is_not_completed() -> None:
    t = 1_500_000_000.0
    polls = [
        _poll(t, {"trip_id": "R", "schedule_relationship": 0}),
        _poll(t + 30, {"trip_id": "R", "schedule_relationship": 3}),
        _poll(t + 60),
    ]
    assert _kinds(polls) == [("trip_cancelled", "akl:cancel:R")]


def test_case_c24_a_poll_without_any_time_is_skipped_not_dated_1970() -> None:
    empty = Poll(None, [{"trip_update": {"trip": {"trip_id": "T", "route_id": "27401-x"}}}])
    assert list(events_from_polls([empty], {"akl-routes-2xx"})) == []


def test_case_c27_rules_check_refuses_a_mixed_int_double_operation_hidden_behind_a_guard() -> None:
    from typer.testing import CliRunner

    from monitor.cli import app

    path = case_input("c27-guarded-type-error.yaml")
    result = CliRunner().invoke(app, ["rules", "check", str(path)])
    assert result.exit_code == 1  # 0 on 76a1efa: the example facts never reach the division
    out = result.output
    assert f"{path}:15: when: type error: `loan.outstanding / 10` mixes double and int" in out
    assert out.count("type error") == 1  # int literals compared with doubles are valid CEL: not refused


def test_case_c27_a_rule_that_errors_at_run_time_is_an_alert_and_a_metric_never_silently_false(rulebook: Any) -> None:
    """A rulebook that slipped past the check (kept in the control topic from an older version): the
    guarded division raises once coverage is below 1.25; the loan gets a critical
    ``rule-evaluation-error`` alert naming the rule and the error, once per episode, and the metric counts."""
    import dataclasses
    import datetime as dt

    import cel
    from prometheus_client import CollectorRegistry

    from monitor.core import CoreParams, Monitor
    from rules.rulebook import Rulebook, parse_rulebook
    from streams.prometheus import Metrics, PrometheusSensor
    from tests.conftest import T0, healthy_window_events, make_loan, make_pledge
    from tests.unit.test_prometheus import scrape

    expr = "loan.coverage_ratio < 1.25 && loan.required_top_up_collateral > loan.outstanding / 10"
    typed = parse_rulebook(
        f"rulebook: c27\nversion: 1\nrules:\n  - id: large-top-up\n    scope: loan\n    severity: critical\n"
        f"    when: {expr}.0\n"
    ).rules[0]
    broken = dataclasses.replace(typed, when=expr, program=cel.compile(expr))
    book = Rulebook(rulebook.name, rulebook.version, (*rulebook.rules, broken), rulebook.source)
    metrics = Metrics.create(CollectorRegistry())
    mon = Monitor(book, CoreParams(), PrometheusSensor(metrics))
    mon.on_loan_event(make_loan(outstanding=8_500_000.0))  # 10 M of collateral: coverage ≈ 1.18 < 1.25
    mon.on_loan_event(make_pledge())
    alerts = []
    for i in range(8):
        for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * i), prefix=f"v{i}"):
            alerts += [o.message for o in mon.on_telemetry(ev) if o.topic == "alerts"]
    errors = [a for a in alerts if a.rule_id == "rule-evaluation-error"]
    assert [(a.status, a.severity, a.facts["rule"]) for a in errors] == [("firing", "critical", "large-top-up")]
    assert "TypeError" in str(errors[0].facts["error"]) and "large-top-up" in errors[0].summary_en
    got = scrape(metrics)
    assert got[("pledgewatch_rule_errors_total", (("rule", "large-top-up"),))] >= 1
    assert got[("pledgewatch_alerts_total", (("rule", "rule-evaluation-error"), ("severity", "critical"),
                                            ("shadow", "false"), ("status", "firing")))] == 1  # fmt: skip
