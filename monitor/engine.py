"""The core: per-asset revaluation and per-loan risk, as plain objects (no Kafka).

:class:`AssetMonitor` holds one asset's windows, de-duplication horizon and
valuation models; :class:`LoanMonitor` holds one loan's contract, balances,
latest asset values, rule lifecycle and margin calls. ``streams/`` keeps them
in faust tables keyed by asset and loan; :class:`Monitor` wires them in-process
for ``pledgewatch backtest`` with the same routing, so a backtest is the
production code path.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import math
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from river import stats

from monitor.errors import InputRejected
from monitor.holidays import cure_deadline
from monitor.profiles import get_profile
from monitor.schemas import (
    DIMENSIONS,
    Alert,
    Appraisal,
    AssetValue,
    BalanceChanged,
    CollateralPledged,
    CollateralReleased,
    CollateralValuation,
    DeadLetter,
    InterestAccrued,
    LinesChanged,
    LoanClosed,
    LoanEventAdapter,
    LoanOpened,
    LoanRiskSnapshot,
    MarginCall,
    Repayment,
    TelemetryEvent,
    Thresholds,
)
from monitor.sensors import NullSensor, Sensor
from monitor.valuation import MODEL_VERSIONS, AssetValuer, ValuationParams, model_stamp
from monitor.windows import WindowGrid, WindowStats, check_record, window_start
from rules.lifecycle import RuleState, Transition, alert_id, evaluate_subject
from rules.rulebook import Rulebook, render_summary

__all__ = [
    "AssetBook",
    "AssetMonitor",
    "CoreParams",
    "LoanBook",
    "LoanMonitor",
    "Monitor",
    "Output",
    "dead_letter",
    "decode_loan_event",
    "decode_telemetry",
    "required_top_up",
]

log = logging.getLogger(__name__)

UTC = dt.UTC
EARLIEST = dt.datetime(2015, 1, 1, tzinfo=UTC).timestamp()

#: pydantic error type -> reason code, in priority order: when one record has several errors, the
#: first kind listed here names it (a misspelled required field is an ``extra_field``, not ``missing``).
_PYDANTIC_REASONS = {
    "json_invalid": "undecodable",
    "model_type": "not_an_object",
    "model_attributes_type": "not_an_object",
    "dict_type": "not_an_object",
    "extra_forbidden": "extra_field",
    "finite_number": "non_finite",
    "timezone_aware": "naive_time",
}


@dataclass(frozen=True, slots=True)
class CoreParams:
    """Stream parameters of the core (``docs/valuation.md``); times in seconds.

    Attributes
    ----------
    window_s
        Tumbling window length (900 s in the demo; 3600 s in production).
    allowed_lateness_s
        How far behind an asset's newest event time a record may be and still land in its window.
    silence_grace_s
        How long past a window's end the stream clock must be before a silent asset's window
        closes empty (defaults to one window plus the lateness).
    dedup_horizon_s
        How long an event id is remembered for de-duplication (event time).
    max_clock_skew_s
        Records timed further than this in the future (against the injected wall clock) are rejected.
    earliest_event_time_s
        Records and loan events timed before this (POSIX seconds; 2015-01-01 UTC by default, a
        replay of older history such as the CTA series sets it earlier) are rejected as implausible.
    max_gap_windows
        At most this many empty windows are produced for one silence (one week of 15-min windows).
    replay_windows
        Window inputs kept per asset to rebuild its models by replay when a checkpoint cannot be used.
    hold_unknown
        Telemetry records held, in total over all assets, for assets whose pledge has not arrived
        yet; beyond that they are dead-lettered as ``unknown_asset``.
    """

    window_s: float = 900.0
    allowed_lateness_s: float = 600.0
    silence_grace_s: float | None = None
    dedup_horizon_s: float = 6 * 3600.0
    max_clock_skew_s: float = 300.0
    earliest_event_time_s: float = EARLIEST
    max_gap_windows: int = 672
    hold_unknown: int = 10_000
    replay_windows: int = 672
    valuation: ValuationParams = field(default_factory=ValuationParams)

    @property
    def grace_s(self) -> float:
        """Silence grace in seconds."""
        return self.silence_grace_s if self.silence_grace_s is not None else self.window_s + self.allowed_lateness_s


@dataclass(frozen=True, slots=True)
class Output:
    """One message the core wants published: logical topic, key and message."""

    topic: str
    key: str
    message: BaseModel


def _digest(text: str) -> int:
    """Stable 64-bit content digest (Python's ``hash`` is salted per process, so unusable after restore)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _content_digest(kind: str, ts: float, entity: str | None, metrics: dict[str, float], attrs: dict[str, str]) -> int:
    """Stable 64-bit digest of a telemetry record's content (event id and receive time left out).

    orjson with sorted keys, not ``repr`` of sorted items: ≈1 µs instead of ≈3 µs a record.
    """
    blob = orjson.dumps((kind, ts, entity, metrics, attrs), option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def _event_digest(ev: BaseModel) -> int:
    return _digest(ev.model_dump_json())


def _ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, UTC)


# --- decoding -----------------------------------------------------------------------------
def _peek_asset(raw: bytes | None) -> str | None:
    try:
        obj = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    val = obj.get("asset_id") if isinstance(obj, dict) else None
    return val if isinstance(val, str) else None


def _rejection(exc: ValidationError, raw: bytes | None) -> InputRejected:
    errors = exc.errors()
    rank = {t: i for i, t in enumerate(_PYDANTIC_REASONS)}
    err = min(errors, key=lambda e: rank.get(e["type"], len(rank)))
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<record>"
    reason = _PYDANTIC_REASONS.get(err["type"], "schema_violation")
    got = err.get("input")
    got_s = repr(got)[:80] if not isinstance(got, dict) else "an object"
    expected = str(err["msg"]).removeprefix("Value error, ")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return InputRejected(reason, f"{loc}: got {got_s}, expected {expected}{more}", _peek_asset(raw))


def _check_time(
    field: str, t: dt.datetime | None, now: float, max_skew_s: float, asset_id: str | None, earliest: float
) -> None:
    if t is None:
        return
    ts = t.timestamp()
    if ts < earliest or ts > now + max_skew_s:
        msg = (
            f"{field}: got {t.isoformat()}, expected after {_ts(earliest).date().isoformat()} and at most "
            f"{max_skew_s:.0f} s ahead of the clock ({_ts(now).isoformat()})"
        )
        raise InputRejected("implausible_time", msg, asset_id)


#: Largest record decoded, bytes (Kafka's default ``message.max.bytes`` is about 1 MiB).
MAX_BYTES = 1_048_576


def _check_size(raw: bytes, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        msg = f"record: got {len(raw):,} bytes, expected at most {max_bytes:,} (max_message_bytes)"
        raise InputRejected("oversized", msg)


def decode_telemetry(
    raw: bytes | None, now: float, max_skew_s: float = 300.0, earliest: float = EARLIEST, max_bytes: int = MAX_BYTES
) -> TelemetryEvent:
    """Decode one telemetry record strictly.

    Parameters
    ----------
    raw
        The record value (UTF-8 JSON) or ``None`` for a tombstone.
    now
        Wall-clock time, POSIX seconds (injected; the core never reads the clock).
    max_skew_s
        Allowed clock skew into the future, seconds.
    earliest
        Records observed before this (POSIX seconds; 2015-01-01 by default) are implausible.
    max_bytes
        Larger records are rejected as ``oversized`` before parsing (bounded work per record).

    Returns
    -------
    TelemetryEvent

    Raises
    ------
    InputRejected
        With a reason code of :data:`monitor.schemas.REASON_CODES` (tombstone, undecodable,
        extra_field, non_finite, naive_time, implausible_time, schema_violation...).
    """
    if raw is None:
        raise InputRejected("tombstone", "record value is null (tombstone), expected a TelemetryEvent")
    _check_size(raw, max_bytes)
    try:
        ev = TelemetryEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise _rejection(exc, raw) from None
    _check_time("observed_at", ev.observed_at, now, max_skew_s, ev.asset_id, earliest)
    _check_time("received_at", ev.received_at, now, max_skew_s, ev.asset_id, earliest)
    return ev


def decode_loan_event(
    raw: bytes | None,
    now: float | None = None,
    max_skew_s: float = 300.0,
    earliest: float = EARLIEST,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """Decode one loan event (tagged union on ``type``).

    Parameters
    ----------
    raw
        The record value (UTF-8 JSON) or ``None`` for a tombstone.
    now
        Wall-clock time, POSIX seconds; when given, ``effective_at`` must lie after ``earliest`` and at
        most ``max_skew_s`` ahead of it (a loan event from the future would move the loan's clock).
    max_skew_s
        Allowed clock skew into the future, seconds.
    earliest
        Earliest plausible ``effective_at``, POSIX seconds (2015-01-01 by default).
    max_bytes
        Larger records are rejected as ``oversized`` before parsing.

    Raises
    ------
    InputRejected
        Reason ``tombstone``, ``oversized``, ``undecodable``, ``not_an_object``, ``extra_field``, ``schema_violation``,
        ``implausible_time``...
    """
    if raw is None:
        raise InputRejected("tombstone", "record value is null (tombstone), expected a LoanEvent")
    _check_size(raw, max_bytes)
    try:
        ev = LoanEventAdapter.validate_json(raw)
    except ValidationError as exc:
        raise _rejection(exc, None) from None
    if now is not None:
        _check_time("effective_at", ev.effective_at, now, max_skew_s, None, earliest)
    return ev


def dead_letter(
    raw: bytes | None,
    exc: InputRejected,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: str | None,
    now: float,
) -> DeadLetter:
    """Build the dead-letter record of a rejected input (original bytes kept, base64)."""
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        reason=exc.reason,
        message=exc.message[:500],
        asset_id=exc.asset_id,
        original_b64=base64.b64encode(raw or b"").decode(),
        received_at=_ts(now),
    )


def line_status(coverage: float | None, lines: Thresholds) -> str:
    """Which line a coverage ratio is below: ``ok``, ``warning``, ``margin_call`` or ``close_out``.

    Examples
    --------
    >>> line_status(1.25, Thresholds(warning=1.3, margin_call=1.2, close_out=1.1))
    'warning'
    """
    if coverage is None or coverage >= lines.warning:
        return "ok"
    if coverage >= lines.margin_call:
        return "warning"
    if coverage >= lines.close_out:
        return "margin_call"
    return "close_out"


def required_top_up(warning: float, outstanding: float, collateral_value: float) -> tuple[float, float]:
    """Top-up that restores the warning line (DESIGN, "Loan level").

    Returns
    -------
    tuple
        ``(extra_collateral, repayment)`` in yuan: ``max(0, warning × outstanding − collateral)``
        of extra collateral, or ``max(0, outstanding − collateral / warning)`` of repayment.

    Examples
    --------
    >>> extra, repay = required_top_up(1.3, 7_000_000, 8_400_000)
    >>> round(extra), round(repay)
    (700000, 538462)
    """
    return max(0.0, warning * outstanding - collateral_value), max(0.0, outstanding - collateral_value / warning)


# --- assets -------------------------------------------------------------------------------
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
        self.trips: dict[str, tuple[float, float]] = {}
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
        self.ahead: list[tuple[TelemetryEvent, float]] = []
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
        state["model_stamp"] = model_stamp(self.profile, self.params.valuation)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore; models stamped by another river version or feature schema are rebuilt by replay (C12)."""
        stamp = state.pop("model_stamp", None)
        blob = state.pop("valuer")
        state.setdefault("last_position", None)  # checkpoints from before C18
        state.setdefault("seen_kept", 0)
        state.setdefault("valuer_updates", 0)
        state.setdefault("last_fix", {})  # checkpoints from before issue 15
        state.setdefault("cadence", stats.RollingQuantile(q=0.9, window_size=256))
        state.setdefault("last_poll_ts", None)
        state.setdefault("first_window_start", None)
        state.setdefault("ahead", [])
        state.setdefault("last_position_ts", None)
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

    def screen(
        self, ev: TelemetryEvent, ts: float
    ) -> tuple[Sequence[tuple[TelemetryEvent, float]], Sequence[tuple[TelemetryEvent, float]]]:
        """Hold a record far ahead of the asset's own event time until the stream confirms the jump (C19).

        A record more than one window plus the allowed lateness after the asset's newest event time
        would move its watermark and make every later record late. It is held, with any that follow
        it ahead, until either the stream confirms the new time — the profile's heartbeat at two
        distinct times ahead, held records spanning a window, or the hold full — and they are
        applied in arrival order; or a record comes back at the asset's own time, and the held ones
        were a clock fault: they are returned to be dead-lettered ``implausible_time``. Judged on the
        stream's own event time, so a replay or backtest (where the wall clock is no guide) is
        protected as the live stream is.

        Returns ``(to apply now, to reject)``, each a list of ``(record, event time s)``.
        """
        p = self.params
        ahead = self.max_ts is not None and ts > self.max_ts + p.window_s + p.allowed_lateness_s
        if not ahead:
            if not self.ahead:  # the per-record path: nothing held, nothing allocated but the pair
                return ((ev, ts),), ()
            rejected, self.ahead = self.ahead, []
            return ((ev, ts),), rejected
        self.ahead.append((ev, ts))
        times = [t for _, t in self.ahead]
        beats = {t for e, t in self.ahead if e.kind == self.profile.poll_kind}
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
    ) -> list[Output]:
        """Apply one decoded record; return the valuations of any windows it closed.

        ``count=False`` leaves ``pledgewatch_events_total`` alone: a record held before its pledge
        was counted (``held``) when it arrived and is not counted again when it is replayed. ``ts`` is
        ``ev.observed_at`` in POSIX seconds when the caller has it already (computed otherwise).

        Raises
        ------
        InputRejected
            ``unknown_metric`` / ``undefined_ratio`` from the profile checks.
        """
        if ts is None:
            ts = ev.observed_at.timestamp()
        digest = _content_digest(ev.kind, ts, ev.entity_id, ev.metrics, ev.attributes)
        prev = self.seen.get(ev.event_id)
        if prev is not None:
            # counted in the record's own window when open, else in the newest open one, else the next
            target = self.windows.get(self.grid.start(ts))
            if target is None and self.windows:
                target = self.windows[max(self.windows)]
            if target is not None:
                target.duplicates += 1
                target.contradictions += prev[1] != digest
            else:
                self.dup_carry += 1
                self.contradiction_carry += prev[1] != digest
            if count:
                sensor.on_event(topic, "duplicate")
            return []
        check = check_record(self.profile, ev, self.pledge.service_area)  # raises: the record never touches state
        start = self.grid.start(ts)
        if self.closed_until is not None and start < self.closed_until:
            self.late_carry += 1
            if count:
                sensor.on_event(topic, "late")
            return []
        self.seen[ev.event_id] = (ts, digest)
        w = self._window(start)
        metrics = ev.metrics
        stale = False
        if ev.entity_id is not None and "lat" in metrics and "lon" in metrics:
            # a fix re-sent unchanged (same vehicle, same position, same or older report time) is
            # stale: untimely in quality, never fresh evidence (issue 15)
            lat, lon = metrics["lat"], metrics["lon"]
            prev_fix = self.last_fix.get(ev.entity_id)
            stale = prev_fix is not None and ts <= prev_fix[0] and prev_fix[1] == lat and prev_fix[2] == lon
            if prev_fix is None or ts >= prev_fix[0]:
                self.last_fix[ev.entity_id] = (ts, lat, lon)
        elif ev.kind == self.profile.poll_kind:
            if self.last_poll_ts is not None and 0.0 < ts - self.last_poll_ts <= self.params.window_s:
                self.cadence.update(ts - self.last_poll_ts)
            if self.last_poll_ts is None or ts > self.last_poll_ts:
                self.last_poll_ts = ts
        w.add(self.profile, ev, check, ts, stale)
        if check.plausible and "lat" in metrics and "lon" in metrics:
            # the last-known position only moves forward in event time: a late fix is history (C19)
            if self.last_position_ts is None or ts >= self.last_position_ts:
                self.last_position = (metrics["lat"], metrics["lon"])
                self.last_position_ts = ts
        trip = ev.attributes.get("trip_id")
        if trip is not None and ev.kind == "trip_update":
            seq = ev.metrics.get("stop_sequence", 0.0)
            last = self.trips.get(trip)
            if last is not None and (ts < last[0] or seq < last[1]):
                w.contradictions += 1
            self.trips[trip] = (max(ts, last[0]) if last else ts, max(seq, last[1]) if last else seq)
        if self.closed_until is None:
            self.closed_until = start
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        if count:
            sensor.on_event(topic, "ok")
        horizon = self.max_ts - self.params.allowed_lateness_s
        if horizon < self.grid.end(self.closed_until):
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
            log.warning(
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
        inputs = (w.start, activity, dims, w.features(expected, activity), w.records == 0)
        self.history.append(inputs)
        r = self.valuer.update(*inputs)
        self.valuer_updates += 1
        end = w.end
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
            status=r.status,  # type: ignore[arg-type]
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
            drift=r.drift,  # type: ignore[arg-type]
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
            in_silence_grace=r.in_silence_grace,
            activity_forecast_lower=r.activity_forecast_band[0] if r.activity_forecast_band else None,
            activity_forecast_upper=r.activity_forecast_band[1] if r.activity_forecast_band else None,
            activity_shortfall=r.activity_shortfall,
            shortfall_ratio=r.shortfall_ratio,
        )
        sensor.on_valuation(val)
        self.last_valuation = val
        return Output("valuations", self.asset_id, val)


# --- loans --------------------------------------------------------------------------------
@dataclass(slots=True)
class _AssetSlot:
    asset_id: str
    appraisal: Appraisal
    valuation: CollateralValuation | None = None

    @property
    def appraisal_value(self) -> float:
        return self.appraisal.value


class LoanMonitor:
    """One loan: contract, balances, latest asset valuations, rule lifecycle and margin calls.

    Parameters
    ----------
    opened
        The :class:`LoanOpened` event.
    """

    def __init__(self, opened: LoanOpened) -> None:
        self.loan_id = opened.loan_id
        self.opened = opened
        self.thresholds = opened.thresholds
        self.principal_outstanding = opened.outstanding
        self.accrued_interest = 0.0
        self.assets: dict[str, _AssetSlot] = {}
        self.rule_states: dict[str, RuleState] = {}
        self.margin_calls: dict[str, MarginCall] = {}
        self.closed = False
        self.as_of = opened.effective_at.timestamp()
        self.seen_events: dict[str, int] = {opened.event_id: _event_digest(opened)}
        #: alert id -> the alert, while it fires (the query API lists them)
        self.active_alerts: dict[str, Alert] = {}
        #: valuations received but not yet applied: held until every pledged asset is valued
        #: for their window (the loan's watermark), so the result does not depend on read order
        self.pending: dict[tuple[str, dt.datetime], CollateralValuation] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("pending", {})  # loan states pickled before the loan watermark existed
        self.__dict__.update(state)

    @property
    def outstanding(self) -> float:
        """Principal outstanding plus accrued interest, yuan."""
        return self.principal_outstanding + self.accrued_interest

    def collateral(self) -> tuple[float, float]:
        """``(value, lower bound)`` of the pledged collateral in yuan (appraisal until first valuation)."""
        v = lo = 0.0
        for slot in self.assets.values():
            if slot.valuation is None:
                v += slot.appraisal_value
                lo += slot.appraisal_value
            else:
                v += slot.valuation.value
                lo += slot.valuation.value_lower
        return v, lo

    def calibrating(self) -> bool:
        """True while no asset is pledged yet or any pledged asset has no active valuation yet."""
        return not self.assets or any(
            s.valuation is None or s.valuation.status == "calibrating" for s in self.assets.values()
        )

    def snapshot(self) -> LoanRiskSnapshot:
        """The loan's risk position now (coverage, LTV, required top-up)."""
        value, lower = self.collateral()
        out = self.outstanding
        cov = value / out if out > 0 else None
        t = self.thresholds
        if self.closed:
            status = "closed"
        elif self.calibrating():
            status = "calibrating"
        else:
            status = line_status(cov, t)
        # against the 90 % lower bound: the margin call is cured when the lower bound is back above
        # the warning line (rules/rulebooks/default.yaml), so that is what the top-up must restore
        top_c, top_r = required_top_up(t.warning, out, lower)
        return LoanRiskSnapshot(
            loan_id=self.loan_id,
            as_of=_ts(self.as_of),
            status=status,  # type: ignore[arg-type]
            outstanding=out,
            collateral_value=value,
            collateral_value_lower=lower,
            coverage_ratio=cov,
            ltv=(1.0 / cov) if cov else None,
            thresholds=t,
            required_top_up_collateral=top_c,
            required_repayment=top_r,
            assets=[
                AssetValue(
                    asset_id=s.asset_id,
                    value=s.valuation.value if s.valuation else s.appraisal_value,
                    value_lower=s.valuation.value_lower if s.valuation else s.appraisal_value,
                    status=s.valuation.status if s.valuation else "pending",
                )
                for s in self.assets.values()
            ],
        )

    def _loan_facts(self, snap: LoanRiskSnapshot) -> dict[str, Any]:
        t = snap.thresholds
        cov = snap.coverage_ratio if snap.coverage_ratio is not None else float("inf")
        out = snap.outstanding
        return {
            "id": self.loan_id,
            "outstanding": out,
            "currency": "CNY",
            "thresholds": {"warning": t.warning, "margin_call": t.margin_call, "close_out": t.close_out},
            "collateral_value": snap.collateral_value,
            "collateral_value_lower": snap.collateral_value_lower,
            "coverage_ratio": cov,
            "coverage_ratio_lower": snap.collateral_value_lower / out if out > 0 else float("inf"),
            "ltv": snap.ltv if snap.ltv is not None else 0.0,
            "days_past_due": 0.0,
            "required_top_up_collateral": snap.required_top_up_collateral,
            "required_repayment": snap.required_repayment,
            "calibrating": snap.status == "calibrating",
            "in_silence_grace": any(
                sl.valuation is not None and sl.valuation.in_silence_grace for sl in self.assets.values()
            ),
        }

    @staticmethod
    def _asset_facts(v: CollateralValuation) -> dict[str, Any]:
        return {
            "id": v.asset_id,
            "profile": v.asset_profile,
            "status": v.status,
            "value": v.value,
            "value_lower": v.value_lower,
            "value_upper": v.value_upper,
            "appraisal_value": v.appraisal_value,
            "activity": v.activity,
            "activity_expected": v.activity_expected,
            "activity_index": v.activity_index,
            "quality_score": v.quality_score,
            "quality": {k: (v.quality.get(k) if v.quality.get(k) is not None else 1.0) for k in DIMENSIONS},
            "anomaly_score": v.anomaly_score,
            "anomalous": v.anomalous,
            "drift": v.drift,
            "last_event_age_seconds": v.last_event_age_seconds,
            "silent_in_service_seconds": v.silent_in_service_seconds,
            "in_silence_grace": v.in_silence_grace,
            "activity_shortfall": v.activity_shortfall,
            "shortfall_ratio": v.shortfall_ratio if v.shortfall_ratio is not None else 1.0,
            "service_expected": v.service_expected,
            "events_in_window": float(v.events_in_window),
            "windows_seen": float(v.windows_seen),
        }

    def why(self) -> str:
        """One line naming the asset that moved the collateral most and why (index vs quality)."""
        worst: tuple[float, str] | None = None
        for s in self.assets.values():
            v = s.valuation
            if v is None:
                continue
            change = v.value / v.appraisal_value - 1.0
            qf = min(v.quality_score / v.quality_baseline, 1.0) if v.quality_baseline > 0 else 1.0
            text = (
                f"{v.asset_id} {change:+.0%} vs appraisal: activity index {v.activity_index:.2f}, "
                f"quality {v.quality_score:.2f}/{v.quality_baseline:.2f} (×{qf:.2f})"
            )
            acc = v.quality.get("accessibility")
            if acc is not None and acc < 0.8:
                text += f", feed reachable {acc:.0%}"
            drivers = sorted((x, k) for k, x in v.attribution_since_pledge.items() if abs(x) >= 1.0)[:3]
            if drivers:
                text += "; since pledge " + _drivers_text(drivers)
            if worst is None or change < worst[0]:
                worst = (change, text)
        return worst[1] if worst else "no valuation yet"

    # --- inputs ---------------------------------------------------------------------------
    def on_loan_event(self, ev: Any, rulebook: Rulebook | None, sensor: Sensor) -> list[Output]:
        """Apply one loan event (idempotent by event id) and re-evaluate the loan's rules.

        Raises
        ------
        InputRejected
            ``conflicting_duplicate`` when the event id was seen with different content.
        """
        digest = _event_digest(ev)
        seen = self.seen_events.get(ev.event_id)
        if seen is not None:
            if seen != digest:
                msg = f"event_id: {ev.event_id!r} was already applied with different content; expected a new id"
                raise InputRejected("conflicting_duplicate", msg)
            sensor.on_event("pledge.loan-book", "duplicate")
            return []
        self.seen_events[ev.event_id] = digest
        sensor.on_event("pledge.loan-book", "ok")
        self.as_of = max(self.as_of, ev.effective_at.timestamp())
        out: list[Output] = []
        if isinstance(ev, CollateralPledged):
            slot = self.assets.get(ev.asset_id)
            if slot is None or slot.appraisal != ev.appraisal:
                # a new pledge, or a re-appraisal (renewal): the appraisal stands until the next valuation
                self.assets[ev.asset_id] = _AssetSlot(ev.asset_id, ev.appraisal)
            out.append(Output("asset-pledges", ev.asset_id, ev))
        elif isinstance(ev, CollateralReleased):
            self.assets.pop(ev.asset_id, None)
            out.append(Output("asset-pledges", ev.asset_id, ev))
        elif isinstance(ev, BalanceChanged):
            self.principal_outstanding = ev.outstanding
        elif isinstance(ev, Repayment):
            paid_interest = min(self.accrued_interest, ev.amount)
            self.accrued_interest -= paid_interest
            self.principal_outstanding = max(0.0, self.principal_outstanding - (ev.amount - paid_interest))
        elif isinstance(ev, InterestAccrued):
            self.accrued_interest += ev.amount
        elif isinstance(ev, LinesChanged):
            self.thresholds = ev.thresholds
        elif isinstance(ev, LoanClosed):
            self.closed = True
            for mc in list(self.margin_calls.values()):
                if mc.status == "issued":
                    self.margin_calls[mc.margin_call_id] = upd = mc.model_copy(
                        update={"status": "withdrawn", "updated_at": ev.effective_at}
                    )
                    out.append(Output("margin-calls", self.loan_id, upd))
        out.extend(self._evaluate(rulebook, [], sensor))
        out.extend(self._drain(rulebook, sensor))  # a release can move the loan watermark
        return out

    def watermark(self) -> float | None:
        """The loan's valuation watermark, epoch seconds: the earliest of its assets' newest window ends.

        Assets not valued yet do not hold it (the loan is calibrating until they are). ``None``
        while no pledged asset has been valued.
        """
        newest: dict[str, float] = {}
        for s in self.assets.values():
            if s.valuation is not None:
                newest[s.asset_id] = s.valuation.window_end.timestamp()
        for v in self.pending.values():
            t = v.window_end.timestamp()
            if v.asset_id in self.assets and t > newest.get(v.asset_id, float("-inf")):
                newest[v.asset_id] = t
        return min(newest.values()) if newest else None

    def on_valuation(self, val: CollateralValuation, rulebook: Rulebook | None, sensor: Sensor) -> list[Output]:
        """Take an asset's new valuation; judge the loan's lines once per window, when all its assets are valued.

        A loan with several pledged assets is evaluated for the window ending at ``W`` only once every
        asset that has been valued has a valuation ending at or after ``W`` (the loan watermark), and
        then once with all of that window's valuations. The outcome is thus the same whatever order
        the asset partitions are read in (a restarted worker or a rebalance changes that order).
        A valuation not newer than the one already applied for its asset (a redelivery after a
        crash) is dropped: it never rolls the loan back.
        """
        slot = self.assets.get(val.asset_id)
        if slot is None or self.closed:
            return []
        if slot.valuation is not None and val.window_end <= slot.valuation.window_end:
            return []
        self.pending[(val.asset_id, val.window_end)] = val
        return self._drain(rulebook, sensor)

    def _drain(self, rulebook: Rulebook | None, sensor: Sensor) -> list[Output]:
        """Apply the held valuations up to the loan watermark, one evaluation per window end."""
        self.pending = {k: v for k, v in self.pending.items() if v.asset_id in self.assets}
        wm = self.watermark()
        if wm is None:
            return []
        ready = sorted(
            (k for k, v in self.pending.items() if v.window_end.timestamp() <= wm), key=lambda k: (k[1], k[0])
        )
        out: list[Output] = []
        for end, keys in groupby(ready, key=lambda k: k[1]):  # by window end, assets in id order
            batch = [self.pending.pop(k) for k in keys]
            for v in batch:  # each newer than its slot's valuation (on_valuation dropped the rest)
                self.assets[v.asset_id].valuation = v
            if not self.closed:
                self.as_of = max(self.as_of, end.timestamp())
                out.extend(self._evaluate(rulebook, batch, sensor))
        return out

    # --- rules ------------------------------------------------------------------------------
    def _evaluate(self, rulebook: Rulebook | None, vals: list[CollateralValuation], sensor: Sensor) -> list[Output]:
        snap = self.snapshot()
        sensor.on_loan_risk(snap)
        out: list[Output] = [Output("loan-risk", self.loan_id, snap)]
        if rulebook is None or self.closed or snap.status == "calibrating":
            return out  # lines are judged only once every pledged asset has an active valuation
        now = self.as_of
        now_dt = _ts(now)
        loan = self._loan_facts(snap)
        window = (
            {"start": vals[0].window_start, "end": vals[0].window_end} if vals else {"start": now_dt, "end": now_dt}
        )
        facts: dict[str, Any] = {"loan": loan, "window": window, "now": now_dt}
        transitions = evaluate_subject(rulebook, "loan", self.loan_id, facts, self.rule_states, now, sensor)
        asset_facts: dict[str, dict[str, Any]] = {}
        for val in vals:
            af = self._asset_facts(val)
            asset_facts[val.asset_id] = af
            transitions += evaluate_subject(
                rulebook, "asset", val.asset_id, {**facts, "asset": af}, self.rule_states, now, sensor
            )
        why = self.why()
        for tr in transitions:
            out.extend(self._emit(tr, rulebook, snap, {**facts, "asset": asset_facts.get(tr.subject)}, why, sensor))
        for mc in list(self.margin_calls.values()):
            if mc.status == "issued" and now >= mc.cure_deadline.timestamp():
                self.margin_calls[mc.margin_call_id] = upd = mc.model_copy(
                    update={"status": "expired", "updated_at": now_dt}
                )
                out.append(Output("margin-calls", self.loan_id, upd))
                out.append(Output("alerts", self.loan_id, self._expiry_alert(upd, snap, rulebook, "firing", sensor)))
        return out

    def _expiry_alert(
        self, mc: MarginCall, snap: LoanRiskSnapshot, rulebook: Rulebook, status: str, sensor: Sensor
    ) -> Alert:
        """The critical close-out alert of a margin call whose cure deadline passed unmet (``margin-call-expired``).

        It fires once at expiry and resolves when the breach episode ends (coverage back above the
        warning line); its id derives from the margin call's, so a replay re-emits nothing new.
        """
        cov = snap.coverage_ratio
        cov_s = f"{cov:.1%}" if cov is not None else "n/a"
        deadline = mc.cure_deadline.isoformat(timespec="minutes")
        if status == "firing":
            zh = f"追加保证金通知 {mc.margin_call_id} 已于 {deadline} 到期未补足，覆盖率 {cov_s}：启动平仓处置"
            en = f"Margin call {mc.margin_call_id} expired unmet at {deadline}, coverage {cov_s}: start close-out"
        else:
            zh = f"到期追加保证金通知 {mc.margin_call_id} 已解除：覆盖率回到 {cov_s}"
            en = f"Expired margin call {mc.margin_call_id} resolved: coverage back to {cov_s}"
        sensor.on_alert(EXPIRED_RULE, "critical", status, False, self.loan_id)
        alert = Alert(
            alert_id="al-" + mc.margin_call_id[3:] + "-x",
            status=status,  # type: ignore[arg-type]
            rule_id=EXPIRED_RULE,
            severity="critical",
            scope="loan",
            subject=self.loan_id,
            loan_id=self.loan_id,
            episode_start=mc.cure_deadline,
            at=_ts(self.as_of),
            summary=zh,
            summary_en=en,
            facts={
                "coverage_ratio": cov,
                "collateral_value": snap.collateral_value,
                "outstanding": snap.outstanding,
                "margin_call_id": mc.margin_call_id,
                "required_top_up_collateral": snap.required_top_up_collateral,
                "required_repayment": snap.required_repayment,
                "why": self.why(),
            },
            rulebook=rulebook.name,
            rulebook_version=rulebook.version,
            model_versions=MODEL_VERSIONS,
            shadow=False,
        )
        self._track(alert)
        return alert

    def _track(self, alert: Alert) -> None:
        if alert.status == "firing":
            self.active_alerts[alert.alert_id] = alert
        else:
            self.active_alerts.pop(alert.alert_id, None)

    def _emit(
        self,
        tr: Transition,
        rulebook: Rulebook,
        snap: LoanRiskSnapshot,
        facts: dict[str, Any],
        why: str,
        sensor: Sensor,
    ) -> Iterable[Output]:
        rule = tr.rule
        aid = alert_id(self.loan_id, rule.id, tr.subject, tr.episode_start)
        key_facts: dict[str, float | str | None] = {
            "coverage_ratio": snap.coverage_ratio,
            "collateral_value": snap.collateral_value,
            "outstanding": snap.outstanding,
            "warning_line": snap.thresholds.warning,
            "margin_call_line": snap.thresholds.margin_call,
            "close_out_line": snap.thresholds.close_out,
            "required_top_up_collateral": snap.required_top_up_collateral,
            "required_repayment": snap.required_repayment,
            "why": why,
        }
        asset = facts.get("asset")
        if asset is not None:
            key_facts.update(
                asset_value=asset["value"],
                activity_index=asset["activity_index"],
                quality_score=asset["quality_score"],
                accessibility=asset["quality"]["accessibility"],
                anomaly_score=asset["anomaly_score"],
            )
        if tr.status == "resolved":
            # the rule's summary describes the breach; a resolved alert says what holds now instead
            zh, en = _resolved_summary(rule.scope, tr.subject, snap, asset)
        else:
            render_facts = {k: v for k, v in facts.items() if v is not None}
            try:
                zh = render_summary(rule.summary["zh"], render_facts)
                en = render_summary(rule.summary["en"], render_facts)
            except KeyError:
                zh = en = f"{rule.id} {tr.status} on {tr.subject}"
        alert = Alert(
            alert_id=aid,
            status=tr.status,  # type: ignore[arg-type]
            rule_id=rule.id,
            severity=rule.severity,  # type: ignore[arg-type]
            scope=rule.scope,  # type: ignore[arg-type]
            subject=tr.subject,
            loan_id=self.loan_id,
            asset_id=tr.subject if rule.scope == "asset" else None,
            episode_start=_ts(tr.episode_start),
            at=_ts(tr.at),
            summary=zh,
            summary_en=en,
            facts=key_facts,
            rulebook=rulebook.name,
            rulebook_version=rulebook.version,
            model_versions=MODEL_VERSIONS,
            shadow=rule.shadow,
        )
        sensor.on_alert(rule.id, rule.severity, tr.status, rule.shadow, self.loan_id)
        self._track(alert)
        yield Output("alerts", self.loan_id, alert)
        if rule.action != "margin_call" or rule.shadow:
            return
        mc_id = "mc-" + aid[3:]
        if tr.status == "firing" and mc_id not in self.margin_calls and snap.coverage_ratio is not None:
            mc = MarginCall(
                margin_call_id=mc_id,
                loan_id=self.loan_id,
                status="issued",
                issued_at=_ts(tr.at),
                updated_at=_ts(tr.at),
                coverage_ratio=snap.coverage_ratio,
                collateral_value=snap.collateral_value,
                outstanding=snap.outstanding,
                warning_line=snap.thresholds.warning,
                required_top_up_collateral=snap.required_top_up_collateral,
                required_repayment=snap.required_repayment,
                cure_deadline=cure_deadline(_ts(tr.at), self.opened.cure_period),
                alert_id=aid,
                rulebook=rulebook.name,
                rulebook_version=rulebook.version,
            )
            self.margin_calls[mc_id] = mc
            yield Output("margin-calls", self.loan_id, mc)
        elif tr.status == "resolved" and (open_mc := self.margin_calls.get(mc_id)) is not None:
            if open_mc.status == "expired":
                yield Output("alerts", self.loan_id, self._expiry_alert(open_mc, snap, rulebook, "resolved", sensor))
                return
            if open_mc.status != "issued":
                return
            self.margin_calls[mc_id] = upd = open_mc.model_copy(update={"status": "cured", "updated_at": _ts(tr.at)})
            yield Output("margin-calls", self.loan_id, upd)


def _resolved_summary(
    scope: str, subject: str, snap: LoanRiskSnapshot, asset: dict[str, Any] | None
) -> tuple[str, str]:
    """``(zh, en)`` text of a resolved alert: the facts now, never the firing text's breach.

    A loan-scope alert states the coverage now; an asset-scope one the asset's last event age,
    accessibility and quality now (issue 15: a resolved alert read "coverage 131.0 % below
    margin-call line 120.0 %" or "feed silent: last event 0 min ago").

    Examples
    --------
    >>> snap = LoanRiskSnapshot.model_construct(coverage_ratio=1.31)
    >>> _resolved_summary("loan", "L1", snap, None)
    ('已解除：覆盖率回到 131.0%', 'resolved: coverage now 131.0%')
    """
    if scope == "asset" and asset is not None:
        age_min = asset["last_event_age_seconds"] / 60.0
        acc = asset["quality"]["accessibility"]
        q = asset["quality_score"]
        zh = f"已解除：数据资产 {subject} 最近事件距今 {age_min:.0f} 分钟，可访问性 {acc:.1%}，数据质量 {q:.1%}"
        en = f"resolved: {subject} last event {age_min:.0f} min ago, accessibility {acc:.1%}, quality {q:.1%}"
        return zh, en
    cov = snap.coverage_ratio
    cov_s = f"{cov:.1%}" if cov is not None else "n/a"
    return f"已解除：覆盖率回到 {cov_s}", f"resolved: coverage now {cov_s}"


# --- the two sides and their in-process wiring ------------------------------------------------
#: Rule id of the close-out alert raised when a margin call's cure deadline passes unmet.
EXPIRED_RULE = "margin-call-expired"


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
        self.held: dict[str, list[TelemetryEvent]] = {}
        self.clock: float | None = None
        self._next_tick: float | None = None

    def register(self, ev: CollateralPledged | CollateralReleased) -> list[Output]:
        """Register (or release) an asset for a loan; replays telemetry held for a new asset."""
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
        self.assets[ev.asset_id] = AssetMonitor(ev, self.params)
        out: list[Output] = []
        for held in self.held.pop(ev.asset_id, []):
            try:
                out.extend(self.on_telemetry(held, count=False))  # counted as "held" on arrival
            except InputRejected as exc:
                self.on_reject(exc)
                raw = held.model_dump_json().encode()
                dl = dead_letter(
                    raw,
                    exc,
                    topic="pledge.telemetry",
                    partition=None,
                    offset=None,
                    key=held.asset_id,
                    now=held.observed_at.timestamp(),
                )
                out.append(Output("dead-letter", held.asset_id, dl))
        return out

    def on_telemetry(self, ev: TelemetryEvent, tick: bool = True, count: bool = True) -> list[Output]:
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

        Raises
        ------
        InputRejected
            ``unknown_asset`` when the hold buffer of an unpledged asset is full, or a profile
            rejection (``unknown_metric``, ``undefined_ratio``).
        """
        asset = self.assets.get(ev.asset_id)
        if asset is None:
            if sum(len(h) for h in self.held.values()) >= self.params.hold_unknown:
                msg = f"asset_id: got {ev.asset_id!r}, expected an asset pledged by a collateral_pledged event"
                raise InputRejected("unknown_asset", msg, ev.asset_id)
            self.held.setdefault(ev.asset_id, []).append(ev)
            self.sensor.on_event("pledge.telemetry", "held")
            return []
        apply, rejected = asset.screen(ev, ev.observed_at.timestamp())
        out = self._reject_ahead(asset, rejected)
        for rec, ts in apply:
            out.extend(asset.on_event(rec, self.sensor, count=count, ts=ts))
            if self.clock is None or ts > self.clock:
                self.clock = ts
                if tick:
                    out.extend(self.tick(ts))
        return out

    def _reject_ahead(self, asset: AssetMonitor, rejected: Sequence[tuple[TelemetryEvent, float]]) -> list[Output]:
        """Dead-letter held records the stream did not confirm (``implausible_time``, C19)."""
        out: list[Output] = []
        if not rejected:
            return out
        base = asset.max_ts if asset.max_ts is not None else 0.0
        for rec, ts in rejected:
            msg = (
                f"observed_at: got {rec.observed_at.isoformat()}, {ts - base:.0f} s ahead of asset "
                f"{asset.asset_id}'s event time ({_ts(base).isoformat()}) while its later records continue "
                "at that time; expected an event time the stream confirms"
            )
            exc = InputRejected("implausible_time", msg, asset.asset_id)
            self.on_reject(exc)
            dl = dead_letter(
                rec.model_dump_json().encode(),
                exc,
                topic="pledge.telemetry",
                partition=None,
                offset=None,
                key=rec.asset_id,
                now=base,
            )
            out.append(Output("dead-letter", rec.asset_id, dl))
        return out

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
                out.extend(asset.on_clock(stream_time, self.sensor))
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


def _drivers_text(drivers: list[tuple[float, str]]) -> str:
    """``accessibility and completeness ¥-282,584 each, activity ¥-90,000``: parts of equal amount named together.

    A dark feed lowers accessibility and completeness alike (both fall to 0, equally weighted), so
    their parts are equal by the method, not by a fault: said once, "each", so no one reads a bug.
    """
    groups: dict[str, list[str]] = {}
    for x, k in drivers:
        groups.setdefault(f"¥{x:+,.0f}", []).append(k.removeprefix("quality."))
    return ", ".join(
        f"{' and '.join(names)} {amount}" + (" each" if len(names) > 1 else "") for amount, names in groups.items()
    )


class LoanBook:
    """The loan side of one worker: loans, their rule lifecycle and margin calls.

    Parameters
    ----------
    rulebook
        The active rulebook (replaceable between events).
    sensor
        Receives metrics hooks.
    """

    def __init__(self, rulebook: Rulebook, sensor: Sensor) -> None:
        self.rulebook = rulebook
        self.sensor = sensor
        self.loans: dict[str, LoanMonitor] = {}

    def on_loan_event(self, ev: Any) -> list[Output]:
        """Apply one decoded loan event; returns snapshots, alerts, margin calls and pledges.

        Raises
        ------
        InputRejected
            ``unknown_loan`` for an event of a loan never opened.
        """
        loan = self.loans.get(ev.loan_id)
        if isinstance(ev, LoanOpened):
            if loan is not None:
                if _event_digest(ev) != loan.seen_events.get(ev.event_id):
                    msg = f"loan_id: {ev.loan_id!r} is already open with other terms; expected a new loan id"
                    raise InputRejected("conflicting_duplicate", msg)
                self.sensor.on_event("pledge.loan-book", "duplicate")
                return []
            self.loans[ev.loan_id] = loan = LoanMonitor(ev)
            self.sensor.on_event("pledge.loan-book", "ok")
            return [Output("loan-risk", ev.loan_id, loan.snapshot())]
        if loan is None:
            msg = f"loan_id: got {ev.loan_id!r}, expected a loan opened by a loan_opened event"
            raise InputRejected("unknown_loan", msg)
        return loan.on_loan_event(ev, self.rulebook, self.sensor)

    def on_valuation(self, loan_id: str, val: CollateralValuation) -> list[Output]:
        """Take an asset valuation routed to one loan."""
        loan = self.loans.get(loan_id)
        return [] if loan is None else loan.on_valuation(val, self.rulebook, self.sensor)


class Monitor:
    """The whole core in one process: the routing ``streams/`` does through topics, done in memory.

    Parameters
    ----------
    rulebook
        The active rulebook.
    params
        :class:`CoreParams`.
    sensor
        Receives metrics hooks.
    """

    def __init__(self, rulebook: Rulebook, params: CoreParams | None = None, sensor: Sensor | None = None) -> None:
        self.params = params or CoreParams()
        self.sensor: Sensor = sensor or NullSensor()
        self.asset_book = AssetBook(self.params, self.sensor)
        self.loan_book = LoanBook(rulebook, self.sensor)

    @property
    def assets(self) -> dict[str, AssetMonitor]:
        """Pledged assets by id."""
        return self.asset_book.assets

    @property
    def loans(self) -> dict[str, LoanMonitor]:
        """Loans by id."""
        return self.loan_book.loans

    def _route(self, outputs: list[Output]) -> list[Output]:
        result: list[Output] = []
        for o in outputs:
            if o.topic == "asset-pledges":
                result.extend(self._route(self.asset_book.register(o.message)))  # type: ignore[arg-type]
                continue
            result.append(o)
            if o.topic == "valuations":
                val: CollateralValuation = o.message  # type: ignore[assignment]
                for loan_id in val.loan_ids:
                    result.extend(self.loan_book.on_valuation(loan_id, val))
        return result

    def on_loan_event(self, ev: Any) -> list[Output]:
        """Apply one decoded loan event (see :meth:`LoanBook.on_loan_event`)."""
        return self._route(self.loan_book.on_loan_event(ev))

    def on_telemetry(self, ev: TelemetryEvent) -> list[Output]:
        """Apply one decoded telemetry event (see :meth:`AssetBook.on_telemetry`)."""
        return self._route(self.asset_book.on_telemetry(ev))

    def on_reject(self, exc: InputRejected) -> None:
        """Account a rejected telemetry record."""
        self.asset_book.on_reject(exc)

    def flush(self, until: float) -> list[Output]:
        """Close every window that ends by ``until``."""
        return self._route(self.asset_book.flush(until))
