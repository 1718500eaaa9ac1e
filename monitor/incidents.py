"""Incident injection for replays and backtests: ``outage:`` and ``freeze:ASSET@OFFSET[+DURATION]``.

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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from rules.rulebook import parse_duration

__all__ = ["Incident", "apply_incidents", "parse_incident"]

_SPEC = re.compile(r"^(outage|freeze):([A-Za-z0-9._:\-]+)@([0-9dhms]+)(?:\+([0-9dhms]+))?$")


@dataclass(frozen=True, slots=True)
class Incident:
    """One injected incident; offsets in seconds from the first event's time."""

    kind: str
    asset_id: str
    offset_s: float
    duration_s: float | None


def parse_incident(text: str) -> Incident:
    """Parse ``outage:akl-routes-7xx@2h`` or ``outage:A1@90m+30m``.

    Raises
    ------
    ConfigError
        When the text does not match ``KIND:ASSET@OFFSET[+DURATION]``.

    Examples
    --------
    >>> parse_incident("outage:A1@1h+30m")
    Incident(kind='outage', asset_id='A1', offset_s=3600.0, duration_s=1800.0)
    """
    m = _SPEC.match(text.strip())
    if not m:
        msg = (
            f"--inject: got {text!r}, "
            "expected KIND:ASSET@OFFSET[+DURATION] with KIND outage or freeze, e.g. outage:akl-routes-7xx@2h"
        )
        raise ConfigError(msg)
    try:
        offset = parse_duration(m.group(3))
        duration = parse_duration(m.group(4)) if m.group(4) else None
    except ValueError as exc:
        raise ConfigError(f"--inject {text!r}: {exc}") from None
    return Incident(m.group(1), m.group(2), offset, duration)


def _active(inc: Incident, rel: float) -> bool:
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
                if inc.kind == "freeze" and _active(inc, rel):
                    batch = frozen.setdefault(inc.asset_id, last_poll.get(inc.asset_id, (0.0, []))[1])
                    yield from batch
        if any(inc.asset_id == ev.asset_id and _active(inc, rel) for inc in incidents):
            continue
        seen_ts, batch = last_poll.get(ev.asset_id, (None, []))
        if seen_ts != ts:
            last_poll[ev.asset_id] = (ts, [ev])
        else:
            batch.append(ev)
        yield ev
