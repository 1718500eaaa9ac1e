"""Write ``examples/cta/loan_book.jsonl``: the real-history acceptance loan of ``docs/valuation.md``.

Run: ``.venv/bin/python examples/cta/make_loan_book.py`` (reads ``examples/data/cta-daily-boardings.csv``).
A unit test fails when the committed file differs from what this script writes.
"""

from __future__ import annotations

from pathlib import Path

from monitor.sources.cta import read_daily_boardings, renewal_loan_book

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "cta-daily-boardings.csv"
OUT = HERE / "loan_book.jsonl"


def render() -> str:
    """The loan book as JSON lines (one loan event a line, in effective order)."""
    events = renewal_loan_book(read_daily_boardings(DATA))
    return "".join(ev.model_dump_json(exclude_none=True) + "\n" for ev in events)


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
