"""Synthetic bus-dispatch telemetry for load tests: N assets × M vehicles, seeded from the Auckland sample.

``pledgewatch simulate`` and the benchmarks in ``benchmarks/`` draw their load from here. The
fleet's cadence and values are resampled from the shipped real Auckland trip updates
(``examples/data/auckland-tripupdates-20160520.jsonl.gz``), so the load has the real shape:

* the gap between two updates of one vehicle's trip: the sample's gaps (median ≈ 126 s);
* a trip's number of stops and the delays reported: the sample's ``stop_sequence`` at trip end
  (median 31) and ``delay_s`` values (deciles −307 s … 434 s), the delay moving as a random
  walk from one update to the next;
* a ``feed_poll`` heartbeat per asset every ``poll_interval_s`` of the ``bus_dispatch`` profile
  (120 s), and a ``trip_completed`` record when a trip passes its last stop.

Each asset is pledged to a loan of its own, opened at a coverage ratio of 1.6 (the appraisal's
baseline activity is the fleet's expected trips per hour, so a healthy simulated fleet values near
its appraisal). Everything is deterministic for a seed.

Incidents use the syntax of :mod:`monitor.incidents`: an asset in an ``outage:ASSET@OFFSET[+DURATION]``
sends nothing (heartbeats included): silence, first uncertainty and only past the profile's silence
grace (12 h for ``bus_dispatch``) an impairment; a ``cut:ASSET@OFFSET[+DURATION][:SHARE]`` stops SHARE
of its trips (chosen by :func:`monitor.incidents.trip_is_cut`, as a replay chooses them) while its
collector keeps polling: an activity collapse the valuation sees at once, so coverage falls and
alerts fire. The records the incidents leave are those of the run without them, byte for byte.

With ``groups`` the loans belong to that many borrower groups (``G-000`` …, loan ``i`` in group
``i mod groups``) and their assets to :data:`REGIONS` (asset ``i`` in region ``i mod 5``), so the
portfolio's concentration has keys to judge; an incident naming a group (``cut:G-007@2h``) strikes
every asset of its loans at once: the shock concentrated on one group that breaches its limit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from monitor.errors import ConfigError
from monitor.incidents import Incident, active, trip_is_cut
from monitor.profiles import BUS_DISPATCH

__all__ = ["Fleet", "FleetSample", "SimRecord", "load_fleet_sample"]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
#: Default first event time: Monday 2024-01-01 00:00 UTC (fixed, so a seed gives the same bytes).
DEFAULT_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
#: Coverage ratio each simulated loan opens at (appraisal ÷ outstanding).
OPENING_COVERAGE = 1.6
#: Regions of the simulated assets (ISO 3166-2: Beijing, Shanghai, Guangdong, Zhejiang, Sichuan), with ``groups``.
REGIONS = ("CN-BJ", "CN-SH", "CN-GD", "CN-ZJ", "CN-SC")
#: |final delay| within this many seconds counts as on time (Auckland adapter's rule, 5 min).
ON_TIME_S = 300.0

#: One produced record: (Kafka key, value bytes, event time in POSIX seconds).
SimRecord = tuple[bytes, bytes, float]


@dataclass(frozen=True)
class FleetSample:
    """Empirical distributions drawn from real trip updates (all seconds, except stops).

    Attributes
    ----------
    gaps_s
        Seconds between consecutive updates of one trip.
    delays_s
        Reported ``delay_s`` values.
    stops
        Stops per trip (``stop_sequence`` at trip end).
    """

    gaps_s: list[float]
    delays_s: list[float]
    stops: list[int]


def load_fleet_sample(path: str | Path = SAMPLE) -> FleetSample:
    """Read the distributions of :class:`FleetSample` from a feed of trip updates (the Auckland sample).

    Raises
    ------
    ConfigError
        When the file is missing or holds no trip updates.
    """
    from monitor.sources import read_source

    p = Path(path)
    if not p.exists():
        msg = f"simulate: the Auckland sample {p} is missing (it seeds the load's cadence and delays)"
        raise ConfigError(msg)
    last: dict[str, float] = {}
    gaps: list[float] = []
    delays: list[float] = []
    stops: list[int] = []
    # any source that carries trip updates (the Auckland polls, or an export of them as envelopes)
    for ev in read_source(p):
        if ev.kind == "trip_update":
            trip = ev.attributes["trip_id"]
            ts = ev.observed_at.timestamp()
            if trip in last and ts > last[trip]:
                gaps.append(ts - last[trip])
            last[trip] = ts
            if "delay_s" in ev.metrics:
                delays.append(ev.metrics["delay_s"])
        elif ev.kind == "trip_completed" and ev.metrics.get("stop_sequence", 0) >= 2:
            stops.append(int(ev.metrics["stop_sequence"]))
    if not gaps or not delays or not stops:
        msg = f"simulate: {p} holds no trip updates to seed the load from"
        raise ConfigError(msg)
    return FleetSample(gaps, delays, stops)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Vehicle:
    asset: int
    number: int
    trip: int = 0
    stop: int = 0
    stops: int = 0
    delay: float = 0.0
    started: float = 0.0


@dataclass
class Fleet:
    """A seeded fleet: ``assets`` pledged assets of ``vehicles`` buses each.

    Parameters
    ----------
    assets
        Number of pledged assets (each a bus operator's route group), ≥ 1.
    vehicles
        Buses per asset, ≥ 1.
    seed
        Random seed; the same seed gives the same records, byte for byte.
    start
        First event time, POSIX seconds.
    incidents
        ``outage`` and ``cut`` incidents (offsets from ``start``); asset ids are ``sim-0000``, ``sim-0001``...; with
        ``groups`` an incident may name a borrower group (``G-007``): it applies to each of its assets.
    sample
        The distributions to draw from (default: the shipped Auckland sample).
    groups
        Borrower groups the loans belong to (``None``: each borrower a group of its own, and no region).

    Raises
    ------
    ConfigError
        For a non-positive size, an incident other than ``outage`` or ``cut``, or one naming an unknown asset.
    """

    assets: int
    vehicles: int
    seed: int = 1
    start: float = DEFAULT_START
    incidents: list[Incident] = field(default_factory=list)
    sample: FleetSample | None = None
    groups: int | None = None

    def __post_init__(self) -> None:
        if self.assets < 1 or self.vehicles < 1:
            msg = f"simulate: got {self.assets} assets × {self.vehicles} vehicles, expected at least 1 × 1"
            raise ConfigError(msg)
        if self.groups is not None and not 1 <= self.groups <= self.assets:
            msg = f"--groups: got {self.groups}, expected 1 to {self.assets} (one loan per asset)"
            raise ConfigError(msg)
        ids = set(self.asset_ids)
        expanded: list[Incident] = []
        for inc in self.incidents:  # an incident naming a group: one per asset of its loans
            members = [a for i, a in enumerate(self.asset_ids) if self.group_of(i) == inc.asset_id]
            if self.groups is not None and members:
                expanded += [dataclasses.replace(inc, asset_id=a) for a in members]
            else:
                expanded.append(inc)
        self.incidents = expanded
        self._cut_any = any(i.kind == "cut" for i in expanded)
        for inc in self.incidents:
            if inc.kind not in ("outage", "cut"):
                msg = f"--inject: got {inc.kind!r}, expected outage or cut (the incidents simulate generates)"
                raise ConfigError(msg)
            if inc.asset_id not in ids:
                if inc.asset_id.startswith("G-"):  # a borrower group: known only with groups, G-000 … G-(groups-1)
                    known = "no group without --groups" if self.groups is None else f"G-000 … G-{self.groups - 1:03d}"
                    msg = f"--inject: got group {inc.asset_id!r}, expected a group of the simulated loans ({known})"
                else:
                    last = f"sim-{self.assets - 1:04d}"
                    msg = f"--inject: got asset {inc.asset_id!r}, expected one of sim-0000 … {last} or a group G-nnn"
                raise ConfigError(msg)
        if self.sample is None:
            self.sample = load_fleet_sample()

    def group_of(self, i: int) -> str | None:
        """The borrower group of the ``i``-th loan (``G-000`` …), ``None`` without ``groups``."""
        return None if self.groups is None else f"G-{i % self.groups:03d}"

    @property
    def asset_ids(self) -> list[str]:
        """The simulated asset ids, ``sim-0000`` … (zero-padded to 4 digits)."""
        return [f"sim-{i:04d}" for i in range(self.assets)]

    @property
    def events_per_hour(self) -> float:
        """Expected trip updates per event-time hour over the whole fleet (from the sample's mean gap)."""
        assert self.sample is not None
        mean_gap = sum(self.sample.gaps_s) / len(self.sample.gaps_s)
        return self.assets * self.vehicles * 3600.0 / mean_gap

    def trips_per_hour(self) -> float:
        """Expected completed trips per asset per hour: vehicles × 3600 ÷ (mean stops × mean gap)."""
        assert self.sample is not None
        mean_gap = sum(self.sample.gaps_s) / len(self.sample.gaps_s)
        mean_stops = sum(self.sample.stops) / len(self.sample.stops)
        return self.vehicles * 3600.0 / (mean_stops * mean_gap)

    def loan_book(self, appraisal_value: float = 8_000_000.0) -> list[bytes]:
        """One loan per asset (``SIM-L0000`` …): opened, then its asset pledged (raw JSON lines).

        ``appraisal_value`` is in yuan; the loan's outstanding is the value ÷ :data:`OPENING_COVERAGE`.
        """
        at = _iso(self.start - 86_400.0)
        day = dt.datetime.fromtimestamp(self.start - 86_400.0, dt.UTC).date()
        baseline = [round(self.trips_per_hour(), 3)] * 24
        out = []
        for i, aid in enumerate(self.asset_ids):
            loan = "SIM-L" + aid.removeprefix("sim-")
            owed = round(appraisal_value / OPENING_COVERAGE, 2)
            opened = {
                "schema_version": 1,
                "event_id": f"{loan}:opened",
                "loan_id": loan,
                "effective_at": at,
                "type": "loan_opened",
                "borrower_id": f"B-{aid}",
                "principal": owed,
                "outstanding": owed,
                "currency": "CNY",
                "start": day.isoformat(),
                "maturity": day.replace(year=day.year + 3).isoformat(),
                "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1},
                "cure_period": "5bd",
            }
            pledged = {
                "schema_version": 1,
                "event_id": f"{loan}:pledged:{aid}",
                "loan_id": loan,
                "effective_at": at,
                "type": "collateral_pledged",
                "asset_id": aid,
                "asset_profile": BUS_DISPATCH.name,
                "asset_timezone": "Asia/Shanghai",
                "appraisal": {
                    "value": appraisal_value,
                    "method": "income",
                    "appraised_on": day.isoformat(),
                    "appraiser": "pledgewatch simulate (synthetic)",
                    "baseline_activity": baseline,
                    "quality_baseline": 0.99,
                },
                "pledge_registration_no": f"SIM-PLEDGE-{aid.upper()}",
            }
            group = self.group_of(i)
            if group is not None:
                opened["borrower_group"] = group
                pledged["region"] = REGIONS[i % len(REGIONS)]
            out += [orjson.dumps(opened), orjson.dumps(pledged)]
        return out

    def _dark(self, asset: str, ts: float) -> bool:
        """Whether an ``outage`` of ``asset`` is in effect at ``ts`` (POSIX s): its feed sends nothing."""
        rel = ts - self.start
        return any(i.kind == "outage" and i.asset_id == asset and active(i, rel) for i in self.incidents)

    def _trip_cut(self, asset: str, trip: str, ts: float) -> bool:
        """Whether a ``cut`` of ``asset`` in effect at ``ts`` removes the trip ``trip`` (as a replay would)."""
        rel = ts - self.start
        return any(
            i.kind == "cut" and i.asset_id == asset and active(i, rel) and trip_is_cut(trip, i.share)
            for i in self.incidents
        )

    def records(self, limit: int | None = None) -> Iterator[SimRecord]:
        """Telemetry in event-time order, as ``(key, value, event_time_s)``; endless unless ``limit``.

        Each vehicle reports its trip every sampled gap; a trip that passes its last stop sends a
        ``trip_completed`` and the vehicle starts the next trip; every asset sends a ``feed_poll``
        heartbeat each 120 s with the number of vehicles that reported since the last one.
        """
        assert self.sample is not None
        rng = random.Random(self.seed)
        gaps, delays, stops = self.sample.gaps_s, self.sample.delays_s, self.sample.stops
        ids = [a.encode() for a in self.asset_ids]
        names = self.asset_ids
        poll_s = BUS_DISPATCH.poll_interval_s
        heap: list[tuple[float, int, int]] = []  # (next report time, order, vehicle index)
        fleet: list[_Vehicle] = []
        mean_gap = sum(gaps) / len(gaps)
        for a in range(self.assets):
            for v in range(self.vehicles):
                veh = _Vehicle(a, v, stops=rng.choice(stops), delay=rng.choice(delays), started=self.start)
                fleet.append(veh)
                heapq.heappush(heap, (self.start + rng.random() * mean_gap, len(fleet) - 1, len(fleet) - 1))
        next_poll = self.start + poll_s
        reported = [0] * self.assets
        n = 0
        seq = len(fleet)
        dumps = orjson.dumps
        while limit is None or n < limit:
            ts, _, idx = heapq.heappop(heap)
            while ts >= next_poll:  # heartbeats of every asset, in asset order
                stamp = _iso(next_poll)
                for a in range(self.assets):
                    if self._dark(names[a], next_poll):
                        continue
                    value = dumps(
                        {
                            "event_id": f"sim:poll:{names[a]}@{int(next_poll)}",
                            "asset_id": names[a],
                            "observed_at": stamp,
                            "received_at": stamp,
                            "entity_id": "collector",
                            "kind": "feed_poll",
                            "metrics": {"entities": float(reported[a])},
                        }
                    )
                    reported[a] = 0
                    yield ids[a], value, next_poll
                    n += 1
                    if limit is not None and n >= limit:
                        return
                next_poll += poll_s
            veh = fleet[idx]
            seq += 1
            heapq.heappush(heap, (ts + rng.choice(gaps), seq, idx))
            if self._dark(names[veh.asset], ts):
                continue
            trip = f"{veh.asset:04d}-{veh.number:03d}-{veh.trip}"
            cut = self._cut_any and self._trip_cut(names[veh.asset], trip, ts)
            if not cut:  # a cut trip does not run: its bus reports nothing to the collector
                reported[veh.asset] += 1
            stamp = _iso(ts)
            veh.stop += 1
            veh.delay = max(-1_800.0, min(7_200.0, veh.delay + rng.gauss(0.0, 30.0)))
            # the fields of both kinds first, in the order the schema lists them
            record: dict[str, object] = {
                "event_id": "",
                "asset_id": names[veh.asset],
                "observed_at": stamp,
                "received_at": stamp,
                "entity_id": f"bus-{veh.number:03d}",
            }
            if veh.stop > veh.stops:
                record["event_id"] = f"sim:done:{trip}"
                record["kind"] = "trip_completed"
                record["metrics"] = {
                    "trips": 1.0,
                    "on_time_trips": 1.0 if abs(veh.delay) <= ON_TIME_S else 0.0,
                    "duration_s": round(ts - veh.started, 3),
                    "final_delay_s": round(veh.delay, 1),
                    "stop_sequence": float(veh.stops),
                }
                record["attributes"] = {"trip_id": trip}
                veh.trip += 1
                veh.stop = 0
                veh.stops = rng.choice(stops)
                veh.delay = rng.choice(delays)
                veh.started = ts
            else:
                record["event_id"] = f"sim:{trip}@{veh.stop}"
                record["kind"] = "trip_update"
                record["metrics"] = {"delay_s": round(veh.delay, 1), "stop_sequence": float(veh.stop)}
                record["attributes"] = {"trip_id": trip, "route_id": f"R{veh.asset:04d}-{veh.number % 8}"}
            if cut:  # the trip's progress is kept (the bus is scheduled) but none of its reports is sent
                continue
            value = dumps(record)
            yield ids[veh.asset], value, ts
            n += 1

    def polls(self, limit: int, max_observations: int = 500) -> Iterator[SimRecord]:
        """The first ``limit`` records of :meth:`records`, sent as one batch record per asset and poll.

        The collector of each asset polls every ``poll_interval_s`` of the ``bus_dispatch`` profile
        (120 s): what its vehicles reported since the last poll goes out as one
        :class:`~monitor.schemas.TelemetryBatch` (at most ``max_observations``, and a lone report as a
        record of its own), at the poll, in asset order. Each observation keeps its bytes and times,
        so the observations, and the order of each asset's, are those of :meth:`records`. The event
        time of a record is its last observation's.

        Examples
        --------
        >>> fleet = Fleet(2, 5, seed=1)
        >>> sum(orjson.loads(v).get("observations", [None]).__len__() for _, v, _ in fleet.polls(300))
        300
        """
        poll_s = BUS_DISPATCH.poll_interval_s
        pending: dict[bytes, list[bytes]] = {}
        last: dict[bytes, float] = {}
        next_poll = self.start + poll_s

        def batch(key: bytes, group: list[bytes]) -> bytes:
            if len(group) == 1:
                return group[0]
            return b'{"schema_version":1,"asset_id":"' + key + b'","observations":[' + b",".join(group) + b"]}"

        def flush() -> Iterator[SimRecord]:
            for key in sorted(pending):
                group = pending[key]
                for i in range(0, len(group), max_observations):
                    yield key, batch(key, group[i : i + max_observations]), last[key]
            pending.clear()

        for key, value, ts in self.records(limit):
            while ts >= next_poll:
                yield from flush()
                next_poll += poll_s
            pending.setdefault(key, []).append(value)
            last[key] = ts
        yield from flush()
