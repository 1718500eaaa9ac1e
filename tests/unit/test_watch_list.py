"""The watch list (关注名单, issue 19): rules with ``action: watch_list`` put a loan on it and take it off.

A loan enters when the first of its watch-list rules fires, is updated when another reason starts
or ends, and exits with the last one; each record carries every reason that holds, with the firing
alert's words, on the compacted ``pledge.watch-list`` topic keyed by loan.
"""

from __future__ import annotations

import pickle

from monitor.core import CoreParams, Monitor
from monitor.schemas import Repayment
from monitor.sensors import CountingSensor
from rules.rulebook import parse_rulebook
from tests.conftest import ROOT, T0
from tests.unit.test_engine import W, _collapse, _with_l2

WATCH_RULES = """
  - id: watch-coverage-below-warning
    scope: loan
    severity: info
    action: watch_list
    when: loan.below_warning_seconds >= 1800.0
    resolve_when: loan.below_warning_seconds == 0.0
    summary:
      zh: "覆盖率低于预警线已 {{ loan.below_warning_seconds | dur }}"
      en: "coverage below the warning line for {{ loan.below_warning_seconds | dur }}"
  - id: watch-recent-margin-call
    scope: loan
    severity: info
    action: watch_list
    when: loan.seconds_since_margin_call <= 3600.0
    summary:
      zh: "一小时内发出追加保证金通知"
      en: "a margin call issued within the hour"
"""


def default_without_watch_rules() -> str:
    """The shipped rulebook without its own watch-list criteria, so that a test's watch rules are the only ones.

    The mechanism is tested here with rules of the test's own; the shipped criteria (a margin call
    within 30 days among them, which would enter this loan first) in ``test_watch_defaults.py``.
    """
    text = (ROOT / "rules" / "rulebooks" / "default.yaml").read_text()
    base = text[: text.index("  # --- the watch list")].rstrip("\n") + "\n"
    assert "action: watch_list" not in base and "action: watch_list" in text
    return base


def rulebook_with_watch_rules():  # type: ignore[no-untyped-def]
    return parse_rulebook(default_without_watch_rules() + WATCH_RULES, "default+watch.yaml")


def test_a_loan_enters_the_watch_list_is_updated_and_exits_with_its_last_reason() -> None:
    rb = rulebook_with_watch_rules()
    mon = _with_l2(Monitor(rb, CoreParams(), CountingSensor()))
    from tests.conftest import make_loan, make_pledge

    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    out = _collapse(mon, range(8), trips=10) + _collapse(mon, range(8, 24))
    events = [o.message for o in out if o.topic == "watch-list"]
    assert events and all(e.loan_id == "L1" and e.borrower_id for e in events)
    assert events[0].status == "entered" and events[0].on_list
    # the margin call (seen by the rules at the next window close), then half an hour below the warning
    # line, then the hour since the margin call is over: one reason left
    assert [(e.status, e.rule_id) for e in events] == [
        ("entered", "watch-recent-margin-call"),
        ("updated", "watch-coverage-below-warning"),
        ("updated", "watch-recent-margin-call"),
    ]
    both = events[1]
    assert [r.rule_id for r in both.reasons] == ["watch-recent-margin-call", "watch-coverage-below-warning"]
    assert "below the warning line for 30 min" in both.reasons[1].summary_en
    assert both.reasons[0].alert_id.startswith("al-") and both.facts["coverage_ratio"] < 1.3
    assert [r.rule_id for r in events[2].reasons] == ["watch-coverage-below-warning"] and events[2].on_list
    loan = mon.loans["L1"]
    assert loan._loan_facts(loan.snapshot())["on_watch_list"] is True

    # repaid: coverage back above the warning line ends the last reason, and the loan exits the list
    snap = loan.snapshot()
    amount = snap.outstanding - snap.collateral_value_lower / 1.3 + 1_000.0
    out = mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0 + 24 * W, amount=amount))
    (last,) = [o.message for o in out if o.topic == "watch-list"]
    assert (last.status, last.rule_id, last.on_list, last.reasons) == (
        "exited", "watch-coverage-below-warning", False, []
    )  # fmt: skip
    assert loan._loan_facts(loan.snapshot())["below_warning_seconds"] == 0.0
    # a loan state pickled before the watch list existed still loads, off the list
    state = pickle.loads(pickle.dumps(loan))
    del state.__dict__["watch"], state.__dict__["below_warning_since"]
    restored = pickle.loads(pickle.dumps(state))
    assert restored.watch == {} and restored.below_warning_since is None


def test_a_shadow_watch_list_rule_records_its_alert_and_moves_no_loan() -> None:
    rb = parse_rulebook(
        default_without_watch_rules()
        + WATCH_RULES.replace("    action: watch_list\n", "    action: watch_list\n    mode: shadow\n"),
        "shadow.yaml",
    )
    mon = _with_l2(Monitor(rb, CoreParams(), CountingSensor()))
    from tests.conftest import make_loan, make_pledge

    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    out = _collapse(mon, range(8), trips=10) + _collapse(mon, range(8, 24))
    assert not [o for o in out if o.topic == "watch-list"]
    shadow = [o.message for o in out if o.topic == "alerts" and o.message.rule_id.startswith("watch-")]
    assert shadow and all(a.shadow for a in shadow)
