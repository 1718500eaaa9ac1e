"""pledgewatch source plugin: a dispatch-system log as ``TelemetryEvent`` envelopes.

The log is a CSV whose header is exactly ``time,asset,vehicle,trip,event[,delay_s]``: one row per
completed trip (``event = completed``; ``delay_s`` its final delay in seconds, optional) and one per
heartbeat of the dispatch system (``event = heartbeat``; ``vehicle`` then holds the number of
vehicles in service). ``time`` is RFC 3339 with an offset; ``asset`` the pledged asset the row
belongs to. Completed trips are the ``bus_dispatch`` profile's activity (``trip_completed``,
``metrics.trips = 1``); heartbeats are its polls (``feed_poll``, ``metrics.entities``), which tell
silence in service from a quiet feed.

The interface (``monitor/sources/__init__.py``): ``name``, ``accepts``, ``recognise(path)`` by
content, ``read(path, pledged)`` yielding envelopes of the pledged assets. Registered in this
package's ``pyproject.toml`` under the entry-point group ``pledgewatch.sources``.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from monitor.sources import Pledged, first_line, open_text

HEADER = ("time", "asset", "vehicle", "trip", "event")


class DispatchLogSource:
    """An operator's dispatch log (see the module docstring)."""

    name = "dispatch-log"
    accepts = "dispatch log CSV with the header time,asset,vehicle,trip,event[,delay_s]"

    def recognise(self, path: Path) -> bool:
        """Whether the file's first line is the dispatch log's header."""
        first = first_line(path)
        return first is not None and tuple(next(csv.reader([first[1]]), []))[: len(HEADER)] == HEADER

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """Envelopes of the pledged assets, in file order.

        Raises
        ------
        ConfigError
            At a row with a bad time, event or number: the file, the line, the field, the value and
            what was expected.
        """
        rows = csv.DictReader(open_text(path))
        for row in rows:
            line = rows.line_num
            asset = row["asset"]
            if not pledged.wants(asset):
                continue
            try:
                at = dt.datetime.fromisoformat(row["time"])
            except (TypeError, ValueError):
                raise ConfigError(f"{path}:{line}: time: got {row['time']!r}, expected RFC 3339 with offset") from None
            if at.tzinfo is None:
                raise ConfigError(f"{path}:{line}: time: got {row['time']!r}, expected an offset (e.g. +08:00)")
            if row["event"] == "completed":
                metrics = {"trips": 1.0}
                if row.get("delay_s"):
                    metrics["final_delay_s"] = _number(path, line, "delay_s", row["delay_s"])
                yield TelemetryEvent(
                    event_id=f"{asset}:{row['trip']}@{at.timestamp():.0f}",
                    asset_id=asset,
                    observed_at=at,
                    entity_id=row["vehicle"] or None,
                    kind="trip_completed",
                    metrics=metrics,
                    attributes={"trip_id": row["trip"]},
                )
            elif row["event"] == "heartbeat":
                yield TelemetryEvent(
                    event_id=f"{asset}:heartbeat@{at.timestamp():.0f}",
                    asset_id=asset,
                    observed_at=at,
                    received_at=at,
                    entity_id="dispatch",
                    kind="feed_poll",
                    metrics={"entities": _number(path, line, "vehicle", row["vehicle"])},
                )
            else:
                msg = f"{path}:{line}: event: got {row['event']!r}, expected completed or heartbeat"
                raise ConfigError(msg)


def _number(path: Path, line: int, name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{path}:{line}: {name}: got {text!r}, expected a number") from None


SOURCE = DispatchLogSource()
