"""Adapter for GTFS-realtime VehiclePositions joined with the day's static GTFS (WMATA bus AVL).

Inputs
------
* Vehicle positions, either flattened to CSV as in ``../shared/data/wmata-bus-avl``
  (``wmata_gtfsrt_021626.csv``: one row per ping, columns ``vehicle.trip.trip_id``,
  ``vehicle.position.latitude`` …, ``vehicle.timestamp`` in POSIX seconds UTC) or as GTFS-realtime
  protobuf ``FeedMessage`` files (:func:`read_vehicle_positions_pb`, via ``gtfs-realtime-bindings``).
* The static GTFS of the service day (``trips.txt``, ``stop_times.txt``, ``agency.txt``): times in
  ``stop_times`` are seconds after "noon minus 12 h" of the service day in the agency's time zone
  (America/New_York for WMATA) and may pass 24:00:00.

What it derives (:func:`analyse_day`)
-------------------------------------
* **Trips started / completed**: a trip starts at its first ping; it is completed when a ping reports
  its last scheduled stop (``current_stop_sequence`` ≥ the trip's last ``stop_sequence``).
* **On-time performance at timepoints** (stops with ``timepoint = 1``): the bus left a timepoint
  between its last ping there (``current_stop_sequence`` equal to the timepoint's: stopped at it or
  heading to it) and its first ping past it (running maximum of ``current_stop_sequence`` above it);
  the departure time is the midpoint of the two, measured only when they are at most
  :data:`MAX_DEPARTURE_GAP_S` apart, so it is off by at most 45 s either way, unbiased. A
  departure is on time from :data:`EARLY_S` (2 min) early to :data:`LATE_S` (7 min) late, WMATA's own
  definition for bus on-time performance. OTP = on-time departures ÷ measured departures.
* **Missed trips**: scheduled to start while the feed covered the day (its first ping to its last,
  less :data:`MISSED_GRACE_S` so a late start can still show) and never seen in any ping.
* **Vehicle-km**: great-circle distance between consecutive plausible fixes of each bus.
* **Plausibility** (case C18): a fix implying more than :data:`MAX_SPEED_MPS` from the bus's previous
  fix is a GPS glitch: it carries ``jump_speed_mps`` above the profile's plausible range, so the
  record lowers the window's accuracy dimension and is left out of distances.

Events for the core (:func:`events_from_day`), asset ``wmata-bus`` by default, profile ``bus_dispatch``:
``vehicle_position`` per ping, ``timepoint_departure`` per measured departure, ``trip_completed`` per
completed trip (the activity measure), ``dispatch`` per 15-min window (vehicles, vehicle-km, trips
started, missed trips) and a ``feed_poll`` heartbeat per 2-min slot with pings.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from monitor.sources import Pledged

__all__ = [
    "SOURCE",
    "DayAnalysis",
    "Ping",
    "Timetable",
    "VehiclePositionsCsvSource",
    "analyse_day",
    "events_from_day",
    "is_vehicle_positions_csv",
    "loan_book",
    "open_day",
    "read_avl_csv",
    "read_gtfs",
    "read_vehicle_positions_pb",
    "service_by_route",
]

#: A departure this many seconds early is still on time (WMATA: "no more than 2 minutes early").
EARLY_S = 120.0
#: ... and this many seconds late (WMATA: "no more than 7 minutes late").
LATE_S = 420.0
#: A departure is measured only when the pings either side of it are at most this far apart, seconds.
MAX_DEPARTURE_GAP_S = 90.0
#: Implied speed between two fixes of one bus above this (m/s, ≈ 108 km/h) is a GPS glitch.
MAX_SPEED_MPS = 30.0
#: A trip scheduled to start this long before the feed's last ping and never seen is missed, seconds.
MISSED_GRACE_S = 1800.0
#: Window of the ``dispatch`` summaries, seconds.
WINDOW_S = 900.0
#: Heartbeat slot (the ``bus_dispatch`` profile's poll interval), seconds.
POLL_S = 120.0
_EARTH_M = 6_371_008.8

_COLUMNS = {
    "trip_id": "vehicle.trip.trip_id",
    "route_id": "vehicle.trip.route_id",
    "lat": "vehicle.position.latitude",
    "lon": "vehicle.position.longitude",
    "bearing": "vehicle.position.bearing",
    "speed": "vehicle.position.speed",
    "seq": "vehicle.current_stop_sequence",
    "status": "vehicle.current_status",
    "ts": "vehicle.timestamp",
    "stop_id": "vehicle.stop_id",
    "vehicle": "vehicle.vehicle.id",
}


@dataclass(frozen=True, slots=True)
class Ping:
    """One vehicle position: POSIX seconds UTC, WGS84 degrees, m/s; ``seq`` is ``current_stop_sequence``."""

    vehicle: str
    trip_id: str
    route_id: str
    ts: float
    lat: float
    lon: float
    speed: float | None
    bearing: float | None
    seq: int | None
    status: int | None
    stop_id: str | None


@dataclass(frozen=True, slots=True)
class StopTime:
    """One scheduled stop of a trip; ``departure`` in POSIX seconds."""

    seq: int
    stop_id: str
    departure: float
    timepoint: bool


@dataclass(frozen=True)
class TripPlan:
    """A scheduled trip: its route, block and stops in sequence order."""

    trip_id: str
    route_id: str
    block_id: str
    stops: list[StopTime]

    @property
    def start(self) -> float:
        """Scheduled departure from the first stop, POSIX seconds."""
        return self.stops[0].departure

    @property
    def last_seq(self) -> int:
        """``stop_sequence`` of the last stop."""
        return self.stops[-1].seq


@dataclass(frozen=True)
class Timetable:
    """The static GTFS of one service day: trips by id, the agency's time zone."""

    service_date: dt.date
    timezone: str
    trips: dict[str, TripPlan]


def _gtfs_seconds(text: str, field_name: str, line: int) -> int:
    try:
        h, m, s = (int(p) for p in text.split(":"))
    except ValueError:
        msg = f"stop_times.txt line {line}: {field_name}: got {text!r}, expected HH:MM:SS (hours may pass 24)"
        raise ConfigError(msg) from None
    return h * 3600 + m * 60 + s


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError(f"GTFS: cannot read {path}: {exc.strerror}") from None


def read_gtfs(folder: str | Path, service_date: dt.date) -> Timetable:
    """Read the trips of ``service_date`` from a static GTFS folder.

    Raises
    ------
    ConfigError
        A missing file or column, or a malformed time, named with its file and line.
    """
    root = Path(folder)
    agency = _read_csv(root / "agency.txt")
    tz = agency[0].get("agency_timezone") if agency else None
    if not tz:
        raise ConfigError(f"GTFS {root}/agency.txt: agency_timezone missing, expected an IANA zone")
    zone = zoneinfo.ZoneInfo(tz)
    # GTFS times count from "noon minus 12 h" of the service day (not midnight: DST days differ)
    noon = dt.datetime.combine(service_date, dt.time(12), tzinfo=zone)
    base = noon.timestamp() - 12 * 3600
    trips = {r["trip_id"]: r for r in _read_csv(root / "trips.txt")}
    stops: dict[str, list[StopTime]] = defaultdict(list)
    for line, r in enumerate(_read_csv(root / "stop_times.txt"), start=2):
        if r["trip_id"] not in trips:
            continue
        dep = r.get("departure_time") or r.get("arrival_time") or ""
        stops[r["trip_id"]].append(
            StopTime(
                seq=int(r["stop_sequence"]),
                stop_id=r["stop_id"],
                departure=base + _gtfs_seconds(dep, "departure_time", line),
                timepoint=r.get("timepoint", "1") in ("1", ""),
            )
        )
    plans = {}
    for tid, st in stops.items():
        t = trips[tid]
        plans[tid] = TripPlan(tid, t["route_id"], t.get("block_id", ""), sorted(st, key=lambda s: s.seq))
    return Timetable(service_date, tz, plans)


def _num(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    return float(text)


def read_avl_csv(path: str | Path) -> list[Ping]:
    """Pings of a flattened VehiclePositions CSV, in time order (stable for equal times).

    Integers written as floats (``36.0``) are read as integers; an empty bearing is ``None``.

    Raises
    ------
    ConfigError
        When a column is missing or a value is not a number (file, line and column named).
    """
    p = Path(path)
    pings = []
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _COLUMNS.values() if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{p}: columns {missing} missing, expected a flattened GTFS-rt VehiclePositions CSV")
            for line, r in enumerate(reader, start=2):
                try:
                    seq = _num(r[_COLUMNS["seq"]])
                    status = _num(r[_COLUMNS["status"]])
                    pings.append(
                        Ping(
                            vehicle=r[_COLUMNS["vehicle"]],
                            trip_id=r[_COLUMNS["trip_id"]],
                            route_id=r[_COLUMNS["route_id"]],
                            ts=float(r[_COLUMNS["ts"]]),
                            lat=float(r[_COLUMNS["lat"]]),
                            lon=float(r[_COLUMNS["lon"]]),
                            speed=_num(r[_COLUMNS["speed"]]),
                            bearing=_num(r[_COLUMNS["bearing"]]),
                            seq=int(seq) if seq is not None else None,
                            status=int(status) if status is not None else None,
                            stop_id=r[_COLUMNS["stop_id"]] or None,
                        )
                    )
                except ValueError as exc:
                    raise ConfigError(f"{p} line {line}: {exc}, expected numbers in the position columns") from None
    except OSError as exc:
        raise ConfigError(f"AVL: cannot read {p}: {exc.strerror}") from None
    pings.sort(key=lambda q: q.ts)
    return pings


def read_vehicle_positions_pb(paths: Iterable[str | Path]) -> list[Ping]:
    """Pings of GTFS-realtime ``FeedMessage`` protobuf files (one feed poll each), in time order.

    Entities without a vehicle, a trip id or a position are skipped. A fix without its own timestamp
    takes the feed header's.

    Raises
    ------
    ConfigError
        When a file cannot be read or is not a FeedMessage.
    """
    from google.protobuf.message import DecodeError
    from google.transit import gtfs_realtime_pb2

    pings = []
    for path in paths:
        feed = gtfs_realtime_pb2.FeedMessage()
        try:
            feed.ParseFromString(Path(path).read_bytes())
        except (OSError, DecodeError) as exc:
            raise ConfigError(f"{path}: not a readable GTFS-realtime FeedMessage ({exc})") from None
        for ent in feed.entity:
            if not ent.HasField("vehicle"):
                continue
            v = ent.vehicle
            if not v.trip.trip_id or not v.HasField("position"):
                continue
            pos = v.position
            pings.append(
                Ping(
                    vehicle=v.vehicle.id or ent.id,
                    trip_id=v.trip.trip_id,
                    route_id=v.trip.route_id,
                    ts=float(v.timestamp or feed.header.timestamp),
                    lat=pos.latitude,
                    lon=pos.longitude,
                    speed=pos.speed if pos.HasField("speed") else None,
                    bearing=pos.bearing if pos.HasField("bearing") else None,
                    seq=v.current_stop_sequence if v.HasField("current_stop_sequence") else None,
                    status=v.current_status if v.HasField("current_status") else None,
                    stop_id=v.stop_id or None,
                )
            )
    pings.sort(key=lambda q: q.ts)
    return pings


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (mean Earth radius 6,371,008.8 m, IUGG).

    Examples
    --------
    >>> round(haversine_m(38.9, -77.0, 38.9, -77.0))
    0
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class Departure:
    """A measured departure from a timepoint: POSIX seconds; deviation = observed − scheduled."""

    trip_id: str
    route_id: str
    stop_id: str
    seq: int
    scheduled: float
    observed: float

    @property
    def deviation_s(self) -> float:
        """Seconds late (negative: early)."""
        return self.observed - self.scheduled

    @property
    def on_time(self) -> bool:
        """From :data:`EARLY_S` early to :data:`LATE_S` late."""
        return -EARLY_S <= self.deviation_s <= LATE_S


@dataclass
class TripRun:
    """What the pings show of one trip."""

    plan: TripPlan
    first: float
    last: float
    vehicles: set[str] = field(default_factory=set)
    completed_at: float | None = None
    backwards: int = 0


@dataclass
class DayAnalysis:
    """Everything :func:`analyse_day` derives; times POSIX seconds, distances metres."""

    coverage: tuple[float, float]
    runs: dict[str, TripRun]
    departures: list[Departure]
    missed: list[TripPlan]
    implausible: set[int]  # indexes into the pings of fixes judged GPS glitches
    jump_speed: dict[int, float]  # implied speed (m/s) from the bus's previous fix, per ping index
    metres: dict[int, float]  # distance from the bus's previous plausible fix, per ping index
    unknown_trips: set[str]


def analyse_day(timetable: Timetable, pings: list[Ping]) -> DayAnalysis:
    """Join time-ordered pings with the timetable; see the module docstring for every definition.

    Raises
    ------
    ConfigError
        When there are no pings.
    """
    if not pings:
        raise ConfigError("AVL: no vehicle positions to analyse")
    runs: dict[str, TripRun] = {}
    last_fix: dict[str, tuple[float, float, float]] = {}
    implausible: set[int] = set()
    jump: dict[int, float] = {}
    metres: dict[int, float] = {}
    unknown: set[str] = set()
    by_trip: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pings):
        prev = last_fix.get(p.vehicle)
        if prev is not None and p.ts > prev[0]:
            d = haversine_m(prev[1], prev[2], p.lat, p.lon)
            v = d / (p.ts - prev[0])
            jump[i] = v
            if v > MAX_SPEED_MPS:
                implausible.add(i)  # the bus did not move there: keep the previous fix as the reference
                continue
            metres[i] = d
        if (p.lat, p.lon) == (0.0, 0.0):
            implausible.add(i)
            continue
        last_fix[p.vehicle] = (p.ts, p.lat, p.lon)
        plan = timetable.trips.get(p.trip_id)
        if plan is None:
            unknown.add(p.trip_id)
            continue
        run = runs.get(p.trip_id)
        if run is None:
            run = runs[p.trip_id] = TripRun(plan, p.ts, p.ts)
        run.last = p.ts
        run.vehicles.add(p.vehicle)
        by_trip[p.trip_id].append(i)
        if run.completed_at is None and p.seq is not None and p.seq >= plan.last_seq:
            run.completed_at = p.ts
    departures: list[Departure] = []
    for tid, idx in by_trip.items():
        run = runs[tid]
        timepoints = [s for s in run.plan.stops if s.timepoint]
        top = -1
        prev_ts: float | None = None
        k = 0
        for i in idx:
            p = pings[i]
            if p.seq is None:
                continue
            if p.seq < top:
                run.backwards += 1
            # every timepoint the running maximum passes with this ping was left between prev_ts and p.ts
            while k < len(timepoints) and p.seq > timepoints[k].seq:
                if top >= timepoints[k].seq and prev_ts is not None and p.ts - prev_ts <= MAX_DEPARTURE_GAP_S:
                    tp = timepoints[k]
                    left = (prev_ts + p.ts) / 2
                    departures.append(Departure(tid, run.plan.route_id, tp.stop_id, tp.seq, tp.departure, left))
                k += 1
            top = max(top, p.seq)
            prev_ts = p.ts
    start, end = pings[0].ts, pings[-1].ts
    missed = sorted(
        (t for t in timetable.trips.values() if start <= t.start <= end - MISSED_GRACE_S and t.trip_id not in runs),
        key=lambda t: t.start,
    )
    return DayAnalysis((start, end), runs, departures, missed, implausible, jump, metres, unknown)


def _iso(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def events_from_day(timetable: Timetable, pings: list[Ping], asset_id: str = "wmata-bus") -> Iterator[TelemetryEvent]:
    """The day as telemetry of one asset, in event-time order (see the module docstring)."""
    day = analyse_day(timetable, pings)
    out: list[tuple[float, int, TelemetryEvent]] = []

    def emit(
        ts: float,
        order: int,
        event_id: str,
        kind: str,
        metrics: dict[str, float],
        attributes: dict[str, str] | None = None,
        entity_id: str | None = None,
    ) -> None:
        """One record at event time ``ts``; ``order`` sorts records of the same second (heartbeat first)."""
        ev = TelemetryEvent(
            event_id=f"wmata:{event_id}",
            asset_id=asset_id,
            observed_at=_iso(ts),
            entity_id=entity_id,
            kind=kind,
            metrics=metrics,
            attributes=attributes or {},
        )
        out.append((ts, order, ev))

    slots: dict[int, int] = defaultdict(int)
    for i, p in enumerate(pings):
        slots[int(p.ts // POLL_S)] += 1
        metrics = {"lat": p.lat, "lon": p.lon}
        if p.speed is not None:
            metrics["speed_mps"] = p.speed
        if p.bearing is not None:
            metrics["bearing_deg"] = p.bearing
        if i in day.jump_speed:
            metrics["jump_speed_mps"] = round(day.jump_speed[i], 3)
        trip = {"trip_id": p.trip_id, "route_id": p.route_id}
        emit(p.ts, 1, f"{p.vehicle}@{int(p.ts)}", "vehicle_position", metrics, trip, p.vehicle)
    for slot, n in slots.items():
        ts = (slot + 1) * POLL_S - 1
        emit(ts, 0, f"poll:{asset_id}@{slot * int(POLL_S)}", "feed_poll", {"entities": float(n)}, None, "collector")
    for d in day.departures:
        metrics = {"deviation_s": round(d.deviation_s, 1), "on_time": 1.0 if d.on_time else 0.0}
        where = {"trip_id": d.trip_id, "route_id": d.route_id, "stop_id": d.stop_id}
        emit(d.observed, 2, f"dep:{d.trip_id}:{d.seq}", "timepoint_departure", metrics, where)
    for run in day.runs.values():
        if run.completed_at is None:
            continue
        late = run.completed_at - run.plan.stops[-1].departure
        metrics = {
            "trips": 1.0,
            "on_time_trips": 1.0 if -EARLY_S <= late <= LATE_S else 0.0,
            "final_delay_s": round(late, 1),
            "duration_s": round(run.completed_at - run.first, 1),
            "stop_sequence": float(run.plan.last_seq),
        }
        trip = {"trip_id": run.plan.trip_id, "route_id": run.plan.route_id}
        emit(run.completed_at, 2, f"done:{run.plan.trip_id}", "trip_completed", metrics, trip, sorted(run.vehicles)[0])
    # one dispatch summary per window that the feed covered
    for w in range(int(day.coverage[0] // WINDOW_S), int(day.coverage[1] // WINDOW_S) + 1):
        lo, hi = w * WINDOW_S, (w + 1) * WINDOW_S
        in_w = [i for i, p in enumerate(pings) if lo <= p.ts < hi]
        missed = [t for t in day.missed if lo <= t.start < hi]
        metrics = {
            "vehicles": float(len({pings[i].vehicle for i in in_w})),
            "vehicle_km": round(sum(day.metres.get(i, 0.0) for i in in_w) / 1000, 3),
            "trips": float(sum(1 for r in day.runs.values() if lo <= r.first < hi)),
            "missed_trips": float(len(missed)),
        }
        ids = {"missed_trip_ids": " ".join(t.trip_id for t in missed)} if missed else None
        emit(min(hi - 1, day.coverage[1]), 3, f"dispatch:{asset_id}@{int(lo)}", "dispatch", metrics, ids, "dispatch")
    out.sort(key=lambda t: (t[0], t[1]))
    for _, _, ev in out:
        yield ev


@dataclass
class RouteService:
    """Service of one route over a run: counts, and OTP as a ratio 0..1 (None when nothing measured)."""

    departures: int = 0
    on_time: int = 0
    completed: int = 0
    missed: list[str] = field(default_factory=list)

    @property
    def otp(self) -> float | None:
        """On-time departures ÷ measured departures at timepoints."""
        return self.on_time / self.departures if self.departures else None


def service_by_route(events: Iterable[TelemetryEvent], timetable: Timetable | None = None) -> dict[str, RouteService]:
    """Per-route service from the telemetry a backtest read.

    Counts ``timepoint_departure``, ``trip_completed`` and ``dispatch`` records; missed trips are
    given their route through ``timetable`` when given.
    """
    out: dict[str, RouteService] = defaultdict(RouteService)
    for ev in events:
        if ev.kind == "timepoint_departure":
            r = out[ev.attributes["route_id"]]
            r.departures += 1
            r.on_time += int(ev.metrics["on_time"])
        elif ev.kind == "trip_completed" and "route_id" in ev.attributes:
            out[ev.attributes["route_id"]].completed += 1
        elif ev.kind == "dispatch" and ev.attributes.get("missed_trip_ids"):
            for tid in ev.attributes["missed_trip_ids"].split():
                plan = timetable.trips.get(tid) if timetable else None
                out[plan.route_id if plan else "?"].missed.append(tid)
    return dict(sorted(out.items()))


def is_vehicle_positions_csv(path: str | Path) -> bool:
    """Whether a CSV file's header is that of flattened GTFS-rt VehiclePositions."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            header = f.readline()
    except OSError:
        return False
    return _COLUMNS["lat"] in header and _COLUMNS["trip_id"] in header


def open_day(path: str | Path) -> tuple[Timetable, list[Ping]]:
    """Pings of a VehiclePositions CSV and the timetable of their service day.

    The static GTFS is the folder ``gtfs_service_*`` beside the CSV; the service date is the pings'
    ``vehicle.trip.start_date``.

    Raises
    ------
    ConfigError
        When no GTFS folder, or more than one, lies beside the file, or the service date is missing.
    """
    p = Path(path)
    folders = sorted(d for d in p.parent.glob("gtfs_service_*") if d.is_dir())
    if len(folders) != 1:
        msg = f"{p}: expected one static GTFS folder gtfs_service_* beside it, found {[d.name for d in folders]}"
        raise ConfigError(msg)
    with p.open(newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f), None)
    date = (first or {}).get("vehicle.trip.start_date", "")
    try:
        day = dt.date.fromisoformat(date)  # YYYYMMDD (GTFS) is ISO 8601's basic format
    except ValueError:
        raise ConfigError(f"{p}: vehicle.trip.start_date: got {date!r}, expected YYYYMMDD") from None
    return read_gtfs(folders[0], day), read_avl_csv(p)


def loan_book(timetable: Timetable, asset_id: str = "wmata-bus", value: float = 6_000_000.0) -> list[bytes]:
    """A fictional loan secured by the operator's dispatch data (raw JSON lines), for backtests.

    The appraisal's ``baseline_activity`` is the timetable's own: trips scheduled to end in each
    local hour of the service day (the activity measure is completed trips), so a day run as
    scheduled values at the appraisal. ``value`` in yuan; outstanding = value ÷ 1.6.
    """
    import orjson

    zone = zoneinfo.ZoneInfo(timetable.timezone)
    per_hour = [0.0] * 24
    for plan in timetable.trips.values():
        per_hour[dt.datetime.fromtimestamp(plan.stops[-1].departure, zone).hour] += 1.0
    day = timetable.service_date
    at = dt.datetime.combine(day - dt.timedelta(days=30), dt.time(9), tzinfo=zone).isoformat()
    loan = "L-WMATA-001"
    owed = round(value / 1.6, 2)
    events = [
        {
            "schema_version": 1,
            "event_id": f"{loan}:opened",
            "loan_id": loan,
            "effective_at": at,
            "type": "loan_opened",
            "borrower_id": "B-WMATA-BUS-OPS",
            "principal": owed,
            "outstanding": owed,
            "currency": "CNY",
            "start": (day - dt.timedelta(days=30)).isoformat(),
            "maturity": day.replace(year=day.year + 2).isoformat(),
            "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1},
            "cure_period": "5bd",
        },
        {
            "schema_version": 1,
            "event_id": f"{loan}:pledged:{asset_id}",
            "loan_id": loan,
            "effective_at": at,
            "type": "collateral_pledged",
            "asset_id": asset_id,
            "asset_profile": "bus_dispatch",
            "asset_timezone": timetable.timezone,
            "appraisal": {
                "value": value,
                "method": "income",
                "appraised_on": (day - dt.timedelta(days=31)).isoformat(),
                "appraiser": "Example Appraisal Co. (fictional)",
                "baseline_activity": per_hour,
                "quality_baseline": 0.95,
            },
            "pledge_registration_no": "DEMO-PLEDGE-WMATA-BUS",
        },
    ]
    return [orjson.dumps(e) for e in events]


class VehiclePositionsCsvSource:
    """GTFS-rt VehiclePositions flattened to CSV, with the day's static GTFS (``gtfs_service_*``) beside it."""

    name = "vehicle-positions-csv"
    accepts = "GTFS-rt VehiclePositions as CSV (vehicle.position.latitude, vehicle.trip.trip_id ...) + static GTFS"

    def recognise(self, path: Path) -> bool:
        """Whether the file's header is that of flattened VehiclePositions."""
        return path.is_file() and is_vehicle_positions_csv(path)

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """The day's events (asset ``wmata-bus``) when it is pledged; see :func:`events_from_day`."""
        timetable, pings = open_day(path)
        return (e for e in events_from_day(timetable, pings) if pledged.wants(e.asset_id))


SOURCE = VehiclePositionsCsvSource()
