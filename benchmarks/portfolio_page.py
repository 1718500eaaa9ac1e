"""The portfolio page's answer for 1,000 and more simulated loans: the data of ``/api/loans`` and the HTML.

Run: ``.venv/bin/python benchmarks/portfolio_page.py [--loans 1000 2000]`` (from the checkout or from
``benchmarks/``). Writes ``benchmarks/results/portfolio_page.json`` and the ``portfolio_page`` rows of
``docs/benchmarks.md``. Issue 19's target: the page answers in under 1 s for ≥ 1,000 loans.

The loans are real :class:`monitor.core.loans.LoanMonitor` states in a real
:class:`monitor.core.loans.LoanBook`: ``pledgewatch simulate``'s loan book (:mod:`monitor.simulate`:
one loan and one pledged asset each, lines 130/120/110 %), the default rulebook with two watch-list
rules appended, and four 15-min windows of valuations per asset, copies of a real valuation of the
demo (:func:`monitor.contract.examples`) scaled to a coverage per loan: 70 % of the loans healthy
(150 %), 10 % below the warning line (125 %), 10 % below the margin-call line (115 %: margin call
issued, on the watch list) and 10 % below close-out (100 %). The rules run on each window as in a
worker, so categories, watch-list reasons and margin calls are what the core makes of them.

Timed, in this process, as the worker answers ``GET /portfolio`` from the worker that holds the
loans (the HTTP server and, with several workers, the other workers' answers are not included):

1. **data**: the ``/api/loans`` entries (``streams.api.loan_summary`` + ``model_dump(mode="json")``
   of every loan, what ``local_loans`` does), plus a JSON encode and decode of the list (what a
   forwarded answer costs on both sides);
2. **render**: :func:`monitor.portfolio.render_portfolio` of those entries, with a concentration
   table of 20 rows.

The figure is the median and the largest of 20 repetitions of data + render, after one warm-up, in
wall-clock time, with the process's CPU time beside it (on a machine shared with other work the
wall-clock maximum includes time the process waited for a core; the load average is recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
import zoneinfo
from pathlib import Path
from typing import Any

from report import header, publish  # benchmarks/report.py (the scripts run from benchmarks/)

from monitor.contract import examples
from monitor.core import decode_loan_event
from monitor.core.loans import LoanBook
from monitor.portfolio import render_portfolio
from monitor.sensors import CountingSensor
from monitor.simulate import Fleet
from rules.rulebook import parse_rulebook
from streams.api import loan_summary

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 20
#: coverage per loan by its index mod 10: 7 healthy, 1 below warning, 1 below margin call, 1 below close-out
COVERAGES = (1.5,) * 7 + (1.25, 1.15, 1.0)
WATCH_RULES = """
  - id: bench-watch-below-warning
    scope: loan
    severity: info
    action: watch_list
    when: loan.below_warning_seconds >= 1800.0
    resolve_when: loan.below_warning_seconds == 0.0
    summary:
      zh: "覆盖率低于预警线已 {{ loan.below_warning_seconds | dur }}"
      en: "coverage below the warning line for {{ loan.below_warning_seconds | dur }}"
  - id: bench-watch-recent-margin-call
    scope: loan
    severity: info
    action: watch_list
    when: loan.seconds_since_margin_call <= 3600.0
    summary:
      zh: "一小时内发出追加保证金通知"
      en: "a margin call issued within the hour"
"""


def book_of(n: int) -> LoanBook:
    """``n`` simulated loans, each valued for four windows at its coverage (module docstring)."""
    text = (ROOT / "rules" / "rulebooks" / "default.yaml").read_text().rstrip("\n") + "\n" + WATCH_RULES
    book = LoanBook(parse_rulebook(text, "default+watch.yaml"), CountingSensor())
    fleet = Fleet(n, 1, seed=3)
    for raw in fleet.loan_book():
        book.on_loan_event(decode_loan_event(raw))
    template = examples()["CollateralValuation"][0]
    start = dt.datetime.fromtimestamp(fleet.start, dt.UTC)
    for i, (loan_id, loan) in enumerate(sorted(book.loans.items())):
        (slot,) = loan.assets.values()
        value = loan.outstanding * COVERAGES[i % len(COVERAGES)]
        for w in range(4):
            end = start + dt.timedelta(minutes=15 * (w + 1))
            val = template.model_copy(
                update={
                    "asset_id": slot.asset_id,
                    "loan_ids": [loan_id],
                    "window_start": end - dt.timedelta(minutes=15),
                    "window_end": end,
                    "value": value,
                    "value_lower": value,
                    "value_upper": value * 1.05,
                    "appraisal_value": slot.appraisal_value,
                    "status": "active",
                    "in_silence_grace": False,
                }
            )
            book.on_valuation(loan_id, val)
    return book


def concentration(rows: int = 20) -> dict[str, Any]:
    """A concentration answer of the shape ``/api/portfolio/concentration`` will give."""
    dims = ("borrower_group", "asset_profile", "region")
    return {
        "as_of": "2024-01-01T01:00:00Z",
        "rows": [
            {
                "dimension": dims[i % 3],
                "key": f"K-{i:02d}",
                "exposure_yuan": 1e7 * (i + 1),
                "collateral_yuan": 1.5e7 * (i + 1),
                "share": (i + 1) / 210,
                "limit": None if i % 4 == 0 else 0.08,
                "breached": (i + 1) / 210 > 0.08 and i % 4 != 0,
            }
            for i in range(rows)
        ],
    }


def time_page(book: LoanBook, lang: str) -> dict[str, Any]:
    """Median and largest seconds of data, render and both, over :data:`REPEATS` after one warm-up."""
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    conc = concentration()
    data_s, render_s, total_s, cpu_s = [], [], [], []
    size = 0
    for k in range(REPEATS + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        loans = [loan_summary(loan).model_dump(mode="json") for loan in book.loans.values()]
        loans = json.loads(json.dumps(loans))
        t1 = time.perf_counter()
        page = render_portfolio(loans, lang, tz, dt.datetime.now(dt.UTC), conc)
        t2 = time.perf_counter()
        c2 = time.process_time()
        if k:  # the first is the warm-up
            data_s.append(t1 - t0)
            render_s.append(t2 - t1)
            total_s.append(t2 - t0)
            cpu_s.append(c2 - c0)
        size = len(page.encode())
    return {
        "lang": lang,
        "data_s_median": round(statistics.median(data_s), 4),
        "render_s_median": round(statistics.median(render_s), 4),
        "total_s_median": round(statistics.median(total_s), 4),
        "total_s_max": round(max(total_s), 4),
        "cpu_s_median": round(statistics.median(cpu_s), 4),
        "cpu_s_max": round(max(cpu_s), 4),
        "page_bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, nargs="+", default=[1000, 2000])
    args = parser.parse_args()
    result = header("portfolio_page")
    result["repeats"] = REPEATS
    runs = []
    for n in args.loans:
        t0 = time.perf_counter()
        book = book_of(n)
        built = time.perf_counter() - t0
        summaries = [loan_summary(loan) for loan in book.loans.values()]
        mix = {
            "statuses": dict(
                sorted({s: sum(x.status == s for x in summaries) for s in {x.status for x in summaries}}.items())
            ),
            "on_watch_list": sum(x.on_watch_list for x in summaries),
            "open_margin_calls": sum(len(x.open_margin_calls) for x in summaries),
            "categories": dict(
                sorted(
                    {
                        c: sum(x.suggested_category == c for x in summaries)
                        for c in {x.suggested_category for x in summaries}
                    }.items()
                )
            ),
        }
        runs.append(
            {
                "loans": n,
                "book_built_s": round(built, 1),
                **mix,
                "timings": [time_page(book, "zh"), time_page(book, "en")],
            }
        )
        print(json.dumps(runs[-1], ensure_ascii=False), flush=True)
    result["runs"] = runs
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    rows = []
    for run in runs:
        worst = max(run["timings"], key=lambda t: t["total_s_max"])
        zh = next(t for t in run["timings"] if t["lang"] == "zh")
        rows.append(
            (
                f"GET /portfolio's data and HTML for {run['loans']:,} simulated loans in-process "
                f"({run['open_margin_calls']} open margin calls, {run['on_watch_list']} on the watch list; "
                "one worker holding them all, no HTTP)",
                f"{zh['total_s_median'] * 1000:,.0f} ms median (data {zh['data_s_median'] * 1000:,.0f} ms, "
                f"HTML {zh['render_s_median'] * 1000:,.0f} ms), at most {worst['total_s_max'] * 1000:,.0f} ms "
                f"of {REPEATS} (CPU at most {worst['cpu_s_max'] * 1000:,.0f} ms); "
                f"page {zh['page_bytes'] / 1e6:.1f} MB; "
                f"target < 1 s: {'met' if worst['total_s_max'] < 1.0 else '**not met** by the slowest'} "
                f"(load average {result['load_average_1min_at_end']} on {os.cpu_count()} cores)",
            )
        )
    publish("portfolio_page", result, rows)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
