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

A poll whose header time goes backwards (by at most :data:`MAX_BACKSTEP_S`) is out of order: its
trip updates are passed on (the core counts the older reports as contradictions, visible in the
consistency dimension) but it neither completes trips nor sends a heartbeat, so a trip it lacks is
not counted twice (case C19).

Times in the feed are POSIX seconds UTC (the epoch unit is fixed by this adapter,
never guessed); event ids are ``trip@report-time``, so a report re-sent unchanged
in the next poll is a duplicate, not new activity. Feed-version suffixes
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

__all__ = ["ON_TIME_S", "SOURCE", "AucklandSource", "Poll", "asset_of_route", "events_from_polls", "read_polls"]

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
    """One API poll: header time (POSIX s, UTC) and its trip-update entities."""

    header_ts: float
    entities: list[dict[str, Any]]


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
    resp = obj.get("response") or {}
    header = resp.get("header") or {}
    return Poll(float(header["timestamp"]), list(resp.get("entity") or []))


def read_polls(path: str | Path) -> Iterator[Poll]:
    """Read polls in time order from a folder of ``*.json.gz`` files or a ``.jsonl.gz`` file.

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ValueError
        When a poll has no ``response.header.timestamp`` (names the file or line).
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
                    msg = f"{f}: response.header.timestamp missing ({exc}), expected a GTFS-rt JSON poll"
                    raise ValueError(msg) from None
        return
    for n, line in enumerate(open_text(p), 1):
        if line.strip():
            try:
                yield _poll(json.loads(line))
            except (KeyError, TypeError) as exc:
                msg = f"{p}:{n}: response.header.timestamp missing ({exc}), expected a GTFS-rt JSON poll"
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
    active: dict[str, dict[str, Any]] = {}
    skipped = 0
    last_header: float | None = None
    for poll in polls:
        received = _iso(poll.header_ts)
        behind = last_header is not None and last_header - MAX_BACKSTEP_S <= poll.header_ts <= last_header
        if not behind:
            last_header = poll.header_ts
        now_trips: dict[str, dict[str, Any]] = {}
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
            try:
                ev, report_ts, vehicle = _trip_update(tu, trip_raw, route_raw, asset, poll.header_ts, received)
            except (ValidationError, TypeError, ValueError, AttributeError, OverflowError):
                skipped += 1
                continue
            metrics = ev.metrics
            trip_id = ev.attributes["trip_id"]
            per_asset.setdefault(asset, []).append(ev)
            first = active.get(trip_id, {}).get("first", report_ts)
            now_trips[trip_id] = {
                "asset": asset,
                "first": first,
                "last": report_ts,
                "delay": metrics.get("delay_s"),
                "seq": metrics.get("stop_sequence"),
                "vehicle": vehicle,
            }
        if behind:
            # out of order: its reports go on (older than what the core has: contradictions), the
            # trip states and the heartbeat stay with the newest poll
            for asset in sorted(per_asset):
                yield from per_asset[asset]
            continue
        for trip_id, info in active.items():
            if trip_id in now_trips:
                continue
            m = {"trips": 1.0, "duration_s": max(0.0, info["last"] - info["first"])}
            if info["delay"] is not None:
                m["final_delay_s"] = info["delay"]
                m["on_time_trips"] = 1.0 if abs(info["delay"]) <= ON_TIME_S else 0.0
            if info["seq"] is not None:
                m["stop_sequence"] = info["seq"]
            per_asset.setdefault(info["asset"], []).append(
                TelemetryEvent(
                    event_id=f"akl:done:{trip_id}@{int(info['first'])}",
                    asset_id=info["asset"],
                    observed_at=received,
                    received_at=received,
                    entity_id=str(info["vehicle"]) if info["vehicle"] is not None else None,
                    kind="trip_completed",
                    metrics=m,
                    attributes={"trip_id": trip_id},
                )
            )
        active = now_trips
        for asset in sorted(per_asset):
            n_trips = sum(1 for e in per_asset[asset] if e.kind == "trip_update")
            yield TelemetryEvent(
                event_id=f"akl:poll:{asset}@{poll.header_ts:.3f}",
                asset_id=asset,
                observed_at=received,
                received_at=received,
                entity_id="collector",
                kind="feed_poll",
                metrics={"entities": float(n_trips)},
            )
            yield from per_asset[asset]
    if skipped:
        log.warning("auckland adapter: skipped %d malformed trip-update entities", skipped)


def _trip_update(
    tu: dict[str, Any], trip_raw: str, route_raw: str, asset: str, header_ts: float, received: dt.datetime
) -> tuple[TelemetryEvent, float, Any]:
    stu = tu.get("stop_time_update") or {}
    if isinstance(stu, list):
        stu = stu[-1] if stu else {}
    event = stu.get("departure") or stu.get("arrival") or {}
    report_ts = float(tu.get("timestamp") or event.get("time") or header_ts)
    trip_id = _strip(trip_raw)
    metrics: dict[str, float] = {}
    if "delay" in event:
        metrics["delay_s"] = float(event["delay"])
    if "stop_sequence" in stu:
        metrics["stop_sequence"] = float(stu["stop_sequence"])
    attrs = {"trip_id": trip_id, "route_id": _strip(route_raw)}
    if "stop_id" in stu:
        attrs["stop_id"] = str(stu["stop_id"])
    attrs["stop_event"] = "departure" if "departure" in stu else "arrival"
    vehicle = (tu.get("vehicle") or {}).get("id")
    ev = TelemetryEvent(
        event_id=f"akl:{trip_id}@{int(report_ts)}",
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
