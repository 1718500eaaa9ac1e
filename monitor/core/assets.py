"""The asset side of the core: one asset's windows and valuation, and a worker's book of assets.

:class:`AssetMonitor` holds one pledged asset's windows, screening and valuation models;
:class:`AssetBook` the assets of one worker with their stream clock and held early telemetry.

Why one module of about 1,000 lines: the book and the monitor share one invariant (a record is
screened, held or applied once, and windows close on one clock, whether it comes alone or in a
poll record's per-record path), and the book is the monitor's only caller; apart, each would have to
be read with the other open.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import pickle
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from river import stats

from monitor.core.common import CoreParams, Output, _content_digest, _ts
from monitor.core.decode import Provenance, dead_letter
from monitor.errors import InputRejected
from monitor.profiles import get_profile
from monitor.schemas import (
    CollateralPledged,
    CollateralReleased,
    CollateralValuation,
    TelemetryEvent,
)
from monitor.sensors import Sensor
from monitor.valuation import MODEL_VERSIONS, AssetValuer, model_stamp
from monitor.windows import WindowGrid, WindowStats, check_flags, check_record, window_start

#: a record the core holds: ``(record, event time in POSIX s, where it came from or None)``
Held = tuple[TelemetryEvent, float, Provenance | None]

log = logging.getLogger(__name__)

#: Closed windows with a record remembered per asset, to tell a peer's silence from the collector's:
#: two days of 15-min windows (a collector outage longer than that is judged without this evidence)
HEARD_WINDOWS = 192


def _held(item: Any) -> tuple[TelemetryEvent, Provenance | None]:
    """One held item as ``(record, origin)``: checkpoints from before provenance was kept hold bare records."""
    return item if isinstance(item, tuple) else (item, None)


def _maybe_redelivered(last: Any, source: Provenance) -> bool:
    """Whether ``source`` may be a record held already: not past the last held one of its partition.

    ``last`` is the newest entry of an asset's hold (``(record, provenance)``, or a bare record from a
    checkpoint before provenance was kept).

    >>> last = (None, Provenance("t", 0, 41))
    >>> _maybe_redelivered(last, Provenance("t", 0, 42)), _maybe_redelivered(last, Provenance("t", 0, 41))
    (False, True)
    """
    prev: Provenance | None = last[1] if isinstance(last, tuple) else None
    if prev is None or prev.offset is None or source.offset is None:
        return True
    return prev.topic != source.topic or prev.partition != source.partition or source.offset <= prev.offset


def _pack_seen(seen: dict[str, tuple[float, int]]) -> Any:
    """The de-duplication memory as a checkpoint carries it: ids in one string, times and digests in two arrays.

    Pickles in about half the time of the dict (one of a loaded worker's costs, issue 18) and restores
    to an equal dict (:func:`_unpack_seen`), in the same order. Event ids never hold a newline (their
    schema pattern). A memory that does not fit (an id with a newline, a digest outside 64 bits) stays
    a dict.

    >>> seen = {"e1": (1.5, 7), "e2": (2.0, 2**64 - 1)}
    >>> _unpack_seen(pickle.loads(pickle.dumps(_pack_seen(seen)))) == seen, _unpack_seen(_pack_seen({}))
    (True, {})
    """
    ids = "\n".join(seen)
    if ids.count("\n") != max(0, len(seen) - 1):
        return seen
    values = seen.values()
    try:
        return (ids, array("d", map(itemgetter(0), values)), array("Q", map(itemgetter(1), values)))
    except (TypeError, OverflowError):
        return seen


def _unpack_seen(packed: Any) -> dict[str, tuple[float, int]]:
    """The de-duplication memory of a checkpoint: packed by :func:`_pack_seen`, or the dict of an older one."""
    if isinstance(packed, dict):
        return packed
    ids, times, digests = packed
    return dict(zip(ids.split("\n"), zip(times, digests, strict=True), strict=True)) if ids or len(times) else {}


class AssetMonitor:
    """One pledged asset: windows, de-duplication, data-quality checks and valuation models.

    Parameters
    ----------
    pledge
        The :class:`CollateralPledged` event that registered the asset.
    params
        :class:`CoreParams`.
    """

    def __init__(self, pledge: CollateralPledged, params: CoreParams) -> None:
        self.asset_id = pledge.asset_id
        self.pledge = pledge
        self.profile_name = pledge.asset_profile
        self.profile = get_profile(pledge.asset_profile)
        self.params = params
        self.loan_ids: list[str] = [pledge.loan_id]
        self.appraisal_value = pledge.appraisal.value
        self.valuer = self._new_valuer()
        self.valuer_updates = 0  # model updates so far: a checkpoint re-pickles the models only when it moved
        self.windows: dict[float, WindowStats] = {}
        #: window boundaries in the asset's time zone: a daily window is a local day (C17)
        self.grid = WindowGrid(params.window_s, pledge.asset_timezone)
        self.closed_until: float | None = None
        self.max_ts: float | None = None
        self.seen: dict[str, tuple[float, int]] = {}
        self.seen_kept = 0  # size of ``seen`` after its last pruning
        self.trips: dict[tuple[str, str, str], tuple[float, float]] = {}  # run → (newest report s, stop)
        self.late_carry = 0
        self.dup_carry = 0
        self.contradiction_carry = 0
        # the inputs of the last windows, to rebuild the models by replay (checkpoint of another version)
        self.history: deque[tuple[float, float, dict[str, float | None], dict[str, float], bool]] = deque(
            maxlen=params.replay_windows
        )
        self.last_closed_event: float | None = None
        #: start of the first window valued (POSIX s): the age of an asset that never reported counts from it
        self.first_window_start: float | None = None
        #: records far ahead of the asset's own event time, held until the stream confirms the jump (C19)
        self.ahead: list[tuple[TelemetryEvent, float, Provenance | None]] = []
        #: event time (s) of the last plausible position: an older fix never rolls it back (C19)
        self.last_position_ts: float | None = None
        self.last_valuation: CollateralValuation | None = None
        #: last plausible (lat, lon) reported, degrees: never an implausible one such as (0, 0) (C18)
        self.last_position: tuple[float, float] | None = None
        #: per entity (vehicle): (report time s, lat, lon) of its last fix, to tell a stale repeat
        self.last_fix: dict[str, tuple[float, float, float]] = {}
        #: the feed's own poll cadence: rolling 90 % quantile of gaps between heartbeats within a
        #: window (longer gaps are silence, judged as such); the quantile, not the mean, so a
        #: collector whose cadence changes over the day is judged against its slower normal cadence
        self.cadence = stats.RollingQuantile(q=0.9, window_size=256)
        self.last_poll_ts: float | None = None
        #: starts of the recent closed windows that had a record: a peer's silence is judged against them
        self.heard: deque[float] = deque(maxlen=HEARD_WINDOWS)
        #: expected-service silence during which a peer (same collector) was heard: the feed's own darkness
        self.silent_alone_s = 0.0

    #: set by the :class:`AssetBook` that holds the asset (never checkpointed): whether every peer of
    #: the asset (another asset of the book in the same time zone, i.e. fed by the same collector) was
    #: silent in the window starting then; False without a peer
    peers_silent: Callable[[float], bool] | None = None

    #: memo of the per-record path (never checkpointed; None after a restore): ``(grid, the grid's cached
    #: local day, windows that day - 1)``, so :meth:`on_event` finds a record's window start without
    #: the grid's calls while the day is still the grid's (it then computes what ``grid.start`` would)
    _grid_memo: tuple[WindowGrid, tuple[float, float], int] | None = None
    #: ``(closed_until, grid.end(closed_until), the grid's cached day then, grid)``: the end is the same
    #: while ``closed_until`` and the cached day are (never checkpointed)
    _end_memo: tuple[float, float, tuple[float, float], WindowGrid] | None = None

    def heard_in(self, start: float) -> bool:
        """Whether the asset had a record in its window starting at ``start`` (POSIX s), closed or open."""
        w = self.windows.get(start)
        return (w is not None and w.records > 0) or start in self.heard

    def _new_valuer(self) -> AssetValuer:
        a = self.pledge.appraisal
        return AssetValuer(
            self.profile,
            a.value,
            a.baseline_activity,
            a.quality_baseline,
            self.pledge.asset_timezone,
            self.params.valuation,
            country=self.pledge.asset_country,
        )

    def cadence_s(self) -> float | None:
        """The feed's normal poll cadence in seconds (``None`` until two heartbeats were seen)."""
        q = self.cadence.get()
        return float(q) if q is not None and math.isfinite(q) else None

    def __getstate__(self) -> dict[str, Any]:
        """Checkpoint: the models travel as a nested pickle stamped with river's version and the feature schema."""
        state = self.__dict__.copy()
        # the models change once per window, the rest of the state per record: a checkpoint between two
        # window closes reuses the models' pickle (re-pickling river's trees was ~25 % of a loaded worker)
        blob = state.pop("_valuer_blob", None)
        if blob is None or blob[0] is not self.valuer or blob[1] != self.valuer_updates:
            blob = (self.valuer, self.valuer_updates, pickle.dumps(self.valuer, protocol=5))
            self._valuer_blob = blob
        state["valuer"] = blob[2]
        state.pop("peers_silent", None)  # the book's, set again by the book that restores it
        state.pop("_grid_memo", None)  # memos of the per-record path: rebuilt by the next record
        state.pop("_end_memo", None)
        state.pop("_seen_packed", None)
        state["seen"] = self._packed_seen()
        state["model_stamp"] = model_stamp(self.profile, self.params.valuation)
        return state

    def _packed_seen(self) -> Any:
        """:func:`_pack_seen` of ``seen``, extended by what was added since the last checkpoint.

        The core only adds to ``seen`` (pruning builds a new dict), so between two checkpoints of one
        asset only the ids added since are packed: a few dozen, not the ≈ 7,500 of six hours. Anything
        else (another dict, one that shrank or whose last packed id moved) packs it whole.
        """
        seen = self.seen
        cache = self.__dict__.get("_seen_packed")
        if cache is not None:
            of, n, last, packed = cache
            if of is seen and len(seen) >= n and isinstance(packed, tuple):
                if len(seen) == n and (n == 0 or next(reversed(seen)) == last):
                    return packed
                if n > 0 and next(itertools.islice(seen, n - 1, None)) == last:
                    tail = dict(itertools.islice(seen.items(), n, None))
                    more = _pack_seen(tail)
                    if isinstance(more, tuple):
                        ids, times, digests = packed
                        times, digests = array("d", times), array("Q", digests)  # a copy: a state handed out stays
                        times.extend(more[1])
                        digests.extend(more[2])
                        packed = (f"{ids}\n{more[0]}" if ids else more[0], times, digests)
                        self._seen_packed = (seen, len(seen), next(reversed(seen)), packed)
                        return packed
        packed = _pack_seen(seen)
        self._seen_packed = (seen, len(seen), next(reversed(seen)) if seen else None, packed)
        return packed

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore; models stamped by another river version or feature schema are rebuilt by replay (C12)."""
        stamp = state.pop("model_stamp", None)
        blob = state.pop("valuer")
        state["seen"] = _unpack_seen(state.get("seen", {}))  # a dict in checkpoints from before issue 18
        state.setdefault("last_position", None)  # checkpoints from before C18
        state.setdefault("seen_kept", 0)
        state.setdefault("valuer_updates", 0)
        state.setdefault("last_fix", {})  # checkpoints from before issue 15
        state.setdefault("cadence", stats.RollingQuantile(q=0.9, window_size=256))
        state.setdefault("last_poll_ts", None)
        state.setdefault("first_window_start", None)
        state.setdefault("heard", deque(maxlen=HEARD_WINDOWS))  # checkpoints from before the watch list's feed fact
        state.setdefault("silent_alone_s", 0.0)
        # held records with where they came from (checkpoints from before kept (record, time) pairs)
        state["ahead"] = [(e, t, *rest[:1]) if rest else (e, t, None) for e, t, *rest in state.get("ahead", [])]
        state.setdefault("last_position_ts", None)
        # trips by run (trip_id, start_date, start_time); checkpoints from before C23 keyed them by trip_id
        state["trips"] = {(k, "", "") if isinstance(k, str) else k: v for k, v in state.get("trips", {}).items()}
        if "grid" not in state:  # a checkpoint from before C17: windows on the UTC grid move to the local one
            grid = WindowGrid(state["params"].window_s, state["pledge"].asset_timezone)
            state["grid"] = grid
            if state.get("closed_until") is not None:
                state["closed_until"] = grid.start(state["closed_until"])
            moved: dict[float, WindowStats] = {}
            for w in state.get("windows", {}).values():
                start = grid.start(w.start)
                if start in moved:
                    continue  # two old windows meeting in one new one: the later is dropped, its records replayed never
                w.start, w.length_s = start, grid.end(start) - start
                moved[start] = w
            state["windows"] = moved
        self.__dict__.update(state)
        current = model_stamp(self.profile, self.params.valuation)
        if stamp == current:
            try:
                self.valuer = pickle.loads(blob)  # our own checkpoint, same versions
                return
            except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is rebuilt, never fatal
                log.warning("asset %s: checkpoint unreadable (%s); rebuilding models by replay", self.asset_id, exc)
        else:
            changed = sorted(k for k in current if not isinstance(stamp, dict) or stamp.get(k) != current[k])
            log.warning(
                "asset %s: checkpoint differs in %s from this build; rebuilding models by replaying %d windows",
                self.asset_id,
                ", ".join(changed),
                len(self.history),
            )
        self.valuer = self._new_valuer()
        for inputs in self.history:
            self.valuer.update(*inputs)

    def reappraise(self, pledge: CollateralPledged) -> None:
        """Take a fresh appraisal (e.g. at loan renewal): new V_0, baseline and Q_0, fresh models.

        Windows, de-duplication memory and the data-quality carry-overs are kept; the models start
        again from the new appraisal, as a new pledge's would, and the replay history restarts.
        """
        log.info(
            "asset %s: re-appraised at %s (¥%.0f -> ¥%.0f)",
            self.asset_id,
            pledge.effective_at.isoformat(),
            self.appraisal_value,
            pledge.appraisal.value,
        )
        self.pledge = pledge
        self.appraisal_value = pledge.appraisal.value
        self.valuer = self._new_valuer()
        self.history.clear()

    def add_loan(self, loan_id: str) -> None:
        """Record one more loan this asset is pledged to."""
        if loan_id not in self.loan_ids:
            self.loan_ids.append(loan_id)

    def remove_loan(self, loan_id: str) -> None:
        """Forget a loan the asset was released from."""
        if loan_id in self.loan_ids:
            self.loan_ids.remove(loan_id)

    def _window(self, start: float) -> WindowStats:
        w = self.windows.get(start)
        if w is None:
            w = self.windows[start] = WindowStats(start=start, length_s=self.grid.end(start) - start)
        return w

    def far_ahead(self, ts: float) -> bool:
        """Whether event time ``ts`` (POSIX s) is more than a window plus the lateness past the asset's newest (C19)."""
        p = self.params
        return self.max_ts is not None and ts > self.max_ts + p.window_s + p.allowed_lateness_s

    def screen(
        self, ev: TelemetryEvent, ts: float, source: Provenance | None = None
    ) -> tuple[Sequence[Held], Sequence[Held]]:
        """Hold a record far ahead of the asset's own event time until the stream confirms the jump (C19).

        A record more than one window plus the allowed lateness after the asset's newest event time
        would move its watermark and make every later record late. It is held, with any that follow
        it ahead, until either the stream confirms the new time — the profile's heartbeat at two
        distinct times ahead, held records spanning a window, or the hold full — and they are
        applied in arrival order; or a record comes back at the asset's own time, and the held ones
        were a clock fault: they are returned to be dead-lettered ``implausible_time``. Judged on the
        stream's own event time, so a replay or backtest (where the wall clock is no guide) is
        protected as the live stream is.

        A record to hold is first checked against the profile (:func:`check_record`), so that one the
        profile refuses is refused now, as the record in hand, and never held.

        Returns ``(to apply now, to reject)``, each a list of ``(record, event time s, source)``.

        Raises
        ------
        InputRejected
            ``unknown_metric`` / ``undefined_ratio`` for a record to hold that the profile refuses.
        """
        p = self.params
        if not self.far_ahead(ts):
            if not self.ahead:  # the per-record path: nothing held, nothing allocated but the triple
                return ((ev, ts, source),), ()
            rejected, self.ahead = self.ahead, []
            return ((ev, ts, source),), rejected
        check_record(self.profile, ev, self.pledge.service_area)  # raises: a refused record is never held
        self.ahead.append((ev, ts, source))
        times = [t for _, t, _ in self.ahead]
        beats = {t for e, t, _ in self.ahead if e.kind == self.profile.poll_kind}
        if len(beats) >= 2 or max(times) - min(times) >= p.window_s or len(self.ahead) >= p.hold_unknown:
            confirmed, self.ahead = self.ahead, []
            return confirmed, []
        return [], []

    def on_event(
        self,
        ev: TelemetryEvent,
        sensor: Sensor,
        topic: str = "pledge.telemetry",
        count: bool = True,
        ts: float | None = None,
        tally: dict[str, int] | None = None,
    ) -> list[Output]:
        """Apply one decoded record; return the valuations of any windows it closed.

        ``count=False`` leaves ``pledgewatch_events_total`` alone: a record held before its pledge
        was counted (``held``) when it arrived and is not counted again when it is replayed. ``ts`` is
        ``ev.observed_at`` in POSIX seconds when the caller has it already (computed otherwise).
        ``tally``: outcomes are counted into it (outcome -> n) instead of the sensor, for the caller to
        report once per record (:meth:`AssetBook.on_record`).

        Raises
        ------
        InputRejected
            ``unknown_metric`` / ``undefined_ratio`` from the profile checks.
        """
        if ts is None:
            ts = ev.observed_at.timestamp()
        kind = ev.kind
        entity = ev.entity_id
        metrics = ev.metrics
        attrs = ev.attributes
        digest = _content_digest(kind, ts, entity, metrics, attrs)
        event_id = ev.event_id
        prev = self.seen.get(event_id)
        grid = self.grid
        if prev is not None:
            # counted in the record's own window when open, else in the newest open one, else the next
            target = self.windows.get(grid.start(ts))
            if target is None and self.windows:
                target = self.windows[max(self.windows)]
            if target is not None:
                target.duplicates += 1
                target.contradictions += prev[1] != digest
            else:
                self.dup_carry += 1
                self.contradiction_carry += prev[1] != digest
            if count:
                if tally is None:
                    sensor.on_event(topic, "duplicate")
                else:
                    tally["duplicate"] = tally.get("duplicate", 0) + 1
            return []
        profile = self.profile
        # raises: the record never touches state
        complete, plausible, normative = check_flags(profile, ev, self.pledge.service_area)
        # grid.start(ts), its arithmetic done here while the grid's cached local day is the one memoised
        # (``_grid_memo``): the same numbers, and the grid's state left as the call would leave it
        length = grid.length_s
        if grid.local:
            day = grid._day
            memo = self._grid_memo
            if memo is not None and memo[1] is day and memo[0] is grid and day[0] <= ts < day[1]:
                k = math.floor((ts - day[0]) / length)
                start = day[0] + (k if k < memo[2] else memo[2]) * length
            else:
                start = grid.start(ts)
                day = grid._day
                self._grid_memo = (grid, day, grid._per_day(*day) - 1)
        else:
            start = window_start(ts, length)
        closed_until = self.closed_until
        if closed_until is not None and start < closed_until:
            self.late_carry += 1
            if count:
                if tally is None:
                    sensor.on_event(topic, "late")
                else:
                    tally["late"] = tally.get("late", 0) + 1
            return []
        self.seen[event_id] = (ts, digest)
        w = self.windows.get(start)
        if w is None:
            w = self._window(start)
        stale = False
        if entity is not None and "lat" in metrics and "lon" in metrics:
            # a fix re-sent unchanged (same vehicle, same position, same or older report time) is
            # stale: untimely in quality, never fresh evidence (issue 15)
            lat, lon = metrics["lat"], metrics["lon"]
            prev_fix = self.last_fix.get(entity)
            stale = prev_fix is not None and ts <= prev_fix[0] and prev_fix[1] == lat and prev_fix[2] == lon
            if prev_fix is None or ts >= prev_fix[0]:
                self.last_fix[entity] = (ts, lat, lon)
        elif kind == profile.poll_kind:
            last_poll = self.last_poll_ts
            if last_poll is not None and 0.0 < ts - last_poll <= self.params.window_s:
                self.cadence.update(ts - last_poll)
            if last_poll is None or ts > last_poll:
                self.last_poll_ts = ts
        w.add_checked(profile, ev, complete, plausible, normative, ts, stale)
        if plausible and "lat" in metrics and "lon" in metrics:
            # the last-known position only moves forward in event time: a late fix is history (C19)
            if self.last_position_ts is None or ts >= self.last_position_ts:
                self.last_position = (metrics["lat"], metrics["lon"])
                self.last_position_ts = ts
        trip_id = attrs.get("trip_id")
        if trip_id is not None and kind == "trip_update":
            # one run of a trip: GTFS-realtime's trip_id + start_date + start_time (the runs of a
            # frequency-based trip share a trip_id, case C23), the trip_id alone when a feed gives no start
            run = (trip_id, attrs.get("start_date", ""), attrs.get("start_time", ""))
            seq = metrics.get("stop_sequence", 0.0)
            last = self.trips.get(run)
            if last is not None and (ts < last[0] or seq < last[1]):
                w.contradictions += 1
            self.trips[run] = (max(ts, last[0]) if last else ts, max(seq, last[1]) if last else seq)
        if closed_until is None:
            self.closed_until = closed_until = start
        max_ts = self.max_ts
        if max_ts is None or ts > max_ts:
            self.max_ts = max_ts = ts
        if count:
            if tally is None:
                sensor.on_event(topic, "ok")
            else:
                tally["ok"] = tally.get("ok", 0) + 1
        horizon = max_ts - self.params.allowed_lateness_s
        # grid.end(closed_until), remembered with the cached day it was computed on (``_end_memo``): while
        # that day is still the grid's, the call would find it cached and return the same end
        memo_end = self._end_memo
        if memo_end is not None and memo_end[0] == closed_until and memo_end[2] is grid._day and memo_end[3] is grid:
            end = memo_end[1]
        else:
            end = grid.end(closed_until)
            self._end_memo = (closed_until, end, grid._day, grid)
        if horizon < end:
            return []  # no window ends by the watermark: the common case, decided without a call
        return self._close_until(horizon, sensor)

    def on_clock(self, stream_time: float, sensor: Sensor) -> list[Output]:
        """Close windows the stream clock shows silent (``stream_time`` in POSIX seconds)."""
        horizon = stream_time - self.params.grace_s
        if self.closed_until is None:
            # silence is counted from the first clock tick after registration, not before it
            self.closed_until = self.grid.start(stream_time)
            return []
        return self._close_until(horizon, sensor)

    def _close_until(self, horizon: float, sensor: Sensor) -> list[Output]:
        out: list[Output] = []
        length = self.params.window_s
        grid = self.grid
        assert self.closed_until is not None
        if horizon - self.closed_until > self.params.max_gap_windows * length:
            keep_from = grid.start(horizon - self.params.max_gap_windows * length)
            skipped = round((keep_from - self.closed_until) / length)
            # routine (a collector's night, a planned outage): feed-silent and the watch list report the
            # silence; the skipped windows would all be valued silent alike
            log.info(
                "asset %s silent for %d windows; skipping the oldest %d",
                self.asset_id,
                skipped + self.params.max_gap_windows,
                skipped,
            )
            self.closed_until = keep_from
            for s in [s for s in self.windows if s < self.closed_until]:
                del self.windows[s]
        while (end := grid.end(self.closed_until)) <= horizon:
            start = self.closed_until
            w = self.windows.pop(start, None) or WindowStats(start=start, length_s=end - start)
            out.append(self._valuate(w, sensor))
            self.closed_until = end
        if out:
            self._prune()
        return out

    def _prune(self) -> None:
        assert self.closed_until is not None
        cutoff = self.closed_until - self.params.dedup_horizon_s
        # rebuilt only once it doubled since the last rebuild: amortised O(1) a record, not O(horizon)
        if len(self.seen) > max(1024, 2 * self.seen_kept):
            self.seen = {k: v for k, v in self.seen.items() if v[0] >= cutoff}
            self.seen_kept = len(self.seen)
        trip_cut = self.closed_until - 4 * self.params.window_s
        if len(self.trips) > 256:
            self.trips = {k: v for k, v in self.trips.items() if v[0] >= trip_cut}

    def _valuate(self, w: WindowStats, sensor: Sensor) -> Output:
        w.late += self.late_carry
        w.duplicates += self.dup_carry
        w.contradictions += self.contradiction_carry
        self.late_carry = self.dup_carry = self.contradiction_carry = 0
        dims = w.dimensions(self.profile, self.cadence_s())
        expected = self.valuer.expected_activity(w.start)
        activity = w.measured_activity(self.profile)
        silent = w.records == 0
        inputs = (w.start, activity, dims, w.features(expected, activity), silent)
        self.history.append(inputs)
        r = self.valuer.update(*inputs)
        self.valuer_updates += 1
        end = w.end
        if not silent:
            self.heard.append(w.start)
            self.silent_alone_s = 0.0
        elif r.silent_in_service_s > 0.0 and r.service_expected:
            # the collector's own gap (every asset it feeds silent in this window, SOURCE.md of the
            # Madison polls) neither counts nor ends the feed's own silence; one peer heard makes it
            # this feed's darkness; without a peer nothing tells them apart and it counts
            if self.peers_silent is None or not self.peers_silent(w.start):
                self.silent_alone_s += self.params.window_s
        if w.max_ts is not None and (self.last_closed_event is None or w.max_ts > self.last_closed_event):
            self.last_closed_event = w.max_ts
        # age at the window's end, from records up to it (later ones may already be buffered); an
        # asset that never reported has been silent since its first window, not for one window
        if self.first_window_start is None:
            self.first_window_start = w.start
        last = self.last_closed_event
        age = end - last if last is not None else end - self.first_window_start
        val = CollateralValuation(
            asset_id=self.asset_id,
            asset_profile=self.profile_name,
            loan_ids=list(self.loan_ids),
            window_start=_ts(w.start),
            window_end=_ts(end),
            status=r.status,
            value=r.value,
            value_lower=r.value_lower,
            value_upper=r.value_upper,
            appraisal_value=self.appraisal_value,
            activity=activity,
            activity_expected=r.expected_activity,
            activity_index=r.activity_index,
            activity_index_lower=r.activity_index_lower,
            activity_index_upper=r.activity_index_upper,
            quality_score=r.quality_score,
            quality_baseline=r.quality_baseline,
            quality=r.quality,
            window_quality=r.window_quality,
            anomaly_score=r.anomaly_score,
            anomalous=r.anomalous,
            learned=r.learned,
            drift=r.drift,
            windows_seen=r.windows_seen,
            events_in_window=w.records,
            late_events=w.late,
            duplicates=w.duplicates,
            last_event_at=_ts(last) if last is not None else None,
            last_event_age_seconds=max(0.0, age),
            model_versions=MODEL_VERSIONS,
            attribution=r.attribution,
            attribution_since_pledge=r.attribution_since_pledge,
            service_expected=r.service_expected,
            silent_in_service_seconds=r.silent_in_service_s,
            silent_alone_seconds=min(self.silent_alone_s, r.silent_in_service_s),
            in_silence_grace=r.in_silence_grace,
            activity_forecast_lower=r.activity_forecast_band[0] if r.activity_forecast_band else None,
            activity_forecast_upper=r.activity_forecast_band[1] if r.activity_forecast_band else None,
            activity_shortfall=r.activity_shortfall,
            shortfall_ratio=r.shortfall_ratio,
        )
        sensor.on_valuation(val)
        self.last_valuation = val
        return Output("valuations", self.asset_id, val)


class AssetBook:
    """The asset side of one worker: pledged assets, their stream clock, held early telemetry.

    In the stream it serves the telemetry agent (records keyed by asset); in a backtest it is one
    half of :class:`Monitor`.

    Parameters
    ----------
    params
        :class:`CoreParams`.
    sensor
        Receives metrics hooks.
    """

    def __init__(self, params: CoreParams, sensor: Sensor) -> None:
        self.params = params
        self.sensor = sensor
        self.assets: dict[str, AssetMonitor] = {}
        #: telemetry of assets whose pledge has not arrived, with where each record came from
        self.held: dict[str, list[tuple[TelemetryEvent, Provenance | None]]] = {}
        self.clock: float | None = None
        self._next_tick: float | None = None
        #: True in a backtest: past ``hold_unknown`` held observations an unpledged asset's telemetry is
        #: refused ``unknown_asset`` (every loan event is in hand, so no pledge can still come). The stream
        #: sets it False: past the bound it keeps holding, pauses the partitions that deliver such records
        #: and dead-letters them only once the loan side shows no pledge is on its way
        #: (:meth:`held_count`, :meth:`expire_held`; streams.backpressure).
        self.hold_refuses = True

    def register(self, ev: CollateralPledged | CollateralReleased, tick: bool = True) -> list[Output]:
        """Register (or release) an asset for a loan; replays telemetry held for a new asset.

        ``tick`` as for :meth:`on_telemetry`: the stream passes False, so a released record never
        closes other assets' windows against its own event time (the group's clock does that).
        """
        asset = self.assets.get(ev.asset_id)
        if isinstance(ev, CollateralReleased):
            if asset is not None:
                asset.remove_loan(ev.loan_id)
            return []
        if asset is not None:
            asset.add_loan(ev.loan_id)
            if ev.appraisal != asset.pledge.appraisal:
                asset.reappraise(ev)  # one appraisal per data asset: the newest governs
            return []
        self.assets[ev.asset_id] = self._attach(AssetMonitor(ev, self.params))
        out: list[Output] = []
        for item in self.held.pop(ev.asset_id, []):
            held, source = _held(item)
            # counted once, as "held", on arrival: pledgewatch_events_total counts each record once,
            # by what happened to it when it came (docs/metrics.md)
            try:
                out.extend(self.on_telemetry(held, tick=tick, count=False, source=source))
            except InputRejected as exc:
                self.on_reject(exc)  # dead-lettered: counted invalid as well as held (docs/metrics.md)
                out.append(self._dead_letter(held, exc, source, held.observed_at.timestamp()))
        return out

    def _attach(self, asset: AssetMonitor) -> AssetMonitor:
        """Let ``asset`` ask whether its peers in this book were silent too (:meth:`peers_silent`)."""
        if asset.peers_silent is None:
            asset.peers_silent = functools.partial(self.peers_silent, asset)
        return asset

    def peers_silent(self, asset: AssetMonitor, start: float) -> bool:
        """Whether every peer of ``asset`` was silent in the window starting at ``start`` (False without a peer).

        A peer is another asset of this book in the same time zone that was valued before that window:
        a collector polls one operator's API, whose assets share the operator's zone (and so the window
        grid). A window that every peer spent silent too is the collector's (or the ingestion's) gap,
        not the asset's own feed going dark (the Madison collector stops for up to 8 h while buses
        run, ``SOURCE.md``). Judged over this book's assets: in a stream, those of this worker's
        partitions, so an asset alone on its worker has no peer and its every silence counts.

        >>> from monitor.sensors import NullSensor
        >>> book = AssetBook(CoreParams(), NullSensor())
        >>> book.peers_silent(None, 0.0)  # type: ignore[arg-type]  # no asset: the guard the example shows
        False
        """
        zone = asset.pledge.asset_timezone if asset is not None else None
        has_peer = False
        # one pass, no list: it stops at the first peer heard, the common case of one feed dark alone (it runs
        # for every silent window in service of every asset, at each window boundary)
        for a in self.assets.values():
            if a is asset or a.pledge.asset_timezone != zone or a.first_window_start is None:
                continue
            if a.first_window_start <= start:
                if a.heard_in(start):
                    return False
                has_peer = True
        return has_peer

    @staticmethod
    def _dead_letter(rec: TelemetryEvent, exc: InputRejected, source: Provenance | None, now: float) -> Output:
        """The dead-letter output of a record the core held and refused on release, naming where it came from."""
        src = source or Provenance()
        dl = dead_letter(
            rec.model_dump_json().encode(),
            exc,
            topic=src.topic,
            partition=src.partition,
            offset=src.offset,
            key=rec.asset_id,
            now=now,
            observation_index=src.batch_index,
        )
        return Output("dead-letter", rec.asset_id, dl)

    def on_telemetry(
        self, ev: TelemetryEvent, tick: bool = True, count: bool = True, source: Provenance | None = None
    ) -> list[Output]:
        """Apply one decoded telemetry event; advances the stream clock.

        Parameters
        ----------
        ev
            The decoded event.
        tick
            Close silent assets' windows against the new clock here (in-process). The stream
            passes False and ticks with its own watermark across partitions.
        count
            Count the record in the events metric (False for a held record's replay).
        source
            Where the record came from (Kafka partition, offset, batch index): kept while the record
            is held, so that a held record refused on release is dead-lettered under its own origin.

        Raises
        ------
        InputRejected
            ``unknown_asset`` when the hold buffer of an unpledged asset is full, or a profile
            rejection (``unknown_metric``, ``undefined_ratio``).
        """
        asset = self.assets.get(ev.asset_id)
        if asset is None:
            held = self.held.get(ev.asset_id, [])
            # the same Kafka record delivered again while held (re-read after a rebalance or a restart,
            # before the pledge came) is a duplicate delivery: held twice, it was counted twice. Known by
            # its origin, not its event id: another record with the same id is the feed's duplicate, for
            # the window to count when the pledge comes (as the backtest does). Checked before the hold's
            # bound, or a re-read of a full hold would be dead-lettered while its first copy is applied.
            # A partition's records come in offset order, so one past the last held from its partition is
            # new without a scan; a re-read (from the committed offset, lower) is looked for in the hold.
            if source is not None and source.offset is not None and held and _maybe_redelivered(held[-1], source):
                if any(_held(h)[1] == source for h in held):
                    self.sensor.on_event("pledge.telemetry", "duplicate")
                    return []
            if self.hold_refuses and self.held_count() >= self.params.hold_unknown:
                msg = f"asset_id: got {ev.asset_id!r}, expected an asset pledged by a collateral_pledged event"
                raise InputRejected("unknown_asset", msg, ev.asset_id)
            held = self.held.setdefault(ev.asset_id, held)
            held.append((ev, source))
            self.sensor.on_event("pledge.telemetry", "held")
            return []
        if asset.peers_silent is None:  # restored from a checkpoint outside :meth:`restore`
            self._attach(asset)
        apply, rejected = asset.screen(ev, ev.observed_at.timestamp(), source)
        out = self._reject_ahead(asset, rejected)
        for rec, ts, src in apply:
            if rec is ev:  # the record in hand: a refusal is the caller's to dead-letter
                out.extend(asset.on_event(rec, self.sensor, count=count, ts=ts))
            else:  # released from the hold (checked when held): a refusal is dead-lettered under its origin
                try:
                    out.extend(asset.on_event(rec, self.sensor, count=count, ts=ts))
                except InputRejected as exc:
                    self.on_reject(exc)
                    out.append(self._dead_letter(rec, exc, src, ts))
                    continue
            if self.clock is None or ts > self.clock:
                self.clock = ts
                if tick:
                    out.extend(self.tick(ts))
        return out

    def on_record(
        self,
        events: Sequence[TelemetryEvent],
        times: Sequence[float],
        sources: Sequence[Provenance | None],
        tick: bool = True,
        on_observation: Callable[[TelemetryEvent], None] | None = None,
    ) -> tuple[list[Output], list[tuple[int, InputRejected]], float | None]:
        """Apply the observations of one record in order, as :meth:`on_telemetry` one by one would (issue 18).

        ``times[i]`` is ``events[i].observed_at`` in POSIX seconds, ``sources[i]`` its origin. What is
        per record is done once: the asset's lookup (a record names one asset; none is registered in
        the middle of it), the events metric, counted once per outcome with the record's total. An
        observation that needs more than the common path (its asset unknown, records held ahead of the
        asset's time, or itself far ahead, C19) goes through :meth:`on_telemetry` unchanged; so a window
        closing in the middle of a record, a later observation then late, duplicates within the record
        all come out as one by one. ``on_observation`` is called with each before it is applied.

        Returns ``(outputs, refused, newest)``: the outputs in the order made, the observations the core
        refused as ``(position in events, error)`` (not accounted: the caller dead-letters them), and
        the newest event time among those taken (None if none was).
        """
        out: list[Output] = []
        refused: list[tuple[int, InputRejected]] = []
        newest: float | None = None
        if not events:
            return out, refused, newest
        sensor = self.sensor
        asset = self.assets.get(events[0].asset_id)
        if asset is not None and asset.peers_silent is None:
            self._attach(asset)
        tally: dict[str, int] = {}
        try:
            for i, ev in enumerate(events):
                if on_observation is not None:
                    on_observation(ev)
                ts = times[i]
                try:
                    if asset is None or ev.asset_id != asset.asset_id or asset.ahead or asset.far_ahead(ts):
                        out.extend(self.on_telemetry(ev, tick=tick, source=sources[i]))
                        newest = ts if newest is None or ts > newest else newest
                        continue
                    made = asset.on_event(ev, sensor, ts=ts, tally=tally)
                except InputRejected as exc:
                    refused.append((i, exc))
                    continue
                if made:
                    out.extend(made)
                if self.clock is None or ts > self.clock:
                    self.clock = ts
                    if tick:
                        out.extend(self.tick(ts))
                newest = ts if newest is None or ts > newest else newest
        finally:
            for outcome, n in tally.items():
                sensor.on_events("pledge.telemetry", outcome, n)
        return out, refused, newest

    def held_count(self) -> int:
        """Observations held, over all assets, for assets whose pledge has not arrived."""
        return sum(len(h) for h in self.held.values())

    def held_partitions(self) -> set[int]:
        """The Kafka partitions the held observations came from (those held without an origin omitted)."""
        origins = (_held(item)[1] for items in self.held.values() for item in items)
        return {o.partition for o in origins if o is not None and o.partition is not None}

    def expire_held(self, now: float) -> list[Output]:
        """Dead-letter every held observation ``unknown_asset``: no pledge of their assets can still come.

        The stream calls this once the loan side has caught up (every loan event routed, its pledge
        registrations read) and the assets are still unknown: the same verdict a backtest gives at the
        hold's bound (C03), reached on evidence instead of on a count. Each dead letter keeps the record
        and its origin (partition, offset, index in its batch) to re-produce once a pledge is registered.

        Parameters
        ----------
        now
            Wall clock, POSIX seconds (the dead letters' time).

        Returns
        -------
        list[Output]
            One ``dead-letter`` output per held observation, in the order they were held per asset.

        Examples
        --------
        >>> from monitor.sensors import NullSensor
        >>> import datetime as dt
        >>> book = AssetBook(CoreParams(), NullSensor())
        >>> ev = TelemetryEvent(event_id="e1", asset_id="A9", kind="heartbeat",
        ...                     observed_at=dt.datetime(2024, 5, 1, tzinfo=dt.UTC), metrics={})
        >>> book.on_telemetry(ev, source=Provenance("pledge.telemetry", 2, 40)), book.held_count()
        ([], 1)
        >>> [(o.topic, o.message.reason, o.message.partition, o.message.offset) for o in book.expire_held(1.8e9)]
        [('dead-letter', 'unknown_asset', 2, 40)]
        >>> book.held_count()
        0
        """
        out: list[Output] = []
        held, self.held = self.held, {}
        for asset_id, items in held.items():
            for item in items:
                rec, source = _held(item)
                msg = (
                    f"asset_id: got {asset_id!r}, expected an asset pledged by a collateral_pledged event "
                    "(none was on its way: the loan side had read every loan event sent before the hold filled)"
                )
                exc = InputRejected("unknown_asset", msg, asset_id)
                self.on_reject(exc)
                out.append(self._dead_letter(rec, exc, source, now))
        return out

    def _reject_ahead(self, asset: AssetMonitor, rejected: Sequence[Held]) -> list[Output]:
        """Dead-letter held records the stream did not confirm (``implausible_time``, C19)."""
        out: list[Output] = []
        if not rejected:
            return out
        base = asset.max_ts if asset.max_ts is not None else 0.0
        for rec, ts, src in rejected:
            msg = (
                f"observed_at: got {rec.observed_at.isoformat()}, {ts - base:.0f} s ahead of asset "
                f"{asset.asset_id}'s event time ({_ts(base).isoformat()}) while its later records continue "
                "at that time; expected an event time the stream confirms"
            )
            exc = InputRejected("implausible_time", msg, asset.asset_id)
            self.on_reject(exc)
            out.append(self._dead_letter(rec, exc, src, base))
        return out

    def restore(self, asset: AssetMonitor) -> None:
        """Put an asset's state restored from the changelog (restart, rebalance) into the book.

        The next :meth:`tick` checks every asset again even before the next window boundary
        (:meth:`recheck`): the restored asset's windows the clock has already passed must close then,
        not up to ``window_s`` of stream time later (fault c: a frozen feed taken over in a rebalance
        kept its passed windows open while the idle advance crawled to the next boundary).
        """
        self.assets[asset.asset_id] = self._attach(asset)
        if asset.last_valuation is not None:  # its gauges at once, not a window later (the time of it unknown)
            self.sensor.on_valuation(asset.last_valuation, fresh=False)
        self.recheck()

    def recheck(self) -> None:
        """Make the next :meth:`tick` check every asset, whatever the clock (the assets it owns changed).

        :meth:`tick` checks the assets once per window boundary, which is only right while the set of
        assets it checks stays the same; a restored asset, or a partition newly assigned, changes it.

        >>> from monitor.sensors import NullSensor
        >>> m = AssetBook(CoreParams(), NullSensor())
        >>> m.tick(1_463_700_000.0), m.tick_due(1_463_700_001.0)
        ([], False)
        >>> m.recheck(); m.tick_due(1_463_700_001.0)
        True
        """
        self._next_tick = None

    @property
    def next_tick(self) -> float | None:
        """The stream time (POSIX s) from which :meth:`tick` checks the assets again; None: at any time.

        :meth:`tick_due` is true exactly from here on: a driver that knows the stream clock cannot reach
        it need not read the clock at all.

        >>> from monitor.sensors import NullSensor
        >>> m = AssetBook(CoreParams(), NullSensor())
        >>> m.next_tick is None, m.tick(1_463_700_000.0), m.next_tick - 1_463_700_000.0 <= m.params.window_s
        (True, [], True)
        """
        return self._next_tick

    def tick_due(self, stream_time: float) -> bool:
        """Whether :meth:`tick` at ``stream_time`` (POSIX s) would check the assets: a window boundary passed.

        >>> from monitor.sensors import NullSensor
        >>> m = AssetBook(CoreParams(), NullSensor())
        >>> m.tick_due(1_463_700_000.0), m.tick(1_463_700_000.0), m.tick_due(1_463_700_001.0)
        (True, [], False)
        """
        return self._next_tick is None or stream_time >= self._next_tick

    def tick(self, stream_time: float, owned: Callable[[str], bool] | None = None) -> list[Output]:
        """Advance the stream clock; silent assets' windows close, checked once per window boundary.

        ``owned`` (the stream's): whether this worker still holds an asset's partition. An asset whose
        partition moved to another worker in a rebalance is that worker's to close; closing its windows
        here on this worker's clock would value it silent while its records wait there (case C05).
        """
        if self._next_tick is not None and stream_time < self._next_tick:
            return []
        self._next_tick = window_start(stream_time, self.params.window_s) + self.params.window_s
        out: list[Output] = []
        for asset in self.assets.values():
            if owned is None or owned(asset.asset_id):
                out.extend(self._attach(asset).on_clock(stream_time, self.sensor))
        return out

    def on_reject(self, exc: InputRejected) -> None:
        """Count a rejected telemetry record (dead-lettered; its content never reaches any state)."""
        self.sensor.on_dead_letter(exc.reason)
        self.sensor.on_event("pledge.telemetry", "invalid")

    def flush(self, until: float) -> list[Output]:
        """Close every window that ends by ``until`` (end of a backtest), as if the clock reached it.

        Records still held ahead of their asset's time (C19) were never confirmed: dead-lettered.
        """
        out: list[Output] = []
        for asset in self.assets.values():
            if asset.ahead:
                held, asset.ahead = asset.ahead, []
                out.extend(self._reject_ahead(asset, held))
        self._next_tick = None
        return out + self.tick(until + self.params.grace_s)
