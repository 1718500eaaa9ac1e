"""The default rulebook's repeated-warnings and borrower-group watch-list criteria (issue 19 point 1).

- ``watch-repeated-warnings``: 3 warning episodes of the loan and its assets started in the last 30 days
  (``loan.warnings_30d``);
- ``watch-group-listed``: another loan of the borrower group listed for a reason other than this
  criterion (``loan.group_others_on_watch_list``); a loan without ``borrower_group`` never.

Warnings and listings are driven by core banking's days-past-due reports (loan events at any event
time), on loans whose one asset has been valued (rules are not evaluated while a loan calibrates).
"""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import pytest

from monitor.core import CoreParams, LoanBook, Monitor
from monitor.core.group_listing import GroupListings, standing
from monitor.core.loans import WARNINGS_WINDOW_S, counts_as_warning
from monitor.schemas import PaymentOverdue
from monitor.sensors import CountingSensor, NullSensor
from rules.rulebook import load_rulebook, parse_rulebook
from tests.conftest import ROOT, T0, make_loan, make_pledge
from tests.unit.test_watch_defaults import feed, run_rule, two_loans

DAY = 86_400.0
DEFAULT = ROOT / "rules" / "rulebooks" / "default.yaml"

#: test rules driven by days past due: a warning, a critical one over it, an info one, a shadow one,
#: and a watch-list reason that is not the group criterion
TEST_RULES = """
  - id: t-dpd-warning
    scope: loan
    severity: warning
    when: loan.days_past_due >= 1.0
  - id: t-dpd-critical
    scope: loan
    severity: critical
    when: loan.days_past_due >= 30.0
  - id: t-dpd-info
    scope: loan
    severity: info
    when: loan.days_past_due >= 1.0
  - id: t-dpd-shadow
    scope: loan
    severity: critical
    mode: shadow
    when: loan.days_past_due >= 2.0
  - id: t-watch-dpd
    scope: loan
    severity: info
    action: watch_list
    when: loan.days_past_due >= 60.0
"""


@pytest.fixture(scope="module")
def default():  # type: ignore[no-untyped-def]
    return load_rulebook(DEFAULT)


@pytest.fixture(scope="module")
def rb():  # type: ignore[no-untyped-def]
    return parse_rulebook(DEFAULT.read_text().rstrip("\n") + "\n" + TEST_RULES, "default+test.yaml")


@pytest.fixture(scope="module")
def valued(rb) -> bytes:  # type: ignore[no-untyped-def]
    """Pickled loans: L1, L2 of group G1 on A1, A2; L3, L4 of borrower B9 without a group on A1, A2; valued."""
    mon = Monitor(rb, CoreParams(), CountingSensor())
    for lid, asset, group in (("L1", "A1", "G1"), ("L2", "A2", "G1"), ("L3", "A1", None), ("L4", "A2", None)):
        borrower = "B9" if group is None else f"B-{lid}"
        mon.on_loan_event(make_loan(event_id=f"{lid}:opened", loan_id=lid, borrower_id=borrower, borrower_group=group))
        mon.on_loan_event(make_pledge(event_id=f"{lid}:pledged:{asset}", loan_id=lid, asset_id=asset))
    feed(mon, range(8), ("A1", "A2"))
    assert all(not loan.calibrating() for loan in mon.loans.values())
    return pickle.dumps(mon.loans)  # the loans as a worker checkpoints them (the tests send loan events only)


def fresh(valued: bytes) -> Monitor:
    mon = Monitor(parse_rulebook(DEFAULT.read_text().rstrip("\n") + "\n" + TEST_RULES, "t.yaml"))
    for loan in pickle.loads(valued).values():
        mon.loan_book.restore(loan)
    return mon


#: event time (POSIX s) of the tests' first report: a day after the valued windows
START = (T0 + dt.timedelta(days=1)).timestamp()


def dpd(mon: Monitor, loan: str, day: float, days: int) -> list[Any]:
    """Core banking reports ``days`` past due for ``loan`` at ``START + day`` days (one evaluation of the loan)."""
    at = dt.datetime.fromtimestamp(START + day * DAY, dt.UTC)
    ev = PaymentOverdue(
        event_id=f"{loan}:dpd:{day}:{days}", loan_id=loan, effective_at=at, days_past_due=days, as_of=at
    )
    return mon.on_loan_event(ev)


def watch(out: list[Any], loan: str) -> list[tuple[str, str]]:
    return [(o.message.status, o.message.rule_id) for o in out if o.topic == "watch-list" and o.message.loan_id == loan]


# --- repeated warnings -----------------------------------------------------------------------


def test_the_default_rulebook_states_both_criteria_with_their_source(default) -> None:  # type: ignore[no-untyped-def]
    rules = {r.id: r for r in default.rules}
    for rid in ("watch-repeated-warnings", "watch-group-listed"):
        assert rules[rid].action == "watch_list" and rules[rid].severity == "info" and not rules[rid].shadow
    assert rules["watch-repeated-warnings"].when == "loan.warnings_30d >= 3.0"
    assert rules["watch-group-listed"].when == "loan.group_others_on_watch_list >= 1.0"
    assert DEFAULT.read_text().count("EBA/GL/2020/06") >= 5
    # which of the shipped rules a warning episode may start with
    counted = sorted(r.id for r in default.rules if counts_as_warning(r))
    assert counted == [
        "activity-shortfall",
        "anomaly-persisting",
        "coverage-below-close-out",
        "coverage-below-margin-call",
        "coverage-below-warning",
        "feed-silent",
        "quality-below-floor",
    ]


def test_watch_repeated_warnings__three_enter_two_exit(default) -> None:  # type: ignore[no-untyped-def]
    steps = [
        (0.0, {"loan.warnings_30d": 2.0}),
        (1.0, {"loan.warnings_30d": 3.0}),
        (2.0, {"loan.warnings_30d": 4.0}),
        (3.0, {"loan.warnings_30d": 2.0}),
    ]
    assert run_rule(default, "watch-repeated-warnings", "loan", steps) == [(1.0, "firing"), (3.0, "resolved")]


def test_warnings_30d__counts_episodes_overlapping_alerts_once_info_and_shadow_never(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    loan = mon.loans["L1"]
    dpd(mon, "L1", 0, 40)  # warning + critical (+ info, shadow) at once: one episode
    assert loan.warnings_30d() == 1
    dpd(mon, "L1", 1, 5)  # the critical one resolves while the warning still fires: same episode
    dpd(mon, "L1", 2, 40)  # the critical one fires again while the warning fires: same episode
    assert loan.warnings_30d() == 1
    dpd(mon, "L1", 3, 0)  # all clear
    assert loan.warnings_30d() == 1
    dpd(mon, "L1", 4, 3)  # a second episode
    assert loan.warnings_30d() == 2
    assert mon.loans["L2"].warnings_30d() == 0


def test_watch_repeated_warnings__enters_at_the_third_episode_and_exits_30_days_after_the_first(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    out: list[Any] = []
    for day in (0, 2, 4):  # three episodes, each over the next day
        out += dpd(mon, "L1", day, 3)
        out += dpd(mon, "L1", day + 1, 0)
    # the third started at day 4; a rule reads the facts before its evaluation's outputs: seen at day 5
    entered = [o.message for o in out if o.topic == "watch-list"]
    assert watch(out, "L1") == [("entered", "watch-repeated-warnings")]
    assert entered[0].at.timestamp() == START + 5 * DAY
    assert entered[0].facts["warnings_30d"] == 3.0 and entered[0].facts["group_others_on_watch_list"] == 0.0
    assert entered[0].reasons[0].summary_en == "3 warnings in the last 30 days"
    # the boundary: the first episode (day 0) counts up to 30 days after it, inclusive
    assert watch(dpd(mon, "L1", 30, 0), "L1") == []
    assert mon.loans["L1"].warnings_30d() == 3
    out = dpd(mon, "L1", 30 + 1 / DAY, 0)  # one second later: 2 left
    assert mon.loans["L1"].warnings_30d() == 2
    assert watch(out, "L1") == [("exited", "watch-repeated-warnings")]
    assert WARNINGS_WINDOW_S == 30 * DAY


def test_warnings_30d__survives_a_restart_and_an_older_checkpoint_restores_empty(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    for day in (0, 2):
        dpd(mon, "L1", day, 3)
        dpd(mon, "L1", day + 1, 0)
    # the worker checkpoints the loan (pickled into the changelog) and a new worker restores it
    book = LoanBook(mon.loan_book.rulebook, NullSensor())
    for loan in mon.loans.values():
        book.restore(pickle.loads(pickle.dumps(loan, protocol=5)))
    assert book.loans["L1"].warnings_30d() == 2
    book.on_loan_event(
        PaymentOverdue(
            event_id="L1:dpd:r1",
            loan_id="L1",
            effective_at=dt.datetime.fromtimestamp(START + 4 * DAY, dt.UTC),
            days_past_due=3,
            as_of=dt.datetime.fromtimestamp(START + 4 * DAY, dt.UTC),
        )
    )
    assert book.loans["L1"].warnings_30d() == 3  # the third episode on the restarted worker
    # a loan state pickled before the criterion existed: no warnings remembered, not an error
    state = dict(mon.loans["L2"].__dict__)
    del state["warning_firings"], state["own_listing"]
    old = type(mon.loans["L2"]).__new__(type(mon.loans["L2"]))
    old.__setstate__(state)
    assert old.warnings_30d() == 0 and old.own_listing == (False, float("-inf"), False)


# --- the borrower group on the list ------------------------------------------------------------


def test_watch_group_listed__enters_when_another_loan_of_the_group_is_listed_and_exits_with_it(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    out = dpd(mon, "L1", 0, 60)  # L1 listed by t-watch-dpd (and warnings)
    assert watch(out, "L1") == [("entered", "t-watch-dpd")]
    # L2 evaluated at the same event time: L1's listing at that very time is not seen yet
    assert watch(dpd(mon, "L2", 0, 0), "L2") == []
    out = dpd(mon, "L2", 1, 0)
    assert watch(out, "L2") == [("entered", "watch-group-listed")]
    (ev,) = [o.message for o in out if o.topic == "watch-list"]
    assert ev.facts["group_others_on_watch_list"] == 1.0
    assert ev.reasons[0].summary_en == "1 other loan(s) of the borrower group on the watch list"
    # L1's own reason ends; L2 leaves at its next evaluation
    assert watch(dpd(mon, "L1", 2, 0), "L1") == [("exited", "t-watch-dpd")]
    assert watch(dpd(mon, "L2", 3, 0), "L2") == [("exited", "watch-group-listed")]


def test_watch_group_listed__two_loans_of_a_group_never_keep_each_other_on_the_list(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    dpd(mon, "L1", 0, 60)
    dpd(mon, "L2", 1, 0)  # L2 on the list by the group criterion alone
    out = dpd(mon, "L1", 2, 0)  # L1's reason ends: L2's group listing does not hold L1
    assert watch(out, "L1") == [("exited", "t-watch-dpd")]
    assert mon.loans["L1"].listed_apart_from_group(START + 2 * DAY + 1) is False
    out = dpd(mon, "L2", 3, 0) + dpd(mon, "L1", 4, 0) + dpd(mon, "L2", 5, 0) + dpd(mon, "L1", 6, 0)
    assert watch(out, "L2") == [("exited", "watch-group-listed")]
    assert watch(out, "L1") == []
    assert not mon.loans["L1"].watch and not mon.loans["L2"].watch


def test_watch_group_listed__a_loan_without_a_borrower_group_is_never_listed_by_it(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    out = dpd(mon, "L3", 0, 60)  # L3 and L4: one borrower, no borrower_group
    assert watch(out, "L3") == [("entered", "t-watch-dpd")]
    out = dpd(mon, "L4", 1, 0) + dpd(mon, "L4", 2, 0)
    assert watch(out, "L4") == []
    assert mon.loan_book.group_listed(mon.loans["L4"], START + 3 * DAY) == 0
    assert mon.loan_book.group_listed(mon.loans["L1"], START + 3 * DAY) == 0  # L3 is of no group


def test_watch_group_listed__the_listing_survives_a_restart(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    dpd(mon, "L1", 0, 60)
    book = LoanBook(mon.loan_book.rulebook, NullSensor())
    for loan in mon.loans.values():
        book.restore(pickle.loads(pickle.dumps(loan, protocol=5)))
    at = dt.datetime.fromtimestamp(START + DAY, dt.UTC)
    out = book.on_loan_event(PaymentOverdue(event_id="L2:r", loan_id="L2", effective_at=at, days_past_due=0, as_of=at))
    assert watch(out, "L2") == [("entered", "watch-group-listed")]


def test_watch_group_listed__in_the_stream_a_worker_counts_the_loans_of_the_others_from_their_listings(valued) -> None:  # type: ignore[no-untyped-def]
    """Loans of a group on two workers see each other through ``internal.group-listing`` (docs/rules.md)."""
    mon = fresh(valued)
    dpd(mon, "L1", 0, 60)
    one, two = LoanBook(mon.loan_book.rulebook, NullSensor()), LoanBook(mon.loan_book.rulebook, NullSensor())
    one.restore(pickle.loads(pickle.dumps(mon.loans["L1"])))
    two.restore(pickle.loads(pickle.dumps(mon.loans["L2"])))
    at = START + DAY
    assert mon.loan_book.group_listed(mon.loans["L2"], at) == 1  # the backtest: every loan in hand
    assert two.group_listed(two.loans["L2"], at) == 0  # a worker without L1's partition, its listing not read yet
    two.remote = GroupListings()
    rec = standing(one.loans["L1"])  # what worker one publishes after L1's record, worker two reads
    assert rec is not None and rec.listed and rec.changed_at == dt.datetime.fromtimestamp(START, dt.UTC)
    two.remote.apply(rec)
    assert two.group_listed(two.loans["L2"], START) == 0  # as of L1's listing's own event time: not yet
    assert two.group_listed(two.loans["L2"], at) == 1  # as the backtest
    ev = PaymentOverdue(event_id="L2:r", loan_id="L2", effective_at=_dt(at), days_past_due=0, as_of=_dt(at))
    assert watch(two.on_loan_event(ev), "L2") == [("entered", "watch-group-listed")]
    assert watch(dpd(mon, "L2", 1, 0), "L2") == [("entered", "watch-group-listed")]  # as the backtest lists it


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def test_both_criteria_in_shadow_mode_record_alerts_and_list_no_one(valued) -> None:  # type: ignore[no-untyped-def]
    text = DEFAULT.read_text().rstrip("\n") + "\n" + TEST_RULES
    for rid in ("watch-repeated-warnings", "watch-group-listed"):
        text = text.replace(f"  - id: {rid}\n", f"  - id: {rid}\n    mode: shadow\n")
    mon = fresh(valued)
    mon.loan_book.rulebook = parse_rulebook(text, "shadow.yaml")
    out = dpd(mon, "L1", 0, 60)
    for day in (1, 3, 5):
        out += dpd(mon, "L2", day, 3) + dpd(mon, "L2", day + 1, 0)
    fired = [o.message for o in out if o.topic == "alerts" and o.message.status == "firing"]
    alerts = {(a.rule_id, a.shadow) for a in fired}
    assert ("watch-group-listed", True) in alerts and ("watch-repeated-warnings", True) in alerts
    assert watch(out, "L2") == []


def test_warnings_30d__a_silence_the_collector_shares_is_no_warning_the_assets_own_is(default) -> None:  # type: ignore[no-untyped-def]
    """The Madison case: feed-silent on every asset of the collector at once is its outage, not the borrower's."""
    mon = two_loans(default)
    out = feed(mon, range(8), ("A1", "A2"))
    out += feed(mon, range(14, 20), ("A1", "A2"))  # 1.5 h of nothing at all: feed-silent on both
    fired = [o.message for o in out if o.topic == "alerts" and o.message.status == "firing"]
    assert sorted(a.loan_id for a in fired if a.rule_id == "feed-silent") == ["L1", "L2"]
    assert mon.loans["L1"].warnings_30d() == 0 and mon.loans["L2"].warnings_30d() == 0
    out = feed(mon, range(20, 26), ("A2",))  # A1 alone dark while A2 reports: its own silence
    fired = [o.message for o in out if o.topic == "alerts" and o.message.status == "firing"]
    assert [a.loan_id for a in fired if a.rule_id == "feed-silent"] == ["L1"]
    assert mon.loans["L1"].warnings_30d() == 1 and mon.loans["L2"].warnings_30d() == 0


def test_warnings_30d__a_warning_starting_during_the_collectors_outage_is_counted(rb) -> None:  # type: ignore[no-untyped-def]
    """The collector's outage fires feed-silent on both loans (not counted); while it still fires, L1's
    payment falls overdue (t-dpd-warning): that is a warning about the borrower and opens an episode."""
    mon = two_loans(rb)
    feed(mon, range(8), ("A1", "A2"))
    out = feed(mon, range(14, 15), ("A1", "A2"))  # 1.5 h of nothing at all: feed-silent on both, still firing
    silent = [o.message for o in out if o.topic == "alerts" and o.message.rule_id == "feed-silent"]
    assert sorted((a.loan_id, a.status) for a in silent) == [("L1", "firing"), ("L2", "firing")]
    assert mon.loans["L1"].warnings_30d() == 0
    at = T0 + 14.5 * dt.timedelta(minutes=15)
    ev = PaymentOverdue(event_id="L1:dpd", loan_id="L1", effective_at=at, days_past_due=3, as_of=at)
    out = mon.on_loan_event(ev)
    fired = [o.message.rule_id for o in out if o.topic == "alerts" and o.message.status == "firing"]
    assert "t-dpd-warning" in fired
    assert any(a.rule_id == "feed-silent" for a in mon.loans["L1"].active_alerts.values()), "the outage still fires"
    assert mon.loans["L1"].warnings_30d() == 1 and mon.loans["L2"].warnings_30d() == 0
