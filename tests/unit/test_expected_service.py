"""Issue 15: day types, holidays, stale repeats and expected service (unit level)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core import CoreParams, Monitor
from monitor.profiles import get_profile
from monitor.schemas import DIMENSIONS
from monitor.sensors import CountingSensor
from monitor.service_calendar import country_of_timezone, day_type
from monitor.valuation import AssetValuer, ValuationParams
from tests.conftest import T0, make_event, make_loan, make_pledge

W = 3600.0
MONDAY = dt.datetime(2025, 9, 22, tzinfo=dt.UTC).timestamp()  # Monday 00:00 UTC


def test_day_type__weekend_and_public_holidays_run_the_sunday_profile() -> None:
    assert country_of_timezone("America/Chicago") == "US"
    assert [day_type(dt.date(2025, 9, d), "US") for d in (26, 27, 28)] == [0, 1, 2]
    assert day_type(dt.date(2025, 12, 25), "US") == 2  # Christmas on a Thursday
    assert day_type(dt.date(2024, 10, 1), "CN") == 2 and day_type(dt.date(2024, 9, 29), "CN") == 0  # make-up Sunday


def _valuer() -> AssetValuer:
    return AssetValuer(get_profile("bus_dispatch"), 1e7, None, None, "UTC", ValuationParams(window_s=W), country="US")


def _day(v: AssetValuer, day_start: float, trips: float) -> None:
    for h in range(24):
        v.update(day_start + h * W, trips if 6 <= h < 22 else 0.0, dict.fromkeys(DIMENSIONS, 1.0), {})


@settings(max_examples=25, deadline=None)
@given(shift=st.integers(min_value=0, max_value=6), trips=st.floats(min_value=2.0, max_value=40.0))
def test_property__a_shifted_week_of_steady_service_gives_the_same_index(shift: int, trips: float) -> None:
    """Whatever weekday the pledge starts on, a steady service is worth its appraisal (index ≈ 1)."""
    v = _valuer()
    start = MONDAY + shift * 86_400.0
    for d in range(14):
        _day(v, start + d * 86_400.0, trips)
    r = v.update(start + 14 * 86_400.0 + 12 * W, trips, dict.fromkeys(DIMENSIONS, 1.0), {})
    assert abs(r.activity_index - 1.0) < 0.02 and r.status == "active"


@settings(max_examples=15, deadline=None)
@given(trips=st.floats(min_value=2.0, max_value=40.0))
def test_property__a_holiday_does_not_move_the_weekday_estimate(trips: float) -> None:
    """Christmas 2025 (a Thursday) with no service: the weekday slots' reference and index are untouched
    (bound 0: a holiday runs the Sunday profile)."""
    v = _valuer()
    first = dt.datetime(2025, 12, 15, tzinfo=dt.UTC).timestamp()  # Monday
    for d in range(10):  # to Wednesday 24th
        _day(v, first + d * 86_400.0, trips)
    weekday_ref = {k: v._ref_sum[k] / v._ref_n[k] for k in v._ref_n if k < 24}
    christmas = dt.datetime(2025, 12, 25, tzinfo=dt.UTC).timestamp()
    for h in range(24):
        v.update(christmas + h * W, 0.0, dict.fromkeys(DIMENSIONS, 1.0), {})
    assert {k: v._ref_sum[k] / v._ref_n[k] for k in v._ref_n if k < 24} == weekday_ref
    assert all(k not in v._fc.season or k >= 24 for k in range(24))


def test_stale_repeat__lowers_timeliness_and_adds_no_activity(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook, CoreParams(), CountingSensor())
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    a1 = mon.assets["A1"]

    def fix(i: int, at: dt.datetime, lat: float) -> object:
        return make_event(
            event_id=f"p{i}",
            observed_at=at,
            received_at=at + dt.timedelta(seconds=30 * i),
            kind="vehicle_position",
            metrics={"lat": lat, "lon": 174.7},
            attributes={},
        )

    at = T0 + dt.timedelta(minutes=1)
    for ev in [fix(0, at, -36.8), fix(1, at, -36.8), fix(2, at, -36.8)]:  # the same fix re-sent twice
        mon.on_telemetry(ev)  # type: ignore[arg-type]
    w = a1.windows[min(a1.windows)]
    assert (w.timed, w.timely, w.activity) == (3, 1, 0.0)  # two stale repeats: timed, never timely
    mon.on_telemetry(fix(3, at + dt.timedelta(minutes=1), -36.81))  # type: ignore[arg-type]
    assert (w.timed, w.timely) == (4, 2)  # a fresh fix is timely again
