"""Static GTFS read once: trips, stop times and the service calendar of every day it covers.

A GTFS feed is a folder or a ``.zip`` of text files (GTFS Schedule reference,
https://gtfs.org/schedule/reference/). pledgewatch reads ``agency.txt`` (the time zone),
``trips.txt``, ``stop_times.txt`` and the service calendar: ``calendar.txt`` (a service runs on the
weekdays it flags between ``start_date`` and ``end_date``) and ``calendar_dates.txt`` (exceptions
by date: ``exception_type`` 1 adds the service that day, 2 removes it). At least one of the two
calendar files must be present, as the reference requires. :meth:`StaticGtfs.timetable` gives the
trips that run on one service day, with absolute times: GTFS times count from "noon minus 12 h" of
the service day in the agency's zone (not midnight, so DST days come out right) and may pass
24:00:00.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
import zoneinfo
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import ConfigError

__all__ = ["StaticGtfs", "StopTime", "Timetable", "TripPlan", "find_static_gtfs", "is_static_gtfs", "load_static"]

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class StopTime:
    """One scheduled stop of a trip; ``departure`` in POSIX seconds."""

    seq: int
    stop_id: str
    departure: float
    timepoint: bool


@dataclass(frozen=True)
class TripPlan:
    """A scheduled trip on one service day (``service_date`` ``YYYYMMDD``): route, block, stops in order."""

    trip_id: str
    route_id: str
    block_id: str
    stops: list[StopTime]
    service_date: str = ""

    @property
    def start(self) -> float:
        """Scheduled departure from the first stop, POSIX seconds."""
        return self.stops[0].departure

    @property
    def end(self) -> float:
        """Scheduled departure from (arrival at) the last stop, POSIX seconds."""
        return self.stops[-1].departure

    @property
    def last_seq(self) -> int:
        """``stop_sequence`` of the last stop."""
        return self.stops[-1].seq


@dataclass(frozen=True)
class Timetable:
    """The trips of one service day, by trip id, and the agency's IANA time zone."""

    service_date: dt.date
    timezone: str
    trips: dict[str, TripPlan]


def is_static_gtfs(path: Path) -> bool:
    """Whether ``path`` is a GTFS folder or ``.zip`` (it holds ``trips.txt``)."""
    if path.is_dir():
        return (path / "trips.txt").is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return any(n.rsplit("/", 1)[-1] == "trips.txt" for n in z.namelist())
    return False


def find_static_gtfs(path: Path) -> Path:
    """The one static GTFS of a feed at ``path``: inside it (a folder), else beside it.

    Raises
    ------
    ConfigError
        When there is none, or more than one at the first place searched (named).
    """
    places = ([path] if path.is_dir() else []) + [path.parent]
    for place in places:
        found = sorted(p for p in place.iterdir() if p != path and is_static_gtfs(p))
        if len(found) == 1:
            return found[0]
        if found:
            names = [p.name for p in found]
            msg = f"{path}: expected one static GTFS folder (or .zip with trips.txt) in {place}, found {names}"
            raise ConfigError(msg)
    msg = f"{path}: expected one static GTFS folder (or .zip with trips.txt) inside or beside it, found none"
    raise ConfigError(msg)


class _Files:
    """The text files of a GTFS folder or zip."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._zip: dict[str, str] | None = None
        if root.is_file():
            with zipfile.ZipFile(root) as z:
                self._zip = {n.rsplit("/", 1)[-1]: n for n in z.namelist() if n.endswith(".txt")}

    def rows(self, name: str) -> Iterator[tuple[int, dict[str, str]]] | None:
        """(line number, row) of ``name``, or ``None`` when the feed has no such file."""
        if self._zip is None:
            path = self.root / name
            if not path.is_file():
                return None
            try:
                text = path.read_text(encoding="utf-8-sig")
            except OSError as exc:
                raise ConfigError(f"GTFS: cannot read {path}: {exc.strerror}") from None
        else:
            if name not in self._zip:
                return None
            with zipfile.ZipFile(self.root) as z:
                text = z.read(self._zip[name]).decode("utf-8-sig")
        return enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2)

    def need(self, name: str) -> Iterator[tuple[int, dict[str, str]]]:
        rows = self.rows(name)
        if rows is None:
            raise ConfigError(f"GTFS {self.root}: {name} missing, expected it (GTFS Schedule reference)")
        return rows


def _seconds(text: str, where: str) -> int:
    try:
        h, m, s = (int(p) for p in text.split(":"))
    except ValueError:
        raise ConfigError(f"{where}: got {text!r}, expected HH:MM:SS (hours may pass 24)") from None
    return h * 3600 + m * 60 + s


def _date(text: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())  # YYYYMMDD is ISO 8601's basic format
    except ValueError:
        raise ConfigError(f"{where}: got {text!r}, expected a date YYYYMMDD") from None


@dataclass(frozen=True)
class StaticGtfs:
    """A static GTFS feed read once (see the module docstring); :meth:`timetable` per service day.

    ``trips``: trip id → (route id, service id, block id); ``stops``: trip id → (stop_sequence,
    stop_id, seconds after noon − 12 h, timepoint) in sequence order; ``weekly``: service id →
    (first day, last day, runs Monday..Sunday); ``exceptions``: day → service id → 1 added / 2 removed.
    """

    source: str
    timezone: str
    agency: str
    trips: dict[str, tuple[str, str, str]]
    stops: dict[str, tuple[tuple[int, str, int, bool], ...]]
    weekly: dict[str, tuple[dt.date, dt.date, tuple[bool, ...]]]
    exceptions: dict[dt.date, dict[str, int]]

    @property
    def route_ids(self) -> frozenset[str]:
        """Every route with a trip."""
        return frozenset(r for r, _, _ in self.trips.values())

    def services_on(self, day: dt.date) -> frozenset[str]:
        """Service ids running on ``day``: ``calendar.txt`` weekdays in range, then the day's exceptions."""
        on = {s for s, (a, b, days) in self.weekly.items() if a <= day <= b and days[day.weekday()]}
        for s, kind in self.exceptions.get(day, {}).items():
            if kind == 1:
                on.add(s)
            else:
                on.discard(s)
        return frozenset(on)

    def timetable(self, day: dt.date, routes: frozenset[str] | None = None) -> Timetable:
        """The trips running on service day ``day`` (of ``routes`` only, when given), times in POSIX seconds."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        base = dt.datetime.combine(day, dt.time(12), tzinfo=zone).timestamp() - 12 * 3600
        services = self.services_on(day)
        key = day.strftime("%Y%m%d")
        plans = {}
        for tid, (route, service, block) in self.trips.items():
            if service not in services or (routes is not None and route not in routes):
                continue
            st = self.stops.get(tid)
            if not st:
                continue
            stops = [StopTime(seq, stop, base + secs, tp) for seq, stop, secs, tp in st]
            plans[tid] = TripPlan(tid, route, block, stops, key)
        return Timetable(day, self.timezone, plans)


def load_static(path: str | Path) -> StaticGtfs:
    """Read a static GTFS folder or ``.zip`` once.

    Raises
    ------
    ConfigError
        A missing file or column, a malformed time or date, or no calendar at all, named with its
        file, line and field.
    """
    root = Path(path)
    files = _Files(root)
    agency = [r for _, r in files.need("agency.txt")]
    tz = agency[0].get("agency_timezone") if agency else None
    if not tz:
        raise ConfigError(f"GTFS {root}/agency.txt: agency_timezone missing, expected an IANA zone")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"GTFS {root}/agency.txt: agency_timezone: got {tz!r}, expected an IANA zone") from None
    name = agency[0].get("agency_name") or agency[0].get("agency_id") or root.name
    trips: dict[str, tuple[str, str, str]] = {}
    for line, r in files.need("trips.txt"):
        try:
            trips[r["trip_id"]] = (r["route_id"], r["service_id"], r.get("block_id") or "")
        except KeyError as exc:
            raise ConfigError(f"GTFS {root}/trips.txt line {line}: column {exc} missing") from None
    stops: dict[str, list[tuple[int, str, int, bool]]] = defaultdict(list)
    for line, r in files.need("stop_times.txt"):
        tid = r.get("trip_id", "")
        if tid not in trips:
            continue
        where = f"GTFS {root}/stop_times.txt line {line}: departure_time"
        dep = r.get("departure_time") or r.get("arrival_time") or ""
        if not dep:
            continue  # an untimed stop between timepoints (allowed by the reference): not a schedule point
        try:
            seq = int(r["stop_sequence"])
        except (KeyError, ValueError):
            got = r.get("stop_sequence")
            msg = f"GTFS {root}/stop_times.txt line {line}: stop_sequence: got {got!r}, expected an integer"
            raise ConfigError(msg) from None
        # timepoint: empty or absent means exact times (the reference's default)
        stops[tid].append((seq, r.get("stop_id", ""), _seconds(dep, where), r.get("timepoint", "1") in ("1", "")))
    weekly: dict[str, tuple[dt.date, dt.date, tuple[bool, ...]]] = {}
    cal = files.rows("calendar.txt")
    for line, r in cal or ():
        where = f"GTFS {root}/calendar.txt line {line}"
        try:
            days = tuple(r[d].strip() == "1" for d in _WEEKDAYS)
        except KeyError as exc:
            raise ConfigError(f"{where}: column {exc} missing") from None
        weekly[r["service_id"]] = (
            _date(r.get("start_date", ""), f"{where}: start_date"),
            _date(r.get("end_date", ""), f"{where}: end_date"),
            days,
        )
    exceptions: dict[dt.date, dict[str, int]] = defaultdict(dict)
    dates = files.rows("calendar_dates.txt")
    for line, r in dates or ():
        where = f"GTFS {root}/calendar_dates.txt line {line}"
        kind = r.get("exception_type", "").strip()
        if kind not in ("1", "2"):
            raise ConfigError(f"{where}: exception_type: got {kind!r}, expected 1 (added) or 2 (removed)")
        exceptions[_date(r.get("date", ""), f"{where}: date")][r["service_id"]] = int(kind)
    if cal is None and dates is None:
        msg = f"GTFS {root}: neither calendar.txt nor calendar_dates.txt, expected at least one (the days services run)"
        raise ConfigError(msg)
    frozen = {t: tuple(sorted(s)) for t, s in stops.items()}
    return StaticGtfs(str(root), tz, name, trips, frozen, weekly, dict(exceptions))
