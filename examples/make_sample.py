"""Build the demo sample and the example loan book from the Auckland archive in ../shared.

Run from the repository root (needs ../shared/data; the output is committed, so
users never run this)::

    .venv/bin/python examples/make_sample.py

Writes
- ``examples/data/auckland-tripupdates-20160520.jsonl.gz``: the polls of Friday
  2016-05-20, 05:00–15:00 NZST, entities kept only for the four pledged route
  groups, one original poll JSON per line (entity content unchanged);
- ``examples/loan_book.jsonl``: three loans pledging the route groups, with each
  appraisal's hourly activity baseline and quality baseline Q_0 measured on the
  *previous* day (Thursday 2016-05-19) by the same core, so the demo day is
  out of sample.
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import io
import json
import sys
import zoneinfo
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.core import CoreParams, Monitor  # noqa: E402
from monitor.schemas import Appraisal, CollateralPledged, LoanOpened, Thresholds  # noqa: E402
from monitor.sources.auckland import asset_of_route, events_from_polls, read_polls  # noqa: E402
from monitor.valuation import ValuationParams  # noqa: E402
from rules.rulebook import load_rulebook  # noqa: E402

SRC = ROOT.parent / "shared" / "data" / "auckland-bus-tripupdates" / "snapshots"
TZ = zoneinfo.ZoneInfo("Pacific/Auckland")
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
LOAN_BOOK = ROOT / "examples" / "loan_book.jsonl"
ASSETS = ("akl-routes-0xx", "akl-routes-2xx", "akl-routes-7xx", "akl-routes-9xx")
# appraised values (yuan) and the loans they secure; 10.0995 M is the public case of DESIGN.md
APPRAISALS = {
    "akl-routes-0xx": 8_000_000.0,
    "akl-routes-2xx": 10_099_500.0,
    "akl-routes-7xx": 6_500_000.0,
    "akl-routes-9xx": 9_200_000.0,
}
LOANS = {
    "L-AKL-001": ("B-AKL-CENTRAL", ("akl-routes-0xx", "akl-routes-2xx")),
    "L-AKL-002": ("B-AKL-EAST", ("akl-routes-7xx",)),
    "L-AKL-003": ("B-AKL-NORTH", ("akl-routes-9xx",)),
}
PLEDGE_RATE = 0.70
LINES = Thresholds(warning=1.30, margin_call=1.20, close_out=1.10)


def local(y: int, m: int, d: int, h: int) -> float:
    """POSIX seconds of a local Auckland hour."""
    return dt.datetime(y, m, d, h, tzinfo=TZ).timestamp()


def main() -> None:
    """Write the sample and the loan book."""
    polls = list(read_polls(SRC))
    day1 = [p for p in polls if local(2016, 5, 19, 0) <= p.header_ts < local(2016, 5, 20, 0)]
    demo = [p for p in polls if local(2016, 5, 20, 5) <= p.header_ts < local(2016, 5, 20, 15)]

    hourly: dict[str, collections.Counter[int]] = {a: collections.Counter() for a in ASSETS}
    for ev in events_from_polls(day1, set(ASSETS)):
        if ev.kind == "trip_completed":
            hourly[ev.asset_id][ev.observed_at.astimezone(TZ).hour] += int(ev.metrics["trips"])

    # Q_0: mean window quality of day 1, measured by the core itself in calibration mode
    params = CoreParams(valuation=ValuationParams(calibration_windows=96))
    mon = Monitor(load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"), params)
    opened_at = dt.datetime(2016, 5, 1, tzinfo=TZ)
    for loan_id, (borrower, assets) in LOANS.items():
        value = sum(APPRAISALS[a] for a in assets)
        mon.on_loan_event(_opened(loan_id, borrower, value, opened_at))
        for a in assets:
            mon.on_loan_event(_pledged(loan_id, a, opened_at, None, None))
    for ev in events_from_polls(day1, set(ASSETS)):
        mon.on_telemetry(ev)
    mon.flush(local(2016, 5, 20, 0))
    q0 = {a: mon.assets[a].valuer._q0 for a in ASSETS}

    SAMPLE.parent.mkdir(parents=True, exist_ok=True)
    with (
        SAMPLE.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8") as fh,
    ):
        for p in demo:
            ents = [e for e in p.entities if asset_of_route(e["trip_update"]["trip"]["route_id"]) in ASSETS]
            obj = {
                "status": "OK",
                "error": None,
                "response": {
                    "header": {"incrementality": 0, "timestamp": p.header_ts, "gtfs_realtime_version": "1.0"},
                    "entity": ents,
                },
            }
            fh.write(json.dumps(obj, separators=(",", ":")) + "\n")

    with LOAN_BOOK.open("w", encoding="utf-8") as fh:
        for loan_id, (borrower, assets) in LOANS.items():
            value = sum(APPRAISALS[a] for a in assets)
            fh.write(_opened(loan_id, borrower, value, opened_at).model_dump_json() + "\n")
            for a in assets:
                base = [float(hourly[a][h]) for h in range(24)]
                fh.write(_pledged(loan_id, a, opened_at, base, round(q0[a] or 0.9, 4)).model_dump_json() + "\n")
    print(f"wrote {SAMPLE} ({SAMPLE.stat().st_size:,} B, {len(demo)} polls) and {LOAN_BOOK}; Q_0 = {q0}")


def _opened(loan_id: str, borrower: str, value: float, at: dt.datetime) -> LoanOpened:
    principal = round(value * PLEDGE_RATE, 2)
    return LoanOpened(
        event_id=f"{loan_id}:opened",
        loan_id=loan_id,
        effective_at=at,
        borrower_id=borrower,
        principal=principal,
        outstanding=principal,
        start=at.date(),
        maturity=dt.date(2019, 5, 1),
        thresholds=LINES,
        cure_period="5bd",
    )


def _pledged(
    loan_id: str, asset: str, at: dt.datetime, base: list[float] | None, q0: float | None
) -> CollateralPledged:
    return CollateralPledged(
        event_id=f"{loan_id}:pledged:{asset}",
        loan_id=loan_id,
        effective_at=at,
        asset_id=asset,
        asset_profile="bus_dispatch",
        asset_timezone="Pacific/Auckland",
        appraisal=Appraisal(
            value=APPRAISALS[asset],
            method="income",
            appraised_on=dt.date(2016, 4, 28),
            appraiser="Example Appraisal Co. (fictional)",
            baseline_activity=base,
            quality_baseline=q0,
        ),
        pledge_registration_no=f"DEMO-PLEDGE-{asset.upper()}",
    )


if __name__ == "__main__":
    main()
