"""Real-history acceptance run: the CTA daily boardings 2001-2024 through the core, summarised and plotted.

Run: ``make cta-history`` (installs the ``plot`` extra). The same run as::

    PLEDGEWATCH_WINDOW_S=86400 PLEDGEWATCH_CALIBRATION_WINDOWS=364 \\
    PLEDGEWATCH_EARLIEST_EVENT_TIME=2000-01-01T00:00:00Z \\
    pledgewatch backtest --telemetry examples/data/cta-daily-boardings.csv \\
        --loan-book examples/cta/loan_book.jsonl --rules examples/rulebooks/daily-ridership.yaml

Writes ``benchmarks/results/cta_history.json`` (alert days, counts, coverage extremes) and
``docs/img/cta-history-2019-2021.png`` (collateral value with its interval, the loan's lines in yuan,
and the alert days), and prints the Markdown table quoted in ``docs/valuation.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import defaultdict
from pathlib import Path
from typing import Any

from monitor.backtest import interval_coverage, load_loan_book, pledged_assets, read_telemetry, run_backtest
from monitor.core import CoreParams
from monitor.valuation import ValuationParams
from rules.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "examples" / "data" / "cta-daily-boardings.csv"
BOOK = ROOT / "examples" / "cta" / "loan_book.jsonl"
RULES = ROOT / "examples" / "rulebooks" / "daily-ridership.yaml"
PNG = ROOT / "docs" / "img" / "cta-history-2019-2021.png"
RESULT = ROOT / "benchmarks" / "results" / "cta_history.json"
PARAMS = CoreParams(
    window_s=86_400.0,
    earliest_event_time_s=dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp(),
    valuation=ValuationParams(window_s=86_400.0, calibration_windows=364),
)


def service_day(at: dt.datetime) -> dt.date:
    """Service day (Chicago) of a daily window, from its close time (the window end, local midnight)."""
    return at.astimezone(zoneinfo.ZoneInfo("America/Chicago")).date() - dt.timedelta(days=1)


def run() -> Any:
    """The CTA history backtest (``BacktestResult``)."""
    book = load_loan_book(BOOK)
    return run_backtest(book, read_telemetry(CSV, pledged_assets(book)), load_rulebook(RULES), PARAMS)


def summarise(res: Any) -> dict[str, Any]:
    """The committed summary (``benchmarks/results/cta_history.json``) of a history backtest.

    ``tests/unit/test_cta_history.py`` compares it with the committed file and with the figures of
    docs/valuation.md, so neither can drift from the code.
    """
    firing = [a for a in res.alerts if a.status == "firing"]
    coverage = [a for a in firing if a.rule_id.startswith("coverage-")]
    by_year: dict[int, int] = defaultdict(int)
    for a in firing:
        if a.rule_id == "coverage-below-warning":
            by_year[service_day(a.at).year] += 1
    snaps = [s for s in res.of("loan-risk") if s.status != "calibrating" and s.coverage_ratio]
    pre = [
        s for s in snaps if dt.datetime(2002, 1, 2, tzinfo=dt.UTC) <= s.as_of < dt.datetime(2020, 3, 1, tzinfo=dt.UTC)
    ]
    low = min(pre, key=lambda s: s.coverage_ratio or 0.0)
    summary: dict[str, Any] = {
        # no run time or wall-clock stamp: the file is committed, and a rerun of the same code on the
        # same data must leave `git status` clean (issue 15); the run time is printed instead
        "benchmark": "cta_history",
        "records": res.events,
        "valuations": len(res.valuations),
        "coverage_alerts": [
            {
                "service_day": service_day(a.at).isoformat(),
                "rule": a.rule_id,
                "coverage": round(float(a.facts["coverage_ratio"]), 6),
            }  # type: ignore[arg-type]
            for a in coverage
        ],
        "margin_calls": [
            {"id": m.margin_call_id, "status": m.status, "service_day": service_day(m.updated_at).isoformat()}
            for m in res.margin_calls
        ],
        "early_warnings_2002_2019": sum(v for y, v in by_year.items() if 2002 <= y <= 2019),
        "margin_calls_before_2020_03": sum(
            1 for m in res.margin_calls if m.status == "issued" and m.issued_at < dt.datetime(2020, 3, 1, tzinfo=dt.UTC)
        ),
        "min_coverage_2002_2020_02": {
            "service_day": service_day(low.as_of).isoformat(),
            "coverage": round(low.coverage_ratio or 0.0, 4),
            "warning_line": low.thresholds.warning,
        },
        # share of asset-days whose boardings fell inside the one-step 90 % band (docs/valuation.md)
        "interval_coverage": {
            name: {"coverage": round(cov, 4) if cov is not None else None, "windows": n}
            for name, (cov, n) in (
                ("all", interval_coverage(res.valuations)),
                *(
                    (asset, interval_coverage(v for v in res.valuations if v.asset_id == asset))
                    for asset in sorted({v.asset_id for v in res.valuations})
                ),
            )
        },
        # the level-shift detector's early warning (docs/valuation.md, level shifts), with its asset
        "activity_shortfall_warnings": [
            service_day(a.at).isoformat() + " " + str(a.subject) for a in firing if a.rule_id == "activity-shortfall"
        ],
        "drift_alerts": [
            service_day(a.at).isoformat() + " " + str(a.subject) for a in firing if a.rule_id == "activity-drift-down"
        ],
        # the watch list (issue 19): each entry, change of reasons and exit, with the reasons that hold
        "watch_list": [
            {
                "service_day": service_day(w.at).isoformat(),
                "status": w.status,
                "rule": w.rule_id,
                "reasons": [r.rule_id for r in w.reasons],
            }
            for w in res.watch_list
        ],
    }
    return summary


def main() -> None:
    """Run the history, write the JSON summary and the figure, print the Markdown rows."""
    res = run()
    summary = summarise(res)
    RESULT.write_text(json.dumps(summary, indent=2) + "\n")
    plot(res)
    print("| service day | alert | coverage |\n| --- | --- | --- |")
    for row in summary["coverage_alerts"]:
        print(f"| {row['service_day']} | {row['rule']} | {row['coverage']:.1%} |")
    listed = ("coverage_alerts", "drift_alerts", "margin_calls")
    print(json.dumps({k: v for k, v in summary.items() if k not in listed}, indent=2))
    print(f"backtest: {res.seconds:.1f} s")


def plot(res: Any) -> None:
    """Collateral value with its interval, the three lines in yuan and the alert days, 2019-2021."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo_t, hi_t = dt.datetime(2019, 1, 1, tzinfo=dt.UTC), dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    days: dict[dt.date, dict[str, Any]] = {}
    for v in res.valuations:
        if lo_t <= v.window_end < hi_t and v.status == "active":
            d = days.setdefault(v.window_start.date(), {"v": 0.0, "lo": 0.0, "hi": 0.0, "n": 0})
            d["v"] += v.value
            d["lo"] += v.value_lower
            d["hi"] += v.value_upper
            d["n"] += 1
    xs = sorted(d for d, x in days.items() if x["n"] == 2)
    lines: dict[dt.date, Any] = {}
    for s in res.of("loan-risk"):
        if lo_t <= s.as_of < hi_t:
            lines[service_day(s.as_of)] = (s.outstanding, s.thresholds)
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    ax.fill_between(
        xs,
        [days[d]["lo"] / 1e6 for d in xs],
        [days[d]["hi"] / 1e6 for d in xs],
        color="#9ecae1",
        alpha=0.6,
        label="90 % interval",
    )
    ax.plot(xs, [days[d]["v"] / 1e6 for d in xs], color="#08519c", lw=1.2, label="collateral value V_t (bus + rail)")
    known = sorted(d for d in lines if d in days)
    for name, color in (("warning", "#fdae6b"), ("margin_call", "#e6550d"), ("close_out", "#a50f15")):
        ax.step(
            known,
            [lines[d][0] * getattr(lines[d][1], name) / 1e6 for d in known],
            where="post",
            color=color,
            lw=1,
            ls="--",
            label=f"{name.replace('_', '-')} line",
        )
    marks = {
        "coverage-below-warning": ("#fd8d3c", "early warning"),
        "coverage-below-margin-call": ("#d7301f", "margin call"),
        "coverage-below-close-out": ("#7f0000", "close-out"),
    }
    seen: set[str] = set()
    for a in res.alerts:
        if a.status == "firing" and a.rule_id in marks and lo_t <= a.at < hi_t:
            color, label = marks[a.rule_id]
            ax.axvline(
                service_day(a.at),
                color=color,
                lw=1.4,
                label=None if label in seen else f"{label} ({service_day(a.at):%Y-%m-%d})",
            )
            seen.add(label)
    ax.set_ylabel("million yuan")
    ax.set_title("CTA ridership data pledged to one loan, renewed every 1 January: value, interval, lines, alerts")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG, metadata={"Software": None})  # no library version: a rerun leaves git clean


if __name__ == "__main__":
    main()
