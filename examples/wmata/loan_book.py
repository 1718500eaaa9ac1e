"""Write the fictional WMATA loan book for a backtest over the WMATA AVL day (data read in place).

Usage::

    .venv/bin/python examples/wmata/loan_book.py /tmp/wmata-loans.jsonl
    .venv/bin/pledgewatch backtest --telemetry ../shared/data/wmata-bus-avl/wmata_gtfsrt_021626.csv \\
        --loan-book /tmp/wmata-loans.jsonl

The WMATA data may not be shipped, so neither is this loan book: its appraisal baseline is the day's
timetable (trips scheduled to end per local hour), computed here from ``../shared/data``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitor.sources.wmata import loan_book, open_day

AVL = Path(__file__).resolve().parents[3] / "shared" / "data" / "wmata-bus-avl" / "wmata_gtfsrt_021626.csv"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: loan_book.py OUT.jsonl")
    timetable, _ = open_day(AVL)
    Path(sys.argv[1]).write_bytes(b"\n".join(loan_book(timetable)) + b"\n")
    print(f"wrote {sys.argv[1]}: loan L-WMATA-001 pledging wmata-bus ({len(timetable.trips)} scheduled trips)")


if __name__ == "__main__":
    main()
