"""Feeds without trip ids (NextBus-style or bare GPS polls): activity as vehicle-hours and vehicle-km in service.

Many operators' feeds say where each vehicle is and nothing about trips. Inventing trips from
positions needs thresholds the value would then depend on, so this source counts what positions
show directly: **vehicle-hours and vehicle-km in service inside the service area**. An asset's
profile selects one of them as its activity measure (``bus_vehicle_service``: vehicle-hours).
Trips are inferred only by sources whose data carries trip ids or scheduled starts (GTFS-rt,
BusTime).

Input
-----
A CSV (gzip or not) with a header naming, in any order and case: the vehicle (``vehicle_id``,
``vid``, ``vehicle``, ``bus_id``, ``bus``), the fix time (``timestamp``, ``ts``, ``time``,
``tmstmp``, ``recorded_at``, ``observed_at``), ``lat``/``latitude``, ``lon``/``lng``/``longitude``;
optionally the route (``route_id``, ``route``, ``rt``) and the poll time (``collection_timestamp``,
``poll_time``, ``polled_at``). A time is POSIX seconds (or milliseconds, above 10^11: no fix is from
the year 5138) or ISO 8601; ISO times without an offset, and BusTime's ``YYYYMMDD HH:MM``, are read in
the pledges' ``asset_timezone``.

In service (:func:`service_records`)
-------------------------------------
A fix is **in service** when it is plausible (not 0/0; less than :data:`MAX_SPEED_MPS` from the
vehicle's previous plausible fix: case C18), inside the service area (the pledge's ``service_area``
box, else the profile's, else everywhere), and the vehicle is not **laid up**: it has not stayed within
:data:`LAYOVER_RADIUS_M` of one place for :data:`LAYOVER_S` or more (a depot, a long stand).

The feed's **polls** are its poll times when the file gives them (times less than
:data:`POLL_SPAN_S` apart are one poll, timed at its first), else the :data:`POLL_S` slots with
fixes. Per poll and asset one ``vehicle_service`` record:

* ``vehicles``: vehicles in service in the poll (a fix more than :data:`MAX_FIX_AGE_S` older than
  its poll is stale: the vehicle has stopped reporting);
* ``vehicle_hours``: ``vehicles`` × the poll's share of time — half the gap to the previous poll and
  half to the next, each half at most :data:`MAX_SHARE_S` — in hours. Summed over any window this
  is the time integral of the fleet in service (a step estimate), whatever the poll cadence; time
  further than :data:`MAX_SHARE_S` from any poll is unobserved, not zero;
* ``observed_hours``: the poll's share of time, in hours (the profile's ``activity.exposure``: a
  window's activity is then the fleet's rate over the time observed, scaled to the window, so a
  collector's gap is uncertainty, not lost activity);
* ``vehicle_km``: great-circle distance from each in-service vehicle's previous in-service fix when
  at most :data:`MAX_CHORD_S` before. A chord is shorter than the road, the more so the sparser
  the polls: choose vehicle-km only for a feed polled at a steady cadence.

Also ``vehicle_position`` per fix (``lat``, ``lon``, ``jump_speed_mps``) and ``feed_poll`` per poll
(``entities``: the asset's vehicles in it, 0 still proves the feed answered).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import ConfigError
from monitor.geo import ServiceRegion
from monitor.schemas import CollateralPledged, TelemetryEvent
from monitor.sources import Pledged, first_line, open_text
from monitor.sources.vehicle_positions import MAX_SPEED_MPS, haversine_m

__all__ = [
    "LAYOVER_RADIUS_M",
    "LAYOVER_S",
    "MAX_CHORD_S",
    "MAX_SHARE_S",
    "SOURCE",
    "Fix",
    "GpsPollsCsvSource",
    "ServicePoll",
    "read_fixes",
    "service_records",
]

#: A vehicle that stays within this radius (m) ... — GPS error of a bus AVL fix is 5-20 m and a
#: terminal stand or depot yard spans some tens of metres, so 100 m holds a parked bus and no
#: moving one (a bus in service covers 100 m in under a minute between stops).
LAYOVER_RADIUS_M = 100.0
#: ... for this long (s) is laid up, not in service: scheduled layovers (recovery time) at a
#: terminal are typically 5-10 min (TCQSM 3rd ed., ch. 2: 10-15 % of running time), so 15 min at
#: one spot is a vehicle out of service (depot, long stand, breakdown).
LAYOVER_S = 900.0
#: A poll stands for at most this much time (s) either side: the fleet in service changes on the
#: scale of a headway (10-15 min in a city network), so a poll vouches for 7.5 min each way; longer
#: gaps (a collector outage) are unobserved.
MAX_SHARE_S = 450.0
#: A chord between two fixes of a vehicle counts towards vehicle-km only when they are at most this
#: far apart (s): over longer gaps the straight line says little about the path driven.
MAX_CHORD_S = 600.0
#: A fix older than this (s) at its poll is stale: AVL units report every 30-90 s, so a vehicle whose
#: newest fix is 5 min old has stopped reporting and is not evidence of service now.
MAX_FIX_AGE_S = 300.0
#: Poll times closer than this (s) are one poll: a collector stamps each row or each request of one
#: poll (BusTime: a request per batch of routes) within a few seconds, and polls less than 10 s
#: apart would exceed any AVL unit's reporting rate (every 30-90 s), so no real poll is merged away.
POLL_SPAN_S = 10.0
#: Poll slot of a file without poll times, seconds (the ``bus_dispatch`` profiles' poll interval).
POLL_S = 120.0
#: Above this a numeric time is milliseconds: 10^11 s is the year 5138, 10^11 ms is 1973.
_MS_ABOVE = 1e11

_ALIASES = {
    "vehicle": ("vehicle_id", "vid", "vehicle", "bus_id", "bus"),
    "time": ("timestamp", "ts", "time", "tmstmp", "recorded_at", "observed_at"),
    "lat": ("lat", "latitude"),
    "lon": ("lon", "lng", "longitude"),
    "route": ("route_id", "route", "rt"),
    "poll": ("collection_timestamp", "poll_time", "polled_at"),
}
_REQUIRED = ("vehicle", "time", "lat", "lon")


@dataclass(frozen=True, slots=True)
class Fix:
    """One position: vehicle, fix time and poll time (POSIX s), WGS84 degrees, route (or ``None``)."""

    vehicle: str
    ts: float
    lat: float
    lon: float
    route: str | None
    poll: float


@dataclass(frozen=True, slots=True)
class ServicePoll:
    """What one poll shows of an asset's fleet; see the module docstring for each measure."""

    ts: float
    entities: int
    vehicles: int
    vehicle_hours: float
    vehicle_km: float
    observed_hours: float


def _columns(header: list[str]) -> dict[str, str] | None:
    low = {h.strip().lower(): h for h in header}
    out = {}
    for name, options in _ALIASES.items():
        hit = next((low[o] for o in options if o in low), None)
        if hit is not None:
            out[name] = hit
    return out if all(r in out for r in _REQUIRED) else None


def _time(text: str, zone: zoneinfo.ZoneInfo | None, where: str) -> float:
    t = text.strip()
    try:
        x = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(x):
            raise ConfigError(f"{where}: got {text!r}, expected a finite time")
        return x / 1000.0 if x > _MS_ABOVE else x
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        try:
            when = dt.datetime.strptime(t, "%Y%m%d %H:%M")  # noqa: DTZ007 (BusTime's tmstmp: zone set below)
        except ValueError:
            msg = f"{where}: got {text!r}, expected POSIX seconds or milliseconds, or an ISO 8601 time"
            raise ConfigError(msg) from None
    if when.tzinfo is None:
        if zone is None:
            msg = f"{where}: got {text!r} without a UTC offset, expected an offset or pledges giving asset_timezone"
            raise ConfigError(msg)
        when = when.replace(tzinfo=zone)
    return when.timestamp()


def is_gps_polls_csv(path: Path) -> bool:
    """Whether the file's first line is a CSV header with vehicle, time, lat and lon columns."""
    first = first_line(path)
    if first is None:
        return False
    return _columns(next(csv.reader([first[1]]))) is not None


def read_fixes(path: str | Path, timezone: str | None = None) -> tuple[list[Fix], bool]:
    """Fixes of a GPS polls CSV, in fix-time order, and whether the file gives poll times.

    Raises
    ------
    ConfigError
        Naming the file, line, column and value: a required column missing, a time or coordinate
        that is not a number.
    """
    p = Path(path)
    zone = zoneinfo.ZoneInfo(timezone) if timezone else None
    lines = open_text(p)
    reader = csv.DictReader(lines)
    cols = _columns(list(reader.fieldnames or []))
    if cols is None:
        wanted = "; ".join(f"{n}: one of {list(_ALIASES[n])}" for n in _REQUIRED)
        raise ConfigError(f"{p}:1: GPS polls header {reader.fieldnames}, expected columns for {wanted}")
    fixes = []
    for line, r in enumerate(reader, start=2):
        where = f"{p}:{line}"
        ts = _time(r[cols["time"]], zone, f"{where}: {cols['time']}")
        poll = _time(r[cols["poll"]], zone, f"{where}: {cols['poll']}") if "poll" in cols else ts
        try:
            lat, lon = float(r[cols["lat"]]), float(r[cols["lon"]])
        except (TypeError, ValueError):
            got = (r[cols["lat"]], r[cols["lon"]])
            raise ConfigError(f"{where}: {cols['lat']}, {cols['lon']}: got {got}, expected degrees") from None
        route = (r.get(cols["route"]) or "").strip() or None if "route" in cols else None
        fixes.append(Fix(r[cols["vehicle"]].strip(), ts, lat, lon, route, poll))
    fixes.sort(key=lambda f: (f.ts, f.poll))
    return fixes, "poll" in cols


def poll_clusters(times: Iterable[float]) -> dict[float, float]:
    """Each poll time → its poll's time (a poll is timed at its first row).

    A time less than :data:`POLL_SPAN_S` after the previous one joins its poll.

    Examples
    --------
    >>> poll_clusters([100.0, 100.2, 103.0, 220.0])
    {100.0: 100.0, 100.2: 100.0, 103.0: 100.0, 220.0: 220.0}
    """
    out: dict[float, float] = {}
    start = prev = None
    for t in sorted(set(times)):
        if prev is None or t - prev >= POLL_SPAN_S:
            start = t
        out[t] = start  # type: ignore[assignment]
        prev = t
    return out


def _polls(fixes: list[Fix], has_polls: bool) -> list[float]:
    """Poll time of each fix: its poll's (clustered) when the file gives them, else its :data:`POLL_S` slot's end."""
    if has_polls:
        cluster = poll_clusters(f.poll for f in fixes)
        return [cluster[f.poll] for f in fixes]
    return [(f.ts // POLL_S + 1) * POLL_S - 1 for f in fixes]


def service_records(
    fixes: list[Fix], has_polls: bool, region: ServiceRegion | None, routes: frozenset[str] | None
) -> tuple[list[ServicePoll], dict[int, float]]:
    """Per poll, the asset's fleet in service (see the module docstring); and jump speeds per fix index.

    ``fixes`` time-ordered (as :func:`read_fixes` gives them); ``routes`` ``None`` for every vehicle.
    """
    poll_of = _polls(fixes, has_polls)
    polls = sorted(set(poll_of))
    jump: dict[int, float] = {}
    last: dict[str, tuple[float, float, float]] = {}  # previous plausible fix: ts, lat, lon
    anchor: dict[str, tuple[float, float, float]] = {}  # where the vehicle has stayed since: ts, lat, lon
    prev_in: dict[str, tuple[float, float, float]] = {}  # previous in-service fix
    entities: dict[float, set[str]] = defaultdict(set)
    in_service: dict[float, set[str]] = defaultdict(set)
    km: dict[float, float] = defaultdict(float)
    for k, fx in enumerate(fixes):
        mine = routes is None or fx.route in routes
        at = poll_of[k]
        if mine:
            entities[at].add(fx.vehicle)
        if (fx.lat, fx.lon) == (0.0, 0.0):
            continue
        prev = last.get(fx.vehicle)
        if prev is not None and fx.ts < prev[0]:
            continue  # older than what is known of the vehicle: adds nothing
        if prev is None or fx.ts > prev[0]:
            if prev is not None:
                v = haversine_m(prev[1], prev[2], fx.lat, fx.lon) / (fx.ts - prev[0])
                jump[k] = v
                if v > MAX_SPEED_MPS:
                    continue  # a GPS glitch: the previous fix stays the reference
            last[fx.vehicle] = (fx.ts, fx.lat, fx.lon)
            a = anchor.get(fx.vehicle)
            if a is None or haversine_m(a[1], a[2], fx.lat, fx.lon) > LAYOVER_RADIUS_M:
                anchor[fx.vehicle] = (fx.ts, fx.lat, fx.lon)
        # (the same fix time again: a repeat in a later poll, evidence the vehicle still reports)
        if at - fx.ts > MAX_FIX_AGE_S:
            continue  # a stale fix: the vehicle has stopped reporting
        laid_up = fx.ts - anchor[fx.vehicle][0] >= LAYOVER_S
        inside = region is None or region.contains(fx.lat, fx.lon)
        if not (mine and inside and not laid_up):
            prev_in.pop(fx.vehicle, None)
            continue
        in_service[at].add(fx.vehicle)
        pi = prev_in.get(fx.vehicle)
        if pi is not None and 0 < fx.ts - pi[0] <= MAX_CHORD_S:
            km[at] += haversine_m(pi[1], pi[2], fx.lat, fx.lon) / 1000.0
        prev_in[fx.vehicle] = (fx.ts, fx.lat, fx.lon)
    out = []
    for k, t in enumerate(polls):
        before = min(MAX_SHARE_S, (t - polls[k - 1]) / 2) if k > 0 else MAX_SHARE_S
        after = min(MAX_SHARE_S, (polls[k + 1] - t) / 2) if k + 1 < len(polls) else MAX_SHARE_S
        n = len(in_service.get(t, ()))
        share = (before + after) / 3600.0
        out.append(ServicePoll(t, len(entities.get(t, ())), n, n * share, km.get(t, 0.0), share))
    return out, jump


def _assets(pledges: Iterable[CollateralPledged], has_routes: bool) -> dict[str, CollateralPledged | None]:
    """Asset id → its pledge, for the pledges whose profile measures activity as ``vehicle_service``."""
    from monitor.profiles import get_profile

    out: dict[str, CollateralPledged | None] = {}
    others = []
    for p in pledges:
        if get_profile(p.asset_profile).activity[0] != "vehicle_service":
            others.append(p)
            continue
        if p.routes and not has_routes:
            msg = (
                f"collateral_pledged {p.event_id}: asset {p.asset_id!r} routes {p.routes}: the GPS polls have no "
                f"route column, expected one of {list(_ALIASES['route'])} or a pledge without routes"
            )
            raise ConfigError(msg)
        out[p.asset_id] = p
    if not out and others:
        p = others[0]
        kind, metric = get_profile(p.asset_profile).activity
        msg = (
            f"collateral_pledged {p.event_id}: asset {p.asset_id!r} asset_profile: got {p.asset_profile!r}, whose "
            f"activity {kind}.{metric} bare GPS polls do not carry; expected a profile whose activity is "
            "vehicle_service (bus_vehicle_service, docs/sources.md)"
        )
        raise ConfigError(msg)
    return out or {"gps-fleet": None}


def _region(pledge: CollateralPledged | None) -> ServiceRegion | None:
    from monitor.profiles import get_profile

    if pledge is None:
        return None
    if pledge.service_area is not None:
        a = pledge.service_area
        return ServiceRegion.from_box(a.min_lon, a.min_lat, a.max_lon, a.max_lat)
    return get_profile(pledge.asset_profile).service_area


class GpsPollsCsvSource:
    """Bare GPS polls (vehicle, time, lat, lon; maybe route and poll time) as a CSV."""

    name = "gps-polls-csv"
    accepts = "bare GPS polls CSV (vehicle_id/vid, timestamp/tmstmp, lat, lon; optional route, poll time)"

    def recognise(self, path: Path) -> bool:
        """Whether the first line is a GPS polls header (see the module docstring)."""
        return is_gps_polls_csv(path)

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """Per asset: positions, heartbeats and ``vehicle_service`` records, in event-time order.

        Raises
        ------
        ConfigError
            See :func:`read_fixes`; a pledge of this feed whose profile does not measure
            ``vehicle_service``; pledges in more than one time zone when times lack an offset.
        """
        zones = {p.asset_timezone for p in pledged.pledges}
        fixes, has_polls = read_fixes(path, next(iter(zones)) if len(zones) == 1 else None)
        if not fixes:
            return iter(())
        has_routes = any(f.route is not None for f in fixes)
        out: list[tuple[float, int, TelemetryEvent]] = []
        for asset_id, pledge in _assets(pledged.pledges, has_routes).items():
            if not pledged.wants(asset_id):
                continue
            routes = frozenset(pledge.routes) if pledge is not None and pledge.routes else None
            polls, jump = service_records(fixes, has_polls, _region(pledge), routes)
            seen: set[tuple[str, float]] = set()
            for k, fx in enumerate(fixes):
                if (routes is not None and fx.route not in routes) or (fx.vehicle, fx.ts) in seen:
                    continue  # a fix repeated in a later poll is no new record (its heartbeat counts it)
                seen.add((fx.vehicle, fx.ts))
                metrics = {"lat": fx.lat, "lon": fx.lon}
                if k in jump:
                    metrics["jump_speed_mps"] = round(jump[k], 3)
                attrs = {"route_id": fx.route} if fx.route else {}
                key = f"{fx.vehicle}@{_t(fx.ts)}"
                # the poll time is when the collector received the fix (timeliness); none without it
                got = max(fx.poll, fx.ts) if has_polls else None
                ev = _event(asset_id, key, fx.ts, "vehicle_position", metrics, attrs, fx.vehicle, got)
                out.append((fx.ts, 1, ev))
            for q in polls:
                heartbeat = {"entities": float(q.entities)}
                out.append(
                    (q.ts, 0, _event(asset_id, f"poll@{_t(q.ts)}", q.ts, "feed_poll", heartbeat, {}, "collector"))
                )
                service = {
                    "vehicles": float(q.vehicles),
                    "vehicle_hours": round(q.vehicle_hours, 6),
                    "vehicle_km": round(q.vehicle_km, 4),
                    "observed_hours": round(q.observed_hours, 6),
                }
                out.append(
                    (q.ts, 2, _event(asset_id, f"service@{_t(q.ts)}", q.ts, "vehicle_service", service, {}, "fleet"))
                )
        out.sort(key=lambda t: (t[0], t[1], t[2].asset_id))
        return (ev for _, _, ev in out)


def _t(ts: float) -> str:
    """A time for an event id: POSIX seconds, milliseconds only when the feed has them."""
    return f"{ts:.3f}".rstrip("0").rstrip(".")


def _event(
    asset_id: str,
    key: str,
    ts: float,
    kind: str,
    metrics: dict[str, float],
    attrs: dict[str, str],
    entity: str,
    received: float | None = None,
) -> TelemetryEvent:
    return TelemetryEvent(
        event_id=f"gps:{asset_id}:{key}",
        asset_id=asset_id,
        observed_at=dt.datetime.fromtimestamp(ts, dt.UTC),
        received_at=dt.datetime.fromtimestamp(received, dt.UTC) if received is not None else None,
        entity_id=entity,
        kind=kind,
        metrics=metrics,
        attributes=attrs,
    )


SOURCE = GpsPollsCsvSource()
