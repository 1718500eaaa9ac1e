"""Incident injection for replays and backtests: ``outage:``, ``freeze:`` and ``cut:ASSET@OFFSET[+DURATION]``.

An incident alters the recorded telemetry the same way in ``pledgewatch replay``
and ``pledgewatch backtest``, so the streamed and in-process runs see the same input.

Kinds
-----
``outage:ASSET@OFFSET[+DURATION]``
    Drop every record of ASSET (heartbeats included: the feed is dark) from OFFSET after the
    first event for DURATION (default: to the end).
``freeze:ASSET@OFFSET[+DURATION]``
    The feed keeps answering but re-sends its last poll before OFFSET unchanged (same event ids
    and times) at every later poll, instead of its real records: a frozen feed (case C20).
``cut:ASSET@OFFSET[+DURATION][:SHARE]``
    An activity collapse seen in the data while the feed keeps reporting: SHARE (0 < SHARE ≤ 1,
    default 1, every trip) of ASSET's trips do not run from OFFSET for DURATION. A trip is cut as a
    whole (its trip updates and its completion), chosen by a hash of its ``trip_id`` so that a replay
    and a backtest cut the same trips; records without a trip id (feed polls, vehicle positions)
    keep coming, so the feed stays reachable and only the activity falls.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from rules.rulebook import parse_duration

__all__ = ["Incident", "active", "apply_incidents", "parse_incident", "trip_is_cut"]

_SPEC = re.compile(r"^(outage|freeze|cut):([A-Za-z0-9._:\-]+)@([0-9dhms]+)(?:\+([0-9dhms]+))?(?::([0-9]*\.?[0-9]+))?$")


@dataclass(frozen=True, slots=True)
class Incident:
    """One injected incident.

    Offsets are seconds from the first event's time; ``share`` (0..1] is the share of the trips a
    ``cut`` removes (1.0 for the other kinds).
    """

    kind: str
    asset_id: str
    offset_s: float
    duration_s: float | None
    share: float = 1.0


def parse_incident(text: str) -> Incident:
    """Parse ``outage:akl-routes-7xx@2h``, ``outage:A1@90m+30m`` or ``cut:A1@2h+3h:0.6``.

    Raises
    ------
    ConfigError
        When the text does not match ``KIND:ASSET@OFFSET[+DURATION]``.

    Examples
    --------
    >>> parse_incident("outage:A1@1h+30m")
    Incident(kind='outage', asset_id='A1', offset_s=3600.0, duration_s=1800.0, share=1.0)
    >>> parse_incident("cut:A1@2h:0.6").share
    0.6
    """
    m = _SPEC.match(text.strip())
    if not m:
        msg = (
            f"--inject: got {text!r}, "
            "expected KIND:ASSET@OFFSET[+DURATION][:SHARE] with KIND outage, freeze or cut, "
            "e.g. outage:akl-routes-7xx@2h or cut:akl-routes-7xx@2h:0.6"
        )
        raise ConfigError(msg)
    try:
        offset = parse_duration(m.group(3))
        duration = parse_duration(m.group(4)) if m.group(4) else None
    except ValueError as exc:
        raise ConfigError(f"--inject {text!r}: {exc}") from None
    share = 1.0
    if m.group(5) is not None:
        if m.group(1) != "cut":
            raise ConfigError(f"--inject: got {text!r}, expected :SHARE only with KIND cut")
        share = float(m.group(5))
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"--inject: got SHARE {m.group(5)!r} in {text!r}, expected 0 < SHARE <= 1 (e.g. 0.6)")
    return Incident(m.group(1), m.group(2), offset, duration, share)


def trip_is_cut(trip_id: str, share: float) -> bool:
    """True when a ``cut`` of ``share`` (0..1] removes the trip ``trip_id`` (uniform hash in [0, 1) < share).

    The same trips are cut wherever the incident is applied (replay, backtest, ``pledgewatch simulate``).
    """
    h = int.from_bytes(hashlib.sha256(trip_id.encode()).digest()[:8], "big") / 2**64
    return h < share


def _drops(inc: Incident, ev: TelemetryEvent, rel: float) -> bool:
    """True when ``inc`` removes ``ev``, ``rel`` seconds after the first record.

    An outage or freeze removes all of the asset's records; a cut only those of a cut trip.
    """
    if inc.asset_id != ev.asset_id or not active(inc, rel):
        return False
    if inc.kind != "cut":
        return True
    trip = ev.attributes.get("trip_id")
    return trip is not None and trip_is_cut(trip, inc.share)


def active(inc: Incident, rel: float) -> bool:
    """True while ``inc`` is in effect, ``rel`` seconds after its time origin (``[offset, offset + duration)``)."""
    return rel >= inc.offset_s and (inc.duration_s is None or rel < inc.offset_s + inc.duration_s)


def apply_incidents(events: Iterable[TelemetryEvent], incidents: list[Incident]) -> Iterator[TelemetryEvent]:
    """Yield ``events`` with the incidents applied (times are offsets from the first record's poll time)."""
    if not incidents:
        yield from events
        return
    t0: float | None = None
    last_poll: dict[str, tuple[float, list[TelemetryEvent]]] = {}
    frozen: dict[str, list[TelemetryEvent]] = {}
    poll_ts: float | None = None
    for ev in events:
        ts = ev.observed_at.timestamp() if ev.received_at is None else ev.received_at.timestamp()
        if t0 is None:
            t0 = ts
        rel = ts - t0
        if ts != poll_ts:  # a new poll: frozen feeds answer it with their stale batch
            poll_ts = ts
            for inc in incidents:
                if inc.kind == "freeze" and active(inc, rel):
                    batch = frozen.setdefault(inc.asset_id, last_poll.get(inc.asset_id, (0.0, []))[1])
                    yield from batch
        if any(_drops(inc, ev, rel) for inc in incidents):
            continue
        seen_ts, batch = last_poll.get(ev.asset_id, (None, []))
        if seen_ts != ts:
            last_poll[ev.asset_id] = (ts, [ev])
        else:
            batch.append(ev)
        yield ev
