"""Shared fixtures: factories with keyword overrides for loans, pledges and telemetry."""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from monitor.schemas import Appraisal, CollateralPledged, LoanOpened, TelemetryEvent, Thresholds
from rules.rulebook import load_rulebook

# No timed assertions in tests: hypothesis's default deadline (200 ms an example) failed a property test at
# 405 ms on a loaded 2-core machine. Every property test runs without one; speed lives in benchmarks/.
hypothesis_settings.register_profile("pledgewatch", deadline=None)
hypothesis_settings.load_profile("pledgewatch")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
UTC = dt.UTC
T0 = dt.datetime(2024, 3, 4, 0, 0, tzinfo=UTC)


SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
BOOK = ROOT / "examples" / "loan_book.jsonl"


@functools.cache
def sample_telemetry() -> tuple[TelemetryEvent, ...]:
    """The shipped Auckland sample read for the demo loan book's pledged assets, once a session (≈ 1 s a read).

    The events are frozen models in a tuple, so no test can change what the next one reads; every test
    backtesting the sample still runs its own backtest.
    """
    from monitor.backtest import load_loan_book, pledged_assets, read_telemetry

    return tuple(read_telemetry(SAMPLE, pledged_assets(load_loan_book(BOOK))))


def shared_path(*parts: str) -> Path:
    """Path under ../shared; skips when absent on a user's machine, fails under CI=true."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing: CI must have ../shared")
        pytest.skip(f"{path} not present (../shared is not shipped to users)")
    return path


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data (see :func:`shared_path`)."""
    return shared_path("data", *parts)


@pytest.fixture
def rulebook():  # type: ignore[no-untyped-def]
    return load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")


def make_loan(**kw: Any) -> LoanOpened:
    base: dict[str, Any] = dict(
        event_id="L1:opened",
        loan_id="L1",
        effective_at=T0 - dt.timedelta(days=30),
        borrower_id="B1",
        principal=7_000_000.0,
        outstanding=7_000_000.0,
        start=dt.date(2024, 1, 1),
        maturity=dt.date(2026, 1, 1),
        thresholds=Thresholds(warning=1.3, margin_call=1.2, close_out=1.1),
        cure_period="5d",
    )
    base.update(kw)
    return LoanOpened(**base)


def make_pledge(**kw: Any) -> CollateralPledged:
    appraisal = kw.pop("appraisal", None) or Appraisal(
        value=10_000_000.0,
        appraised_on=dt.date(2024, 1, 1),
        appraiser="test",
        baseline_activity=[40.0] * 24,
        quality_baseline=1.0,
    )
    base: dict[str, Any] = dict(
        event_id="L1:pledged:A1",
        loan_id="L1",
        effective_at=T0 - dt.timedelta(days=30),
        asset_id="A1",
        asset_profile="bus_dispatch",
        asset_timezone="UTC",
        appraisal=appraisal,
        pledge_registration_no="REG-1",
    )
    base.update(kw)
    return CollateralPledged(**base)


def make_event(**kw: Any) -> TelemetryEvent:
    base: dict[str, Any] = dict(
        event_id="e1",
        asset_id="A1",
        observed_at=T0,
        received_at=T0,
        entity_id="v1",
        kind="trip_completed",
        metrics={"trips": 1.0},
        attributes={"trip_id": "t1"},
    )
    base.update(kw)
    return TelemetryEvent(**base)


def healthy_window_events(
    asset: str, start: dt.datetime, window_s: float = 900.0, trips: int = 10, prefix: str = "h"
) -> list[TelemetryEvent]:
    """A healthy 15-min window: a poll every 120 s and ``trips`` completed trips (baseline 40/h = 10/window)."""
    out = []
    n_polls = int(window_s // 120)
    for i in range(n_polls):
        t = start + dt.timedelta(seconds=60 + 120 * i)
        out.append(
            make_event(
                event_id=f"{prefix}-{asset}-poll-{t.timestamp():.0f}",
                asset_id=asset,
                observed_at=t,
                received_at=t,
                kind="feed_poll",
                metrics={"entities": 20.0},
                attributes={},
                entity_id="collector",
            )
        )
    for j in range(trips):
        t = start + dt.timedelta(seconds=30 + j * (window_s - 60) / max(trips, 1))
        out.append(
            make_event(
                event_id=f"{prefix}-{asset}-trip-{t.timestamp():.0f}-{j}",
                asset_id=asset,
                observed_at=t,
                received_at=t,
                metrics={"trips": 1.0, "on_time_trips": 1.0},
                attributes={"trip_id": f"t{j}"},
            )
        )
    out.sort(key=lambda e: e.observed_at)
    return out
