"""GTFS-rt VehiclePositions archives over several service days, with the static GTFS and its calendar.

The test feed is built from the real WMATA day (``../shared/data/wmata-bus-avl``, read in place) into
``tmp_path``; nothing is written into ``../shared``:

* the static GTFS keeps its trips and stop times, but the calendar becomes two services: ``WKDY``
  (Monday-Friday) for D96 and ``WKSA`` (Monday-Saturday) for C53 and D40, with ``WKSA`` removed on
  Wednesday 2026-02-18 in ``calendar_dates.txt``;
* Monday 2026-02-16 is the real pings, written as protobuf polls (every other one gzipped);
* Saturday 2026-02-21 is the real C53 and D40 pings five days later (no DST change in between), as
  JSON polls: half the protobuf JSON mapping, half snake_case inside a ``{"response": ...}``
  wrapper as Auckland's API gives. D96 has no Saturday service: nothing expected, nothing missed.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from monitor.backtest import read_telemetry, run_backtest
from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from monitor.sources import recognise
from monitor.sources.gtfs_static import load_static
from monitor.sources.vehicle_positions import read_archive, service_by_route
from monitor.sources.wmata import read_avl_csv
from rules.rulebook import load_rulebook
from tests.conftest import ROOT, shared_data

MONDAY, SATURDAY = dt.date(2026, 2, 16), dt.date(2026, 2, 21)
SHIFT_S = 5 * 86_400  # Monday to Saturday; America/New_York stays on EST (DST begins 2026-03-08)
POLL_S = 30  # the test feed's poll period, s (GTFS-rt collectors poll every 15 s - 2 min)
#: SOURCE.md: trips 6321100 (12:45), 19843100 (14:00) and 17787100 (15:15) of D40 never appear
D40_MISSED = {"6321100", "19843100", "17787100"}


def feed_message(pings, at: int):  # type: ignore[no-untyped-def]
    """A GTFS-rt ``FeedMessage`` at header time ``at`` holding ``(ping, start_date)`` pairs as vehicle entities."""
    from google.transit import gtfs_realtime_pb2

    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = at
    for p, start_date in pings:
        v = feed.entity.add(id=p.vehicle).vehicle
        v.trip.trip_id, v.trip.route_id, v.trip.start_date = p.trip_id, p.route_id, start_date
        v.position.latitude, v.position.longitude = p.lat, p.lon
        if p.speed is not None:
            v.position.speed = p.speed
        if p.bearing is not None:
            v.position.bearing = p.bearing
        if p.seq is not None:
            v.current_stop_sequence = p.seq
        if p.status is not None:
            v.current_status = p.status
        v.timestamp = int(p.ts)
        v.stop_id = p.stop_id or ""
        v.vehicle.id = p.vehicle
    return feed


def build_feed(out: Path) -> Path:
    """The two-day archive folder described in the module docstring; returns the folder."""
    from google.protobuf import json_format

    src = shared_data("wmata-bus-avl", "wmata_gtfsrt_021626.csv")
    gtfs = out / "gtfs"
    gtfs.mkdir(parents=True)
    for name in ("agency.txt", "routes.txt", "stops.txt", "stop_times.txt"):
        shutil.copy(src.parent / "gtfs_service_2026-02-16" / name, gtfs / name)
    with (src.parent / "gtfs_service_2026-02-16" / "trips.txt").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["service_id"] = "WKDY" if r["route_id"] == "D96" else "WKSA"
    with (gtfs / "trips.txt").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (gtfs / "calendar.txt").write_text(
        "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
        "WKDY,1,1,1,1,1,0,0,20260216,20260222\n"
        "WKSA,1,1,1,1,1,1,0,20260216,20260222\n"
    )
    (gtfs / "calendar_dates.txt").write_text("service_id,date,exception_type\nWKSA,20260218,2\n")
    polls: dict[int, list] = defaultdict(list)  # type: ignore[type-arg]
    for p in read_avl_csv(src):
        polls[int(p.ts) // POLL_S].append((p, "20260216"))
        if p.route_id != "D96":
            polls[(int(p.ts) + SHIFT_S) // POLL_S].append((_shifted(p), "20260221"))
    folder = out / "polls"
    folder.mkdir()
    for k, (slot, pings) in enumerate(sorted(polls.items())):
        at = (slot + 1) * POLL_S - 1
        feed = feed_message(pings, at)
        if at < 1_771_500_000:  # Monday: protobuf, every other poll gzipped
            data = feed.SerializeToString()
            name = f"vp-{at}.pb"
            (folder / (name + ".gz" if k % 2 else name)).write_bytes(gzip.compress(data, mtime=0) if k % 2 else data)
        elif k % 2:
            (folder / f"vp-{at}.json").write_text(json_format.MessageToJson(feed))
        else:
            body = {"status": "OK", "response": json_format.MessageToDict(feed, preserving_proto_field_name=True)}
            (folder / f"vp-{at}.json").write_text(json.dumps(body))
    (folder / "README.md").write_text("test feed: see tests/unit/test_vehicle_positions_archive.py\n")
    return folder


def _shifted(p):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(p, ts=p.ts + SHIFT_S, start_date="20260221")


def loan_book(path: Path) -> list[bytes]:
    """Two loans: C53 + D40 pledged as one asset, D96 as another (expected service learned from the data)."""
    lines = []
    for loan, asset, routes in (("L-CD", "wmata-c53-d40", ["C53", "D40"]), ("L-D96", "wmata-d96", ["D96"])):
        at = "2026-02-01T09:00:00-05:00"
        lines.append(
            {
                "event_id": f"{loan}:opened",
                "loan_id": loan,
                "effective_at": at,
                "type": "loan_opened",
                "borrower_id": "B-WMATA",
                "principal": 2_000_000.0,
                "outstanding": 2_000_000.0,
                "start": "2026-02-01",
                "maturity": "2028-02-01",
                "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1},
                "cure_period": "5bd",
            }
        )
        lines.append(
            {
                "event_id": f"{loan}:pledged",
                "loan_id": loan,
                "effective_at": at,
                "type": "collateral_pledged",
                "asset_id": asset,
                "asset_timezone": "America/New_York",
                "appraisal": {"value": 3_000_000.0, "appraised_on": "2026-01-30", "appraiser": "fictional"},
                "pledge_registration_no": f"DEMO-{asset}",
                "routes": routes,
            }
        )
    raw = [orjson.dumps(x) for x in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return raw


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], list[TelemetryEvent]]:
    out = tmp_path_factory.mktemp("vp-archive")
    folder = build_feed(out)
    book = loan_book(out / "loans.jsonl")
    events = list(read_telemetry(folder, {"wmata-c53-d40", "wmata-d96"}, book))
    return folder, book, events


def _by_day(events: list[TelemetryEvent], asset: str) -> dict[dt.date, dict[str, float]]:
    """Per local service day of ``asset``: scheduled, missed and completed trips."""
    out: dict[dt.date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e.asset_id != asset:
            continue
        day = e.observed_at.astimezone(dt.timezone(dt.timedelta(hours=-5))).date()
        if e.kind == "dispatch":
            out[day]["scheduled"] += e.metrics["scheduled_trips"]
            out[day]["missed"] += e.metrics["missed_trips"]
        elif e.kind == "trip_completed":
            out[day]["completed"] += 1
    return out


def test_calendar__each_day_runs_its_own_services() -> None:
    root = shared_data("wmata-bus-avl", "gtfs_service_2026-02-16")
    real = load_static(root)
    # the real feed: service 4 runs by calendar_dates.txt exceptions only (Presidents' Day and MLK Day)
    assert real.services_on(MONDAY) == {"4"} and real.services_on(dt.date(2026, 1, 19)) == {"4"}
    assert real.services_on(dt.date(2026, 2, 17)) == frozenset()
    assert len(real.timetable(MONDAY).trips) == 462 and not real.timetable(dt.date(2026, 2, 17)).trips


def test_calendar__weekday_flags_date_range_and_removals(tmp_path: Path) -> None:
    build_feed(tmp_path)
    static = load_static(tmp_path / "gtfs")
    assert static.services_on(MONDAY) == {"WKDY", "WKSA"}
    assert static.services_on(SATURDAY) == {"WKSA"}
    assert static.services_on(dt.date(2026, 2, 18)) == {"WKDY"}  # WKSA removed that Wednesday
    assert static.services_on(dt.date(2026, 2, 22)) == frozenset()  # Sunday: neither runs
    assert static.services_on(dt.date(2026, 2, 23)) == frozenset()  # past end_date
    sat = static.timetable(SATURDAY)
    assert sat.trips and {t.route_id for t in sat.trips.values()} == {"C53", "D40"}


def test_archive__two_service_days_each_judged_by_its_own_calendar(feed) -> None:  # type: ignore[no-untyped-def]
    folder, _, events = feed
    assert recognise(folder).name == "gtfs-rt-vehicle-positions"
    cd, d96 = _by_day(events, "wmata-c53-d40"), _by_day(events, "wmata-d96")
    # Saturday: D96 runs no service, so none is expected and none missed, while the feed was up
    assert d96[SATURDAY]["scheduled"] == 0 and d96[SATURDAY]["missed"] == 0 and d96[SATURDAY]["completed"] == 0
    sat_polls = [e for e in events if e.asset_id == "wmata-d96" and e.kind == "feed_poll" and e.observed_at.day == 21]
    assert sat_polls and all(e.metrics["entities"] == 0 for e in sat_polls)  # the feed answered: not silence
    assert d96[MONDAY]["scheduled"] > 0 and d96[MONDAY]["completed"] > 0 and d96[MONDAY]["missed"] == 0
    # C53 + D40 ran the same pings both days: the same trips completed and the same three missed
    assert cd[SATURDAY]["completed"] == cd[MONDAY]["completed"] > 0
    assert cd[SATURDAY]["missed"] == cd[MONDAY]["missed"] == 3
    service = service_by_route(events)
    assert sorted(service["D40"].missed) == sorted(list(D40_MISSED) * 2)
    assert not service["C53"].missed and not service["D96"].missed
    assert service["C53"].scheduled > 0 and service["D96"].scheduled > 0


def test_archive__a_tar_of_the_polls_reads_as_the_folder(feed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, book, events = feed
    tar = tmp_path / "polls.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(folder, arcname="polls")
    shutil.copytree(folder.parent / "gtfs", tmp_path / "gtfs")  # the static GTFS beside the tar
    again = list(read_telemetry(tar, {"wmata-c53-d40", "wmata-d96"}, book))
    assert [e.model_dump() for e in again] == [e.model_dump() for e in events]


def test_archive__backtest_values_both_assets_on_both_days_without_a_margin_call(feed) -> None:  # type: ignore[no-untyped-def]
    _, book, events = feed
    res = run_backtest(book, events, load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"))
    assert not res.sensor.dead_letters
    days = {(v.asset_id, v.window_end.date()) for v in res.valuations}
    assert {("wmata-c53-d40", MONDAY), ("wmata-c53-d40", SATURDAY), ("wmata-d96", MONDAY)} <= days
    assert not res.margin_calls


def test_archive__a_pledge_naming_an_unknown_route_is_refused(feed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, book, _ = feed
    bad = [line.replace(b'"routes":["D96"]', b'"routes":["D96","D69"]') for line in book]
    with pytest.raises(ConfigError, match=r"wmata-d96.*\['D69'\] are not in the static GTFS"):
        list(read_telemetry(folder, {"wmata-d96"}, bad))


def test_archive__a_poll_that_is_not_a_feed_message_is_named(tmp_path: Path) -> None:
    build_feed(tmp_path)
    (tmp_path / "polls" / "vp-9999999999.json").write_text('{"vehicles": []}')
    with pytest.raises(ConfigError, match=r"vp-9999999999\.json: header\.gtfs_realtime_version missing"):
        read_archive(tmp_path / "polls")
