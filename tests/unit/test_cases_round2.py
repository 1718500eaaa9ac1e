"""Field cases of the second reliability round (``../shared/cases/CASES.md``: C14, C17, C19, C21).

Each test is named after its case and asserts the right value the case states; each fails on the
code before issue 17 (76a1efa).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import orjson
import pytest

from monitor.backtest import read_telemetry, run_backtest
from monitor.core import CoreParams
from monitor.valuation import ValuationParams
from rules.rulebook import load_rulebook
from tests.conftest import ROOT, shared_path

AKL = zoneinfo.ZoneInfo("Pacific/Auckland")


def case_input(name: str) -> Path:
    """A file of ``../shared/cases/inputs`` (skips off CI when ../shared is absent, fails under CI=true)."""
    return shared_path("cases", "inputs", name)


def daily_book(timezone: str) -> list[bytes]:
    """One loan on ``cta-bus`` (daily_ridership) in ``timezone``; the appraisal's year is the file's own week:
    100,000 boardings a weekday, 60,000 a Saturday, 40,000 a Sunday (slot 0 = Monday 1970-01-05)."""
    week = [100_000.0] * 5 + [60_000.0, 40_000.0]
    baseline = [week[s % 7] for s in range(364)]
    value = 30_000_000.0
    at = "2016-03-01T00:00:00+13:00"
    lines = [
        {
            "event_id": "L-C17:opened",
            "loan_id": "L-C17",
            "effective_at": at,
            "type": "loan_opened",
            "borrower_id": "B-C17",
            "principal": value / 1.5,
            "outstanding": value / 1.5,
            "start": "2016-03-01",
            "maturity": "2018-03-01",
            "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1},
            "cure_period": "5bd",
        },
        {
            "event_id": "L-C17:pledged",
            "loan_id": "L-C17",
            "effective_at": at,
            "type": "collateral_pledged",
            "asset_id": "cta-bus",
            "asset_profile": "daily_ridership",
            "asset_timezone": timezone,
            "appraisal": {
                "value": value,
                "appraised_on": "2016-02-28",
                "appraiser": "fictional",
                "baseline_activity": baseline,
                "quality_baseline": 1.0,
            },
            "pledge_registration_no": "C17",
        },
    ]
    return [orjson.dumps(x) for x in lines]


DAILY = CoreParams(
    window_s=86_400.0,
    earliest_event_time_s=dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp(),
    valuation=ValuationParams(window_s=86_400.0, calibration_windows=7),
)


@pytest.mark.parametrize("timezone", ["Pacific/Auckland", "America/Chicago"])
def test_case_c17_daily_windows_are_local_service_days_across_dst(timezone: str) -> None:
    path = case_input("c17-daily-auckland-dst.csv")
    zone = zoneinfo.ZoneInfo(timezone)
    book = daily_book(timezone)
    events = list(read_telemetry(path, {"cta-bus"}, book))
    res = run_backtest(book, events, load_rulebook(ROOT / "examples/rulebooks/daily-ridership.yaml"), DAILY)
    vals = [v for v in res.valuations if v.asset_id == "cta-bus"]
    assert len(vals) >= 200
    # one service day per daily window, every date, DST days included
    assert all(v.events_in_window == 1 for v in vals), [
        (v.window_start.astimezone(zone).date(), v.events_in_window) for v in vals if v.events_in_window != 1
    ]
    for v in vals:
        start = v.window_start.astimezone(zone)
        assert (start.hour, start.minute) == (0, 0)  # local midnight
    lengths = {
        v.window_start.astimezone(zone).date(): (v.window_end - v.window_start).total_seconds() / 3600 for v in vals
    }
    if timezone == "Pacific/Auckland":
        assert lengths[dt.date(2016, 4, 3)] == 25 and lengths[dt.date(2016, 9, 25)] == 23  # NZ DST ends / begins
    # each day is compared with its own weekday: the file runs exactly as the appraisal's week
    after_calibration = [v for v in vals if v.status == "active"]
    assert after_calibration and all(v.activity == v.activity_expected for v in after_calibration)
    assert not [a for a in res.alerts if a.rule_id.startswith("coverage-below")]


def test_case_c14_the_firing_gauge_is_derived_from_restored_alert_states_not_kept_by_increments(rulebook) -> None:  # type: ignore[no-untyped-def]
    """A loan whose coverage-below-warning fires; the worker restarts mid-episode (state restored from a
    pickle, as from the changelog); then coverage recovers: the gauge reads 1 after the restart, 0 after."""
    import datetime as dt
    import pickle

    from prometheus_client import CollectorRegistry

    from monitor.core import Monitor
    from monitor.schemas import BalanceChanged, Repayment
    from streams.prometheus import Metrics, PrometheusSensor
    from tests.conftest import T0, healthy_window_events, make_loan, make_pledge
    from tests.unit.test_prometheus import scrape

    key = ("pledgewatch_alerts_firing", (("loan", "L1"), ("rule", "coverage-below-warning"), ("severity", "warning")))

    def worker(mon: Monitor | None = None):  # type: ignore[no-untyped-def]
        metrics = Metrics.create(CollectorRegistry())
        new = Monitor(rulebook, CoreParams(), PrometheusSensor(metrics))
        if mon is not None:  # the restart: the loans' state comes back from the changelog
            new.loan_book.loans = pickle.loads(pickle.dumps(mon.loan_book.loans))
        metrics.alerts_firing.source = lambda: (
            a for loan in new.loan_book.loans.values() for a in loan.active_alerts.values()
        )
        return new, metrics

    mon, metrics = worker()
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    for i in range(6):
        for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * i), prefix=f"v{i}"):
            mon.on_telemetry(ev)
    at = T0 + dt.timedelta(hours=2)
    # value ≈ 10 M: outstanding 8 M puts coverage at ≈ 1.25, under the 1.3 warning line, over 1.2
    mon.on_loan_event(BalanceChanged(event_id="b1", loan_id="L1", effective_at=at, outstanding=8_000_000.0))
    assert scrape(metrics)[key] == 1.0

    mon, metrics = worker(mon)  # restart mid-episode
    assert scrape(metrics)[key] == 1.0

    mon.on_loan_event(Repayment(event_id="r1", loan_id="L1", effective_at=at + dt.timedelta(minutes=1), amount=2e6))
    assert scrape(metrics)[key] == 0.0


def test_case_c21_a_coverage_hovering_at_its_warning_line_is_one_episode_not_one_per_crossing(rulebook) -> None:  # type: ignore[no-untyped-def]
    """1,000 steady steps of a coverage whose mean sits on the 1.3 warning line (noise sd 0.025, seeded):
    the default rulebook resolves the warning one contract gap above the line (1.4), so the noise
    cannot re-fire it; the old rule (resolve at the line) fires at nearly every other up-crossing."""
    import datetime as dt
    import random

    from monitor.core import Monitor
    from monitor.schemas import BalanceChanged
    from monitor.sensors import CountingSensor
    from rules.rulebook import parse_rulebook
    from tests.conftest import T0, healthy_window_events, make_loan, make_pledge

    def episodes(book) -> int:  # type: ignore[no-untyped-def]
        mon = Monitor(book, CoreParams(), CountingSensor())
        mon.on_loan_event(make_loan())
        mon.on_loan_event(make_pledge())  # appraisal 10 M: coverage = 10 M / outstanding
        value = 0.0
        for k in range(6):  # an hour of healthy windows: the loan is valued and active
            for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * k), prefix=f"v{k}"):
                for out in mon.on_telemetry(ev):
                    if out.topic == "loan-risk":
                        value = out.message.collateral_value
        assert value > 0
        rng = random.Random(21)
        fired = 0
        for i in range(1000):
            coverage = rng.gauss(1.3, 0.025)
            ev = BalanceChanged(
                event_id=f"b{i}",
                loan_id="L1",
                effective_at=T0 + dt.timedelta(hours=2, minutes=i),
                outstanding=value / coverage,
            )
            for out in mon.on_loan_event(ev):
                msg = out.message
                fired += out.topic == "alerts" and msg.rule_id == "coverage-below-warning" and msg.status == "firing"
        return fired

    assert episodes(rulebook) <= 2  # 1 on this seed: the first crossing
    old = (
        (ROOT / "rules" / "rulebooks" / "default.yaml")
        .read_text()
        .replace(
            "loan.thresholds.warning + (loan.thresholds.warning - loan.thresholds.margin_call)",
            "loan.thresholds.warning",
        )
    )
    assert episodes(parse_rulebook(old)) > 100  # the case as measured: one episode per crossing


def _auckland_with_a_poll_ahead(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped Auckland sample, and a copy with one poll's header time 2 days ahead inserted mid-file."""
    import gzip
    import json

    sample = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
    lines = gzip.decompress(sample.read_bytes()).decode().splitlines()
    mid = len(lines) // 2
    bad = json.loads(lines[mid])
    bad["response"]["header"]["timestamp"] += 2 * 86_400  # a producer clock fault: 2 days ahead
    out = tmp_path / "ahead.jsonl.gz"
    out.write_bytes(gzip.compress(("\n".join([*lines[: mid + 1], json.dumps(bad), *lines[mid + 1 :]]) + "\n").encode()))
    return sample, out


def test_case_c19a_a_poll_far_ahead_of_the_streams_own_time_is_dead_lettered_and_changes_nothing_else(
    tmp_path: Path, rulebook
) -> None:  # type: ignore[no-untyped-def]
    from monitor.backtest import load_loan_book, pledged_assets

    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    sample, ahead = _auckland_with_a_poll_ahead(tmp_path)
    runs = [run_backtest(book, read_telemetry(p, pledged_assets(book), book), rulebook) for p in (sample, ahead)]
    clean, faulty = runs
    dead = [o.message for o in faulty.outputs if o.topic == "dead-letter"]
    assert dead and all(d.reason == "implausible_time" for d in dead)
    assert len(dead) == len(pledged_assets(book))  # the poll's heartbeat of each route group, nothing more
    # the rest of the stream is unaffected: the same valuations, alerts and margin calls
    key = [[(v.asset_id, v.window_start, round(v.value, 6)) for v in r.valuations] for r in runs]
    assert key[0] == key[1]
    assert [(a.rule_id, a.status, a.at) for a in clean.alerts] == [(a.rule_id, a.status, a.at) for a in faulty.alerts]
    assert not faulty.margin_calls
    assert sum(v.late_events for v in faulty.valuations) == sum(v.late_events for v in clean.valuations)


def test_case_c19b_a_late_fix_never_rolls_the_last_known_position_back(rulebook) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from monitor.core import Monitor
    from monitor.sensors import CountingSensor
    from tests.conftest import T0, make_event, make_loan, make_pledge

    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())

    def fix(n: int, minutes: float, lat: float) -> None:
        mon.on_telemetry(
            make_event(
                event_id=f"f{n}",
                kind="vehicle_position",
                entity_id="bus-1",
                observed_at=T0 + dt.timedelta(minutes=minutes),
                metrics={"lat": lat, "lon": 174.76},
                attributes={},
            )
        )

    fix(1, 2, -36.84)
    fix(2, 1, -36.80)  # older observed_at, arriving later
    asset = mon.asset_book.assets["A1"]
    assert asset.last_position == (-36.84, 174.76)


def test_case_c19c_a_poll_whose_header_goes_backwards_counts_its_trips_once(rulebook) -> None:  # type: ignore[no-untyped-def]
    """The input's routes are 274xx (route group akl-routes-2xx): a poll at 10:00:30, then one at 10:00:20
    repeating T1's older report and lacking T3, then T3 again: T3 completes once, when it really leaves."""
    import datetime as dt

    from tests.conftest import make_loan, make_pledge

    at = dt.datetime(2016, 5, 1, tzinfo=dt.UTC)
    book = [
        make_loan(effective_at=at).model_dump_json().encode(),
        make_pledge(asset_id="akl-routes-2xx", effective_at=at).model_dump_json().encode(),
    ]
    events = list(read_telemetry(case_input("c19-backwards-header.jsonl.gz"), {"akl-routes-2xx"}, book))
    done = [e.attributes["trip_id"] for e in events if e.kind == "trip_completed"]
    assert done == ["T3"]  # T1 is still running at the last poll; T3 left once
    beats = [e.observed_at for e in events if e.kind == "feed_poll"]
    assert beats == sorted(beats)  # no heartbeat goes back in time
    from monitor.core import Monitor, decode_loan_event
    from monitor.sensors import CountingSensor

    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    for raw in book:
        mon.on_loan_event(decode_loan_event(raw))
    for ev in events:
        mon.on_telemetry(ev)
    # the out-of-order poll's older report of T1 is counted as a contradiction: the consistency dimension
    (window,) = mon.asset_book.assets["akl-routes-2xx"].windows.values()
    assert window.contradictions == 1
    assert window.dimensions(mon.asset_book.assets["akl-routes-2xx"].profile)["consistency"] < 1.0


def _a2_with_one_window(rulebook):  # type: ignore[no-untyped-def]
    """The asset book of a loan pledging A1 and A2, A2 with one healthy window open at T0."""
    from monitor.core import Monitor
    from monitor.sensors import CountingSensor
    from tests.conftest import T0, healthy_window_events, make_loan, make_pledge

    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    mon.on_loan_event(make_pledge(event_id="p2", asset_id="A2", pledge_registration_no="R2"))
    for ev in healthy_window_events("A2", T0, prefix="a2"):
        mon.on_telemetry(ev)
    return mon.asset_book


def test_case_c05_a_worker_closes_no_window_of_an_asset_whose_partition_moved_away(rulebook) -> None:  # type: ignore[no-untyped-def]
    """After a rebalance an asset's partition belongs to another worker: this worker's clock must not
    close its windows as silent while its records wait on the new owner (the stream passes ``owned``)."""
    import datetime as dt

    from tests.conftest import T0

    book = _a2_with_one_window(rulebook)
    later = (T0 + dt.timedelta(hours=3)).timestamp()
    moved = book.tick(later, owned=lambda aid: aid != "A2")  # A2's partition went to another worker
    assert not [o for o in moved if o.topic == "valuations" and o.message.asset_id == "A2"]
    book.recheck()  # the assignment changed: the next tick checks every asset
    kept = book.tick(later)  # the owner's clock closes them
    assert [o for o in kept if o.topic == "valuations" and o.message.asset_id == "A2"]


def test_case_c05_an_asset_restored_after_the_clock_passed_its_windows_closes_them_at_the_next_tick(rulebook) -> None:  # type: ignore[no-untyped-def]
    """Fault (c): the survivor of a rebalance restores a frozen feed's state after its own clock already
    passed that feed's windows; the tick checks assets once per window boundary, so the restored asset
    had to wait up to a window of stream time (15 min of idle advance) and its feed-silent alert never
    came within the test. A restored asset (or a new assignment) makes the next tick check every asset."""
    import datetime as dt
    import pickle

    from streams.store import StateTable
    from tests.conftest import T0

    book = _a2_with_one_window(rulebook)
    # A2's state as the survivor reads it from the changelog; until the takeover another worker held it
    changelog = {b"A2": pickle.dumps(book.assets.pop("A2"))}
    later = (T0 + dt.timedelta(hours=3)).timestamp()
    book.tick(later)  # the survivor's clock passes A2's windows while it does not hold A2
    StateTable(changelog, book.assets, book.held, restore=book.restore).load("A2")  # the takeover
    closed = book.tick(later + 5.0)  # the next tick, 5 s later: no window boundary passed since
    assert {o.message.window_start for o in closed if o.topic == "valuations" and o.message.asset_id == "A2"}
    # the worker's own path: a new assignment has the next tick check every asset, too
    assert not book.tick_due(later + 10.0)
    book.recheck()
    assert book.tick_due(later + 10.0)
