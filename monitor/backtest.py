"""``pledgewatch backtest``: run a loan book and recorded telemetry through the core, in-process.

The records go through the same bytes → :func:`monitor.core.decode.decode_telemetry_record`
→ :class:`monitor.core.router.Monitor` path as in the stream, so a backtest is the
production code path without a broker.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.core import CoreParams, Monitor, Output, decode_loan_event
from monitor.core.decode import decode_telemetry_record
from monitor.errors import ConfigError, InputRejected
from monitor.incidents import Incident, apply_incidents, parse_incident
from monitor.schemas import (
    Alert,
    ClassificationSuggestion,
    CollateralPledged,
    CollateralValuation,
    LoanRiskSnapshot,
    MarginCall,
    TelemetryEvent,
    WatchListEvent,
)
from monitor.sensors import CountingSensor
from rules.rulebook import Rulebook

__all__ = [
    "BacktestResult",
    "load_inputs",
    "load_loan_book",
    "pledged_assets",
    "read_telemetry",
    "run_backtest",
    "run_backtests",
]

log = logging.getLogger(__name__)


def pledges_of(loan_book: Iterable[bytes]) -> list[CollateralPledged]:
    """The ``collateral_pledged`` events of a loan book (raw events); undecodable lines are skipped here."""
    out: list[CollateralPledged] = []
    for raw in loan_book:
        try:
            ev = decode_loan_event(raw)
        except InputRejected:
            continue
        if isinstance(ev, CollateralPledged):
            out.append(ev)
    return out


def pledged_assets(loan_book: Iterable[bytes]) -> set[str]:
    """Asset ids pledged in a loan book (raw events); undecodable lines are skipped here."""
    return {p.asset_id for p in pledges_of(loan_book)}


def load_loan_book(path: str | Path) -> list[bytes]:
    """Raw loan events (one JSON object a line) of a loan-book file.

    Raises
    ------
    ConfigError
        When the file cannot be read.
    """
    p = Path(path)
    try:
        return [line.encode() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"loan book: cannot read {p}: {exc.strerror}") from None


def read_telemetry(
    path: str | Path, assets: set[str] | None = None, pledges: Iterable[bytes] | None = None
) -> Iterator[TelemetryEvent]:
    """Telemetry of the pledged ``assets`` in a source file or folder, by the plugin that recognises it.

    The source plugin is chosen by content (:mod:`monitor.sources`; ``docs/sources.md``).

    ``pledges`` are the loan book's raw lines: sources that need the pledges (BusTime's route sets
    and time zone) take them from there; lines that are not valid loan events are skipped.

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ConfigError
        When no source recognises the content (one message: the file, its first line, the kinds
        accepted), or the source finds bad content or lacks the pledges it needs.
    """
    from monitor.sources import read_source

    return read_source(path, assets, pledges_of(pledges or ()))


def load_inputs(
    loan_book: str | Path, telemetry: str | Path, inject: Iterable[str] = ()
) -> tuple[list[bytes], list[TelemetryEvent], list[Incident]]:
    """The loan book, its assets' telemetry and the incidents of a CLI run, checked against each other.

    Raises
    ------
    ConfigError
        When a loan-book line is not a valid loan event (named by line: a pledge whose profile file
        cannot be loaded would otherwise leave its loan unmonitored without a word), an incident
        names an asset the loan book does not pledge, or the telemetry holds no record of a pledged
        asset (the usual cause: the default loan book with another data set).
    FileNotFoundError
        When the telemetry path does not exist.
    """
    book = load_loan_book(loan_book)
    for n, raw in enumerate(book, 1):
        try:
            decode_loan_event(raw)
        except InputRejected as exc:
            raise ConfigError(f"loan book {loan_book}:{n}: {exc.message}") from None
    assets = pledged_assets(book)
    incidents = [parse_incident(i) for i in inject]
    for inc in incidents:
        if inc.asset_id not in assets:
            msg = f"--inject: got asset {inc.asset_id!r}, expected one that the loan book pledges: {sorted(assets)}"
            raise ConfigError(msg)
    events = list(read_telemetry(telemetry, assets, pledges=book))
    if not events:
        msg = (
            f"--telemetry: {telemetry} holds no record of an asset the loan book {loan_book} pledges "
            f"({sorted(assets)}); expected --loan-book with the loans that pledge its assets"
        )
        raise ConfigError(msg)
    unseen = sorted(assets - {e.asset_id for e in events})
    if unseen:
        # not refused: a loan book may pledge assets of several feeds; but they will read as silent
        log.warning(
            "--telemetry: %s holds no record of the pledged assets %s: they will read as silent (feed-silent, "
            "then impaired after their profile's silence grace)",
            telemetry,
            unseen,
        )
    return book, events, incidents


@dataclass
class BacktestResult:
    """Everything a backtest produced, in order."""

    outputs: list[Output] = field(default_factory=list)
    sensor: CountingSensor = field(default_factory=CountingSensor)
    events: int = 0
    seconds: float = 0.0

    def of(self, topic: str) -> list:  # type: ignore[type-arg]
        """Messages published to one logical topic."""
        return [o.message for o in self.outputs if o.topic == topic]

    @property
    def alerts(self) -> list[Alert]:
        """Alert transitions."""
        return self.of("alerts")

    @property
    def margin_calls(self) -> list[MarginCall]:
        """Margin-call records (issued and later transitions)."""
        return self.of("margin-calls")

    @property
    def watch_list(self) -> list[WatchListEvent]:
        """Watch-list records (entered, updated, exited), in order."""
        return self.of("watch-list")

    @property
    def classifications(self) -> list[ClassificationSuggestion]:
        """Changes of a loan's suggested risk category, in order (``pledge.classification``)."""
        return self.of("classification")

    @property
    def valuations(self) -> list[CollateralValuation]:
        """Asset valuations."""
        return self.of("valuations")

    @property
    def snapshots(self) -> list[LoanRiskSnapshot]:
        """Loan risk snapshots."""
        return self.of("loan-risk")


def _events_only(items: Iterable[TelemetryEvent | bytes]) -> Iterator[TelemetryEvent]:
    for item in items:
        if not isinstance(item, TelemetryEvent):
            msg = "incidents: can only be injected into decoded telemetry events, got raw bytes"
            raise ConfigError(msg)
        yield item


def run_backtest(
    loan_book: Iterable[bytes],
    telemetry: Iterable[TelemetryEvent | bytes],
    rulebook: Rulebook,
    params: CoreParams | None = None,
    incidents: list[Incident] | None = None,
    now: float | None = None,
) -> BacktestResult:
    """Run the core over a loan book and telemetry; return every output.

    Parameters
    ----------
    loan_book
        Raw loan events (bytes of JSON).
    telemetry
        Telemetry events or raw record bytes, in the order a topic would hold them.
    rulebook
        The rulebook to apply.
    params
        Core parameters (window, lateness...).
    incidents
        Incidents to inject (applied to decoded events only).
    now
        Wall clock for the future-time check (POSIX s); defaults to the real clock once.
    """
    return run_backtests(loan_book, telemetry, [rulebook], params, incidents, now)[0]


def run_backtests(
    loan_book: Iterable[bytes],
    telemetry: Iterable[TelemetryEvent | bytes],
    rulebooks: list[Rulebook],
    params: CoreParams | None = None,
    incidents: list[Incident] | None = None,
    now: float | None = None,
) -> list[BacktestResult]:
    """Run several rulebooks over the same history in one pass (each record decoded once).

    Returns
    -------
    list of BacktestResult
        One per rulebook, in order; each from its own core (own models, own state).
    """
    wall = time.time() if now is None else now
    results = [BacktestResult() for _ in rulebooks]
    monitors = [Monitor(rb, params, res.sensor) for rb, res in zip(rulebooks, results, strict=True)]
    cp = monitors[0].params
    t0 = time.perf_counter()
    # loan events take effect at their event time: those before the first record first, the rest
    # (renewals, repayments...) interleaved with the telemetry as its event time passes them
    pending: list[tuple[float, int, Any]] = []
    for i, raw in enumerate(loan_book):
        try:
            ev = decode_loan_event(raw, wall, cp.max_clock_skew_s, cp.earliest_event_time_s)
        except InputRejected as exc:
            for res in results:
                res.sensor.on_dead_letter(exc.reason)
            continue
        pending.append((ev.effective_at.timestamp(), i, ev))
    pending.sort(key=lambda p: (p[0], p[1]))
    due = 0

    def apply_loan_events(until: float) -> None:
        nonlocal due
        while due < len(pending) and pending[due][0] <= until:
            ev = pending[due][2]
            for mon, res in zip(monitors, results, strict=True):
                try:
                    res.outputs.extend(mon.on_loan_event(ev))
                except InputRejected as exc:
                    res.sensor.on_dead_letter(exc.reason)
            due += 1

    evs: Iterable[TelemetryEvent | bytes] = telemetry
    if incidents:
        evs = apply_incidents(_events_only(telemetry), incidents)
    last: dt.datetime | None = None  # latest event time seen
    seen = [0]
    for ev in _decoded(evs, wall, cp, monitors, seen):
        if due < len(pending):
            # loan events due by the record's time, bounded like the record itself: one far ahead of the
            # stream's own time (held until confirmed, C19) must not pull later loan events forward
            t = ev.observed_at.timestamp()
            clock = monitors[0].asset_book.clock
            if clock is not None:
                t = min(t, clock + cp.window_s + cp.allowed_lateness_s)
            apply_loan_events(t)
        for mon, res in zip(monitors, results, strict=True):
            try:
                res.outputs.extend(mon.on_telemetry(ev))
            except InputRejected as exc:
                mon.on_reject(exc)
        if last is None or ev.observed_at > last:
            last = ev.observed_at
    apply_loan_events(float("inf"))
    seconds = time.perf_counter() - t0
    for mon, res in zip(monitors, results, strict=True):
        if last is not None:
            # to the stream's own time: records still held far ahead of it are dead-lettered, not followed
            clock = mon.asset_book.clock
            res.outputs.extend(mon.flush(clock if clock is not None else last.timestamp()))
        res.events = seen[0]
        res.seconds = seconds
    return results


def _decoded(
    items: Iterable[TelemetryEvent | bytes], wall: float, cp: CoreParams, monitors: list[Monitor], seen: list[int]
) -> Iterator[TelemetryEvent]:
    """The observations of the telemetry records, each decoded as the worker decodes it.

    A record may be one observation or a batch (:class:`~monitor.schemas.TelemetryBatch`); an
    unusable record or observation is counted as rejected by every monitor, as the worker
    dead-letters it. ``seen[0]`` counts the observations read, usable or not (a rejected record as one).
    """
    for item in items:
        raw = item.model_dump_json().encode() if isinstance(item, TelemetryEvent) else item
        try:
            events, rejected = decode_telemetry_record(raw, wall, cp.max_clock_skew_s, cp.earliest_event_time_s)
        except InputRejected as exc:
            seen[0] += 1
            for mon in monitors:
                mon.on_reject(exc)
            continue
        seen[0] += len(events) + len(rejected)
        for bad in rejected:
            for mon in monitors:
                mon.on_reject(bad.error)
        yield from events


def interval_coverage(valuations: Iterable[CollateralValuation]) -> tuple[float | None, int]:
    """Empirical coverage of the 90 % one-step prediction band of window activity.

    The share of windows in expected service with data and a band (``activity_forecast_lower`` /
    ``_upper``, made before the window was seen) whose activity fell inside it, and how many such
    windows there were. A well-calibrated band covers about 90 %; docs/valuation.md reports it per
    data set. ``(None, 0)`` when no window had a band.

    Examples
    --------
    >>> interval_coverage([])
    (None, 0)
    """
    n = inside = 0
    for v in valuations:
        lo, hi = v.activity_forecast_lower, v.activity_forecast_upper
        if lo is None or hi is None or not v.service_expected or v.events_in_window == 0:
            continue
        n += 1
        inside += lo <= v.activity <= hi
    return (inside / n if n else None), n
