"""The core end to end in-process: windows, quality, valuation, loan coverage, rules, margin calls."""

from __future__ import annotations

import datetime as dt
import itertools
import pickle

import pytest

from monitor.core import CoreParams, Monitor, required_top_up
from monitor.schemas import BalanceChanged, InterestAccrued, Repayment
from monitor.sensors import CountingSensor
from tests.conftest import T0, healthy_window_events, make_event, make_loan, make_pledge

W = dt.timedelta(minutes=15)


def book(rulebook, **params):  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook, CoreParams(**params), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    return mon


def feed(mon: Monitor, windows: range, asset: str = "A1", trips: int = 10, prefix: str = "h") -> list:  # type: ignore[type-arg]
    out = []
    for i in windows:
        for ev in healthy_window_events(asset, T0 + i * W, trips=trips, prefix=prefix):
            out += mon.on_telemetry(ev)
    return out


def test_required_top_up__restores_the_warning_line() -> None:
    extra, repay = required_top_up(1.3, 7_000_000.0, 8_000_000.0)
    assert (8_000_000.0 + extra) / 7_000_000.0 == pytest.approx(1.3)
    assert 8_000_000.0 / (7_000_000.0 - repay) == pytest.approx(1.3)
    assert required_top_up(1.3, 1.0, 10.0) == (0.0, 0.0)


def test_monitor__healthy_asset_keeps_its_appraised_value_and_raises_nothing(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = book(rulebook)
    out = feed(mon, range(12))
    vals = [o.message for o in out if o.topic == "valuations"]
    assert len(vals) >= 10
    assert all(v.status == "active" for v in vals)
    assert vals[-1].value == pytest.approx(10_000_000.0, rel=0.02)
    assert vals[-1].quality["accessibility"] == pytest.approx(1.0)
    assert not [o for o in out if o.topic == "alerts"]
    snap = mon.loans["L1"].snapshot()
    assert snap.coverage_ratio == pytest.approx(10 / 7, rel=0.02)
    assert snap.ltv == pytest.approx(1 / snap.coverage_ratio)


def _collapse(mon: Monitor, windows: range, trips: int = 1) -> list:  # type: ignore[type-arg]
    """A1 keeps reporting (polls every 120 s) but runs ``trips`` of its 10 trips a window; A2 stays healthy."""
    out = []
    for i in windows:
        out += feed(mon, range(i, i + 1), trips=trips, prefix="c") + feed(mon, range(i, i + 1), asset="A2")
    return out


def _with_l2(mon: Monitor) -> Monitor:
    mon.on_loan_event(make_loan(event_id="L2:opened", loan_id="L2"))
    mon.on_loan_event(make_pledge(event_id="L2:pledged:A2", loan_id="L2", asset_id="A2"))
    return mon


def test_monitor__activity_collapse_escalates_to_one_margin_call_then_close_out(rulebook) -> None:  # type: ignore[no-untyped-def]
    """A warning comes first (the level-shift detector's early warning, ``activity-shortfall``);
    once the shift is confirmed the level restarts at the collapsed activity, the 90 % lower bound
    calls margin, and the close-out (on the point value) comes no earlier than the margin call."""
    mon = _with_l2(book(rulebook))
    out = _collapse(mon, range(8), trips=10) + _collapse(mon, range(8, 40))
    fired = [
        o.message for o in out if o.topic == "alerts" and o.message.loan_id == "L1" and o.message.status == "firing"
    ]
    firing = [a.rule_id for a in fired]
    first = {a.rule_id: a.at for a in reversed(fired)}
    assert firing[0] in ("activity-shortfall", "coverage-below-warning")
    assert first[firing[0]] < first["coverage-below-margin-call"] <= first["coverage-below-close-out"]
    assert "feed-silent" not in firing  # the feed kept reporting: this is activity, not silence
    calls = [o.message for o in out if o.topic == "margin-calls"]
    assert len(calls) == 1 and calls[0].status == "issued" and calls[0].loan_id == "L1"
    mc = calls[0]
    # the top-up restores the 90 % lower bound to the warning line (where the call is cured), so it
    # is more than the point value's gap
    snap_at_issue = next(
        o.message
        for o in out
        if o.topic == "loan-risk" and o.message.loan_id == "L1" and o.message.as_of == mc.issued_at
    )
    assert mc.required_top_up_collateral == pytest.approx(1.3 * mc.outstanding - snap_at_issue.collateral_value_lower)
    assert mc.required_top_up_collateral > max(0.0, 1.3 * mc.outstanding - mc.collateral_value)
    # 5 calendar days from Monday 2024-03-04 end on Saturday 03-09; the contract's default convention
    # (following business day, monitor.holidays) moves the deadline to Monday 03-11, same time of day
    assert mc.cure_deadline == mc.issued_at + dt.timedelta(days=7) and not mc.deadline_provisional
    assert not [o for o in out if o.topic == "alerts" and o.message.loan_id == "L2"]


def test_monitor__dark_feed_is_feed_silent_at_once_and_one_margin_call_only_past_the_silence_grace(rulebook) -> None:  # type: ignore[no-untyped-def]
    """Issue 15 item 3: silence in expected service is uncertainty first (``feed-silent``, a widening
    interval, the value carried), impairment only once it outlasts the profile's grace (12 h)."""
    mon = _with_l2(book(rulebook))
    out = _collapse(mon, range(8), trips=10)
    dark_from = T0 + 8 * W
    out += feed(mon, range(8, 80), asset="A2")  # A1 dark for 18 h while A2 moves the clock
    l1 = [o.message for o in out if o.topic == "alerts" and o.message.loan_id == "L1" and o.message.status == "firing"]
    assert l1[0].rule_id == "feed-silent" and l1[0].at - dark_from <= dt.timedelta(minutes=45)
    calls = [o.message for o in out if o.topic == "margin-calls"]
    assert len(calls) == 1 and calls[0].loan_id == "L1"
    grace = dt.timedelta(hours=12)
    assert calls[0].issued_at - dark_from > grace  # never within the grace
    a1 = [
        o.message
        for o in out
        if o.topic == "valuations" and o.message.asset_id == "A1" and o.message.events_in_window == 0
    ]
    within = [v for v in a1 if v.in_silence_grace]
    assert len(within) == 48 and {round(v.value) for v in within} == {round(within[0].value)}
    assert all(b.value_lower < a.value_lower for a, b in itertools.pairwise(within))
    after = [v for v in a1 if not v.in_silence_grace]
    assert after and after[-1].value < 0.8 * within[-1].value  # the point value falls after the grace


def test_monitor__repayment_cures_the_margin_call(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _with_l2(book(rulebook))
    out = _collapse(mon, range(8), trips=10) + _collapse(mon, range(8, 24))
    assert [o.message.status for o in out if o.topic == "margin-calls"] == ["issued"]
    snap = mon.loans["L1"].snapshot()
    # repaid down to the warning line on the lower bound, so the lower bound clears it too
    lower_cov = snap.collateral_value_lower / snap.outstanding
    amount = snap.outstanding - snap.collateral_value_lower / 1.3 + 1_000.0
    assert lower_cov < 1.2 and amount > snap.required_repayment
    out = mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0 + 24 * W, amount=amount))
    statuses = [o.message.status for o in out if o.topic == "margin-calls"]
    assert statuses == ["cured"]
    assert mon.loans["L1"].snapshot().coverage_ratio >= 1.3


def test_margin_call__deadline_passed_unmet_expires_with_a_critical_close_out_alert_resolved_by_repayment(
    rulebook,
) -> None:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan(cure_period="2h"))
    mon.on_loan_event(make_pledge())
    _with_l2(mon)
    out = _collapse(mon, range(8), trips=10)
    out = _collapse(mon, range(8, 36))  # A1 at a tenth of its trips for 7 h: issued, then 2 h later expired
    calls = [o.message for o in out if o.topic == "margin-calls"]
    assert [m.status for m in calls] == ["issued", "expired"] and len({m.margin_call_id for m in calls}) == 1
    issued, expired = calls
    assert issued.cure_deadline == issued.issued_at + dt.timedelta(hours=2)
    assert expired.updated_at >= issued.cure_deadline
    x = [o.message for o in out if o.topic == "alerts" and o.message.rule_id == "margin-call-expired"]
    assert [(a.status, a.severity) for a in x] == [("firing", "critical")]
    assert issued.margin_call_id in x[0].summary_en and "close-out" in x[0].summary_en
    assert x[0].at == expired.updated_at
    # more event time passes: nothing is issued or expired twice
    out = _collapse(mon, range(36, 40))
    assert not [o for o in out if o.topic == "margin-calls"]
    # a repayment restores the warning line: the episode ends, the expiry alert resolves, the call stays expired
    snap = mon.loans["L1"].snapshot()
    amount = snap.outstanding - snap.collateral_value_lower / 1.3 + 1_000.0
    out = mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0 + 40 * W, amount=amount))
    resolved = [(o.message.rule_id, o.message.status) for o in out if o.topic == "alerts"]
    assert ("margin-call-expired", "resolved") in resolved and ("coverage-below-margin-call", "resolved") in resolved
    assert not [o for o in out if o.topic == "margin-calls"]
    assert mon.loans["L1"].margin_calls[issued.margin_call_id].status == "expired"


def test_loan__outstanding_includes_accrued_interest_and_repayment_pays_interest_first(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = book(rulebook)
    loan = mon.loans["L1"]
    mon.on_loan_event(InterestAccrued(event_id="i1", loan_id="L1", effective_at=T0, amount=100_000.0))
    assert loan.outstanding == 7_100_000.0
    mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0, amount=150_000.0))
    assert (loan.accrued_interest, loan.principal_outstanding) == (0.0, 6_950_000.0)
    mon.on_loan_event(BalanceChanged(event_id="b1", loan_id="L1", effective_at=T0, outstanding=5_000_000.0))
    assert loan.outstanding == 5_000_000.0
    before = loan.outstanding
    mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=T0, amount=150_000.0))
    assert loan.outstanding == before  # idempotent by event id


def test_monitor__calibrating_asset_never_issues_a_margin_call(rulebook) -> None:  # type: ignore[no-untyped-def]
    from monitor.schemas import Appraisal

    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(
        make_pledge(appraisal=Appraisal(value=10_000_000.0, appraised_on=dt.date(2024, 1, 1), appraiser="t"))
    )
    out = feed(mon, range(3))
    mon.on_loan_event(make_loan(event_id="L2:opened", loan_id="L2"))
    mon.on_loan_event(make_pledge(event_id="L2:pledged:A2", loan_id="L2", asset_id="A2"))
    out += feed(mon, range(3, 20), asset="A2")
    vals = [o.message for o in out if o.topic == "valuations" and o.message.asset_id == "A1"]
    assert vals and all(v.status == "calibrating" for v in vals)
    assert not [o for o in out if o.topic == "margin-calls"]
    assert mon.loans["L1"].snapshot().status == "calibrating"


def test_monitor__late_event_is_counted_and_never_rolls_state_back(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = book(rulebook, allowed_lateness_s=60.0)
    feed(mon, range(4))
    before = mon.assets["A1"].closed_until
    late = make_event(event_id="late-1", observed_at=T0 + W, received_at=T0 + 4 * W)
    assert mon.on_telemetry(late) == []
    assert mon.assets["A1"].closed_until == before
    assert mon.sensor.events[("pledge.telemetry", "late")] == 1  # type: ignore[attr-defined]


def test_asset_state__pickle_round_trip_gives_identical_valuations(rulebook) -> None:  # type: ignore[no-untyped-def]
    a = book(rulebook)
    feed(a, range(40))
    b = book(rulebook)
    b.asset_book.assets["A1"] = pickle.loads(pickle.dumps(a.assets["A1"]))
    b.asset_book.clock = a.asset_book.clock
    out_a = [o.message for o in feed(a, range(40, 50), prefix="x") if o.topic == "valuations"]
    out_b = [o.message for o in feed(b, range(40, 50), prefix="x") if o.topic == "valuations"]
    assert out_a == out_b and out_a


def test_state_pickled_before_the_core_split_still_loads(rulebook) -> None:  # type: ignore[no-untyped-def]
    """Changelog states written before monitor/engine.py became monitor/core/ name ``monitor.engine.*``."""
    from monitor.core.assets import AssetMonitor
    from monitor.core.loans import LoanMonitor, _AssetSlot

    a = book(rulebook)
    feed(a, range(20))
    classes = (AssetMonitor, LoanMonitor, _AssetSlot)
    saved = [c.__module__ for c in classes]
    try:
        for c in classes:  # pickle as the old code did
            c.__module__ = "monitor.engine"
        old_asset, old_loan = pickle.dumps(a.assets["A1"]), pickle.dumps(next(iter(a.loans.values())))
    finally:
        for c, m in zip(classes, saved, strict=True):
            c.__module__ = m
    assert b"monitor.engine" in old_asset and b"monitor.engine" in old_loan
    assert isinstance(pickle.loads(old_asset), AssetMonitor) and isinstance(pickle.loads(old_loan), LoanMonitor)
    assert b"monitor.core.assets" in pickle.dumps(pickle.loads(old_asset))  # written back under the new name


def test_shadow_rule__alert_recorded_with_shadow_flag_but_never_a_margin_call() -> None:
    from rules.rulebook import load_rulebook, parse_rulebook
    from tests.conftest import ROOT

    text = (ROOT / "rules" / "rulebooks" / "default.yaml").read_text()
    text = text.replace("    action: margin_call\n", "    action: margin_call\n    mode: shadow\n")
    shadow = parse_rulebook(text)
    assert load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")  # the original stays valid
    mon = _with_l2(book(shadow))
    _collapse(mon, range(8), trips=10)
    out = _collapse(mon, range(8, 30))
    mc_alerts = [o.message for o in out if o.topic == "alerts" and o.message.rule_id == "coverage-below-margin-call"]
    assert mc_alerts and all(a.shadow for a in mc_alerts)
    assert not [o for o in out if o.topic == "margin-calls"]
    others = [o.message for o in out if o.topic == "alerts" and o.message.rule_id != "coverage-below-margin-call"]
    assert others and not any(a.shadow for a in others)


def _probe_scores(asset) -> list[float]:  # type: ignore[no-untyped-def]
    v = asset.valuer
    probes = [
        {"activity_ratio": i / 10, "mean_delay_s": 30.0 * i, "late_share": i / 20, "updates_per_poll": 2.0 * i}
        for i in range(20)
    ]
    return [float(v._hst.score_one(v._scaler.transform_one(p))) for p in probes] + [v._activity_index(START_PROBE)]


START_PROBE = T0.timestamp() + 2000 * 900


def test_case_c12_checkpoint_restores_in_a_fresh_process_with_identical_scores(rulebook, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    mon = book(rulebook, replay_windows=2000)
    feed(mon, range(1000))
    asset = mon.assets["A1"]
    assert asset.valuer.windows_seen == 999  # the last window is still open
    ckpt = tmp_path / "a1.pickle"
    ckpt.write_bytes(pickle.dumps(asset))
    code = (
        "import json, pickle, sys; sys.path.insert(0, '.');"
        "from tests.unit.test_engine import _probe_scores;"
        f"a = pickle.loads(open({str(ckpt)!r}, 'rb').read());"
        "print(json.dumps(_probe_scores(a)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(__import__("tests.conftest", fromlist=["ROOT"]).ROOT),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == _probe_scores(asset)
    assert pickle.loads(ckpt.read_bytes()).__dict__.get("model_stamp") is None  # the stamp is checked, not kept


def test_case_c12_checkpoint_of_another_river_version_is_rebuilt_by_replay_with_a_warning(rulebook, caplog) -> None:  # type: ignore[no-untyped-def]
    mon = book(rulebook, replay_windows=2000)
    feed(mon, range(300))
    asset = mon.assets["A1"]
    state = asset.__getstate__()
    state["model_stamp"] = {**state["model_stamp"], "models": {"river": "0.0.0"}}
    state["valuer"] = b"not a pickle a newer river could read"
    restored = object.__new__(type(asset))
    with caplog.at_level("WARNING"):
        restored.__setstate__(state)
    assert "checkpoint differs in models" in caplog.text
    assert "rebuilding models by replaying 299 windows" in caplog.text
    assert restored.valuer is not asset.valuer
    assert _probe_scores(restored) == _probe_scores(asset)  # the replay of all 300 windows is exact


def test_reappraisal__renewal_pledge_resets_models_and_the_loan_values_at_the_new_appraisal(rulebook) -> None:  # type: ignore[no-untyped-def]
    from monitor.schemas import Appraisal

    mon = book(rulebook)
    feed(mon, range(40), trips=6)  # activity at 60 % of the baseline: the value falls
    asset = mon.assets["A1"]
    fallen = mon.loans["L1"].collateral()[0]
    assert fallen < 9_000_000.0 and asset.valuer.windows_seen == 39  # the 40th window is still open
    fresh = Appraisal(
        value=6_000_000.0,
        appraised_on=dt.date(2024, 3, 4),
        appraiser="test",
        baseline_activity=[24.0] * 24,  # the new appraisal assumes the lower activity
        quality_baseline=1.0,
    )
    mon.on_loan_event(make_pledge(event_id="L1:renewed:A1", effective_at=T0 + 40 * W, appraisal=fresh))
    assert mon.assets["A1"] is asset and asset.valuer.windows_seen == 0 and asset.appraisal_value == 6_000_000.0
    assert mon.loans["L1"].collateral() == (6_000_000.0, 6_000_000.0)  # the appraisal until the next valuation
    feed(mon, range(41, 45), trips=6, prefix="r")
    v = mon.loans["L1"].assets["A1"].valuation
    assert v is not None and v.appraisal_value == 6_000_000.0 and 0.9 < v.activity_index <= 1.1
    seen = asset.valuer.windows_seen
    assert seen >= 3
    # the same appraisal pledged again (another event id) changes nothing
    mon.on_loan_event(make_pledge(event_id="L1:again:A1", effective_at=T0 + 46 * W, appraisal=fresh))
    assert mon.assets["A1"].valuer.windows_seen == seen and mon.loans["L1"].assets["A1"].valuation is v


def _two_loans(rulebook):  # type: ignore[no-untyped-def]
    """L1 on A1 (the feed under test) and L2 on A2 (keeps the stream clock moving)."""
    mon = book(rulebook)
    mon.on_loan_event(make_loan(event_id="L2:opened", loan_id="L2"))
    mon.on_loan_event(make_pledge(event_id="L2:pledged:A2", loan_id="L2", asset_id="A2"))
    return mon


def test_case_c20_silent_feed_ages_loses_accessibility_and_value_one_staleness_warning_raised_and_cleared(
    rulebook,
) -> None:  # type: ignore[no-untyped-def]
    mon = _two_loans(rulebook)
    out = feed(mon, range(8)) + feed(mon, range(8), asset="A2")
    silent = []
    for i in range(8, 18):  # A1 silent for 10 windows while A2 goes on
        silent += feed(mon, range(i, i + 1), asset="A2")
    out += silent
    a1 = [o.message for o in silent if o.topic == "valuations" and o.message.asset_id == "A1"]
    assert len(a1) >= 8
    ages = [v.last_event_age_seconds for v in a1]
    assert all(b > a for a, b in itertools.pairwise(ages))  # keeps rising
    assert a1[-1].quality["accessibility"] < a1[0].quality["accessibility"] <= 1.0
    # issue 15: within the silence grace the interval's lower bound falls, the point value after it
    dark = [v for v in a1 if v.events_in_window == 0]
    assert len(dark) >= 6 and all(v.in_silence_grace for v in dark)
    assert all(b.value_lower < a.value_lower for a, b in itertools.pairwise(dark))
    assert dark[-1].value == pytest.approx(dark[0].value)
    out += feed(mon, range(18, 22)) + feed(mon, range(18, 22), asset="A2")  # fresh data resumes
    stale = [
        o.message.status
        for o in out
        if o.topic == "alerts" and o.message.rule_id == "feed-silent" and o.message.asset_id == "A1"
    ]
    assert stale == ["firing", "resolved"]


def test_case_c20_frozen_feed_repeats_count_as_duplicates_not_activity_and_train_nothing(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _two_loans(rulebook)
    feed(mon, range(8))
    feed(mon, range(8), asset="A2")
    last_poll = healthy_window_events("A1", T0 + 7 * W)[-3:]  # the feed's last answer, re-sent unchanged
    seen_before = len(mon.assets["A1"].seen)
    model_before = pickle.dumps(mon.assets["A1"].valuer)
    out = []
    for _ in range(20):  # every 30 s for 10 minutes, with frozen timestamps
        for ev in last_poll:
            out += mon.on_telemetry(ev)
    out += feed(mon, range(8, 13), asset="A2")  # A2 moves the clock on
    sensor = mon.sensor
    assert isinstance(sensor, CountingSensor)
    assert sensor.events[("pledge.telemetry", "duplicate")] == 20 * len(last_poll)
    assert len(mon.assets["A1"].seen) == seen_before  # no new event entered the state
    a1 = [o.message for o in out if o.topic == "valuations" and o.message.asset_id == "A1"]
    frozen, *after = a1  # the window the repeats belong to (still open), then the silent ones
    assert frozen.window_start == T0 + 7 * W
    assert frozen.events_in_window == len(healthy_window_events("A1", T0 + 7 * W))  # repeats added nothing
    assert frozen.duplicates == 20 * len(last_poll)  # they are visible as duplicates
    assert after and all(v.events_in_window == 0 and v.activity == 0.0 for v in after)
    assert a1[-1].last_event_age_seconds > a1[0].last_event_age_seconds  # a frozen feed ages like a silent one
    assert a1[-1].quality["accessibility"] < frozen.quality["accessibility"]
    stale = [o.message.status for o in out if o.topic == "alerts" and o.message.rule_id == "feed-silent"]
    assert stale == ["firing"]  # the staleness warning is raised, once, despite the repeats
    # the repeats themselves trained nothing: the model changed only by closing the silent windows,
    # exactly as it does for a feed that is merely silent
    silent = _two_loans(rulebook)
    feed(silent, range(8))
    feed(silent, range(8), asset="A2")
    assert pickle.dumps(silent.assets["A1"].valuer) == model_before
    feed(silent, range(8, 13), asset="A2")
    assert pickle.dumps(silent.assets["A1"].valuer) == pickle.dumps(mon.assets["A1"].valuer)


def test_case_c02_every_record_redelivered_around_the_crossing_still_one_margin_call(rulebook) -> None:  # type: ignore[no-untyped-def]
    """C02 where it matters: the records that move the clock past the margin-call line, each delivered twice."""

    def run(times: int) -> tuple[list, CountingSensor]:  # type: ignore[type-arg]
        mon = _two_loans(rulebook)
        out = []
        for i in range(8):  # both healthy, fed window by window
            out += feed(mon, range(i, i + 1)) + feed(mon, range(i, i + 1), asset="A2")
        for i in range(8, 30):  # A1 at a tenth of its trips: L1 crosses warning, margin-call and close-out lines
            evs = healthy_window_events("A1", T0 + i * W, trips=1, prefix="c") + healthy_window_events("A2", T0 + i * W)
            for ev in evs:
                for _ in range(times):
                    out += mon.on_telemetry(ev)
        assert isinstance(mon.sensor, CountingSensor)
        return out, mon.sensor

    once, _ = run(1)
    twice, sensor = run(2)
    calls = [o.message for o in twice if o.topic == "margin-calls"]
    assert len(calls) == 1 and calls[0].status == "issued" and calls[0].loan_id == "L1"
    assert [o.message.margin_call_id for o in once if o.topic == "margin-calls"] == [calls[0].margin_call_id]
    key = lambda out: [(o.message.alert_id, o.message.status) for o in out if o.topic == "alerts"]  # noqa: E731
    assert key(twice) == key(once)
    per_window = len(healthy_window_events("A2", T0)) + len(healthy_window_events("A1", T0, trips=1))
    assert sensor.events[("pledge.telemetry", "duplicate")] == 22 * per_window
