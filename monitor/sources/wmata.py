"""Adapter for GTFS-realtime VehiclePositions flattened to CSV, one service day (WMATA bus AVL).

The CSV (as in ``../shared/data/wmata-bus-avl``, ``wmata_gtfsrt_021626.csv``: one row per ping,
columns ``vehicle.trip.trip_id``, ``vehicle.position.latitude`` …, ``vehicle.timestamp`` in POSIX
seconds UTC) is read with the static GTFS folder beside it, and analysed by the engine every
VehiclePositions feed shares (:mod:`monitor.sources.vehicle_positions`: trips, OTP at timepoints,
scheduled and missed trips, vehicle-km, plausibility; assets = the pledges' route sets, else
``<agency>-bus``). The CSV holds no poll times, so the feed's answers are taken as the 2-min slots
(:data:`POLL_S`, the ``bus_dispatch`` profile's poll interval) with pings.
"""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from monitor.sources import Pledged
from monitor.sources.gtfs_static import StaticGtfs, Timetable, find_static_gtfs, load_static
from monitor.sources.vehicle_positions import (
    EARLY_S,
    LATE_S,
    MAX_SPEED_MPS,
    MISSED_GRACE_S,
    FeedAnalysis,
    Ping,
    Poll,
    analyse,
    asset_routes,
    coverage_of,
    events_for_assets,
    feed_pings,
    haversine_m,
    parse_feed,
    service_by_route,
)

__all__ = [
    "EARLY_S",
    "LATE_S",
    "MAX_SPEED_MPS",
    "MISSED_GRACE_S",
    "SOURCE",
    "Ping",
    "Timetable",
    "VehiclePositionsCsvSource",
    "analyse_day",
    "events_from_day",
    "haversine_m",
    "is_vehicle_positions_csv",
    "loan_book",
    "open_day",
    "read_avl_csv",
    "read_gtfs",
    "read_vehicle_positions_pb",
    "service_by_route",
]

#: Heartbeat slot (the ``bus_dispatch`` profile's poll interval), seconds.
POLL_S = 120.0

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
#: optional: the trip's service day YYYYMMDD
_START_DATE = "vehicle.trip.start_date"


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
                            start_date=(r.get(_START_DATE) or "").strip() or None,
                        )
                    )
                except ValueError as exc:
                    raise ConfigError(f"{p} line {line}: {exc}, expected numbers in the position columns") from None
    except OSError as exc:
        raise ConfigError(f"AVL: cannot read {p}: {exc.strerror}") from None
    pings.sort(key=lambda q: q.ts)
    return pings


def read_gtfs(folder: str | Path, service_date: dt.date) -> Timetable:
    """The trips running on ``service_date`` in a static GTFS folder or zip (its calendar applied).

    Raises
    ------
    ConfigError
        See :func:`monitor.sources.gtfs_static.load_static`.
    """
    return load_static(folder).timetable(service_date)


def read_vehicle_positions_pb(paths: Iterable[str | Path]) -> list[Ping]:
    """Pings of GTFS-realtime ``FeedMessage`` protobuf files (one feed poll each), in time order.

    Entities without a vehicle, a trip id or a position are skipped. A fix without its own timestamp
    takes the feed header's. (A whole archive with its polls: :func:`monitor.sources.vehicle_positions.read_archive`.)

    Raises
    ------
    ConfigError
        When a file cannot be read or is not a FeedMessage.
    """
    pings: list[Ping] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: not a readable GTFS-realtime FeedMessage ({exc.strerror})") from None
        pings.extend(feed_pings(parse_feed(str(path), data)))
    pings.sort(key=lambda q: q.ts)
    return pings


def slot_polls(pings: list[Ping]) -> list[Poll]:
    """The answers of a feed without poll times: one per :data:`POLL_S` slot with pings, at its last second."""
    slots: dict[int, Counter[str]] = {}
    for p in pings:
        slots.setdefault(int(p.ts // POLL_S), Counter())[p.route_id] += 1
    return [Poll((k + 1) * POLL_S - 1, dict(c)) for k, c in sorted(slots.items())]


def analyse_day(timetable: Timetable, pings: list[Ping]) -> FeedAnalysis:
    """The engine's analysis of one service day (:func:`monitor.sources.vehicle_positions.analyse`).

    Coverage is the pings' own times. Raises ``ConfigError`` when there are no pings.
    """
    plans = {(t.service_date, tid): t for tid, t in timetable.trips.items()}
    return analyse(plans, pings, coverage_of(p.ts for p in pings), timetable.timezone)


def events_from_day(static: StaticGtfs, pings: list[Ping], pledged: Pledged | None = None) -> Iterator[TelemetryEvent]:
    """The CSV's pings as telemetry of the pledged assets (see the module docstring)."""
    pledged = pledged or Pledged(None)
    assets = {a: r for a, r in asset_routes(static, pledged.pledges).items() if pledged.wants(a)}
    if not assets:
        return iter(())
    return events_for_assets(static, pings, slot_polls(pings), assets, "wmata")


def is_vehicle_positions_csv(path: str | Path) -> bool:
    """Whether a CSV file's header is that of flattened GTFS-rt VehiclePositions."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            header = f.readline()
    except OSError:
        return False
    return _COLUMNS["lat"] in header and _COLUMNS["trip_id"] in header


def open_static(path: str | Path) -> StaticGtfs:
    """The static GTFS beside a VehiclePositions CSV (a folder or ``.zip`` holding ``trips.txt``).

    Raises
    ------
    ConfigError
        When none, or more than one, lies beside the file, or it cannot be read.
    """
    return load_static(find_static_gtfs(Path(path)))


def open_day(path: str | Path) -> tuple[Timetable, list[Ping]]:
    """Pings of a VehiclePositions CSV and the timetable of their service day.

    The static GTFS lies beside the CSV; the service date is the first ping's
    ``vehicle.trip.start_date``.

    Raises
    ------
    ConfigError
        When no GTFS folder, or more than one, lies beside the file, or the service date is missing.
    """
    p = Path(path)
    static = open_static(p)
    with p.open(newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f), None)
    date = (first or {}).get("vehicle.trip.start_date", "")
    try:
        day = dt.date.fromisoformat(date)  # YYYYMMDD (GTFS) is ISO 8601's basic format
    except ValueError:
        raise ConfigError(f"{p}: vehicle.trip.start_date: got {date!r}, expected YYYYMMDD") from None
    return static.timetable(day), read_avl_csv(p)


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
        """The day's events of the pledged assets (route sets, else ``<agency>-bus``); see :func:`events_from_day`."""
        return events_from_day(open_static(path), read_avl_csv(path), pledged)


SOURCE = VehiclePositionsCsvSource()
