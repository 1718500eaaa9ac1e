"""Write ``examples/madison/loan_book.jsonl``: three fictional loans secured by Madison Metro bus-operations data.

Run: ``.venv/bin/python examples/madison/make_loan_book.py`` (reads Metro's stop list from
``../shared/data/madison-metro-bus-avl/reference``, or ``--data``). Deterministic: a unit test fails when
the committed file differs from what this script writes.

Each loan pledges one **route group** of the BusTime feed (``routes``; ``monitor.sources.bustime``):

- ``mad-routes-all-day``: route 80, the only route the collector polled around the clock;
- ``mad-routes-weekday``: 28, 38, W, 55, 65, 75, which run on weekdays only;
- ``mad-routes-campus-evening``: 81, 82, 84, the UW campus and evening routes.

Borrowers, appraisals, appraiser and registration numbers are fictional (amounts in yuan, as every
pledgewatch loan). ``baseline_activity`` and ``quality_baseline`` are left null: the core learns them in
calibration, as no timetable of these dates exists (``SOURCE.md``). ``service_area`` is the bounding box
of Metro's 1,691 stops widened by :data:`MARGIN_DEG`, computed here rather than typed.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
from pathlib import Path
from typing import Any

from monitor.schemas import LoanEventAdapter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT.parent / "shared" / "data" / "madison-metro-bus-avl"
OUT = HERE / "loan_book.jsonl"

EFFECTIVE_AT = "2025-09-24T17:45:00-05:00"  # five minutes before the first poll (CDT)
TIMEZONE = "America/Chicago"
THRESHOLDS = {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1}
#: Coverage at appraisal (appraised value ÷ outstanding): above the 1.3 warning line with room for the
#: activity index's normal noise, so a loan warns when activity or quality really falls rather than
#: on an ordinary quiet window (1.45 / 1.3 ≈ 1.12: the value may drop 10 % before the warning line).
COVERAGE_AT_APPRAISAL = 1.45
#: The stops' bounding box is widened by this much on every side (degrees; 0.05° ≈ 5.6 km north-south,
#: 4.1 km east-west at 43° N): buses run to garages and layovers beyond the last stop, and a fix a little
#: off is a GPS error the accuracy dimension should not see as a bus off its network.
MARGIN_DEG = 0.05

#: (loan, asset, routes, appraised value in yuan, borrower)
LOANS: tuple[tuple[str, str, list[str], float, str], ...] = (
    ("L-MAD-001", "mad-routes-all-day", ["80"], 5_800_000.0, "B-MAD-CAMPUS-LOOP"),
    ("L-MAD-002", "mad-routes-weekday", ["28", "38", "W", "55", "65", "75"], 8_700_000.0, "B-MAD-WEEKDAY-OPS"),
    ("L-MAD-003", "mad-routes-campus-evening", ["81", "82", "84"], 4_350_000.0, "B-MAD-EVENING-OPS"),
)


def service_area(data: Path = DATA) -> dict[str, float]:
    """Bounding box of Metro's stops, widened by :data:`MARGIN_DEG` and rounded outwards to 0.001°."""
    path = data / "reference" / "Metro_Transit_Bus_Stops.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as fh:
        stops = [(float(r["stop_lat"]), float(r["stop_lon"])) for r in csv.DictReader(fh)]
    lats, lons = [s[0] for s in stops], [s[1] for s in stops]

    def down(x: float) -> float:
        return math.floor((x - MARGIN_DEG) * 1000) / 1000

    def up(x: float) -> float:
        return math.ceil((x + MARGIN_DEG) * 1000) / 1000

    return {"min_lat": down(min(lats)), "max_lat": up(max(lats)), "min_lon": down(min(lons)), "max_lon": up(max(lons))}


def events(data: Path = DATA) -> list[dict[str, Any]]:
    """The loan events, each checked against the schema."""
    area = service_area(data)
    out: list[dict[str, Any]] = []
    for loan, asset, routes, value, borrower in LOANS:
        owed = round(value / COVERAGE_AT_APPRAISAL, 2)
        out.append(
            {
                "schema_version": 1,
                "event_id": f"{loan}:opened",
                "loan_id": loan,
                "effective_at": EFFECTIVE_AT,
                "type": "loan_opened",
                "borrower_id": borrower,
                "principal": owed,
                "outstanding": owed,
                "currency": "CNY",
                "start": "2025-09-24",
                "maturity": "2027-09-24",
                "thresholds": THRESHOLDS,
                "cure_period": "5bd",
            }
        )
        out.append(
            {
                "schema_version": 1,
                "event_id": f"{loan}:pledged:{asset}",
                "loan_id": loan,
                "effective_at": EFFECTIVE_AT,
                "type": "collateral_pledged",
                "asset_id": asset,
                "asset_profile": "bus_dispatch",
                "asset_timezone": TIMEZONE,
                "asset_country": "US",
                "appraisal": {
                    "value": value,
                    "method": "income",
                    "appraised_on": "2025-09-22",
                    "appraiser": "Example Appraisal Co. (fictional)",
                    "baseline_activity": None,
                    "quality_baseline": None,
                },
                "pledge_registration_no": f"DEMO-PLEDGE-{asset.upper()}",
                "service_area": area,
                "routes": routes,
            }
        )
    for ev in out:
        LoanEventAdapter.validate_json(json.dumps(ev))
    return out


def render(data: Path = DATA) -> str:
    """The loan book as JSON lines (one loan event a line, in effective order)."""
    return "".join(json.dumps(ev, separators=(",", ":")) + "\n" for ev in events(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the madison-metro-bus-avl folder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not (args.data / "reference").is_dir():
        raise SystemExit(f"{args.data}/reference not found: the Madison data lives in ../shared (give --data)")
    args.out.write_text(render(args.data), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
