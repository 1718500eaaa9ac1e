"""The suggested risk category (五级分类, issue 19): the most severe floor of the criteria that apply.

Regulation (《商业银行金融资产风险分类办法》): days past due > 0 / 90 / 270 / 360 → at least special
mention / substandard / doubtful / loss; a restructured loan, during its observation period, at least
special mention and no better than before. The bank's policy (the rulebook's ``classification:``):
the watch list, coverage below the warning or close-out line, open and expired margin calls. A
change is one ``ClassificationSuggestion`` on the compacted ``pledge.classification`` topic, never
applied.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from monitor.core import CoreParams, Monitor, decode_loan_event
from monitor.core.classification import Signals, criteria, dpd_floor, suggest
from monitor.core.loans import LoanMonitor
from monitor.display import AlertPrinter
from monitor.errors import InputRejected, RulebookError
from monitor.schemas import (
    CATEGORIES,
    BalanceChanged,
    ClassificationSuggestion,
    InterestAccrued,
    LoanRestructured,
    PaymentOverdue,
    Repayment,
)
from monitor.sensors import CountingSensor
from rules.classification import ClassificationPolicy, rank
from rules.rulebook import parse_rulebook
from tests.conftest import ROOT, T0, make_loan, make_pledge
from tests.unit.test_engine import W, _collapse, _with_l2
from tests.unit.test_watch_list import WATCH_RULES, default_without_watch_rules

DAY = dt.timedelta(days=1)
DEFAULT = (ROOT / "rules" / "rulebooks" / "default.yaml").read_text().rstrip("\n") + "\n"


def _book(extra: str = "", classification: str = "", base: str = DEFAULT):  # type: ignore[no-untyped-def]
    """The shipped rulebook (or ``base``), plus rules, plus a ``classification:`` section (YAML text, indented by 2)."""
    text = base + extra
    if classification:  # in place of the shipped section (it comes before the rules)
        start = text.index("classification:\n")
        text = text[:start] + "classification:\n" + classification + text[text.index("rules:\n", start) :]
    return parse_rulebook(text, "book.yaml")


@functools.cache
def _shipped_book():  # type: ignore[no-untyped-def]
    """The shipped rulebook parsed once: a frozen value, and parsing it per hypothesis example (CEL
    compilation and type checks of its 11 rules, about 17 ms) took examples past the 200 ms deadline
    on a loaded machine."""
    return _book()


def _overdue(days: int, at: dt.datetime, as_of: dt.datetime | None = None, n: str = "") -> PaymentOverdue:
    return PaymentOverdue(
        event_id=f"dpd-{days}-{at.timestamp():.0f}{n}",
        loan_id="L1",
        effective_at=at,
        days_past_due=days,
        as_of=as_of or at,
    )


def _suggestions(out: list[Any]) -> list[ClassificationSuggestion]:
    return [o.message for o in out if o.topic == "classification"]


class _Loan:
    """One loan (nothing pledged: the lines are not judged, the regulatory floors apply) fed loan events."""

    def __init__(self, rulebook: Any = None) -> None:
        self.rulebook = rulebook if rulebook is not None else _shipped_book()
        self.loan = LoanMonitor(make_loan())
        self.sensor = CountingSensor()

    def send(self, ev: Any) -> list[ClassificationSuggestion]:
        return _suggestions(self.loan.on_loan_event(ev, self.rulebook, self.sensor))

    def category_after(self, *days: int) -> str:
        for i, d in enumerate(days):
            self.send(_overdue(d, T0 + i * dt.timedelta(seconds=1)))
        return self.loan.category


# --- the criteria as pure functions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "category"),
    [
        (0, "normal"),
        (1, "special_mention"),
        (90, "special_mention"),
        (91, "substandard"),
        (270, "substandard"),
        (271, "doubtful"),
        (360, "doubtful"),
        (361, "loss"),
        (36_500, "loss"),
    ],
)
def test_dpd_floor__the_measures_bands_are_strictly_more_than_0_90_270_360_days(days: int, category: str) -> None:
    assert dpd_floor(days) == category


_CATEGORY = st.sampled_from(CATEGORIES)
_POLICY = st.builds(
    ClassificationPolicy,
    watch_list=_CATEGORY,
    below_warning=_CATEGORY,
    margin_call_open=_CATEGORY,
    margin_call_expired=_CATEGORY,
    close_out=_CATEGORY,
    restructured=st.sampled_from(CATEGORIES[1:]),
)
_SIGNALS = st.builds(
    Signals,
    days_past_due=st.integers(0, 1000),
    observation_end=st.none() | st.dates(dt.date(2020, 1, 1), dt.date(2030, 1, 1)),
    prior_category=_CATEGORY,
    watch_reasons=st.lists(st.sampled_from(["w1", "w2"]), max_size=2, unique=True).map(tuple),
    coverage_ratio=st.none() | st.floats(0.0, 3.0),
    below_warning=st.booleans(),
    below_close_out=st.booleans(),
    open_margin_call=st.none() | st.just("mc-1"),
    expired_margin_call=st.none() | st.just("mc-0"),
)


@given(_SIGNALS, _POLICY)
def test_suggest__is_the_most_severe_applicable_floor_and_never_less_severe_than_any(
    s: Signals, policy: ClassificationPolicy
) -> None:
    reasons = criteria(s, policy)
    category = suggest(reasons)
    assert all(rank(category) >= rank(r.floor) for r in reasons)
    assert category == "normal" if not reasons else any(r.floor == category for r in reasons)
    assert [rank(r.floor) for r in reasons] == sorted((rank(r.floor) for r in reasons), reverse=True)
    assert all(r.floor != "normal" for r in reasons)  # a switched-off criterion is not a reason
    # the regulatory floors hold whatever the bank's policy says
    assert rank(category) >= rank(dpd_floor(s.days_past_due))
    if s.observation_end is not None:
        assert rank(category) >= max(rank(s.prior_category), rank("special_mention"))


@given(_SIGNALS, _POLICY, st.integers(0, 1000), st.integers(0, 1000))
def test_suggest__is_monotone_in_days_past_due(s: Signals, policy: ClassificationPolicy, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    low = suggest(criteria(Signals(**{**_fields(s), "days_past_due": lo}), policy))
    high = suggest(criteria(Signals(**{**_fields(s), "days_past_due": hi}), policy))
    assert rank(low) <= rank(high)


def _fields(s: Signals) -> dict[str, Any]:
    return {k: getattr(s, k) for k in Signals.__slots__}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("signals", "criterion", "source", "floor", "fact", "value"),
    [
        (Signals(days_past_due=271), "days-past-due", "regulation", "doubtful", "days_past_due", 271.0),
        (
            Signals(observation_end=dt.date(2025, 6, 30), prior_category="doubtful"),
            "restructured",
            "regulation",
            "doubtful",
            "restructuring_observation_end",
            "2025-06-30",
        ),
        (Signals(watch_reasons=("w1", "w2")), "watch-list", "bank_policy", "special_mention", "watch_list", "w1, w2"),
        (
            Signals(coverage_ratio=1.25, below_warning=True),
            "below-warning",
            "bank_policy",
            "special_mention",
            "coverage_ratio",
            1.25,
        ),
        (
            Signals(open_margin_call="mc-1"),
            "margin-call-open",
            "bank_policy",
            "special_mention",
            "margin_call_id",
            "mc-1",
        ),
        (
            Signals(expired_margin_call="mc-0"),
            "margin-call-expired",
            "bank_policy",
            "substandard",
            "margin_call_id",
            "mc-0",
        ),
    ],
)
def test_criteria__each_criterion_alone_names_itself_its_fact_and_value(
    signals: Signals, criterion: str, source: str, floor: str, fact: str, value: Any
) -> None:
    # every monitor signal on (the shipped policy leaves the watch list's off: docs/rules.md)
    (reason,) = criteria(signals, ClassificationPolicy(watch_list="special_mention"))
    assert (reason.criterion, reason.source, reason.floor, reason.fact, reason.value) == (
        criterion, source, floor, fact, value
    )  # fmt: skip


def test_criteria__below_the_close_out_line_is_also_below_the_warning_line() -> None:
    reasons = criteria(Signals(coverage_ratio=1.0, below_warning=True, below_close_out=True), ClassificationPolicy())
    assert [(r.criterion, r.floor) for r in reasons] == [
        ("close-out", "substandard"),
        ("below-warning", "special_mention"),
    ]
    # the lines are not judged (calibrating): no coverage criterion
    assert (
        criteria(Signals(coverage_ratio=None, below_warning=True, below_close_out=True), ClassificationPolicy()) == []
    )


# --- the loan state: days past due, restructuring ----------------------------------------------------


def test_days_past_due__each_band_is_one_suggestion_on_change_only() -> None:
    loan = _Loan()
    got = [loan.send(_overdue(d, T0 + i * dt.timedelta(minutes=1))) for i, d in enumerate([0, 5, 10, 95, 300, 400, 0])]
    assert [[(s.previous_category, s.category) for s in g] for g in got] == [
        [],  # 0 days: normal, as at opening: no record
        [("normal", "special_mention")],
        [],  # 10 days: still special mention
        [("special_mention", "substandard")],
        [("substandard", "doubtful")],
        [("doubtful", "loss")],
        [("loss", "normal")],  # arrears cleared: the suggestion says so; the committee decides any upgrade
    ]
    s = got[3][0]
    assert s.loan_id == "L1" and s.borrower_id == "B1" and s.at == T0 + 3 * dt.timedelta(minutes=1)
    assert [(r.criterion, r.source, r.fact, r.value) for r in s.reasons] == [
        ("days-past-due", "regulation", "days_past_due", 95.0)
    ]
    assert s.facts["days_past_due"] == 95.0 and s.rulebook == "default"
    assert got[-1][0].reasons == []
    # idempotent ids: the same events in a fresh loan give the same records
    again = _Loan()
    ids = [s.suggestion_id for i, d in enumerate([0, 5, 10, 95, 300, 400, 0]) for s in again.send(
        _overdue(d, T0 + i * dt.timedelta(minutes=1))
    )]  # fmt: skip
    assert ids == [s.suggestion_id for g in got for s in g] and len(set(ids)) == 5


def test_days_past_due__a_report_ages_in_event_time_and_an_older_report_never_rolls_it_back() -> None:
    loan = _Loan()
    assert loan.send(_overdue(89, T0))[0].category == "special_mention"
    # two days of event time later (another loan event moves the loan's clock): 91 days past due
    (s,) = loan.send(InterestAccrued(event_id="i1", loan_id="L1", effective_at=T0 + 2 * DAY, amount=10.0))
    assert (s.previous_category, s.category, s.reasons[0].value) == ("special_mention", "substandard", 91.0)
    facts = loan.loan._loan_facts(loan.loan.snapshot())
    assert facts["days_past_due"] == 91.0 and facts["suggested_category"] == "substandard"
    # a report redelivered late (as of before the held one) changes nothing
    assert loan.send(_overdue(0, T0 + 2 * DAY, as_of=T0 - DAY)) == [] and loan.loan.days_past_due() == 91


def test_restructuring__a_performing_loan_is_special_mention_until_the_observation_period_ends() -> None:
    loan = _Loan()
    end = (T0 + 400 * DAY).date()
    (s,) = loan.send(
        LoanRestructured(event_id="rs1", loan_id="L1", effective_at=T0, restructured_on=T0.date(), observation_end=end)
    )
    assert (s.previous_category, s.category) == ("normal", "special_mention")
    assert [(r.criterion, r.source, r.value) for r in s.reasons] == [("restructured", "regulation", end.isoformat())]
    assert loan.loan._loan_facts(loan.loan.snapshot())["in_restructuring_observation"] is True
    # the last day of the period (China time) still holds; the day after does not
    last = dt.datetime(end.year, end.month, end.day, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert loan.send(InterestAccrued(event_id="i1", loan_id="L1", effective_at=last, amount=1.0)) == []
    (back,) = loan.send(
        InterestAccrued(event_id="i2", loan_id="L1", effective_at=last + dt.timedelta(minutes=2), amount=1.0)
    )
    assert (back.previous_category, back.category, back.reasons) == ("special_mention", "normal", [])


def test_restructuring__a_non_performing_loan_stays_no_better_than_before_even_once_current() -> None:
    loan = _Loan()
    loan.send(_overdue(120, T0))
    assert loan.loan.category == "substandard"
    loan.send(LoanRestructured(event_id="rs1", loan_id="L1", effective_at=T0 + DAY, restructured_on=T0.date()))
    # the restructured contract brings the arrears to 0; the restructuring floor keeps substandard
    assert loan.send(_overdue(0, T0 + 2 * DAY)) == [] and loan.loan.category == "substandard"
    assert [r.criterion for r in loan.loan.category_reasons] == ["restructured"]
    # without observation_end: the policy's 365 days after restructured_on (the Measures' minimum)
    assert loan.loan.restructuring is not None
    assert loan.loan.restructuring.observation_end == T0.date() + 365 * DAY


def test_restructuring__the_banks_policy_may_lengthen_the_default_period_and_raise_the_floor() -> None:
    loan = _Loan(_book(classification="  restructured: substandard\n  observation_days: 730\n"))
    (s,) = loan.send(LoanRestructured(event_id="rs1", loan_id="L1", effective_at=T0, restructured_on=T0.date()))
    assert s.category == "substandard" and s.reasons[0].value == (T0.date() + 730 * DAY).isoformat()


@given(st.integers(0, 800), st.integers(0, 800))
def test_loan__suggested_category_is_monotone_in_the_reported_days_past_due(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert rank(_Loan().category_after(lo)) <= rank(_Loan().category_after(hi))  # type: ignore[arg-type]
    assert _Loan().category_after(hi) == dpd_floor(hi)


# --- the monitor's signals, through the whole core ---------------------------------------------------


def _run(rulebook: Any, cure_period: str = "5d", windows: int = 24) -> tuple[Monitor, list[Any]]:
    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan(cure_period=cure_period))
    mon.on_loan_event(make_pledge())
    _with_l2(mon)
    out = _collapse(mon, range(8), trips=10) + _collapse(mon, range(8, windows))
    return mon, out


def test_monitor_signals__an_activity_collapse_moves_the_suggestion_with_its_reasons() -> None:
    mon, out = _run(_book(WATCH_RULES))
    got = [s for s in _suggestions(out) if s.loan_id == "L1"]
    # the collapse takes the point coverage below the close-out line at the window the margin call is issued
    (first,) = got
    assert (first.previous_category, first.category, first.facts["status"]) == ("normal", "substandard", "close_out")
    assert [(r.criterion, r.floor) for r in first.reasons] == [
        ("close-out", "substandard"),
        ("below-warning", "special_mention"),
        ("margin-call-open", "special_mention"),
    ]
    assert all(r.source == "bank_policy" for r in first.reasons)
    assert first.reasons[0].value == first.facts["coverage_ratio"] < 1.1
    loan = mon.loans["L1"]
    assert loan.category == "substandard"
    assert loan._loan_facts(loan.snapshot())["suggested_category"] == "substandard"
    # on the watch list now, which the shipped policy gives no floor of its own (docs/rules.md)
    assert loan.watch and "watch-list" not in [r.criterion for r in loan.category_reasons]
    # the healthy loan is never suggested anything
    assert not [s for s in _suggestions(out) if s.loan_id == "L2"]


def test_monitor_signals__the_watch_list_alone_is_special_mention_while_the_loan_is_on_it() -> None:
    # the watch-list floor on (the shipped policy leaves it off), every other signal off
    only_watch = (
        "  watch_list: special_mention\n  below_warning: normal\n  margin_call_open: normal\n  close_out: normal\n"
    )
    # the test's watch rules only: the shipped ones (a margin call within 30 days) would enter it first
    mon, out = _run(_book(WATCH_RULES, only_watch, base=default_without_watch_rules()))
    entered = next(o.message for o in out if o.topic == "watch-list" and o.message.loan_id == "L1")
    (s,) = [s for s in _suggestions(out) if s.loan_id == "L1"]
    assert (s.previous_category, s.category, s.at) == ("normal", "special_mention", entered.at)
    assert [(r.criterion, r.fact, r.value) for r in s.reasons] == [
        ("watch-list", "watch_list", "watch-recent-margin-call")
    ]
    assert s.facts["on_watch_list"] is True
    # repaid: the loan leaves the watch list, and the suggestion goes back to normal
    snap = mon.loans["L1"].snapshot()
    amount = snap.outstanding - snap.collateral_value_lower / 1.3 + 1_000.0
    out = mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0 + 24 * W, amount=amount))
    assert [o.message.status for o in out if o.topic == "watch-list"] == ["exited"]
    assert [(s.previous_category, s.category) for s in _suggestions(out)] == [("special_mention", "normal")]


def test_monitor_signals__the_coverage_lines_hold_until_one_contract_gap_above_them() -> None:
    """Lines 1.3 / 1.2 / 1.1: below the warning line until ≥ 1.4, below close-out until ≥ 1.2 (case C21)."""
    # the lines alone: the margin call at 1.05 also enters the shipped watch list (watch-margin-call)
    only_lines = "  margin_call_open: normal\n  margin_call_expired: normal\n  watch_list: normal\n"
    mon = Monitor(_book(classification=only_lines), CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    _collapse(mon, range(8), trips=10)
    value = mon.loans["L1"].snapshot().collateral_value
    seen = []
    for i, cov in enumerate([1.29, 1.31, 1.29, 1.39, 1.05, 1.15, 1.19, 1.21, 1.41]):
        ev = BalanceChanged(event_id=f"b{i}", loan_id="L1", effective_at=T0 + 8 * W, outstanding=round(value / cov, 2))
        seen.append([(s.previous_category, s.category) for s in _suggestions(mon.on_loan_event(ev))])
    assert seen == [
        [("normal", "special_mention")],  # 1.29 < 1.3
        [],  # 1.31: above the line, not yet one gap above it
        [],
        [],  # 1.39
        [("special_mention", "substandard")],  # 1.05 < 1.1
        [],  # 1.15: above close-out, below the margin-call line
        [],  # 1.19
        [("substandard", "special_mention")],  # 1.21: close-out released, still below the warning line
        [("special_mention", "normal")],  # 1.41 ≥ 1.4
    ]


def test_monitor_signals__an_expired_margin_call_is_substandard_until_its_close_out_alert_resolves() -> None:
    # the margin-call criteria alone: the call also enters the shipped watch list (watch-margin-call)
    policy = "  below_warning: normal\n  close_out: normal\n  watch_list: normal\n"
    mon, out = _run(_book(classification=policy), "2h", 36)
    got = [s for s in _suggestions(out) if s.loan_id == "L1"]
    assert [(s.previous_category, s.category) for s in got] == [
        ("normal", "special_mention"),
        ("special_mention", "substandard"),
    ]
    assert [r.criterion for r in got[0].reasons] == ["margin-call-open"]
    assert [(r.criterion, r.floor) for r in got[1].reasons] == [("margin-call-expired", "substandard")]
    mc = next(o.message for o in out if o.topic == "margin-calls" and o.message.status == "expired")
    assert got[1].reasons[0].value == mc.margin_call_id and got[1].at == mc.updated_at
    # repaid above the warning line: the expiry alert resolves, and with it the floor
    snap = mon.loans["L1"].snapshot()
    amount = snap.outstanding - snap.collateral_value_lower / 1.3 + 1_000.0
    out = mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0 + 36 * W, amount=amount))
    (back,) = _suggestions(out)
    assert (back.previous_category, back.category, back.reasons) == ("substandard", "normal", [])


def test_monitor_signals__a_policy_switching_every_signal_off_suggests_nothing() -> None:
    off = "".join(
        f"  {k}: normal\n"
        for k in ("watch_list", "below_warning", "margin_call_open", "margin_call_expired", "close_out")
    )
    _, out = _run(_book(WATCH_RULES, off), "2h", 36)
    assert any(o.topic == "margin-calls" for o in out) and any(o.topic == "watch-list" for o in out)
    assert _suggestions(out) == []


def test_rule_facts__rules_can_use_the_suggested_category_and_days_past_due() -> None:
    rule = """
  - id: overdue-and-mentioned
    scope: loan
    severity: warning
    when: loan.days_past_due > 30.0 && loan.suggested_category != "normal"
    summary: "{{ loan.days_past_due | num }} days past due, suggested {{ loan.suggested_category }}"
"""
    mon = Monitor(_book(rule), CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    _collapse(mon, range(8), trips=10)  # valued: the rules are evaluated
    mon.on_loan_event(_overdue(40, T0 + 8 * W))  # suggested special mention (seen from the next evaluation)
    out = mon.on_loan_event(InterestAccrued(event_id="i1", loan_id="L1", effective_at=T0 + 9 * W, amount=1.0))
    (alert,) = [o.message for o in out if o.topic == "alerts" and o.message.rule_id == "overdue-and-mentioned"]
    assert alert.status == "firing" and "40.00 days past due, suggested special_mention" in alert.summary_en


# --- state, configuration, contract, display ---------------------------------------------------------


def test_state__a_pickle_round_trip_keeps_the_suggestion_and_old_states_load_as_normal() -> None:
    loan = _Loan()
    loan.send(_overdue(120, T0))
    loan.send(LoanRestructured(event_id="rs1", loan_id="L1", effective_at=T0 + DAY, restructured_on=T0.date()))
    copy = pickle.loads(pickle.dumps(loan.loan))
    assert (copy.category, copy.past_due, copy.restructuring) == (
        loan.loan.category, loan.loan.past_due, loan.loan.restructuring
    )  # fmt: skip
    assert copy.category_reasons == loan.loan.category_reasons and copy.category == "substandard"
    # the same next event gives the same outputs from the copy as from the original
    nxt = _overdue(0, T0 + 500 * DAY, n="x")
    assert _suggestions(copy.on_loan_event(nxt, loan.rulebook, CountingSensor())) == loan.send(nxt)
    # a loan state pickled before the classification existed loads as normal, with no report or restructuring
    old = pickle.loads(pickle.dumps(loan.loan))
    for name in ("past_due", "restructuring", "category", "category_reasons", "lines_held"):
        del old.__dict__[name]
    restored = pickle.loads(pickle.dumps(old))
    assert (restored.category, restored.past_due, restored.restructuring, restored.category_reasons) == (
        "normal", None, None, []
    )  # fmt: skip
    assert restored.days_past_due() == 0 and restored.lines_held == (False, False)
    out = restored.on_loan_event(_overdue(100, T0 + 600 * DAY), loan.rulebook, CountingSensor())
    assert [(s.previous_category, s.category) for s in _suggestions(out)] == [("normal", "substandard")]


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("  watch_list: amber\n", 2, "classification.watch_list: got 'amber', expected one of normal, special_mention"),
        ("  colour: red\n", 2, "classification.colour: unknown key, expected one of watch_list"),
        ("  restructured: normal\n", 2, "classification.restructured: got 'normal', expected special_mention or more"),
        ("  observation_days: 100\n", 2, "classification.observation_days: got 100, expected whole days from 365"),
        ("  observation_days: 1y\n", 2, "classification.observation_days: got '1y', expected whole days from 365"),
        ("  observation_days: true\n", 2, "classification.observation_days: got True, expected whole days"),
        ("  close_out: severe\n  below_warning: 3\n", 3, "classification.below_warning: got 3, expected one of"),
    ],
)
def test_config__a_bad_classification_section_is_rejected_naming_line_field_value_and_expectation(
    section: str, line: int, message: str
) -> None:
    text = "rulebook: t\nversion: 1\nrules: []\nclassification:\n" + section
    with pytest.raises(RulebookError) as exc:
        parse_rulebook(text, "book.yaml")
    assert any(p.startswith(f"book.yaml:{3 + line}: {message}") for p in exc.value.problems), exc.value.problems


def test_config__a_section_that_is_not_a_mapping_is_rejected_and_an_absent_one_gives_the_defaults() -> None:
    with pytest.raises(RulebookError, match=r"book.yaml:4: classification: got 'strict', expected a mapping"):
        parse_rulebook("rulebook: t\nversion: 1\nrules: []\nclassification: strict\n", "book.yaml")
    assert parse_rulebook("rulebook: t\nversion: 1\nrules: []\n", "b.yaml").classification == ClassificationPolicy()
    shipped = parse_rulebook(DEFAULT, "default.yaml").classification
    assert (shipped.watch_list, shipped.margin_call_expired, shipped.observation_days) == (
        "normal",
        "substandard",
        365,
    )


def _raw(**kw: Any) -> bytes:
    import orjson

    base = {"event_id": "e1", "loan_id": "L1", "effective_at": "2024-03-04T00:00:00+08:00"}
    return orjson.dumps({**base, **kw})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            _raw(type="payment_overdue", days_past_due=-1, as_of="2024-03-03T00:00:00Z"),
            "payment_overdue.days_past_due: got -1, expected Input should be greater than or equal to 0",
        ),
        (
            _raw(type="payment_overdue", days_past_due=2.5, as_of="2024-03-03T00:00:00Z"),
            "payment_overdue.days_past_due: got 2.5, expected Input should be a valid integer",
        ),
        (
            _raw(type="payment_overdue", days_past_due="12", as_of="2024-03-03T00:00:00Z"),
            "payment_overdue.days_past_due: got '12', expected Input should be a valid integer",
        ),
        (
            _raw(type="payment_overdue", days_past_due=3, as_of="2024-03-05T00:00:00Z"),
            "payment_overdue.as_of: got '2024-03-05T00:00:00Z', expected a time no later than effective_at",
        ),
        (
            _raw(type="loan_restructured", restructured_on="2024-03-04", observation_end="2024-03-04"),
            "loan_restructured.observation_end: got '2024-03-04', expected a date after restructured_on 2024-03-04",
        ),
    ],
)
def test_decode__a_bad_core_banking_record_names_field_value_and_expectation(record: bytes, message: str) -> None:
    with pytest.raises(InputRejected) as exc:
        decode_loan_event(record)
    assert exc.value.reason == "schema_violation" and exc.value.message.startswith(message), exc.value.message


def test_decode__the_new_loan_events_round_trip() -> None:
    ev = decode_loan_event(_raw(type="payment_overdue", days_past_due=12, as_of="2024-03-03T16:00:00Z"))
    assert isinstance(ev, PaymentOverdue) and ev.days_past_due == 12
    ev = decode_loan_event(_raw(type="loan_restructured", restructured_on="2024-03-04"))
    assert isinstance(ev, LoanRestructured) and ev.observation_end is None
    assert decode_loan_event(ev.model_dump_json().encode()) == ev


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_backtest_printer__a_category_change_prints_with_the_criteria_that_caused_it(lang: str) -> None:
    loan = _Loan()
    loan.send(_overdue(0, T0))
    (s,) = loan.send(_overdue(95, T0 + DAY))
    buf = io.StringIO()
    AlertPrinter(Console(file=buf, width=250), lang=lang).classification(s)
    text = buf.getvalue()
    assert "L1" in text and "classification:substandard" in text
    assert "days-past-due" in text and "days_past_due = 95" in text
    if lang == "zh":
        assert "正常 → 次级" in text and "监管规定" in text
    else:
        assert "normal → substandard" in text and "(regulation)" in text and "credit committee decides" in text
