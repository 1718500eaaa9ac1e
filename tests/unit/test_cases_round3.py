"""Field cases of the third reliability round (``../shared/cases/CASES.md``: C22–C27, issue 21).

Each test is named after its case and asserts the right value the case states; each fails on 76a1efa.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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
    for cancelled in (3, 3.0, "CANCELED", 7):  # the enum as JSON may give it: a number, a float, a name
        polls = [
            _poll(t, {"trip_id": "R", "schedule_relationship": 0}),
            _poll(t + 30, {"trip_id": "R", "schedule_relationship": cancelled}),
            _poll(t + 60),
        ]
        assert _kinds(polls) == [("trip_cancelled", "akl:cancel:R")], cancelled


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


# --- C25: cure deadlines in a year the holiday library does not know --------------------------------

CN_TZ = "Asia/Shanghai"


def _cn(y: int, m: int, d: int, h: int = 10) -> Any:
    import datetime as dt
    import zoneinfo

    return dt.datetime(y, m, d, h, tzinfo=zoneinfo.ZoneInfo(CN_TZ))


def test_case_c25_a_cure_deadline_in_2027_skips_new_years_day_and_is_marked_provisional() -> None:
    from monitor.holidays import cure_deadline

    one = cure_deadline(_cn(2026, 12, 31), "1bd")  # Thursday; 1 Jan 2027 is a Friday and New Year's Day
    assert one.at == _cn(2027, 1, 4, 23).replace(minute=59, second=59)  # 2027-01-01 on 76a1efa
    assert one.provisional  # 2027's notice is not in chinese-calendar: flagged, never silently Monday-Friday
    five = cure_deadline(_cn(2026, 12, 28), "5bd")  # 29, 30, 31 Dec (official 2026), then 4 and 5 Jan 2027
    assert five.at == _cn(2027, 1, 5, 23).replace(minute=59, second=59)
    assert five.provisional
    inside = cure_deadline(_cn(2026, 12, 1), "5bd")  # every day counted lies in 2026: official
    assert not inside.provisional


def test_case_c25_a_bank_calendar_file_overrides_the_library_and_ends_the_flag(tmp_path: Path) -> None:
    from monitor.errors import ConfigError
    from monitor.holidays import BusinessCalendar, cure_deadline, load_calendar_file, use_calendar

    path = tmp_path / "holidays-2027.csv"
    path.write_text(
        "# the bank's operations calendar\ndate,type,name\n2027-01-01,holiday,New Year\n"
        "2027-01-04,holiday,bridge day\n2027-01-09,workday,make-up Saturday\n"
    )
    try:
        use_calendar(load_calendar_file(path))
        d = cure_deadline(_cn(2026, 12, 31), "1bd")
        assert d.at == _cn(2027, 1, 5, 23).replace(minute=59, second=59) and not d.provisional
    finally:
        use_calendar(BusinessCalendar())
    bad = tmp_path / "bad.csv"
    bad.write_text("date,type\n2027-13-01,holiday\n")
    with pytest.raises(ConfigError, match=r"bad.csv line 2: date '2027-13-01', expected YYYY-MM-DD"):
        load_calendar_file(bad)
    bad.write_text("# comments count as lines\n\ndate,type\n2027-01-02,closed\n")
    with pytest.raises(ConfigError, match=r"bad.csv line 4: type 'closed', expected holiday or workday"):
        load_calendar_file(bad)


def test_case_c25_a_calendar_day_cure_ending_on_a_holiday_follows_the_contract_convention() -> None:
    import datetime as dt

    from monitor.holidays import cure_deadline, is_business_day

    issued = _cn(2026, 9, 21)  # + 10 days = 1 October, National Day
    following = cure_deadline(issued, "10d")  # the default
    kept = cure_deadline(issued, "10d", "calendar")
    assert kept.at == _cn(2026, 10, 1).astimezone(dt.UTC)
    assert following.at > kept.at and is_business_day(following.at.astimezone(_cn(2026, 1, 1).tzinfo).date())
    assert following.at.astimezone(_cn(2026, 1, 1).tzinfo).time() == _cn(2026, 1, 1).time()  # same time of day
    assert cure_deadline(issued, "48h").at == issued + dt.timedelta(hours=48)  # hours are hours


@settings(max_examples=200, deadline=None)
@given(year=st.integers(min_value=2027, max_value=2100), offset=st.integers(min_value=0, max_value=364))
def test_property__a_year_without_the_notice_never_works_on_a_fixed_date_holiday_or_a_weekend(
    year: int, offset: int
) -> None:
    import datetime as dt

    from monitor.holidays import BusinessCalendar, fixed_statutory_holidays, is_business_day

    assume(not BusinessCalendar().is_official(year))  # a year the library covers follows the notice instead
    day = dt.date(year, 1, 1) + dt.timedelta(days=offset)
    if day.weekday() >= 5 or day in fixed_statutory_holidays(day.year):
        assert not is_business_day(day)
    else:
        assert is_business_day(day)


def test_case_c25_a_margin_call_issued_on_new_years_eve_2026_carries_the_flag_and_the_right_deadline(
    rulebook: Any,
) -> None:
    import datetime as dt

    from monitor.core import CoreParams, Monitor
    from monitor.sensors import CountingSensor
    from tests.conftest import healthy_window_events, make_loan, make_pledge

    start = dt.datetime(2026, 12, 31, 1, 0, tzinfo=dt.UTC)  # 09:00 on Thursday 31 December in Shanghai
    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    opened = start - dt.timedelta(days=30)
    mon.on_loan_event(make_loan(outstanding=8_500_000.0, cure_period="1bd", effective_at=opened))
    mon.on_loan_event(make_pledge(effective_at=opened))
    calls = []
    for i in range(8):
        for ev in healthy_window_events("A1", start + dt.timedelta(minutes=15 * i), prefix=f"v{i}"):
            calls += [o.message for o in mon.on_telemetry(ev) if o.topic == "margin-calls"]
    (call,) = calls
    assert call.status == "issued" and call.deadline_provisional
    assert call.cure_deadline == _cn(2027, 1, 4, 23).replace(minute=59, second=59)  # not New Year's Day
    # the operator's margin-call line says so too
    import io

    from rich.console import Console

    from monitor.display import AlertPrinter

    for lang, mark in (("en", "(provisional)"), ("zh", "（暂定）")):
        out = io.StringIO()
        AlertPrinter(Console(file=out, width=200), lang=lang).margin_call(call)
        assert mark in out.getvalue()


# --- C26: money in binary floats ---------------------------------------------------------------------


def test_case_c26_the_demands_are_exact_to_the_fen_and_written_so() -> None:
    import datetime as dt

    from monitor.core import required_top_up
    from monitor.core.loans import LoanMonitor
    from monitor.schemas import Appraisal
    from monitor.sensors import NullSensor
    from tests.conftest import make_loan, make_pledge

    assert required_top_up(1.3, 1_000_000_000.00, 1_150_000_000.37) == (149_999_999.63, 115_384_615.10)
    # the same through a loan: outstanding ¥1,000,000,000.00, collateral ¥1,150,000,000.37 (the appraisal)
    appraisal = Appraisal(value=1_150_000_000.37, appraised_on=dt.date(2024, 1, 1), appraiser="t")
    loan = LoanMonitor(make_loan(principal=1e9, outstanding=1_000_000_000.00))
    loan.on_loan_event(make_pledge(appraisal=appraisal), None, NullSensor())
    snap = loan.snapshot()
    assert (snap.required_top_up_collateral, snap.required_repayment) == (149_999_999.63, 115_384_615.10)
    text = snap.model_dump_json()  # amounts are JSON numbers with at most two decimals
    assert '"required_top_up_collateral":149999999.63' in text and '"required_repayment":115384615.1' in text


def test_case_c26_the_yuan_filter_rounds_half_up_and_demands_are_never_shown_rounded_down() -> None:
    from monitor.display import format_yuan
    from rules.rulebook import render_summary

    assert render_summary("{{ v | yuan }}", {"v": 1_234_568.5}) == "¥1,234,569"  # ¥1,234,568 on 76a1efa
    assert render_summary("{{ v | yuan_up }}", {"v": 3_768_848.01}) == "¥3,768,849"
    assert format_yuan(1_234_568.5) == "¥1,234,569" and format_yuan(3_768_848.01, up=True) == "¥3,768,849"


FENS = st.integers(min_value=1, max_value=10**13)  # ¥0.01 to ¥100 billion, in fen
LINES = st.sampled_from([1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5, 1.75, 2.0, 1.333, 1.1111])


@settings(max_examples=10_000, deadline=None)
@given(outstanding=FENS, collateral=FENS, warning=LINES)
def test_property__paying_the_demand_restores_the_warning_line_exactly(
    outstanding: int, collateral: int, warning: float
) -> None:
    """C26's 400 loans, generalised: for any loan below its warning line, pledging the demanded top-up or
    repaying the demanded amount brings coverage (as the rules see it: ``ratio``) to at least the line."""
    from decimal import Decimal

    from monitor.core.money import demands, ratio

    o, c = Decimal(outstanding) / 100, Decimal(collateral) / 100
    assume(ratio(c, o) is not None and ratio(c, o) < warning)  # type: ignore[operator]
    top, repay = demands(warning, o, c)
    assert top == top.quantize(Decimal("0.01")) and repay == repay.quantize(Decimal("0.01"))
    assert ratio(c + top, o) >= warning  # type: ignore[operator]
    if repay < o:
        assert ratio(c, o - repay) >= warning  # type: ignore[operator]
    # and no more than a fen above what is needed: the demand is the least such amount
    assert ratio(c + top - Decimal("0.01"), o) < warning  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(outstanding=st.integers(min_value=100_000, max_value=10**12), share=st.floats(0.5, 1.25), warning=LINES)
def test_property__a_loan_repaid_by_its_demand_is_at_its_warning_line_as_the_rules_see_it(
    outstanding: int, share: float, warning: float
) -> None:
    """Through the loan itself: a Repayment event of the demanded amount, then the rules' facts."""
    import datetime as dt

    from monitor.core.loans import LoanMonitor
    from monitor.schemas import Appraisal, Repayment, Thresholds
    from monitor.sensors import NullSensor
    from tests.conftest import T0, make_loan, make_pledge

    o = outstanding / 100
    collateral = round(o * share * warning, 2)
    lines = Thresholds(warning=warning, margin_call=warning - 0.01, close_out=warning - 0.02)
    loan = LoanMonitor(make_loan(principal=o, outstanding=o, thresholds=lines))
    appraisal = Appraisal(value=collateral, appraised_on=dt.date(2024, 1, 1), appraiser="t")
    loan.on_loan_event(make_pledge(appraisal=appraisal), None, NullSensor())
    before = loan.snapshot()
    assume(before.required_repayment > 0 and before.required_repayment < before.outstanding)
    pay = Repayment(event_id="L1:pay", loan_id="L1", effective_at=T0, amount=before.required_repayment)
    loan.on_loan_event(pay, None, NullSensor())
    facts = loan._loan_facts(loan.snapshot())
    assert facts["coverage_ratio_lower"] >= warning
