"""BusTime ``getvehicles`` polls (``monitor.sources.bustime``): time semantics, trips, quirks, the Madison book.

Most tests write small synthetic polls to ``tmp_path``; the ones on the real Madison polls
(``../shared/data/madison-metro-bus-avl``, not shippable) skip when it is absent on a user's machine and
fail under ``CI=true``.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import importlib.util
import io
import json
import logging
import re
import zoneinfo
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from monitor.backtest import load_inputs, read_telemetry
from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from monitor.sources.bustime import (
    MPH_TO_MPS,
    BusTimePoll,
    events_from_bustime,
    groups_from_pledges,
    parse_row,
    read_bustime_polls,
    timezone_from_pledges,
)
from tests.conftest import ROOT, shared_data

CHI = "America/Chicago"
CHI_ZONE = zoneinfo.ZoneInfo(CHI)
HEADER = (
    "des,dly,hdg,lat,lon,mode,origtatripno,pdist,pid,psgld,rt,spd,stsd,stst,tablockid,tatripid,tmstmp,vid,zone,"
    "collection_timestamp"
).split(",")
GROUPS = {"mad-a": frozenset({"A"}), "mad-80": frozenset({"80"})}
BOOK = ROOT / "examples" / "madison" / "loan_book.jsonl"


def row(
    vid: str = "2344",
    rt: str = "A",
    trip: str = "1228644",
    tmstmp: str = "20250924 17:49",
    collected: str = "2025-09-24T17:50:05.739508",
    lat: float = 43.0700,
    lon: float = -89.4000,
    stsd: str = "2025-09-24",
    stst: int = 63_780,
    spd: str = "20",
    hdg: str = "90",
) -> dict[str, str]:
    return {
        "des": "JUNCTION",
        "dly": "False",
        "hdg": hdg,
        "lat": repr(lat),
        "lon": repr(lon),
        "mode": "1",
        "origtatripno": trip,
        "pdist": "1000",
        "pid": "505924",
        "psgld": "EMPTY",
        "rt": rt,
        "spd": spd,
        "stsd": stsd,
        "stst": str(stst),
        "tablockid": "122A",
        "tatripid": trip,
        "tmstmp": tmstmp,
        "vid": vid,
        "zone": "",
        "collection_timestamp": collected,
    }


def write_poll(folder: Path, stamp: str, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    """One poll file ``vehicles_<stamp>.csv.gz`` (stamp ``YYYYMMDD_HHMMSS``, local time)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    path = folder / f"vehicles_{stamp}.csv.gz"
    path.write_bytes(gzip.compress(buf.getvalue().encode()))
    return path


def poll(local: str, rows: list[dict[str, str]], zone: str = CHI) -> BusTimePoll:
    """An in-memory poll at local time ``YYYY-MM-DD HH:MM:SS``; every row collected then."""
    at = dt.datetime.fromisoformat(local).replace(tzinfo=zoneinfo.ZoneInfo(zone))
    iso = at.replace(tzinfo=None).isoformat()
    return BusTimePoll(at.timestamp(), [{**r, "collection_timestamp": iso} for r in rows], f"{local}.csv.gz")


def fix(local_minute: str, **kw: Any) -> dict[str, str]:
    """A row whose ``tmstmp`` is ``YYYY-MM-DD HH:MM`` local."""
    d = dt.datetime.fromisoformat(local_minute)
    return row(tmstmp=d.strftime("%Y%m%d %H:%M"), **kw)


def kinds(events: list[TelemetryEvent], kind: str) -> list[TelemetryEvent]:
    return [e for e in events if e.kind == kind]


def local(ts: dt.datetime | None, zone: str = CHI) -> str:
    assert ts is not None
    return ts.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------------------------------- reading


def test_read_polls__file_name_order_and_the_latest_collection_time_localised(tmp_path: Path) -> None:
    write_poll(tmp_path, "20250924_175300", [row(collected="2025-09-24T17:52:40.5")])
    write_poll(
        tmp_path,
        "20250924_175039",
        [row(collected="2025-09-24T17:50:05.739508"), row(vid="2", collected="2025-09-24T17:50:07.25")],
    )
    polls = list(read_bustime_polls(tmp_path, CHI))
    assert [p.file for p in polls] == ["vehicles_20250924_175039.csv.gz", "vehicles_20250924_175300.csv.gz"]
    # 17:50:07.25 CDT = 22:50:07.25 UTC
    assert polls[0].ts == dt.datetime(2025, 9, 24, 22, 50, 7, 250000, tzinfo=dt.UTC).timestamp()
    assert len(polls[0].rows) == 2 and polls[0].rows[0]["vid"] == "2344"


def test_read_polls__a_poll_without_rows_takes_the_file_name_time(tmp_path: Path) -> None:
    write_poll(tmp_path, "20250924_175039", [])
    (p,) = read_bustime_polls(tmp_path, CHI)
    assert p.rows == [] and p.ts == dt.datetime(2025, 9, 24, 22, 50, 39, tzinfo=dt.UTC).timestamp()


def test_read_polls__errors_name_the_file_the_field_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope.*vehicles_YYYYMMDD_HHMMSS"):
        list(read_bustime_polls(tmp_path / "nope", CHI))
    with pytest.raises(FileNotFoundError, match="holds no vehicles_"):
        list(read_bustime_polls(tmp_path, CHI))
    write_poll(tmp_path, "20250924_175039", [row()], header=[h for h in HEADER if h != "tmstmp"])
    with pytest.raises(ValueError, match=r"vehicles_20250924_175039\.csv\.gz: header: columns \['tmstmp'\] missing"):
        list(read_bustime_polls(tmp_path, CHI))
    (tmp_path / "vehicles_20250924_175039.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"vehicles_20250924_175039\.csv\.gz: not a readable gzip"):
        list(read_bustime_polls(tmp_path, CHI))
    (tmp_path / "vehicles_20250924_175039.csv.gz").unlink()
    write_poll(tmp_path, "2025-09-24", [row()])
    with pytest.raises(ValueError, match=r"file name: got 'vehicles_2025-09-24\.csv\.gz', expected vehicles_YYYYMMDD"):
        list(read_bustime_polls(tmp_path, CHI))
    with pytest.raises(ConfigError, match="timezone: got 'CDT', expected an IANA time zone"):
        list(read_bustime_polls(tmp_path, "CDT"))


def test_times_honour_the_timezone__no_fixed_cdt_offset() -> None:
    summer = [fix("2025-09-24 17:49", collected="2025-09-24T17:50:05")]
    winter = [fix("2025-12-10 17:49", collected="2025-12-10T17:50:05", stsd="2025-12-10")]
    ev = kinds(list(events_from_bustime([poll("2025-09-24 17:50:05", summer)], GROUPS, CHI)), "vehicle_position")
    assert ev[0].observed_at == dt.datetime(2025, 9, 24, 22, 49, tzinfo=dt.UTC)  # CDT, UTC-5
    assert ev[0].received_at == dt.datetime(2025, 9, 24, 22, 50, 5, tzinfo=dt.UTC)
    ev = kinds(list(events_from_bustime([poll("2025-12-10 17:50:05", winter)], GROUPS, CHI)), "vehicle_position")
    assert ev[0].observed_at == dt.datetime(2025, 12, 10, 23, 49, tzinfo=dt.UTC)  # CST, UTC-6
    berlin = list(events_from_bustime([poll("2025-09-24 17:50:05", summer, "Europe/Berlin")], GROUPS, "Europe/Berlin"))
    assert kinds(berlin, "vehicle_position")[0].observed_at == dt.datetime(2025, 9, 24, 15, 49, tzinfo=dt.UTC)
    assert kinds(berlin, "feed_poll")[0].observed_at == dt.datetime(2025, 9, 24, 15, 50, 5, tzinfo=dt.UTC)


def test_repeated_hour_when_daylight_saving_ends__a_row_is_read_nearest_its_poll() -> None:
    # 2025-11-02: 01:00-01:59 happens twice in Chicago (CDT = UTC-5, then CST = UTC-6)
    first = BusTimePoll(
        dt.datetime(2025, 11, 2, 6, 50, tzinfo=dt.UTC).timestamp(),
        [row(tmstmp="20251102 01:49", collected="2025-11-02T01:50:00")],
        "a",
    )
    second = BusTimePoll(
        dt.datetime(2025, 11, 2, 7, 5, tzinfo=dt.UTC).timestamp(),
        [row(tmstmp="20251102 01:04", collected="2025-11-02T01:05:00")],
        "b",
    )
    ev = kinds(list(events_from_bustime([first, second], GROUPS, CHI)), "vehicle_position")
    assert [e.observed_at.strftime("%H:%M") for e in ev] == ["06:49", "07:04"]
    assert [e.received_at.strftime("%H:%M") for e in ev if e.received_at] == ["06:50", "07:05"]


# ------------------------------------------------------------------------------------------- per-poll events


def test_feed_poll_for_every_asset_and_poll__zero_entities_when_its_routes_have_no_bus() -> None:
    p = poll("2025-09-24 17:50:05", [fix("2025-09-24 17:49"), fix("2025-09-24 17:49", vid="9", rt="C")])
    evs = list(events_from_bustime([p], GROUPS, CHI))
    beats = {e.asset_id: e for e in kinds(evs, "feed_poll")}
    assert beats["mad-a"].metrics == {"entities": 1.0} and beats["mad-80"].metrics == {"entities": 0.0}
    assert all(b.entity_id == "collector" and b.observed_at == b.received_at for b in beats.values())
    assert [e.kind for e in evs if e.asset_id == "mad-a"] == ["feed_poll", "vehicle_position"]
    assert not any(e.attributes.get("route_id") == "C" for e in evs)  # route C is no asset's


def test_vehicle_position__metrics_and_attributes() -> None:
    (ev,) = kinds(
        list(events_from_bustime([poll("2025-09-24 17:50:05", [fix("2025-09-24 17:49", spd="54")])], GROUPS, CHI)),
        "vehicle_position",
    )
    assert ev.entity_id == "2344" and ev.asset_id == "mad-a"
    assert ev.metrics["speed_mps"] == pytest.approx(54 * MPH_TO_MPS, abs=1e-3)
    assert ev.metrics["bearing_deg"] == 90.0 and "jump_speed_mps" not in ev.metrics
    assert ev.attributes == {
        "route_id": "A",
        "trip_id": "1228644",
        "service_date": "2025-09-24",
        "scheduled_start_s": "63780",
        "block_id": "122A",
    }
    assert ev.received_at is not None and ev.event_id == f"bustime:mad-a:2344@{ev.received_at.timestamp():.0f}:A"


def test_stale_repeat_in_a_later_poll_is_a_second_record_with_the_same_observed_at() -> None:
    polls = [
        poll("2025-09-24 17:50:05", [fix("2025-09-24 17:49")]),
        poll("2025-09-24 17:52:05", [fix("2025-09-24 17:49")]),
    ]
    pos = kinds(list(events_from_bustime(polls, GROUPS, CHI)), "vehicle_position")
    assert len(pos) == 2 and pos[0].observed_at == pos[1].observed_at
    assert pos[0].event_id != pos[1].event_id
    assert "jump_speed_mps" not in pos[1].metrics  # time did not advance


def test_same_poll_delivered_twice_gives_the_same_event_ids() -> None:
    p = poll("2025-09-24 17:50:05", [fix("2025-09-24 17:49")])
    a = [e.event_id for e in events_from_bustime([p], GROUPS, CHI)]
    b = [e.event_id for e in events_from_bustime([p, p], GROUPS, CHI)]
    assert b == a + a


def test_same_bus_twice_in_one_poll_under_two_routes_is_kept() -> None:
    groups = {"mad-af": frozenset({"A", "F"})}
    p = poll("2025-09-24 17:50:05", [fix("2025-09-24 17:49"), fix("2025-09-24 17:50", rt="F", trip="1230734")])
    pos = kinds(list(events_from_bustime([p], groups, CHI)), "vehicle_position")
    assert [e.attributes["route_id"] for e in pos] == ["A", "F"] and len({e.event_id for e in pos}) == 2


def test_jump_speed__from_the_previous_fix_after_60_s_and_a_glitch_is_not_the_reference() -> None:
    # 0.01° of latitude = 1,111.95 m; one minute apart -> 18.5 m/s
    polls = [
        poll("2025-09-24 17:50:05", [fix("2025-09-24 17:49", lat=43.07)]),
        poll("2025-09-24 17:51:05", [fix("2025-09-24 17:50", lat=43.08)]),
        poll("2025-09-24 17:52:05", [fix("2025-09-24 17:51", lat=43.30)]),  # GPS glitch: 24 km in a minute
        poll("2025-09-24 17:53:05", [fix("2025-09-24 17:52", lat=43.09)]),
    ]
    pos = kinds(list(events_from_bustime(polls, GROUPS, CHI)), "vehicle_position")
    jumps = [e.metrics.get("jump_speed_mps") for e in pos]
    assert jumps[0] is None
    assert jumps[1] == pytest.approx(1111.95 / 60, rel=1e-3)
    assert jumps[2] is not None and jumps[2] > 30  # implausible for the profile: lowers accuracy
    assert jumps[3] == pytest.approx(1111.95 / 120, rel=1e-3)  # from 17:50 (the last plausible fix)


def test_malformed_rows_are_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    rows = [fix("2025-09-24 17:49"), row(tmstmp="2025-09-24 17:49", vid="7"), row(lat="north", vid="8")]  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="monitor.sources.bustime"):
        evs = list(events_from_bustime([poll("2025-09-24 17:50:05", rows)], GROUPS, CHI))
    assert len(kinds(evs, "vehicle_position")) == 1
    assert "skipped 2 malformed rows" in caplog.text and "tmstmp: got '2025-09-24 17:49'" in caplog.text


# ------------------------------------------------------------------------------------------- trips


def every(minutes: int, start: str, n: int) -> list[str]:
    t0 = dt.datetime.fromisoformat(start)
    return [(t0 + dt.timedelta(minutes=minutes * i)).isoformat(sep=" ") for i in range(n)]


def test_service_day_is_not_the_calendar_day__trips_across_midnight_complete_once() -> None:
    # two trips of service day 09-24: T2 scheduled 23:50 (stst 85,800 s) runs 23:50-00:20, T1 scheduled
    # 24:10 (stst 87,000 s, past midnight of its service day) runs 00:10-00:30 on calendar day 09-25
    polls = []
    for at in every(5, "2025-09-24 23:50:30", 9):
        minute, rows = at[:16], []
        if minute <= "2025-09-25 00:20":
            rows.append(fix(minute, vid="1", rt="80", trip="T2", stsd="2025-09-24", stst=85_800))
        if minute >= "2025-09-25 00:10":
            rows.append(fix(minute, vid="2", rt="80", trip="T1", stsd="2025-09-24", stst=87_000))
        polls.append(poll(at, rows))
    polls += [poll(at, []) for at in every(5, "2025-09-25 00:35:30", 3)]
    done = {d.attributes["trip_id"]: d for d in kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")}
    assert sorted(done) == ["T1", "T2"]
    assert done["T1"].event_id == "bustime:done:T1:2025-09-24:87000" and done["T1"].asset_id == "mad-80"
    assert done["T1"].attributes == {"trip_id": "T1", "route_id": "80", "service_date": "2025-09-24"}
    assert done["T1"].metrics == {"trips": 1.0, "duration_s": 20 * 60.0}
    assert done["T2"].metrics == {"trips": 1.0, "duration_s": 30 * 60.0}
    # dated at the poll that saw it gone (known then; never late for a closed window), not its last fix
    assert local(done["T1"].observed_at) == "2025-09-25 00:45" and done["T1"].observed_at == done["T1"].received_at


def test_trip_identity_includes_the_service_day() -> None:
    # the same tatripid on two service days is two trips
    polls = [
        poll("2025-09-24 08:00:30", [fix("2025-09-24 08:00", trip="T1")]),
        poll("2025-09-25 08:00:30", [fix("2025-09-25 08:00", trip="T1", stsd="2025-09-25")]),
    ]
    done = kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")
    assert [d.event_id for d in done] == ["bustime:done:T1:2025-09-24:63780"]  # the bus moved on to 09-25's


def test_trip_completes_when_its_bus_is_next_seen_on_another_trip() -> None:
    polls = [
        poll("2025-09-24 08:00:30", [fix("2025-09-24 08:00", trip="T1")]),
        poll("2025-09-24 08:02:30", [fix("2025-09-24 08:02", trip="T1")]),
        poll("2025-09-24 08:04:30", [fix("2025-09-24 08:04", trip="T2")]),
    ]
    evs = list(events_from_bustime(polls, GROUPS, CHI))
    (d,) = kinds(evs, "trip_completed")
    assert d.attributes["trip_id"] == "T1" and d.entity_id == "2344" and d.metrics["duration_s"] == 120.0
    assert local(d.observed_at) == "2025-09-24 08:04" and local(d.received_at) == "2025-09-24 08:04"
    assert evs[-1] is d  # after the poll's heartbeat and positions


def test_a_bus_on_both_trips_at_a_hand_off_does_not_end_the_old_one_yet() -> None:
    polls = [
        poll("2025-09-24 08:00:30", [fix("2025-09-24 08:00", trip="T1")]),
        poll("2025-09-24 08:02:30", [fix("2025-09-24 08:02", trip="T1"), fix("2025-09-24 08:02", rt="80", trip="T2")]),
    ]
    assert not kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")


def test_one_missed_poll_does_not_end_a_trip() -> None:
    at = every(5, "2025-09-24 08:00:30", 5)
    polls = [
        poll(at[0], [fix(at[0][:16], trip="T1")]),
        poll(at[1], []),  # the trip is missing from one poll (or two)
        poll(at[2], []),
        poll(at[3], [fix(at[3][:16], trip="T1")]),
        poll(at[4], [fix(at[4][:16], trip="T1")]),
    ]
    assert not kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")


def test_absence_ends_a_trip_after_more_than_two_polls_and_a_fix_older_than_10_min() -> None:
    at = every(2, "2025-09-24 08:00:30", 8)
    polls = [poll(at[0], [fix(at[0][:16], trip="T1")])] + [poll(a, []) for a in at[1:]]
    done = kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")
    # absent from 3 polls at 08:06:30 but its 08:00 fix is only 6.5 min old; 10.5 min old at 08:10:30
    assert [local(d.received_at) for d in done] == ["2025-09-24 08:10"]
    at = every(10, "2025-09-24 23:00:30", 5)  # night polls 10 min apart: the poll count decides
    polls = [poll(at[0], [fix(at[0][:16], rt="80", trip="T9")])] + [poll(a, []) for a in at[1:]]
    done = kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")
    assert [local(d.received_at) for d in done] == ["2025-09-24 23:30"]


def test_a_collector_gap_ends_no_trip__the_trip_runs_on_after_it() -> None:
    polls = [
        poll("2025-09-24 17:04:30", [fix("2025-09-24 17:04", trip="T1")]),
        poll("2025-09-24 17:08:30", [fix("2025-09-24 17:08", trip="T1")]),
        # the collector stops for 7 h (SOURCE.md: Thu 25 17:08 -> 00:01); the trip is seen again after it
        poll("2025-09-25 00:01:30", [fix("2025-09-25 00:01", trip="T1")]),
        poll("2025-09-25 00:11:30", [fix("2025-09-25 00:11", trip="T1")]),
    ]
    assert not kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")


def test_a_trip_carried_across_a_gap_completes_by_the_rules_after_it_dated_at_the_poll_that_saw_it_end() -> None:
    polls = [
        poll("2025-09-24 17:08:30", [fix("2025-09-24 17:08", trip="T1"), fix("2025-09-24 17:08", vid="5", trip="T5")])
    ]
    polls += [poll(a, [fix(a[:16], vid="9", trip="T9")]) for a in every(10, "2025-09-25 00:01:30", 4)]
    polls[2].rows.append({**fix("2025-09-25 00:11", vid="5", trip="T6"), "collection_timestamp": "2025-09-25T00:11:30"})
    done = {d.attributes["trip_id"]: d for d in kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")}
    # T5: its bus reappears on T6 at the second poll after the gap; T1: absent from 3 polls after it
    assert local(done["T5"].received_at) == "2025-09-25 00:11" == local(done["T5"].observed_at)
    assert local(done["T1"].received_at) == "2025-09-25 00:21" == local(done["T1"].observed_at)
    assert "T9" not in done  # still running


def test_a_trip_completes_at_most_once_even_when_it_shows_again() -> None:
    at = every(5, "2025-09-24 08:00:30", 8)
    polls = [poll(at[0], [fix(at[0][:16], trip="T1")]), poll(at[1], [fix(at[1][:16], trip="T2")])]
    polls += [poll(at[2], [fix(at[2][:16], vid="7", trip="T1")])]  # a late row of T1 from another bus
    polls += [poll(a, []) for a in at[3:]]
    done = kinds(list(events_from_bustime(polls, GROUPS, CHI)), "trip_completed")
    assert Counter(d.attributes["trip_id"] for d in done) == {"T1": 1, "T2": 1}


# ------------------------------------------------------------------------------------------- row parser


def _valid_row(d: dict[str, Any]) -> dict[str, str]:
    d = dict(d)
    when: dt.datetime = d.pop("when")
    lag: float = d.pop("lag_s")
    return {
        **d,
        "tmstmp": when.strftime("%Y%m%d %H:%M"),
        "stsd": when.date().isoformat(),
        "collection_timestamp": (when + dt.timedelta(seconds=lag)).isoformat(),
    }


valid_rows = st.fixed_dictionaries(
    {
        "vid": st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True),
        "rt": st.from_regex(r"[A-Z0-9]{1,3}", fullmatch=True),
        "tatripid": st.from_regex(r"[0-9]{1,9}", fullmatch=True),
        "tablockid": st.from_regex(r"[0-9A-Z]{0,6}", fullmatch=True),
        "lat": st.floats(-90, 90).map(repr),
        "lon": st.floats(-180, 180).map(repr),
        "hdg": st.integers(0, 359).map(str) | st.just(""),
        "spd": st.integers(0, 200).map(str) | st.just(""),
        "stst": st.integers(0, 345_599).map(str),
        "when": st.datetimes(dt.datetime(2016, 1, 1), dt.datetime(2035, 12, 31)),  # noqa: DTZ001 - local wall time
        "lag_s": st.floats(-5, 1_200),
    }
).map(_valid_row)


@given(valid_rows)
def test_row_parser__any_valid_row_parses(r: dict[str, str]) -> None:
    wall = dt.datetime.strptime(r["tmstmp"], "%Y%m%d %H:%M")  # noqa: DTZ007
    assume(wall.replace(tzinfo=CHI_ZONE).astimezone(dt.UTC).astimezone(CHI_ZONE).replace(tzinfo=None) == wall)
    p = parse_row(r, CHI)
    assert p.vid == r["vid"] and p.trip == (r["tatripid"], r["stsd"], int(r["stst"]))
    assert dt.datetime.fromtimestamp(p.ts, CHI_ZONE).strftime("%Y%m%d %H:%M") == r["tmstmp"]
    assert (p.speed_mps is None) == (r["spd"] == "")


@given(valid_rows, st.text(max_size=20))
def test_row_parser__a_bad_tmstmp_is_a_value_error_naming_the_field(r: dict[str, str], bad: str) -> None:
    if re.fullmatch(r"[0-9]{8} [0-9]{2}:[0-9]{2}", bad):
        try:
            dt.datetime.strptime(bad, "%Y%m%d %H:%M")  # noqa: DTZ007
            return  # the text happens to be a valid tmstmp
        except ValueError:
            pass
    with pytest.raises(ValueError, match=r"^tmstmp: got .*expected local time 'YYYYMMDD HH:MM'"):
        parse_row({**r, "tmstmp": bad}, CHI)


@given(valid_rows, st.sampled_from(["2025-09-24 17:49", "20250924 1749", "20250931 17:49", "20250924 24:00", ""]))
def test_row_parser__near_miss_tmstmps_are_refused(r: dict[str, str], bad: str) -> None:
    with pytest.raises(ValueError, match=r"^tmstmp: got"):
        parse_row({**r, "tmstmp": bad}, CHI)


# ------------------------------------------------------------------------------------------- pledges and the hook


def pledge_line(asset: str, routes: list[str] | None, tz: str = CHI) -> str:
    ev: dict[str, Any] = {
        "event_id": f"L1:pledged:{asset}",
        "loan_id": "L1",
        "effective_at": "2025-09-24T17:45:00-05:00",
        "type": "collateral_pledged",
        "asset_id": asset,
        "asset_timezone": tz,
        "appraisal": {"value": 1e6, "appraised_on": "2025-09-22", "appraiser": "test"},
        "pledge_registration_no": f"R-{asset}",
    }
    if routes is not None:
        ev["routes"] = routes
    return json.dumps(ev)


def test_groups_from_pledges__routes_per_asset_and_errors_naming_asset_and_routes() -> None:
    lines = [pledge_line("mad-a", ["A", "B"]), pledge_line("mad-80", ["80"]), "{not json"]
    assert groups_from_pledges(lines) == {"mad-a": frozenset({"A", "B"}), "mad-80": frozenset({"80"})}
    assert timezone_from_pledges(lines) == CHI
    with pytest.raises(ConfigError, match="asset 'mad-x' has no routes"):
        groups_from_pledges([*lines, pledge_line("mad-x", None)])
    with pytest.raises(ConfigError, match=r"asset_timezone: got .*America/Chicago.*Europe/Berlin"):
        timezone_from_pledges([*lines, pledge_line("ber", ["1"], "Europe/Berlin")])


def test_read_telemetry__a_folder_of_vehicles_polls_is_bustime_grouped_by_the_pledges(tmp_path: Path) -> None:
    polls = tmp_path / "polls"
    polls.mkdir()
    write_poll(polls, "20250924_175039", [row(), row(vid="9", rt="80")])
    with pytest.raises(ConfigError, match="BusTime polls need the loan book's pledges"):
        read_telemetry(polls)
    book = tmp_path / "book.jsonl"
    book.write_text(pledge_line("mad-a", ["A"]) + "\n" + pledge_line("mad-80", ["80"]) + "\n")
    _, events, _ = load_inputs(book, polls)
    assert Counter((e.asset_id, e.kind) for e in events) == {
        ("mad-80", "feed_poll"): 1,
        ("mad-80", "vehicle_position"): 1,
        ("mad-a", "feed_poll"): 1,
        ("mad-a", "vehicle_position"): 1,
    }
    only = list(read_telemetry(polls, {"mad-80"}, pledges=book.read_bytes().splitlines()))
    assert {e.asset_id for e in only} == {"mad-80"}


def test_week_script__without_the_data_says_where_it_is_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("madison_week", ROOT / "examples" / "madison" / "week.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out.json")]) == 2
    assert "madison-metro-bus-avl/polls" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


# ------------------------------------------------------------------------------------------- the real polls


@pytest.fixture(scope="module")
def madison() -> Path:
    return shared_data("madison-metro-bus-avl")


def test_madison_polls__every_row_of_the_pledged_routes_becomes_one_position(madison: Path) -> None:
    from monitor.backtest import load_loan_book

    book = load_loan_book(BOOK)
    groups = groups_from_pledges(book)
    route_of = {r: a for a, rs in groups.items() for r in rs}
    expected: Counter[str] = Counter()
    files = sorted((madison / "polls").glob("vehicles_*.csv.gz"))
    across_midnight = set()
    for f in files:  # an independent count, with the csv module only
        for r in csv.DictReader(io.StringIO(gzip.decompress(f.read_bytes()).decode())):
            if r["rt"] in route_of:
                expected[route_of[r["rt"]]] += 1
                if r["stsd"].replace("-", "") != r["tmstmp"][:8]:
                    across_midnight.add((r["tatripid"], r["stsd"], r["stst"]))
    events = list(read_telemetry(madison / "polls", pledges=book))
    got = Counter(e.asset_id for e in events if e.kind == "vehicle_position")
    assert got == expected
    assert Counter(e.asset_id for e in events if e.kind == "feed_poll") == dict.fromkeys(groups, len(files))
    ids = Counter(e.event_id for e in events)
    assert ids.most_common(1)[0][1] == 1  # no id twice in one run: stale repeats are separate records
    done = [e for e in events if e.kind == "trip_completed"]
    keys = Counter(e.event_id for e in done)
    assert max(keys.values()) == 1
    assert across_midnight  # trips that ran past midnight of their service day ...
    midnight = {k for k in across_midnight if f"bustime:done:{k[0]}:{k[1]}:{k[2]}" in keys}
    assert midnight == across_midnight  # ... complete once, under their service day (104 on route 80 and 81-84)
    assert all(0 <= e.metrics["duration_s"] <= 6 * 3600 for e in done)


def test_madison_loan_book__committed_file_is_what_the_script_writes(madison: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_madison_book", ROOT / "examples" / "madison" / "make_loan_book.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert BOOK.read_text(encoding="utf-8") == mod.render(madison), "run examples/madison/make_loan_book.py"
    lines = [json.loads(x) for x in BOOK.read_text().splitlines()]
    opened = {e["loan_id"]: e for e in lines if e["type"] == "loan_opened"}
    for p in (e for e in lines if e["type"] == "collateral_pledged"):
        assert p["appraisal"]["value"] / opened[p["loan_id"]]["outstanding"] == pytest.approx(1.45, abs=1e-9)
        area = p["service_area"]  # holds every fix of the 9 days (SOURCE.md: 42.986-43.199 N, 89.206-89.565 W)
        assert area["min_lat"] < 42.986 and area["max_lat"] > 43.199
        assert area["min_lon"] < -89.565 and area["max_lon"] > -89.206
