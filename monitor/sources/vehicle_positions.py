"""GTFS-realtime VehiclePositions of any agency, joined with its static GTFS, over any number of days.

Inputs
------
* **Poll archives** (:class:`VehiclePositionsArchiveSource`): a folder, or a tar (``.tar``,
  ``.tar.gz``), of ``FeedMessage`` polls, one poll per file, each protobuf (the GTFS-rt wire
  format) or JSON (the protobuf JSON mapping; a ``{"response": {...}}`` wrapper as Auckland's API
  gives is unwrapped), either possibly gzipped. Files are recognised by content; ``*.md``,
  ``*.txt`` and ``*.zip`` files (documentation, a static GTFS) and hidden files are skipped.
* **Flattened CSV** of one service day (:mod:`monitor.sources.wmata`).
* The **static GTFS** (:mod:`monitor.sources.gtfs_static`), a folder or ``.zip`` inside the
  archive folder or beside the archive, read once; each day's trips come from its calendar.

Assets
------
An asset is a **route set named in a pledge** (``CollateralPledged.routes``); pledges whose routes
are none of the feed's are another feed's and are left alone; a pledge naming some of the feed's
routes and some it does not know is refused (a typo would leave a route unmonitored). Without such
pledges the whole feed is one asset, ``<agency>-bus`` (``wmata-bus`` for WMATA).

What it derives (:func:`analyse`)
----------------------------------
* **Service day of a ping**: its ``trip.start_date``; without one, the local day of the ping, or
  the day before when the trip runs that day past midnight (GTFS times pass 24:00).
* **Feed coverage**: the spans in which the feed answered with vehicles, consecutive answers at
  most :data:`MAX_FEED_GAP_S` apart. Outside them nothing is known, so nothing is missed.
* **Trips started / completed**: a trip starts at its first ping; it is completed when a ping
  reports its last scheduled stop (``current_stop_sequence`` ≥ the trip's last ``stop_sequence``).
* **On-time performance at timepoints** (stops with ``timepoint = 1``): the bus left a timepoint
  between its last ping there and its first ping past it (running maximum of the stop sequence);
  the departure time is the midpoint of the two, measured only when they are at most
  :data:`MAX_DEPARTURE_GAP_S` apart. On time is from :data:`EARLY_S` (2 min) early to
  :data:`LATE_S` (7 min) late (WMATA's definition of bus on-time performance).
* **Scheduled trips**: trips of the day's running services (calendar) starting in a window; a
  route with no service that day expects none.
* **Missed trips**: scheduled, never seen in any ping of that service day, and the feed covered
  the first :data:`MISSED_GRACE_S` after the scheduled start without a gap.
* **Vehicle-km**: great-circle distance between consecutive plausible fixes of each bus.
* **Plausibility** (case C18): a fix implying more than :data:`MAX_SPEED_MPS` from the bus's
  previous fix is a GPS glitch: it carries ``jump_speed_mps`` above the profile's range, so the
  record lowers the window's accuracy and is left out of distances.

Events per asset (profile ``bus_dispatch``): ``vehicle_position`` per ping, ``timepoint_departure``
per measured departure, ``trip_completed`` per completed trip (the activity measure), ``dispatch``
per covered 15-min window (vehicles, vehicle-km, trips started, scheduled and missed trips, with
``missed_trip_ids`` / ``missed_trip_routes`` / ``scheduled_by_route``) and a ``feed_poll``
heartbeat per poll (entities = the asset's vehicles in it; 0 still proves the feed answered).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import re
import tarfile
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from monitor.errors import ConfigError
from monitor.schemas import CollateralPledged, TelemetryEvent
from monitor.sources import Pledged, add_route_group
from monitor.sources.gtfs_static import StaticGtfs, TripPlan, find_static_gtfs, load_static

__all__ = [
    "EARLY_S",
    "LATE_S",
    "MAX_FEED_GAP_S",
    "MAX_SPEED_MPS",
    "MISSED_GRACE_S",
    "SOURCE",
    "FeedAnalysis",
    "Ping",
    "Poll",
    "RouteService",
    "VehiclePositionsArchiveSource",
    "analyse",
    "asset_routes",
    "coverage_of",
    "events_for_assets",
    "haversine_m",
    "read_archive",
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
#: A trip never seen is missed only if the feed covered this long after its scheduled start, seconds
#: (30 min: a late start up to half an hour still shows as a late trip, not a missed one).
MISSED_GRACE_S = 1800.0
#: Feed answers further apart than this (s) break its coverage: GTFS-rt producers refresh every
#: 10-60 s and collectors poll every 15 s-2 min, so 10 min without an answer is an outage, in which
#: a short trip could run unseen and must not be called missed.
MAX_FEED_GAP_S = 600.0
#: Window of the ``dispatch`` summaries, seconds.
WINDOW_S = 900.0
#: Heartbeat slot of a feed without poll times (the ``bus_dispatch`` profile's poll interval), seconds.
POLL_S = 120.0
#: A ping is matched to a trip of the day before only within this much of the trip's scheduled
#: span, seconds (early pull-outs, late runs: 1 h before to 3 h after)
_MATCH_BEFORE_S, _MATCH_AFTER_S = 3600.0, 10800.0
_EARTH_M = 6_371_008.8
_SKIPPED_SUFFIXES = (".md", ".txt", ".zip")

RunKey = tuple[str, str]  # (service date YYYYMMDD, trip id)


@dataclass(frozen=True, slots=True)
class Ping:
    """One vehicle position: POSIX seconds UTC, WGS84 degrees, m/s; ``seq`` is ``current_stop_sequence``.

    ``start_date`` is the trip's service day ``YYYYMMDD`` when the feed gives it.
    """

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
    start_date: str | None = None


@dataclass(frozen=True, slots=True)
class Poll:
    """One answer of the feed: its time (POSIX s) and the vehicles it held per route."""

    ts: float
    per_route: dict[str, int]

    @property
    def vehicles(self) -> int:
        """Vehicles in the answer, all routes."""
        return sum(self.per_route.values())


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


def coverage_of(times: Iterable[float], max_gap_s: float = MAX_FEED_GAP_S) -> list[tuple[float, float]]:
    """Spans (first, last) of sorted answer times, split where two are more than ``max_gap_s`` apart.

    Examples
    --------
    >>> coverage_of([0, 60, 120, 2000, 2030])
    [(0, 120), (2000, 2030)]
    """
    spans: list[tuple[float, float]] = []
    for t in sorted(times):
        if spans and t - spans[-1][1] <= max_gap_s:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return spans


def _covered(spans: list[tuple[float, float]], a: float, b: float) -> bool:
    return any(lo <= a and b <= hi for lo, hi in spans)


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
    """What the pings show of one trip on one service day."""

    plan: TripPlan
    first: float
    last: float
    vehicles: set[str] = field(default_factory=set)
    completed_at: float | None = None
    backwards: int = 0


@dataclass
class FeedAnalysis:
    """Everything :func:`analyse` derives; times POSIX seconds, distances metres; runs keyed by (day, trip)."""

    coverage: list[tuple[float, float]]
    plans: dict[RunKey, TripPlan]
    runs: dict[RunKey, TripRun]
    departures: list[Departure]
    missed: list[TripPlan]
    implausible: set[int]  # indexes into the pings of fixes judged GPS glitches
    jump_speed: dict[int, float]  # implied speed (m/s) from the bus's previous fix, per ping index
    metres: dict[int, float]  # distance from the bus's previous plausible fix, per ping index
    unknown_trips: set[str]


def plans_for(
    static: StaticGtfs, coverage: list[tuple[float, float]], routes: frozenset[str] | None = None
) -> dict[RunKey, TripPlan]:
    """Trips of every service day the coverage touches (and the day before each: trips past midnight)."""
    if not coverage:
        return {}
    zone = zoneinfo.ZoneInfo(static.timezone)
    first = dt.datetime.fromtimestamp(coverage[0][0], zone).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(coverage[-1][1], zone).date()
    days = set()
    for lo, hi in coverage:
        d = dt.datetime.fromtimestamp(lo, zone).date() - dt.timedelta(days=1)
        while d <= dt.datetime.fromtimestamp(hi, zone).date():
            days.add(d)
            d += dt.timedelta(days=1)
    plans: dict[RunKey, TripPlan] = {}
    for day in sorted(d for d in days if first <= d <= last):
        for tid, plan in static.timetable(day, routes).trips.items():
            plans[(plan.service_date, tid)] = plan
    return plans


def _run_key(p: Ping, plans: dict[RunKey, TripPlan], zone: zoneinfo.ZoneInfo) -> RunKey | None:
    if p.start_date:
        key = (p.start_date, p.trip_id)
        return key if key in plans else None
    local = dt.datetime.fromtimestamp(p.ts, zone).date()
    for day in (local, local - dt.timedelta(days=1)):
        key = (day.strftime("%Y%m%d"), p.trip_id)
        plan = plans.get(key)
        if plan is not None and plan.start - _MATCH_BEFORE_S <= p.ts <= plan.end + _MATCH_AFTER_S:
            return key
    return None


def analyse(
    plans: dict[RunKey, TripPlan], pings: list[Ping], coverage: list[tuple[float, float]], timezone: str
) -> FeedAnalysis:
    """Join time-ordered pings with the trips of their service days; see the module docstring.

    Raises
    ------
    ConfigError
        When there are no pings.
    """
    if not pings:
        raise ConfigError("AVL: no vehicle positions to analyse")
    zone = zoneinfo.ZoneInfo(timezone)
    runs: dict[RunKey, TripRun] = {}
    last_fix: dict[str, tuple[float, float, float]] = {}
    implausible: set[int] = set()
    jump: dict[int, float] = {}
    metres: dict[int, float] = {}
    unknown: set[str] = set()
    by_run: dict[RunKey, list[int]] = defaultdict(list)
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
        key = _run_key(p, plans, zone)
        if key is None:
            unknown.add(p.trip_id)
            continue
        plan = plans[key]
        run = runs.get(key)
        if run is None:
            run = runs[key] = TripRun(plan, p.ts, p.ts)
        run.last = p.ts
        run.vehicles.add(p.vehicle)
        by_run[key].append(i)
        if run.completed_at is None and p.seq is not None and p.seq >= plan.last_seq:
            run.completed_at = p.ts
    departures: list[Departure] = []
    for key, idx in by_run.items():
        run = runs[key]
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
                    departures.append(Departure(key[1], run.plan.route_id, tp.stop_id, tp.seq, tp.departure, left))
                k += 1
            top = max(top, p.seq)
            prev_ts = p.ts
    missed = sorted(
        (
            plan
            for key, plan in plans.items()
            if key not in runs and _covered(coverage, plan.start, plan.start + MISSED_GRACE_S)
        ),
        key=lambda t: (t.start, t.trip_id),
    )
    return FeedAnalysis(coverage, plans, runs, departures, missed, implausible, jump, metres, unknown)


def _iso(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "agency"


def default_asset(static: StaticGtfs) -> str:
    """The asset id of a whole feed: ``<agency name>-bus`` (``wmata-bus``)."""
    return f"{_slug(static.agency)}-bus"


def asset_routes(static: StaticGtfs, pledges: Iterable[CollateralPledged]) -> dict[str, frozenset[str] | None]:
    """Asset id → its routes (``None``: every route) for this feed; see the module docstring.

    Raises
    ------
    ConfigError
        When a pledge names some of the feed's routes and some it does not have, or one asset is
        pledged twice with different routes.
    """
    known = static.route_ids
    out: dict[str, frozenset[str] | None] = {}
    for p in pledges:
        if not p.routes:
            continue
        routes = frozenset(p.routes)
        if not routes & known:
            continue  # another feed's asset
        if routes - known:
            msg = (
                f"collateral_pledged {p.event_id}: asset {p.asset_id!r} routes: {sorted(routes - known)} are not in "
                f"the static GTFS {static.source}, expected route_id values of its routes.txt/trips.txt "
                f"(it has {sorted(known)[:20]})"
            )
            raise ConfigError(msg)
        add_route_group(out, p, routes)
    return out or {default_asset(static): None}


def events_for_assets(
    static: StaticGtfs,
    pings: list[Ping],
    polls: list[Poll],
    assets: dict[str, frozenset[str] | None],
    prefix: str,
) -> Iterator[TelemetryEvent]:
    """The feed as telemetry of each asset, in event-time order (see the module docstring).

    ``pings`` time-ordered; ``polls`` the feed's answers (their times make its coverage); ``prefix``
    starts every event id (the source's name).
    """
    coverage = coverage_of(q.ts for q in polls if q.vehicles > 0)
    wanted = None if any(r is None for r in assets.values()) else frozenset().union(*assets.values())  # type: ignore[arg-type]
    plans = plans_for(static, coverage, wanted)
    day = analyse(plans, pings, coverage, static.timezone)
    out: list[tuple[float, int, TelemetryEvent]] = []
    by_window: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(pings):
        by_window[int(p.ts // WINDOW_S)].append(i)
    windows: dict[int, float] = {}
    for lo, hi in coverage:
        for w in range(int(lo // WINDOW_S), int(hi // WINDOW_S) + 1):
            windows[w] = max(windows.get(w, 0.0), min((w + 1) * WINDOW_S - 1, hi))
    scheduled: dict[int, list[TripPlan]] = defaultdict(list)
    for plan in plans.values():
        scheduled[int(plan.start // WINDOW_S)].append(plan)
    missed: dict[int, list[TripPlan]] = defaultdict(list)
    for plan in day.missed:
        missed[int(plan.start // WINDOW_S)].append(plan)
    started: dict[int, int] = Counter()
    for asset_id, routes in assets.items():

        def mine(route: str, routes: frozenset[str] | None = routes) -> bool:
            return routes is None or route in routes

        def emit(
            ts: float,
            order: int,
            event_id: str,
            kind: str,
            metrics: dict[str, float],
            attributes: dict[str, str] | None = None,
            entity_id: str | None = None,
            asset_id: str = asset_id,
        ) -> None:
            """One record at event time ``ts``; ``order`` sorts records of the same second (heartbeat first)."""
            ev = TelemetryEvent(
                event_id=f"{prefix}:{asset_id}:{event_id}",
                asset_id=asset_id,
                observed_at=_iso(ts),
                entity_id=entity_id,
                kind=kind,
                metrics=metrics,
                attributes=attributes or {},
            )
            out.append((ts, order, ev))

        for q in polls:
            n = sum(c for r, c in q.per_route.items() if mine(r))
            emit(q.ts, 0, f"poll@{int(q.ts)}", "feed_poll", {"entities": float(n)}, None, "collector")
        for i, p in enumerate(pings):
            if not mine(p.route_id):
                continue
            metrics = {"lat": p.lat, "lon": p.lon}
            if p.speed is not None:
                metrics["speed_mps"] = p.speed
            if p.bearing is not None:
                metrics["bearing_deg"] = p.bearing
            if i in day.jump_speed:
                metrics["jump_speed_mps"] = round(day.jump_speed[i], 3)
            trip = {"trip_id": p.trip_id, "route_id": p.route_id}
            emit(p.ts, 1, f"{p.vehicle}@{int(p.ts)}", "vehicle_position", metrics, trip, p.vehicle)
        for d in day.departures:
            if not mine(d.route_id):
                continue
            metrics = {"deviation_s": round(d.deviation_s, 1), "on_time": 1.0 if d.on_time else 0.0}
            where = {"trip_id": d.trip_id, "route_id": d.route_id, "stop_id": d.stop_id}
            emit(d.observed, 2, f"dep:{d.trip_id}:{d.seq}@{int(d.scheduled)}", "timepoint_departure", metrics, where)
        started.clear()
        for run in day.runs.values():
            if not mine(run.plan.route_id):
                continue
            started[int(run.first // WINDOW_S)] += 1
            if run.completed_at is None:
                continue
            late = run.completed_at - run.plan.end
            metrics = {
                "trips": 1.0,
                "on_time_trips": 1.0 if -EARLY_S <= late <= LATE_S else 0.0,
                "final_delay_s": round(late, 1),
                "duration_s": round(run.completed_at - run.first, 1),
                "stop_sequence": float(run.plan.last_seq),
            }
            trip = {"trip_id": run.plan.trip_id, "route_id": run.plan.route_id, "service_date": run.plan.service_date}
            done_id = f"done:{run.plan.service_date}:{run.plan.trip_id}"
            emit(run.completed_at, 2, done_id, "trip_completed", metrics, trip, sorted(run.vehicles)[0])
        for w, at in sorted(windows.items()):
            in_w = [i for i in by_window.get(w, ()) if mine(pings[i].route_id)]
            lost = [t for t in missed.get(w, ()) if mine(t.route_id)]
            plan_w = Counter(t.route_id for t in scheduled.get(w, ()) if mine(t.route_id))
            metrics = {
                "vehicles": float(len({pings[i].vehicle for i in in_w})),
                "vehicle_km": round(sum(day.metres.get(i, 0.0) for i in in_w) / 1000, 3),
                "trips": float(started.get(w, 0)),
                "scheduled_trips": float(sum(plan_w.values())),
                "missed_trips": float(len(lost)),
            }
            attrs: dict[str, str] = {}
            if plan_w:
                attrs["scheduled_by_route"] = " ".join(f"{r}:{n}" for r, n in sorted(plan_w.items()))
            if lost:
                attrs["missed_trip_ids"] = " ".join(t.trip_id for t in lost)
                attrs["missed_trip_routes"] = " ".join(t.route_id for t in lost)
            emit(at, 3, f"dispatch@{int(w * WINDOW_S)}", "dispatch", metrics, attrs, "dispatch")
    out.sort(key=lambda t: (t[0], t[1], t[2].asset_id))
    for _, _, ev in out:
        yield ev


@dataclass
class RouteService:
    """Service of one route over a run: counts, and OTP as a ratio 0..1 (None when nothing measured)."""

    departures: int = 0
    on_time: int = 0
    completed: int = 0
    scheduled: int = 0
    missed: list[str] = field(default_factory=list)

    @property
    def otp(self) -> float | None:
        """On-time departures ÷ measured departures at timepoints."""
        return self.on_time / self.departures if self.departures else None


def service_by_route(events: Iterable[TelemetryEvent]) -> dict[str, RouteService]:
    """Per-route service from the telemetry a backtest read (raw or exported: the records carry it all).

    Counts ``timepoint_departure`` and ``trip_completed`` records and the ``dispatch`` records'
    ``scheduled_by_route`` and ``missed_trip_ids`` / ``missed_trip_routes``.
    """
    out: dict[str, RouteService] = defaultdict(RouteService)
    for ev in events:
        if ev.kind == "timepoint_departure":
            r = out[ev.attributes["route_id"]]
            r.departures += 1
            r.on_time += int(ev.metrics["on_time"])
        elif ev.kind == "trip_completed" and "route_id" in ev.attributes:
            out[ev.attributes["route_id"]].completed += 1
        elif ev.kind == "dispatch":
            for part in ev.attributes.get("scheduled_by_route", "").split():
                route, _, n = part.rpartition(":")
                out[route].scheduled += int(n)
            ids = ev.attributes.get("missed_trip_ids", "").split()
            routes = ev.attributes.get("missed_trip_routes", "").split()
            for tid, route in zip(ids, routes + ["?"] * (len(ids) - len(routes)), strict=True):
                out[route].missed.append(tid)
    return dict(sorted(out.items()))


# --- poll archives ---------------------------------------------------------------------------


def _blobs(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each poll file of a folder (recursively, by name) or tar, gunzipped by content."""

    def skipped(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return base.startswith(".") or base.lower().endswith(_SKIPPED_SUFFIXES)

    def gunzip(name: str, data: bytes) -> bytes:
        if data[:2] == b"\x1f\x8b":
            try:
                return gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise ConfigError(f"{name}: a damaged gzip file ({exc})") from None
        return data

    if path.is_dir():
        skip_dirs = [p for p in path.iterdir() if p.is_dir() and (p / "trips.txt").is_file()]
        for f in sorted(path.rglob("*")):
            if f.is_file() and not skipped(f.name) and not any(d in f.parents for d in skip_dirs):
                yield str(f), gunzip(str(f), f.read_bytes())
        return
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
                if skipped(m.name):
                    continue
                fh = tar.extractfile(m)
                if fh is not None:
                    name = f"{path}:{m.name}"
                    yield name, gunzip(name, fh.read())
    except tarfile.TarError as exc:
        raise ConfigError(f"{path}: not a readable tar of GTFS-realtime polls ({exc})") from None


def parse_feed(name: str, data: bytes):  # type: ignore[no-untyped-def]
    """A ``FeedMessage`` from protobuf or JSON bytes.

    Raises
    ------
    ConfigError
        Naming the file when it is neither, or its header has no ``gtfs_realtime_version``
        (required by the GTFS-realtime reference).
    """
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from google.transit import gtfs_realtime_pb2

    feed = gtfs_realtime_pb2.FeedMessage()
    if data.lstrip()[:1] == b"{":
        try:
            obj = json.loads(data)
            if isinstance(obj, dict) and "header" not in obj and isinstance(obj.get("response"), dict):
                obj = obj["response"]
            json_format.ParseDict(obj, feed, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as exc:
            msg = f"{name}: not a GTFS-realtime FeedMessage in JSON ({str(exc).splitlines()[0][:200]})"
            raise ConfigError(msg) from None
    else:
        try:
            feed.ParseFromString(data)
        except DecodeError as exc:
            raise ConfigError(f"{name}: not a readable GTFS-realtime FeedMessage ({exc})") from None
    if not feed.header.gtfs_realtime_version:
        msg = f"{name}: header.gtfs_realtime_version missing, expected a GTFS-realtime FeedMessage (protobuf or JSON)"
        raise ConfigError(msg)
    return feed


def feed_pings(feed) -> Iterator[Ping]:  # type: ignore[no-untyped-def]
    """The pings of one ``FeedMessage``, in entity order.

    Entities without a vehicle, a trip id or a position are skipped; a fix without its own
    timestamp takes the header's.
    """
    for ent in feed.entity:
        if not ent.HasField("vehicle"):
            continue
        v = ent.vehicle
        if not v.trip.trip_id or not v.HasField("position"):
            continue
        pos = v.position
        yield Ping(
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
            start_date=v.trip.start_date or None,
        )


def read_archive(path: str | Path) -> tuple[list[Ping], list[Poll]]:
    """Pings (time-ordered, each (vehicle, fix time) once) and polls of a folder or tar of FeedMessages.

    Entities without a vehicle, a trip id or a position are skipped; a fix without its own
    timestamp takes the header's. A poll's time is its header timestamp, else its newest fix.

    Raises
    ------
    ConfigError
        Naming the file: not a FeedMessage, damaged gzip, a poll with no time at all; or an archive
        without any poll.
    """
    p = Path(path)
    pings: dict[tuple[str, float], Ping] = {}
    polls: dict[float, Poll] = {}
    for name, data in _blobs(p):
        feed = parse_feed(name, data)
        per_route: Counter[str] = Counter()
        newest = 0.0
        for ping in feed_pings(feed):
            newest = max(newest, ping.ts)
            per_route[ping.route_id] += 1
            pings.setdefault((ping.vehicle, ping.ts), ping)
        at = float(feed.header.timestamp) or newest
        if not at:
            raise ConfigError(f"{name}: header.timestamp missing and no vehicle timestamp, expected the poll's time")
        poll = Poll(at, dict(per_route))
        if at not in polls or poll.vehicles > polls[at].vehicles:
            polls[at] = poll  # the same answer archived twice (an unrefreshed producer) is one poll
    if not polls:
        raise ConfigError(f"{p}: no GTFS-realtime poll files, expected FeedMessage files (protobuf or JSON)")
    return sorted(pings.values(), key=lambda q: q.ts), [polls[t] for t in sorted(polls)]


class VehiclePositionsArchiveSource:
    """GTFS-rt VehiclePositions polls (a folder or tar of FeedMessages) with the agency's static GTFS."""

    name = "gtfs-rt-vehicle-positions"
    accepts = (
        "GTFS-rt VehiclePositions polls: a folder or tar of FeedMessage files (protobuf or JSON, maybe gzipped) "
        "with the static GTFS inside or beside it"
    )

    def recognise(self, path: Path) -> bool:
        """Whether the first poll file is a FeedMessage and a static GTFS lies inside or beside."""
        if not (path.is_dir() or (path.is_file() and tarfile.is_tarfile(path))):
            return False
        first = next(_blobs(path), None)
        if first is None:
            return False
        try:
            parse_feed(*first)
            find_static_gtfs(path)
        except ConfigError:
            return False
        return True

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """Events of the pledged route sets; see :func:`events_for_assets`.

        Raises
        ------
        ConfigError
            See :func:`read_archive`, :func:`asset_routes` and :func:`monitor.sources.gtfs_static.load_static`.
        """
        static = load_static(find_static_gtfs(path))
        pings, polls = read_archive(path)
        assets = {a: r for a, r in asset_routes(static, pledged.pledges).items() if pledged.wants(a)}
        if not assets:
            return iter(())
        return events_for_assets(static, pings, polls, assets, "gtfsrt")


SOURCE = VehiclePositionsArchiveSource()
