"""Source adapter: Clever Devices BusTime ``getvehicles`` polls → ``TelemetryEvent``.

Input: a folder of ``vehicles_YYYYMMDD_HHMMSS.csv.gz`` files, one API poll each, as collected from
Madison Metro Transit's BusTime API (``../shared/data/madison-metro-bus-avl/polls``; its ``SOURCE.md``
documents every column). Header::

    des,dly,hdg,lat,lon,mode,origtatripno,pdist,pid,psgld,rt,spd,stsd,stst,tablockid,tatripid,tmstmp,vid,
    zone,collection_timestamp

Each pledged asset is a **route group**: the route designators (``rt``) its pledge names in
``CollateralPledged.routes`` (:func:`groups_from_pledges`). Per poll file and asset, in this order:

- ``feed_poll`` (entity ``collector``): the collector's heartbeat at the poll's time,
  ``metrics.entities`` = the asset's rows in the poll. Every asset gets one per file, with 0 entities
  when none of its routes had a bus in the poll: the poll happened, so the feed is reachable.
- ``vehicle_position`` per row of the asset's routes: entity = ``vid``, ``observed_at`` = ``tmstmp``,
  ``received_at`` = the row's ``collection_timestamp``; ``lat``, ``lon``, ``speed_mps`` (``spd`` mph ×
  0.44704), ``bearing_deg`` (``hdg``) and ``jump_speed_mps`` (distance from the bus's previous fix ÷ the
  time between the two, only when the time advanced at least 60 s, as :mod:`monitor.sources.wmata`
  does: a fix implying more than 30 m/s is a GPS glitch and does not become the reference);
  attributes ``route_id``, ``trip_id``, ``service_date``, ``scheduled_start_s``, ``block_id``.
- ``trip_completed`` per trip of the asset's routes that ended (the activity measure): ``trips = 1``,
  ``duration_s`` = last fix − first fix; ``observed_at`` = ``received_at`` = the poll that showed it
  ended, as in :mod:`monitor.sources.auckland`: the completion is known then. Dated at the trip's last
  fix it would land in a window already closed whenever the polls are slower than the allowed
  lateness (10-min night polls, three of them to decide), and be dropped as late: activity lost by
  the hour of the day the collector polls slowly.

Time semantics: ``tmstmp`` (``YYYYMMDD HH:MM``, minute resolution), ``collection_timestamp`` (ISO 8601
without an offset) and the file name are local wall time of the agency, localised with ``zoneinfo`` in
the IANA zone the pledges name (never a fixed UTC offset). A wall time that occurs twice (the hour
repeated when daylight saving ends) is read as the instant nearest its context: a poll's time nearest
the previous poll, a row's receive time nearest its poll, a fix nearest its receive time. A poll's time
is its latest ``collection_timestamp``, or the file name's time when no row has one. File names carry no
offset either, so in that repeated hour name order is not time order (and a collector naming files by
local time may overwrite one); polls are read in name order all the same, as ``SOURCE.md`` prescribes.

Trips: a trip is ``(tatripid, stsd, stst)``, as the service day is not the calendar day (``stst`` counts
seconds from midnight of the service day ``stsd`` and passes 86,400 after midnight). A trip is completed
at the first poll where either holds:

- the bus that last ran it is in the poll, and only on other trips (it moved on);
- the trip has been absent from more than :data:`ABSENT_POLLS` polls and its last fix is older than
  :data:`STALE_FIX_S` (fixes have minute resolution and polls come 2–10 min apart, so one missed poll
  must not end a trip).

Absence is counted in polls, not in time, so a collector that stops polling (the Madison collector
stops for up to 8 h, see ``SOURCE.md``) ends no trip: its trips are carried across the gap and are
completed by the same rules at the polls after it, with ``observed_at`` still their last fix (the core
counts such a record late when its window has closed). Each trip completes once
(``event_id = bustime:done:{tatripid}:{stsd}:{stst}``); trips still running when the input ends are not
completed.

Quirks handled, and why:

- a **stale fix re-sent** in a later poll (same ``vid`` and ``tmstmp``) is kept: its event id carries
  the poll time (``bustime:{asset}:{vid}@{poll}:{rt}``), so the core sees it as a record and counts the
  stale repeat in its quality figures; the same poll delivered twice is a duplicate;
- the **same bus twice in one poll** under two routes (at route hand-offs) is kept as two records, as
  the data has it (the route is part of the event id);
- **implausible speeds** (GPS and odometer glitches up to 170 mph) are passed on: the profile's
  plausible range lowers the accuracy dimension, which is the point;
- **malformed rows** (an unreadable time, number or id) are skipped and counted in one log warning,
  as the Auckland adapter does; a file that is not a readable BusTime CSV raises ``ValueError``.

Every poll file is a poll of every asset; the data cannot tell a route the collector did not ask for
from a route without buses, so the former reads as the latter (``SOURCE.md``, "Collector behaviour").
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import logging
import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from monitor.errors import ConfigError
from monitor.schemas import CollateralPledged, LoanEventAdapter, TelemetryEvent
from monitor.sources import Pledged, add_route_group
from monitor.sources.wmata import MAX_SPEED_MPS, haversine_m

__all__ = [
    "ABSENT_POLLS",
    "MIN_JUMP_DT_S",
    "MPH_TO_MPS",
    "REQUIRED_COLUMNS",
    "SOURCE",
    "STALE_FIX_S",
    "BusTimePoll",
    "BusTimeRow",
    "BusTimeSource",
    "events_from_bustime",
    "groups_from_pledges",
    "is_bustime_folder",
    "parse_row",
    "read_bustime_polls",
    "timezone_from_pledges",
]

#: Miles per hour → metres per second (international mile).
MPH_TO_MPS = 0.44704
#: ``jump_speed_mps`` is computed only when the fix time advanced at least this much (seconds): with
#: minute-resolution fixes a smaller step is 0, and a 1-minute step already bounds the error.
MIN_JUMP_DT_S = 60.0
#: A trip absent from more than this many polls (and with a stale last fix) has completed.
ABSENT_POLLS = 2
#: ... and its last fix must be older than this (seconds) at the poll that completes it.
STALE_FIX_S = 600.0
#: Columns a BusTime ``getvehicles`` poll must have (the others are read but not needed).
REQUIRED_COLUMNS = (
    "vid",
    "rt",
    "tmstmp",
    "lat",
    "lon",
    "hdg",
    "spd",
    "tatripid",
    "stsd",
    "stst",
    "tablockid",
    "collection_timestamp",
)
_GLOB = "vehicles_*.csv.gz"
_FILE = re.compile(r"vehicles_([0-9]{8})_([0-9]{6})\.csv\.gz")
_TMSTMP = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2}) ([0-9]{2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Ids end up in event ids, whose alphabet is the schema's (``monitor.schemas._ID``).
_ID = re.compile(r"[A-Za-z0-9._\-]{1,60}")
#: Forget completed trips this long after their last fix (seconds): far beyond any re-sent fix.
_DONE_HORIZON_S = 2 * 86_400.0
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BusTimePoll:
    """One ``getvehicles`` poll: its time (POSIX s), its rows as read (column → text) and its file name."""

    ts: float
    rows: list[dict[str, str]]
    file: str


class BusTimeRow(NamedTuple):
    """One parsed vehicle row; times POSIX seconds, positions WGS84 degrees, speed m/s."""

    vid: str
    route: str
    trip_id: str
    service_date: str
    scheduled_start_s: int
    block_id: str
    ts: float
    received: float
    lat: float
    lon: float
    speed_mps: float | None
    bearing_deg: float | None

    @property
    def trip(self) -> tuple[str, str, int]:
        """Trip identity: ``(tatripid, stsd, stst)`` (the service day is not the calendar day)."""
        return (self.trip_id, self.service_date, self.scheduled_start_s)


def _zone(timezone: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        msg = f"BusTime timezone: got {timezone!r}, expected an IANA time zone such as 'America/Chicago'"
        raise ConfigError(msg) from None


_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: wall-clock arithmetic
#: (zone, wall-clock minute) -> UTC offsets (s) of the two readings of that minute; equal except in
#: the hour repeated or skipped by a daylight-saving change. Rows share minutes, so this saves most of
#: the zoneinfo work (offsets change at whole minutes in every zone since 1972).
_OFFSETS: dict[tuple[str, int], tuple[float, float]] = {}


def _offsets(zone: zoneinfo.ZoneInfo, minute: int) -> tuple[float, float]:
    key = (zone.key, minute)
    hit = _OFFSETS.get(key)
    if hit is None:
        wall = _EPOCH + dt.timedelta(minutes=minute)
        off = [wall.replace(fold=f, tzinfo=zone).utcoffset() or dt.timedelta(0) for f in (0, 1)]
        if len(_OFFSETS) >= 65_536:
            _OFFSETS.clear()
        hit = _OFFSETS[key] = (off[0].total_seconds(), off[1].total_seconds())
    return hit


def _instant(naive: dt.datetime, zone: zoneinfo.ZoneInfo, near: float | None) -> float:
    """POSIX seconds of a local wall time; of the two readings of a repeated hour, the one nearest ``near``."""
    if naive.tzinfo is not None:  # an explicit offset is honoured
        return naive.timestamp()
    wall = (naive - _EPOCH).total_seconds()
    off0, off1 = _offsets(zone, int(wall // 60))
    first, second = wall - off0, wall - off1
    if near is None or first == second:
        return first
    return first if abs(first - near) <= abs(second - near) else second


def _iso(text: str | None, name: str) -> dt.datetime:
    try:
        if text is None or not text.strip():
            raise ValueError(text)
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{name}: got {text!r}, expected a local ISO 8601 time such as '2025-09-24T17:50:05.739508'"
        raise ValueError(msg) from None


_TMSTMPS: dict[str, dt.datetime] = {}  # fixes share their minute: parsed ones are remembered
_DATES: set[str] = set()  # service dates found valid


def _tmstmp(text: str | None) -> dt.datetime:
    hit = _TMSTMPS.get(text or "")
    if hit is not None:
        return hit
    m = _TMSTMP.fullmatch(text or "")
    try:
        if m is None:
            raise ValueError(text)
        y, mo, d, h, mi = (int(g) for g in m.groups())
        wall = dt.datetime(y, mo, d, h, mi)  # noqa: DTZ001 - local wall time, localised by _instant
    except ValueError:
        msg = f"tmstmp: got {text!r}, expected local time 'YYYYMMDD HH:MM' such as '20250924 17:49'"
        raise ValueError(msg) from None
    if len(_TMSTMPS) >= 16_384:
        _TMSTMPS.clear()
    _TMSTMPS[m.string] = wall
    return wall


def _ident(row: Mapping[str, str | None], name: str) -> str:
    text = (row.get(name) or "").strip()
    if not _ID.fullmatch(text):
        msg = f"{name}: got {row.get(name)!r}, expected 1-60 characters of letters, digits, '.', '_' or '-'"
        raise ValueError(msg)
    return text


def _number(row: Mapping[str, str | None], name: str, unit: str, optional: bool = False) -> float | None:
    text = row.get(name)
    if optional and (text is None or not text.strip()):
        return None
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        msg = f"{name}: got {text!r}, expected a finite number ({unit})"
        raise ValueError(msg)
    return value


def parse_row(
    row: Mapping[str, str | None], timezone: str | zoneinfo.ZoneInfo, near: float | None = None
) -> BusTimeRow:
    """Parse one ``getvehicles`` row; local times are read in ``timezone``.

    Parameters
    ----------
    row
        Column → text, as :class:`csv.DictReader` gives it.
    timezone
        IANA zone of the agency's wall clock.
    near
        The poll's time (POSIX s), to read a repeated wall-clock hour (end of daylight saving).

    Raises
    ------
    ValueError
        Naming the field, the value and what was expected (``tmstmp: got '2025-09-24', expected ...``).

    Examples
    --------
    >>> r = parse_row({"vid": "2344", "rt": "A", "tmstmp": "20250924 17:49", "lat": "43.1", "lon": "-89.3",
    ...                "hdg": "221", "spd": "54", "tatripid": "1228644", "stsd": "2025-09-24", "stst": "63780",
    ...                "tablockid": "122A", "collection_timestamp": "2025-09-24T17:50:05.739508"},
    ...               "America/Chicago")
    >>> r.ts, r.trip, round(r.speed_mps, 2)
    (1758754140.0, ('1228644', '2025-09-24', 63780), 24.14)
    """
    zone = timezone if isinstance(timezone, zoneinfo.ZoneInfo) else _zone(timezone)
    vid = _ident(row, "vid")
    route = _ident(row, "rt")
    trip_id = _ident(row, "tatripid")
    stsd = (row.get("stsd") or "").strip()
    if stsd not in _DATES:
        try:
            if not _DATE.fullmatch(stsd):
                raise ValueError(stsd)
            dt.date.fromisoformat(stsd)
        except ValueError:
            msg = f"stsd: got {row.get('stsd')!r}, expected the service date as YYYY-MM-DD"
            raise ValueError(msg) from None
        if len(_DATES) >= 4096:
            _DATES.clear()
        _DATES.add(stsd)
    stst_text = (row.get("stst") or "").strip()
    if not stst_text.isdigit() or not stst_text.isascii() or int(stst_text) >= 4 * 86_400:
        msg = f"stst: got {row.get('stst')!r}, expected whole seconds after midnight of stsd (0 to 345599)"
        raise ValueError(msg)
    block = (row.get("tablockid") or "").strip()
    received = _instant(_iso(row.get("collection_timestamp"), "collection_timestamp"), zone, near)
    ts = _instant(_tmstmp(row.get("tmstmp")), zone, received)
    lat = _number(row, "lat", "degrees north")
    lon = _number(row, "lon", "degrees east")
    spd = _number(row, "spd", "mph", optional=True)
    hdg = _number(row, "hdg", "degrees", optional=True)
    assert lat is not None and lon is not None
    return BusTimeRow(
        vid=vid,
        route=route,
        trip_id=trip_id,
        service_date=stsd,
        scheduled_start_s=int(stst_text),
        block_id=block,
        ts=ts,
        received=received,
        lat=lat,
        lon=lon,
        speed_mps=spd * MPH_TO_MPS if spd is not None else None,
        bearing_deg=hdg,
    )


def is_bustime_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``vehicles_*.csv.gz`` polls."""
    p = Path(path)
    return p.is_dir() and next(p.glob(_GLOB), None) is not None


def _file_time(f: Path) -> dt.datetime:
    m = _FILE.fullmatch(f.name)
    try:
        if m is None:
            raise ValueError(f.name)
        return dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")  # noqa: DTZ007 - local, see _instant
    except ValueError:
        msg = f"{f}: file name: got {f.name!r}, expected vehicles_YYYYMMDD_HHMMSS.csv.gz (local time)"
        raise ValueError(msg) from None


def _read_rows(f: Path) -> list[dict[str, str]]:
    try:
        with gzip.open(f, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                msg = (
                    f"{f}: header: columns {missing} missing (got {header}), expected a BusTime getvehicles "
                    f"poll with {', '.join(REQUIRED_COLUMNS)}"
                )
                raise ValueError(msg)
            return list(reader)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        msg = f"{f}: not a readable gzip-compressed UTF-8 CSV ({exc}), expected one BusTime getvehicles poll"
        raise ValueError(msg) from None


def read_bustime_polls(folder: str | Path, timezone: str) -> Iterator[BusTimePoll]:
    """Polls of a folder of ``vehicles_YYYYMMDD_HHMMSS.csv.gz`` files, in file-name order.

    A poll's time is its latest ``collection_timestamp``, localised in ``timezone``; the file name's
    time when no row has a readable one (rows with an unreadable one are left for the row parser to
    skip).

    Raises
    ------
    FileNotFoundError
        When the folder does not exist or holds no poll file.
    ValueError
        When a file name is not ``vehicles_YYYYMMDD_HHMMSS.csv.gz``, or a file is not a readable CSV with
        the BusTime columns (the file and the column are named).
    ConfigError
        When ``timezone`` is not an IANA zone.
    """
    p = Path(folder)
    if not p.is_dir():
        msg = f"BusTime polls: {p} is not a folder, expected a folder of vehicles_YYYYMMDD_HHMMSS.csv.gz files"
        raise FileNotFoundError(msg)
    files = sorted(p.glob(_GLOB))
    if not files:
        msg = f"BusTime polls: {p} holds no {_GLOB} file, expected one getvehicles poll per file"
        raise FileNotFoundError(msg)
    zone = _zone(timezone)
    prev: float | None = None
    for f in files:
        named = _file_time(f)
        rows = _read_rows(f)
        latest: float | None = None
        for row in rows:
            try:
                t = _instant(_iso(row.get("collection_timestamp"), "collection_timestamp"), zone, prev)
            except ValueError:
                continue
            latest = t if latest is None or t > latest else latest
        ts = latest if latest is not None else _instant(named, zone, prev)
        prev = ts
        yield BusTimePoll(ts, rows, f.name)


@dataclass(slots=True)
class _Trip:
    route: str
    first: float
    last: float
    vid: str
    seen_poll: int
    assets: set[str] = field(default_factory=set)


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _position(asset: str, row: BusTimeRow, poll_ts: float, jump: float | None) -> TelemetryEvent:
    metrics = {"lat": row.lat, "lon": row.lon}
    if row.speed_mps is not None:
        metrics["speed_mps"] = round(row.speed_mps, 3)
    if row.bearing_deg is not None:
        metrics["bearing_deg"] = row.bearing_deg
    if jump is not None:
        metrics["jump_speed_mps"] = round(jump, 3)
    attrs = {
        "route_id": row.route,
        "trip_id": row.trip_id,
        "service_date": row.service_date,
        "scheduled_start_s": str(row.scheduled_start_s),
    }
    if row.block_id:
        attrs["block_id"] = row.block_id
    return TelemetryEvent(
        event_id=f"bustime:{asset}:{row.vid}@{poll_ts:.0f}:{row.route}",
        asset_id=asset,
        observed_at=_utc(row.ts),
        received_at=_utc(row.received),
        entity_id=row.vid,
        kind="vehicle_position",
        metrics=metrics,
        attributes=attrs,
    )


def _completed(asset: str, key: tuple[str, str, int], trip: _Trip, poll_ts: float) -> TelemetryEvent:
    trip_id, service_date, stst = key
    return TelemetryEvent(
        event_id=f"bustime:done:{trip_id}:{service_date}:{stst}",
        asset_id=asset,
        observed_at=_utc(poll_ts),
        received_at=_utc(poll_ts),
        entity_id=trip.vid,
        kind="trip_completed",
        metrics={"trips": 1.0, "duration_s": max(0.0, trip.last - trip.first)},
        attributes={"trip_id": trip_id, "route_id": trip.route, "service_date": service_date},
    )


def events_from_bustime(
    polls: Iterable[BusTimePoll], groups: Mapping[str, frozenset[str]], timezone: str
) -> Iterator[TelemetryEvent]:
    """Turn polls into telemetry events, poll by poll (see the module docstring for every rule).

    Parameters
    ----------
    polls
        Polls in file-name order (:func:`read_bustime_polls`).
    groups
        Asset id → the route designators (``rt``) whose rows make up the asset; a route may belong to
        more than one asset. Rows of other routes still show where a bus is (for ``jump_speed_mps``
        and for telling that it moved on to another trip) but are not emitted.
    timezone
        IANA zone of the agency's wall clock (``tmstmp``, ``collection_timestamp``).

    Yields
    ------
    TelemetryEvent
        Per poll and asset: ``feed_poll``, then ``vehicle_position`` in row order, then ``trip_completed``.

    Raises
    ------
    ConfigError
        When ``timezone`` is not an IANA zone.
    """
    zone = _zone(timezone)
    assets_of: dict[str, list[str]] = {}
    for asset in sorted(groups):
        for route in groups[asset]:
            assets_of.setdefault(route, []).append(asset)
    active: dict[tuple[str, str, int], _Trip] = {}
    done: dict[tuple[str, str, int], float] = {}  # completed trip -> its last fix, so it completes once
    fixes: dict[str, tuple[float, float, float]] = {}  # bus -> (time, lat, lon) of its last plausible fix
    skipped = 0
    first_problem = ""
    for n, poll in enumerate(polls):
        per_asset: dict[str, list[TelemetryEvent]] = {a: [] for a in groups}
        buses: dict[str, set[tuple[str, str, int]]] = {}  # bus -> trips it shows in this poll
        for raw in poll.rows:
            try:
                row = parse_row(raw, zone, poll.ts)
                jump: float | None = None
                prev = fixes.get(row.vid)
                if prev is None or row.ts >= prev[0]:
                    if prev is not None and row.ts - prev[0] >= MIN_JUMP_DT_S:
                        jump = haversine_m(prev[1], prev[2], row.lat, row.lon) / (row.ts - prev[0])
                    if jump is None or jump <= MAX_SPEED_MPS:  # a glitch does not become the reference
                        fixes[row.vid] = (row.ts, row.lat, row.lon)
                events = [_position(a, row, poll.ts, jump) for a in assets_of.get(row.route, ())]
            except (ValueError, ValidationError) as exc:
                skipped += 1
                first_problem = first_problem or f"{poll.file}: {exc}"
                continue
            buses.setdefault(row.vid, set()).add(row.trip)
            for ev in events:
                per_asset[ev.asset_id].append(ev)
            if not events or row.trip in done:
                continue
            trip = active.get(row.trip)
            if trip is None:
                active[row.trip] = _Trip(row.route, row.ts, row.ts, row.vid, n, set(assets_of[row.route]))
            else:
                trip.first, trip.last = min(trip.first, row.ts), max(trip.last, row.ts)
                trip.vid, trip.seen_poll = row.vid, n
                trip.assets.update(assets_of[row.route])
        for key, trip in list(active.items()):
            if trip.seen_poll == n:
                continue
            moved_on = trip.vid in buses  # the bus is in this poll, and not on this trip
            gone = n - trip.seen_poll > ABSENT_POLLS and poll.ts - trip.last > STALE_FIX_S
            if moved_on or gone:
                del active[key]
                done[key] = trip.last
                for asset in sorted(trip.assets):
                    per_asset[asset].append(_completed(asset, key, trip, poll.ts))
        if n % 100 == 0:
            done = {k: t for k, t in done.items() if t >= poll.ts - _DONE_HORIZON_S}
        for asset in sorted(per_asset):
            evs = per_asset[asset]
            yield TelemetryEvent(
                event_id=f"bustime:poll:{asset}@{poll.ts:.0f}",
                asset_id=asset,
                observed_at=_utc(poll.ts),
                received_at=_utc(poll.ts),
                entity_id="collector",
                kind="feed_poll",
                metrics={"entities": float(sum(1 for e in evs if e.kind == "vehicle_position"))},
            )
            yield from evs
    if skipped:
        log.warning("bustime adapter: skipped %d malformed rows (first: %s)", skipped, first_problem)


def _pledges(loan_book_lines: Iterable[bytes | str | CollateralPledged]) -> list[CollateralPledged]:
    out = []
    for raw in loan_book_lines:
        if isinstance(raw, CollateralPledged):
            out.append(raw)
            continue
        try:
            ev = LoanEventAdapter.validate_json(raw)
        except ValueError:  # pydantic's ValidationError is one; the backtest dead-letters such lines
            continue
        if isinstance(ev, CollateralPledged):
            out.append(ev)
    return out


def groups_from_pledges(loan_book_lines: Iterable[bytes | str | CollateralPledged]) -> dict[str, frozenset[str]]:
    """Asset id → route designators, from the loan book's ``collateral_pledged`` lines.

    Lines that are not valid loan events are skipped (the backtest dead-letters them).

    Raises
    ------
    ConfigError
        When a pledge has no ``routes`` (a BusTime asset is the routes it pledges), or one asset is
        pledged twice with different routes.

    Examples
    --------
    >>> line = ('{"event_id":"p","loan_id":"L","effective_at":"2025-09-24T17:45:00-05:00",'
    ...         '"type":"collateral_pledged","asset_id":"mad-80","asset_timezone":"America/Chicago",'
    ...         '"appraisal":{"value":1,"appraised_on":"2025-09-22","appraiser":"x"},'
    ...         '"pledge_registration_no":"R","routes":["80"]}')
    >>> groups_from_pledges([line])
    {'mad-80': frozenset({'80'})}
    """
    groups: dict[str, frozenset[str]] = {}
    for p in _pledges(loan_book_lines):
        if p.routes is None:
            msg = (
                f"collateral_pledged {p.event_id}: asset {p.asset_id!r} has no routes, expected routes: "
                '["80", ...] naming the BusTime route designators (rt) the asset is made of'
            )
            raise ConfigError(msg)
        add_route_group(groups, p, frozenset(p.routes))  # type: ignore[arg-type]
    return groups


def timezone_from_pledges(loan_book_lines: Iterable[bytes | str | CollateralPledged]) -> str:
    """The one ``asset_timezone`` of the loan book's pledges with ``routes``: BusTime's wall-clock zone.

    Raises
    ------
    ConfigError
        When those pledges name more than one zone (one BusTime feed runs on one wall clock), or
        there is no pledge with routes.
    """
    zones: dict[str, set[str]] = {}
    for p in _pledges(loan_book_lines):
        if p.routes is not None:
            zones.setdefault(p.asset_timezone, set()).add(p.asset_id)
    if len(zones) != 1:
        got = {z: sorted(a) for z, a in sorted(zones.items())} or "no pledge with routes"
        msg = f"asset_timezone: got {got}, expected every pledge with routes in one BusTime run to share one zone"
        raise ConfigError(msg)
    return next(iter(zones))


class BusTimeSource:
    """Clever Devices BusTime ``getvehicles`` polls: a folder of ``vehicles_*.csv.gz``."""

    name = "bustime"
    accepts = "BusTime getvehicles polls, a folder of vehicles_*.csv.gz (assets = the pledges' routes)"

    def recognise(self, path: Path) -> bool:
        """Whether ``path`` is a folder holding ``vehicles_*.csv.gz`` polls."""
        return is_bustime_folder(path)

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """Events of the pledged route groups, on the wall clock of the pledges' one time zone.

        Raises
        ------
        ConfigError
            Without pledges that give every asset its routes in one time zone.
        """
        if not pledged.pledges:
            msg = f"telemetry {path}: BusTime polls need the loan book's pledges (routes, asset_timezone), got none"
            raise ConfigError(msg)
        groups = {a: r for a, r in groups_from_pledges(pledged.pledges).items() if pledged.wants(a)}
        tz = timezone_from_pledges(pledged.pledges)
        return events_from_bustime(read_bustime_polls(path, tz), groups, tz)


SOURCE = BusTimeSource()
