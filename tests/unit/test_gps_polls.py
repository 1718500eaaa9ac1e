"""Feeds without trip ids: vehicle-hours and vehicle-km in service (``monitor/sources/gps_polls.py``).

Synthetic tracks check each rule of "in service" one at a time; the real check is the Madison week
(``../shared/data/madison-metro-bus-avl``, read in place) stripped to bare GPS polls (vehicle, time,
position, route, poll time: no trip ids) and valued with the ``bus_vehicle_service`` profile.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import math
import sys
import zoneinfo
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.backtest import read_telemetry, run_backtest
from monitor.errors import ConfigError
from monitor.geo import ServiceRegion
from monitor.profiles import BUS_VEHICLE_SERVICE
from monitor.sources import recognise
from monitor.sources.gps_polls import (
    LAYOVER_S,
    MAX_FIX_AGE_S,
    MAX_SHARE_S,
    Fix,
    read_fixes,
    service_records,
)
from monitor.windows import WindowStats
from tests.conftest import ROOT, shared_data

T0 = 1_700_000_000.0
#: metres per degree of latitude (mean Earth radius 6,371,008.8 m)
M_PER_DEG = 6_371_008.8 * math.pi / 180


def moving(vehicle: str, polls: list[float], speed_mps: float = 8.0, lat0: float = 43.0) -> list[Fix]:
    """A vehicle driving north at ``speed_mps``, fixed at each poll time."""
    return [Fix(vehicle, t, lat0 + speed_mps * (t - T0) / M_PER_DEG, -89.4, "A", t) for t in polls]


def parked(vehicle: str, polls: list[float]) -> list[Fix]:
    return [Fix(vehicle, t, 43.05, -89.40, "A", t) for t in polls]


def rate(polls) -> float:  # type: ignore[no-untyped-def]
    """Vehicles in service on average over the observed time."""
    return sum(p.vehicle_hours for p in polls) / sum(p.observed_hours for p in polls)


def test_vehicle_hours__a_moving_fleet_counts_its_time_and_a_parked_bus_stops_counting_after_the_layover_limit() -> (
    None
):
    times = [T0 + 60 * k for k in range(61)]  # an hour of 1-min polls
    fixes = sorted(moving("1", times) + moving("2", times, lat0=43.01) + parked("9", times), key=lambda f: f.ts)
    polls, _ = service_records(fixes, True, None, None)
    first_laid_up = next(k for k, t in enumerate(times) if t - T0 >= LAYOVER_S)
    assert [p.vehicles for p in polls] == [3] * first_laid_up + [2] * (len(times) - first_laid_up)
    # each interior poll stands for 30 s either side; the ends for 30 s plus the cap outside
    assert sum(p.observed_hours for p in polls) == pytest.approx((3600 + 2 * MAX_SHARE_S) / 3600)
    # two buses at 8 m/s for an hour: 2 x 28.8 km of chords
    assert sum(p.vehicle_km for p in polls) == pytest.approx(2 * 8.0 * 3600 / 1000, rel=1e-3)


def test_vehicle_hours__outside_the_service_area_glitches_and_stale_fixes_are_not_service() -> None:
    times = [T0 + 60 * k for k in range(11)]
    inside = moving("1", times)
    glitch = [Fix("1", T0 + 330, 10.0, 10.0, "A", T0 + 330)]  # thousands of km away for one fix
    area = ServiceRegion.from_box(-89.5, 42.9, -89.3, 43.2)
    away = [Fix("2", t, 44.5, -89.4, "A", t) for t in times]  # outside the box
    stale = [Fix("3", T0, 43.06, -89.41, "A", t) for t in times]  # the same fix re-sent at every poll
    fixes = sorted(inside + glitch + away + stale, key=lambda f: (f.ts, f.poll))
    polls, jump = service_records(fixes, True, area, None)
    by_poll = {p.ts: p for p in polls}
    assert all(by_poll[t].vehicles == (2 if t - T0 <= MAX_FIX_AGE_S else 1) for t in times)
    assert max(jump.values()) > 30.0  # the glitch is flagged (C18) ...
    assert sum(p.vehicle_km for p in polls) == pytest.approx(8.0 * 600 / 1000, rel=1e-3)  # ... and adds no km


def test_vehicle_hours__only_the_pledged_routes_count() -> None:
    times = [T0 + 60 * k for k in range(5)]
    fixes = sorted(moving("1", times) + [Fix("2", t, 43.1, -89.3, "B", t) for t in times], key=lambda f: f.ts)
    polls, _ = service_records(fixes, True, None, frozenset({"B"}))
    assert [p.entities for p in polls] == [1] * 5 and all(p.vehicle_km == 0 for p in polls)


@settings(max_examples=60, deadline=None)
@given(
    fleet=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.integers(min_value=15, max_value=900), min_size=2, max_size=40),
)
def test_vehicle_hours__the_rate_over_observed_time_is_the_fleet_whatever_the_poll_cadence(
    fleet: int, gaps: list[int]
) -> None:
    """Property: polls at any times, even with gaps beyond the share cap, give the fleet in service."""
    times = [T0]
    for g in gaps:
        times.append(times[-1] + g)
    fixes = sorted((f for v in range(fleet) for f in moving(str(v), times, lat0=43.0 + v / 100)), key=lambda f: f.ts)
    polls, _ = service_records(fixes, True, None, None)
    assert rate(polls) == pytest.approx(fleet)
    w = WindowStats(start=T0, length_s=3600.0)
    for p in polls:
        w.activity += p.vehicle_hours
        w.exposure += p.observed_hours
    assert w.measured_activity(BUS_VEHICLE_SERVICE) == pytest.approx(fleet)  # vehicle-hours in the hour


def test_read_fixes__times_in_seconds_milliseconds_iso_and_bustime_local_time(tmp_path: Path) -> None:
    path = tmp_path / "gps.csv"
    path.write_text(
        "Vehicle_ID,Timestamp,Latitude,Longitude\n"
        "7,1700000000,43.0,-89.4\n"
        "7,1700000060000,43.001,-89.4\n"
        "7,2023-11-14T22:15:00+00:00,43.002,-89.4\n"
        "7,20231114 16:16,43.003,-89.4\n"
    )
    fixes, has_polls = read_fixes(path, "America/Chicago")
    assert not has_polls
    assert [f.ts for f in fixes] == [1_700_000_000.0, 1_700_000_060.0, 1_700_000_100.0, 1_700_000_160.0]
    assert recognise(path).name == "gps-polls-csv"
    with pytest.raises(ConfigError, match=r"gps\.csv:5: Timestamp: got '20231114 16:16' without a UTC offset"):
        read_fixes(path, None)
    path.write_text("vid,time,lat,lon\n7,yesterday,43,-89\n")
    with pytest.raises(ConfigError, match=r"gps\.csv:2: time: got 'yesterday', expected POSIX seconds"):
        read_fixes(path)


# --- the Madison week as bare GPS polls ------------------------------------------------------

ZONE = zoneinfo.ZoneInfo("America/Chicago")
#: the cut: 60 % of the buses (by a hash of the bus number) vanish from Tue 2025-09-30 10:00 local
CUT_AT = dt.datetime(2025, 9, 30, 10, tzinfo=ZONE)


def bare_polls(out: Path, cut: bool) -> Path:
    """The Madison BusTime polls as one CSV of vehicle, fix time, position, route and poll time."""
    path = out / ("madison-gps-cut.csv.gz" if cut else "madison-gps.csv.gz")
    polls = shared_data("madison-metro-bus-avl", "polls")
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["vid", "tmstmp", "lat", "lon", "rt", "collection_timestamp"])
        for p in sorted(polls.glob("vehicles_*.csv.gz")):
            with gzip.open(p, "rt", newline="") as g:
                for r in csv.DictReader(g):
                    if cut:
                        t = dt.datetime.strptime(r["tmstmp"], "%Y%m%d %H:%M").replace(tzinfo=ZONE)
                        if t >= CUT_AT and int(hashlib.sha1(r["vid"].encode()).hexdigest(), 16) % 10 < 6:
                            continue
                    w.writerow([r["vid"], r["tmstmp"], r["lat"], r["lon"], r["rt"], r["collection_timestamp"]])
    return path


def vehicle_service_book() -> list[bytes]:
    """examples/madison/loan_book.jsonl with each pledge's profile set to bus_vehicle_service (no baseline)."""
    out = []
    for line in (ROOT / "examples" / "madison" / "loan_book.jsonl").read_bytes().splitlines():
        d = orjson.loads(line)
        if d.get("type") == "collateral_pledged":
            d["asset_profile"] = "bus_vehicle_service"
            d["appraisal"].pop("baseline_activity", None)  # trips per hour: not this measure
        out.append(orjson.dumps(d))
    return out


def madison_run(path: Path):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "examples" / "madison"))
    try:
        from week import params  # the Madison week's hourly windows and one-day calibration
    finally:
        sys.path.pop(0)
    from monitor.settings import Settings
    from rules.rulebook import load_rulebook

    book = vehicle_service_book()
    assets = {orjson.loads(b)["asset_id"] for b in book if b"collateral_pledged" in b}
    events = list(read_telemetry(path, assets, book))
    return run_backtest(book, events, load_rulebook(ROOT / "rules/rulebooks/default.yaml"), params(Settings()))


@pytest.fixture(scope="module")
def madison_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("madison-gps")


def test_madison_bare_gps_polls__a_normal_week_raises_no_warning_and_no_margin_call(madison_dir: Path) -> None:
    res = madison_run(bare_polls(madison_dir, cut=False))
    assert not res.sensor.dead_letters and res.valuations
    # feed-silent episodes are the collector's own gaps (SOURCE.md), reported, never priced as loss
    assert {a.rule_id for a in res.alerts} <= {"feed-silent"}
    assert not res.margin_calls


def test_madison_bare_gps_polls__a_60_percent_cut_ends_in_a_margin_call_on_every_loan(madison_dir: Path) -> None:
    res = madison_run(bare_polls(madison_dir, cut=True))
    assert {m.loan_id for m in res.margin_calls} == {"L-MAD-001", "L-MAD-002", "L-MAD-003"}
    assert all(m.issued_at >= CUT_AT for m in res.margin_calls)


def test_a_pledge_whose_profile_counts_trips_is_refused_for_bare_gps_polls(tmp_path: Path) -> None:
    path = tmp_path / "gps.csv"
    path.write_text("vid,ts,lat,lon\n7,1700000000,43.0,-89.4\n")
    book = (ROOT / "examples" / "madison" / "loan_book.jsonl").read_bytes().splitlines()
    with pytest.raises(ConfigError, match=r"asset_profile: got 'bus_dispatch'.*expected a profile whose activity is"):
        list(read_telemetry(path, {"mad-routes-all-day"}, book))
