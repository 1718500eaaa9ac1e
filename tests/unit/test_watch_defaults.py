"""The default rulebook's watch-list criteria (issue 19 point 1): what puts a loan on the list, and what does not.

- ``watch-margin-call``: a margin call in the last 30 days;
- ``watch-below-warning``: coverage below the warning line for 3 days, off one contract gap above it;
- ``watch-feed-dark``: the asset's own feed dark for 2 h of expected service while the other assets of
  its collector report (``asset.silent_alone_seconds``); a gap every asset of the collector shares is
  the collector's outage (the Madison polls, ``SOURCE.md``) and puts no loan on the list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
from typing import Any

import pytest

from monitor.backtest import run_backtest
from monitor.core import AssetBook, CoreParams, Monitor
from monitor.core.assets import AssetMonitor
from monitor.incidents import parse_incident
from monitor.sensors import CountingSensor, NullSensor
from rules.lifecycle import RuleState, evaluate_subject
from rules.rulebook import example_facts, load_rulebook
from tests.conftest import BOOK, ROOT, T0, healthy_window_events, make_loan, make_pledge, sample_telemetry

W = dt.timedelta(minutes=15)
WATCH = ("watch-margin-call", "watch-below-warning", "watch-feed-dark")


@pytest.fixture(scope="module")
def default():  # type: ignore[no-untyped-def]
    return load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")


def two_loans(rulebook, zone_a2: str = "UTC") -> Monitor:  # type: ignore[no-untyped-def]
    """L1 on A1 and L2 on A2, both fed by one collector (same time zone unless ``zone_a2`` says otherwise)."""
    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    mon.on_loan_event(make_loan(event_id="L2:opened", loan_id="L2"))
    mon.on_loan_event(make_pledge(event_id="L2:pledged:A2", loan_id="L2", asset_id="A2", asset_timezone=zone_a2))
    return mon


def feed(mon: Monitor, windows: range, assets: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for i in windows:
        for asset in assets:
            for ev in healthy_window_events(asset, T0 + i * W, trips=10, prefix="h"):
                out += mon.on_telemetry(ev)
    return out


def watch_events(out: list[Any], loan: str) -> list[tuple[str, str]]:
    return [(o.message.status, o.message.rule_id) for o in out if o.topic == "watch-list" and o.message.loan_id == loan]


def last_valuation(out: list[Any], asset: str) -> Any:
    return [o.message for o in out if o.topic == "valuations" and o.message.asset_id == asset][-1]


def test_the_default_rulebook_has_the_three_watch_list_criteria_each_with_its_words(default) -> None:  # type: ignore[no-untyped-def]
    rules = {r.id: r for r in default.rules}
    assert all(rules[r].action == "watch_list" and rules[r].severity == "info" for r in WATCH)
    assert all(not rules[r].shadow for r in WATCH)
    assert rules["watch-feed-dark"].scope == "asset" and rules["watch-margin-call"].scope == "loan"
    text = (ROOT / "rules" / "rulebooks" / "default.yaml").read_text()
    assert text.count("EBA/GL/2020/06") >= 3  # every criterion says where it comes from
    daily = {r.id: r for r in load_rulebook(ROOT / "examples" / "rulebooks" / "daily-ridership.yaml").rules}
    assert all(daily[r].action == "watch_list" for r in WATCH)


def run_rule(rulebook, rule_id: str, scope: str, steps: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, str]]:  # type: ignore[no-untyped-def]
    """Drive one rule's lifecycle over (time, fact overrides) steps; the transitions as (time, status)."""
    one = dataclasses.replace(rulebook, rules=[r for r in rulebook.rules if r.id == rule_id])
    states: dict[str, RuleState] = {}
    seen = []
    for t, over in steps:
        facts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in example_facts(scope).items()}
        for path, value in over.items():
            head, key = path.split(".")
            facts[head][key] = value
        for tr in evaluate_subject(one, scope, "S", facts, states, t):
            seen.append((t, tr.status))
    return seen


def test_watch_below_warning__three_days_below_the_line_enters_and_only_one_gap_above_it_exits(default) -> None:  # type: ignore[no-untyped-def]
    day = 86_400.0
    lines = {"loan.thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1}}
    steps = [
        (0.0, {"loan.coverage_ratio": 1.25, "loan.below_warning_seconds": 0.0}),
        (2 * day, {"loan.coverage_ratio": 1.25, "loan.below_warning_seconds": 2 * day}),  # a 2-day dip: not yet
        (3 * day, {"loan.coverage_ratio": 1.25, "loan.below_warning_seconds": 3 * day}),  # 3 days: on the list
        (4 * day, {"loan.coverage_ratio": 1.35, "loan.below_warning_seconds": 0.0}),  # back above the line only
        (5 * day, {"loan.coverage_ratio": 1.29, "loan.below_warning_seconds": 0.0}),  # hovering: stays on
        (6 * day, {"loan.coverage_ratio": 1.41, "loan.below_warning_seconds": 0.0}),  # one gap above: off
    ]
    steps = [(t, {**lines, **s}) for t, s in steps]
    assert run_rule(default, "watch-below-warning", "loan", steps) == [(3 * day, "firing"), (6 * day, "resolved")]


def test_watch_margin_call__thirty_days_after_the_newest_call(default) -> None:  # type: ignore[no-untyped-def]
    day = 86_400.0
    steps = [
        (0.0, {"loan.seconds_since_margin_call": float("inf")}),  # never one: not on the list
        (1.0, {"loan.seconds_since_margin_call": 900.0}),
        (29 * day, {"loan.seconds_since_margin_call": 29 * day}),
        (30 * day + 1, {"loan.seconds_since_margin_call": 30 * day + 1}),
    ]
    assert run_rule(default, "watch-margin-call", "loan", steps) == [(1.0, "firing"), (30 * day + 1, "resolved")]


def test_watch_feed_dark__the_assets_own_feed_dark_while_its_peer_reports_enters_after_2_h_and_exits(default) -> None:  # type: ignore[no-untyped-def]
    mon = two_loans(default)
    out = feed(mon, range(8), ("A1", "A2"))
    # A1's feed goes dark; A2, fed by the same collector, keeps reporting: A1's own darkness
    out += feed(mon, range(8, 20), ("A2",))
    val = last_valuation(out, "A1")
    assert val.silent_alone_seconds == val.silent_in_service_seconds > 7200.0
    assert watch_events(out, "L1") == [("entered", "watch-feed-dark")]
    (entry,) = [o.message for o in out if o.topic == "watch-list" and o.message.loan_id == "L1"]
    assert "dark for 2 h 0 min" in entry.reasons[0].summary_en and entry.reasons[0].subject == "A1"
    assert watch_events(out, "L2") == []
    # the feed comes back: off the list once it has reported for the rule's hour (keep_firing_for)
    out = feed(mon, range(20, 22), ("A1", "A2"))
    assert watch_events(out, "L1") == []
    out = feed(mon, range(22, 28), ("A1", "A2"))
    assert watch_events(out, "L1") == [("exited", "watch-feed-dark")]


def test_watch_feed_dark__a_gap_every_asset_of_the_collector_shares_puts_no_loan_on_the_list(default) -> None:  # type: ignore[no-untyped-def]
    """The Madison case: the collector stops (no poll, no heartbeat of any asset) while the buses run."""
    mon = two_loans(default)
    out = feed(mon, range(8), ("A1", "A2"))
    out += feed(mon, range(20, 24), ("A1", "A2"))  # 3 h of nothing at all, then both again
    silent = [o.message for o in out if o.topic == "valuations" and o.message.events_in_window == 0]
    assert silent and {v.asset_id for v in silent} == {"A1", "A2"}
    assert max(v.silent_in_service_seconds for v in silent) >= 3 * 3600.0  # feed-silent still reports it
    assert all(v.silent_alone_seconds == 0.0 for v in silent)
    assert watch_events(out, "L1") == watch_events(out, "L2") == []
    assert any(o.topic == "alerts" and o.message.rule_id == "feed-silent" for o in out)


def test_watch_feed_dark__the_collectors_gap_neither_counts_nor_ends_the_feeds_own_silence(default) -> None:  # type: ignore[no-untyped-def]
    mon = two_loans(default)
    out = feed(mon, range(8), ("A1", "A2"))
    out += feed(mon, range(8, 12), ("A2",))  # A1 dark alone for 1 h
    out += feed(mon, range(16, 23), ("A2",))  # then 1 h of the collector's gap, then A1 dark alone again
    alone = [
        v.silent_alone_seconds
        for v in (o.message for o in out if o.topic == "valuations" and o.message.asset_id == "A1")
        if v.events_in_window == 0
    ]
    # counted 15 min a window while A2 reported, held through the shared hour, counted on after it
    assert (
        alone
        == [900.0, 1800.0, 2700.0, 3600.0, 3600.0, 3600.0, 3600.0, 3600.0, 4500.0, 5400.0, 6300.0, 7200.0][: len(alone)]
    )
    assert alone[-1] >= 7200.0 and watch_events(out, "L1") == [("entered", "watch-feed-dark")]


def test_watch_feed_dark__without_a_peer_nothing_tells_the_collector_apart_and_the_silence_counts(default) -> None:  # type: ignore[no-untyped-def]
    # A2 is in another time zone, so it is another collector's: A1 has no peer
    mon = two_loans(default, zone_a2="Asia/Shanghai")
    out = feed(mon, range(8), ("A1", "A2"))
    out += feed(mon, range(20, 24), ("A1", "A2"))
    silent = [o.message for o in out if o.topic == "valuations" and o.message.asset_id == "A1"]
    assert max(v.silent_alone_seconds for v in silent) == max(v.silent_in_service_seconds for v in silent) > 7200.0
    assert ("entered", "watch-feed-dark") in watch_events(out, "L1")


def test_peers_silent__the_books_judgement_and_checkpoints() -> None:
    book = AssetBook(CoreParams(), NullSensor())
    book.register(make_pledge())
    book.register(make_pledge(event_id="L2:pledged:A2", loan_id="L2", asset_id="A2"))
    a1, a2 = book.assets["A1"], book.assets["A2"]
    start = T0.timestamp()
    assert not book.peers_silent(a1, start)  # A2 never valued: no peer yet
    a2.first_window_start = start
    assert book.peers_silent(a1, start)
    a2.heard.append(start)
    assert not book.peers_silent(a1, start)
    # the book's hook is never checkpointed; a restored asset gets it back from the book
    restored = pickle.loads(pickle.dumps(a1))
    assert restored.peers_silent is None and restored.heard == a1.heard
    book.restore(restored)
    assert restored.peers_silent is not None
    # a checkpoint from before the fact loads with no memory of windows heard
    state = restored.__getstate__()
    del state["heard"], state["silent_alone_s"]
    old = AssetMonitor.__new__(AssetMonitor)
    old.__setstate__(state)
    assert list(old.heard) == [] and old.silent_alone_s == 0.0


def test_the_demo_puts_the_loan_that_gets_the_margin_call_on_the_watch_list_with_its_reason(default) -> None:  # type: ignore[no-untyped-def]
    from monitor.backtest import load_loan_book

    incidents = [parse_incident("cut:akl-routes-7xx@3h:0.6"), parse_incident("outage:akl-routes-9xx@3h")]
    res = run_backtest(load_loan_book(BOOK), list(sample_telemetry()), default, CoreParams(), incidents)
    call = next(m for m in res.margin_calls if m.status == "issued")
    entries = {(w.loan_id, w.rule_id): w for w in res.watch_list if w.status == "entered"}
    assert set(entries) == {("L-AKL-002", "watch-margin-call"), ("L-AKL-003", "watch-feed-dark")}
    mc = entries[("L-AKL-002", "watch-margin-call")]
    assert call.loan_id == "L-AKL-002" and mc.at > call.issued_at  # seen at the next window close
    assert "margin call issued" in mc.reasons[0].summary_en
    # the dark feed of akl-routes-9xx while the collector's other route groups report
    assert "akl-routes-9xx" in entries[("L-AKL-003", "watch-feed-dark")].reasons[0].summary_en
    assert not [w for w in res.watch_list if w.loan_id == "L-AKL-001"]
