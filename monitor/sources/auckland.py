"""Source adapter: Auckland Transport GTFS-realtime TripUpdates polls → ``TelemetryEvent``.

Input: the JSON polls of Auckland Transport's real-time API archived in
``gtfsr_kit`` (MIT; Auckland Transport's API terms apply to the data), either as a
folder of ``YYYYMMDDHHMMSS.json.gz`` files (``../shared/data/auckland-bus-tripupdates``)
or as one ``.jsonl.gz`` file with one poll per line (the sample in ``examples/data``).

Each pledged asset is a **route group**: the dispatch data of the routes whose
number starts with one digit (``akl-routes-2xx`` = routes 200–299). Per poll and
asset the adapter emits:

- ``feed_poll``: the collector's heartbeat, ``metrics.entities`` = trips in the poll;
- ``trip_update``: one per entity; ``observed_at`` = the vehicle's report time
  (``trip_update.timestamp``), ``received_at`` = the poll's header time;
  ``metrics.delay_s`` (s, + = late) and ``stop_sequence``;
- ``trip_completed``: a trip seen in the previous poll and gone from this one has
  left service: ``metrics.trips = 1``, ``on_time_trips`` (final delay within
  ±300 s), ``final_delay_s``, ``duration_s``. This is the activity measure.

Trips follow the GTFS-realtime reference (``TripDescriptor``): a trip **run** is ``trip_id`` +
``start_date`` + ``start_time``, so the runs of a frequency-based trip (one ``trip_id``, several
start times) are separate trips (case C23); ``schedule_relationship`` ``CANCELED`` or ``DELETED``
(3, 7) is never service: the run emits one ``trip_cancelled`` (``metrics.cancelled_trips = 1``) and
no trip update or completion (case C22); ``ADDED``, ``UNSCHEDULED``, ``DUPLICATED``, ``NEW`` and
``REPLACEMENT`` runs are service like scheduled ones (a ``DUPLICATED`` run is told apart by its
start time). The relationship is read as the enum's number or its name.

A poll whose header time is 0 or missing (feeds publish 0 after a restart; the GTFS-rt validator
flags it) takes the newest time its entities report instead, and its heartbeat carries
``metrics.header_time_defects = 1``, which the profile makes implausible: the defect is visible in
the window's accuracy dimension, never a reason to drop the poll's trips (case C24). A poll with
neither a header time nor an entity time is skipped and counted in a warning.

A poll whose header time goes backwards (by at most :data:`MAX_BACKSTEP_S`) is out of order: its
trip updates are passed on (the core counts the older reports as contradictions, visible in the
consistency dimension) but it neither completes trips nor sends a heartbeat, so a trip it lacks is
not counted twice (case C19).

Times in the feed are POSIX seconds UTC (the epoch unit is fixed by this adapter,
never guessed); event ids are ``trip@report-time``, so a report re-sent unchanged
in the next poll is a duplicate, not new activity (``trip/start_date/start_time@report-time`` when the
feed gives the run's start). Feed-version suffixes
(``-20160512154122_v40.34``) are stripped from trip and route ids.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.schemas import TelemetryEvent
from monitor.sources import Pledged, first_line, open_text

__all__ = [
    "NOT_RUNNING",
    "ON_TIME_S",
    "SOURCE",
    "AucklandSource",
    "Poll",
    "asset_of_route",
    "events_from_polls",
    "read_polls",
    "trip_run",
]

#: Final delay within this many seconds (either way) counts a trip as on time.
ON_TIME_S = 300.0
PREFIX = "akl-routes-"
#: A poll whose header time is at most this much (s) older than the previous one's is out of order
#: (a lagging replica or a cached response: GTFS-rt producers refresh every 10-60 s and caches hold
#: a response for a minute or two); one older by more means the previous poll was the outlier (a
#: clock fault far ahead), and the feed continues from this one (case C19).
MAX_BACKSTEP_S = 300.0
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Poll:
    """One API poll: header time (POSIX s, UTC; ``None`` when the header gives none or 0) and its entities."""

    header_ts: float | None
    entities: list[dict[str, Any]]


#: ``TripDescriptor.ScheduleRelationship`` values that are not service (GTFS-realtime reference):
#: CANCELED (3) and DELETED (7), by number (``3.0`` too: JSON numbers may arrive as floats) or by name.
NOT_RUNNING = {3, 7, "CANCELED", "CANCELLED", "DELETED"}


def _strip(ident: str) -> str:
    return ident.split("-", 1)[0]


def asset_of_route(route_id: str) -> str:
    """Asset (route group) of an Auckland route id.

    Examples
    --------
    >>> asset_of_route("27401-20160512154122_v40.34")
    'akl-routes-2xx'
    """
    return f"{PREFIX}{_strip(route_id)[:1]}xx"


def is_route_group(asset_id: str) -> bool:
    """Whether an asset id is one :func:`asset_of_route` can give (``akl-routes-<digit>xx``).

    Examples
    --------
    >>> is_route_group("akl-routes-7xx"), is_route_group("akl-ghost")
    (True, False)
    """
    rest = asset_id.removeprefix(PREFIX)
    return rest != asset_id and len(rest) == 3 and rest.endswith("xx")


def _poll(obj: dict[str, Any]) -> Poll:
    resp = obj["response"]
    header = resp["header"]
    if not isinstance(header, dict):
        raise TypeError("response.header is not an object")
    raw = header.get("timestamp")
    try:
        ts: float | None = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        ts = None
    if ts is not None and not ts > 0:  # 0 (a restarted producer), negative or NaN: no header time
        ts = None
    return Poll(ts, list(resp.get("entity") or []))


def _entity_time(ent: Any) -> float | None:
    """The newest time an entity reports (its ``timestamp``, else its stop event's), POSIX s; None without one."""
    tu = ent.get("trip_update") if isinstance(ent, dict) else None
    if not isinstance(tu, dict):
        return None
    stu = tu.get("stop_time_update") or {}
    if isinstance(stu, list):
        stu = stu[-1] if stu else {}
    event = (stu.get("departure") or stu.get("arrival") or {}) if isinstance(stu, dict) else {}
    for raw in (tu.get("timestamp"), event.get("time") if isinstance(event, dict) else None):
        try:
            t = float(raw) if raw is not None else 0.0
        except (TypeError, ValueError):
            continue
        if t > 0:
            return t
    return None


def trip_run(trip: dict[str, Any]) -> str:
    """The run a GTFS-realtime ``TripDescriptor`` names: ``trip_id``, plus its start when given.

    The version suffix is stripped from ``trip_id``; ``/start_date/start_time`` is added when the feed
    gives either (frequency-based and duplicated trips).

    Examples
    --------
    >>> trip_run({"trip_id": "T9-x"}), trip_run({"trip_id": "T9-x", "start_time": "08:10:00"})
    ('T9', 'T9//08:10:00')
    """
    trip_id = _strip(str(trip["trip_id"]))
    start_date, start_time = trip.get("start_date") or "", trip.get("start_time") or ""
    return f"{trip_id}/{start_date}/{start_time}" if start_date or start_time else trip_id


def read_polls(path: str | Path) -> Iterator[Poll]:
    """Read polls in time order from a folder of ``*.json.gz`` files or a ``.jsonl.gz`` file.

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ValueError
        When a line or file is not a GTFS-rt JSON poll (no ``response.header``; names the file or line).
    """
    p = Path(path)
    if not p.exists():
        msg = f"telemetry source: {p} does not exist, expected a folder of *.json.gz polls or a .jsonl.gz file"
        raise FileNotFoundError(msg)
    if p.is_dir():
        for f in sorted(p.glob("*.json.gz")):
            with gzip.open(f, "rb") as fh:
                try:
                    yield _poll(json.load(fh))
                except (KeyError, TypeError) as exc:
                    msg = f"{f}: response.header missing ({exc}), expected a GTFS-rt JSON poll"
                    raise ValueError(msg) from None
        return
    for n, line in enumerate(open_text(p), 1):
        if line.strip():
            try:
                yield _poll(json.loads(line))
            except (KeyError, TypeError) as exc:
                msg = f"{p}:{n}: response.header missing ({exc}), expected a GTFS-rt JSON poll"
                raise ValueError(msg) from None


def _iso(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def events_from_polls(polls: Iterable[Poll], assets: set[str] | None = None) -> Iterator[TelemetryEvent]:
    """Turn polls into telemetry events, in poll order.

    Parameters
    ----------
    polls
        Polls in time order.
    assets
        Route-group assets to emit (all groups seen when ``None``).

    Yields
    ------
    TelemetryEvent
    """
    active: dict[str, dict[str, Any]] = {}  # runs in service at the last poll in order, by run
    cancelled: set[str] = set()  # runs the last poll in order gave as not running
    skipped = no_time = 0
    last_header: float | None = None
    for poll in polls:
        header_ts = poll.header_ts
        defect = header_ts is None
        if header_ts is None:  # no header time: the newest entity time stands in (case C24)
            header_ts = max((t for t in map(_entity_time, poll.entities) if t is not None), default=None)
            if header_ts is None:
                no_time += 1
                continue
        received = _iso(header_ts)
        behind = last_header is not None and last_header - MAX_BACKSTEP_S <= header_ts <= last_header
        if not behind:
            last_header = header_ts
        now_trips: dict[str, dict[str, Any]] = {}
        now_cancelled: set[str] = set()
        # a heartbeat for every pledged route group (a group with no trip in a poll is still reachable),
        # never for an asset id no Auckland route maps to: that is another feed's asset, whose silence
        # must not read as "reachable, zero activity"
        per_asset: dict[str, list[TelemetryEvent]] = {a: [] for a in (assets or ()) if is_route_group(a)}
        for ent in poll.entities:
            tu = ent.get("trip_update") if isinstance(ent, dict) else None
            trip = tu.get("trip") if isinstance(tu, dict) else None
            if not isinstance(tu, dict) or not isinstance(trip, dict):
                skipped += 1
                continue
            route_raw = trip.get("route_id")
            trip_raw = trip.get("trip_id")
            if not isinstance(route_raw, str) or not isinstance(trip_raw, str) or not route_raw or not trip_raw:
                skipped += 1
                continue
            asset = asset_of_route(route_raw)
            if assets is not None and asset not in assets:
                continue
            run = trip_run(trip)
            relation = trip.get("schedule_relationship")
            try:
                # never service (case C22); the enum as a number (3, 3.0) or its name
                if isinstance(relation, int | float | str) and relation in NOT_RUNNING:
                    now_cancelled.add(run)
                    if run not in cancelled and not behind:
                        cancel = _cancelled(tu, trip, run, route_raw, asset, received)
                        per_asset.setdefault(asset, []).append(cancel)
                    continue
                identity = _run_attributes(trip)
                ev, report_ts, vehicle = _trip_update(tu, identity, run, route_raw, asset, header_ts, received)
            except (ValidationError, TypeError, ValueError, AttributeError, OverflowError):
                skipped += 1
                continue
            metrics = ev.metrics
            per_asset.setdefault(asset, []).append(ev)
            first = active.get(run, {}).get("first", report_ts)
            now_trips[run] = {
                "asset": asset,
                "first": first,
                "last": report_ts,
                "delay": metrics.get("delay_s"),
                "seq": metrics.get("stop_sequence"),
                "vehicle": vehicle,
                "attributes": identity,
            }
        if behind:
            # out of order: its reports go on (older than what the core has: contradictions), the
            # trip states and the heartbeat stay with the newest poll
            for asset in sorted(per_asset):
                yield from per_asset[asset]
            continue
        for run, info in active.items():
            if run in now_trips or run in now_cancelled:  # still running, or cancelled: not completed
                continue
            m = {"trips": 1.0, "duration_s": max(0.0, info["last"] - info["first"])}
            if info["delay"] is not None:
                m["final_delay_s"] = info["delay"]
                m["on_time_trips"] = 1.0 if abs(info["delay"]) <= ON_TIME_S else 0.0
            if info["seq"] is not None:
                m["stop_sequence"] = info["seq"]
            try:
                done = TelemetryEvent(
                    event_id=f"akl:done:{run}@{int(info['first'])}",
                    asset_id=info["asset"],
                    observed_at=received,
                    received_at=received,
                    entity_id=str(info["vehicle"]) if info["vehicle"] is not None else None,
                    kind="trip_completed",
                    metrics=m,
                    attributes=info["attributes"],
                )
            except (ValidationError, ValueError, OverflowError):
                skipped += 1
                continue
            per_asset.setdefault(info["asset"], []).append(done)
        active, cancelled = now_trips, now_cancelled
        for asset in sorted(per_asset):
            n_trips = sum(1 for e in per_asset[asset] if e.kind == "trip_update")
            beat = {"entities": float(n_trips)}
            if defect:
                beat["header_time_defects"] = 1.0
            yield TelemetryEvent(
                event_id=f"akl:poll:{asset}@{header_ts:.3f}",
                asset_id=asset,
                observed_at=received,
                received_at=received,
                entity_id="collector",
                kind="feed_poll",
                metrics=beat,
            )
            yield from per_asset[asset]
    if skipped:
        log.warning("auckland adapter: skipped %d malformed trip-update entities", skipped)
    if no_time:
        log.warning("auckland adapter: skipped %d polls with neither a header time nor an entity time", no_time)


def _run_attributes(trip: dict[str, Any]) -> dict[str, str]:
    """``trip_id`` (suffix stripped) and, when the feed gives them, ``start_date`` / ``start_time`` of a run."""
    attrs = {"trip_id": _strip(str(trip["trip_id"]))}
    for name in ("start_date", "start_time"):
        if trip.get(name):
            attrs[name] = str(trip[name])
    return attrs


def _cancelled(
    tu: dict[str, Any], trip: dict[str, Any], run: str, route_raw: str, asset: str, received: dt.datetime
) -> TelemetryEvent:
    """One ``trip_cancelled`` for a run the feed gives as CANCELED / DELETED (its id has no time: once a run)."""
    vehicle = (tu.get("vehicle") or {}).get("id") if isinstance(tu.get("vehicle"), dict) else None
    return TelemetryEvent(
        event_id=f"akl:cancel:{run}",
        asset_id=asset,
        observed_at=received,
        received_at=received,
        entity_id=str(vehicle) if vehicle is not None else None,
        kind="trip_cancelled",
        metrics={"cancelled_trips": 1.0},
        attributes={**_run_attributes(trip), "route_id": _strip(route_raw)},
    )


def _trip_update(
    tu: dict[str, Any],
    identity: dict[str, str],
    run: str,
    route_raw: str,
    asset: str,
    header_ts: float,
    received: dt.datetime,
) -> tuple[TelemetryEvent, float, Any]:
    stu = tu.get("stop_time_update") or {}
    if isinstance(stu, list):
        stu = stu[-1] if stu else {}
    event = stu.get("departure") or stu.get("arrival") or {}
    report_ts = float(tu.get("timestamp") or event.get("time") or header_ts)
    metrics: dict[str, float] = {}
    if "delay" in event:
        metrics["delay_s"] = float(event["delay"])
    if "stop_sequence" in stu:
        metrics["stop_sequence"] = float(stu["stop_sequence"])
    attrs = {**identity, "route_id": _strip(route_raw)}
    if "stop_id" in stu:
        attrs["stop_id"] = str(stu["stop_id"])
    attrs["stop_event"] = "departure" if "departure" in stu else "arrival"
    vehicle = (tu.get("vehicle") or {}).get("id")
    ev = TelemetryEvent(
        event_id=f"akl:{run}@{int(report_ts)}",
        asset_id=asset,
        observed_at=_iso(report_ts),
        received_at=received,
        entity_id=str(vehicle) if vehicle is not None else None,
        kind="trip_update",
        metrics=metrics,
        attributes=attrs,
    )
    return ev, report_ts, vehicle


def _is_poll(obj: Any) -> bool:
    resp = obj.get("response") if isinstance(obj, dict) else None
    return isinstance(resp, dict) and isinstance(resp.get("header"), dict)


class AucklandSource:
    """Auckland GTFS-rt TripUpdates JSON polls: a folder of ``*.json.gz`` or one poll a line."""

    name = "auckland-tripupdates"
    accepts = "GTFS-rt TripUpdates JSON polls (Auckland API), one a line or a folder of *.json.gz"

    def recognise(self, path: Path) -> bool:
        """Whether the file's first line (or the folder's first poll) is a JSON poll with a header."""
        if path.is_dir():
            f = next(iter(sorted(path.glob("*.json.gz"))), None)
            if f is None:
                return False
            with gzip.open(f, "rb") as fh:
                return _is_poll(json.load(fh))
        first = first_line(path)
        return first is not None and _is_poll(json.loads(first[1]))

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """Events of the pledged route groups (``akl-routes-Nxx``); see the module docstring."""
        return events_from_polls(read_polls(path), set(pledged.assets) if pledged.assets is not None else None)


SOURCE = AucklandSource()
