"""The Madison week: three loans secured by Madison Metro route groups over 9 days of BusTime polls.

Run: ``make madison``, or::

    .venv/bin/python examples/madison/week.py [--inject INCIDENT ...] [--out PATH] [--data POLLS]

The same run as ``pledgewatch backtest --telemetry ../shared/data/madison-metro-bus-avl/polls
--loan-book examples/madison/loan_book.jsonl`` (the same library calls, the same settings from the
environment and the default rulebook), summarised per loan: alerts firing by what their rule does
(a ``margin_call`` action, a critical loan rule without one = close-out, a warning loan rule),
feed-silent episodes per asset from firing to resolved in local time, the watch-list entries and
exits with their reasons, and the valuations' interval coverage when they carry one. Writes
``benchmarks/results/madison_week.json`` and prints a table.

The polls (``../shared/data``, not shipped) are read in place; without them the script says so and exits.
The collector stopped most evenings and overnight (``SOURCE.md``), so feed-silent episodes are expected.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import zoneinfo
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from monitor.backtest import BacktestResult, interval_coverage, load_inputs, run_backtest
from monitor.core import CoreParams
from monitor.errors import PledgewatchError
from monitor.schemas import CollateralPledged, LoanEventAdapter, LoanOpened
from monitor.settings import Settings
from monitor.sources.bustime import timezone_from_pledges
from monitor.valuation import ValuationParams
from rules.rulebook import Rulebook, load_rulebook

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "examples" / "madison" / "loan_book.jsonl"
POLLS = ROOT.parent / "shared" / "data" / "madison-metro-bus-avl" / "polls"
RESULT = ROOT / "benchmarks" / "results" / "madison_week.json"
FEED_SILENT = "feed-silent"


def params(settings: Settings) -> CoreParams:
    """Core parameters from the settings, as ``pledgewatch backtest`` builds them (``monitor/cli.py``)."""
    # hourly windows unless PLEDGEWATCH_WINDOW_S says otherwise: a Madison route group completes 2-5
    # trips in 15 minutes, too few for a 15-min window's ratio to say much (a 90 % Poisson band of
    # ±80 %); an hour holds 10-20, and 3600 s is the production window (docs/valuation.md)
    window_s = settings.window_s if "PLEDGEWATCH_WINDOW_S" in os.environ else 3600.0
    # calibration (Q_0) over one day of windows, as the default 96 × 15 min
    calibration = (
        settings.calibration_windows if "PLEDGEWATCH_CALIBRATION_WINDOWS" in os.environ else round(86_400 / window_s)
    )
    return CoreParams(
        window_s=window_s,
        allowed_lateness_s=settings.allowed_lateness_s,
        max_clock_skew_s=settings.max_clock_skew_s,
        dedup_horizon_s=settings.effective_dedup_horizon_s,
        earliest_event_time_s=settings.earliest_event_time.timestamp(),
        valuation=ValuationParams(
            window_s=window_s,
            calibration_windows=calibration,
            shift_warning_every_s=settings.shift_warning_every_s,
            shift_confirm_every_s=settings.shift_confirm_every_s,
        ),
    )


def kind_of(rulebook: Rulebook, rule_id: str) -> str | None:
    """``margin_calls``, ``close_outs`` or ``warnings`` (loan rules; asset warnings but feed-silent)."""
    rule = next((r for r in rulebook.rules if r.id == rule_id), None)
    if rule is None or rule_id == FEED_SILENT:
        return None  # feed-silent episodes are listed on their own, beside the collector's gaps
    if rule.action == "margin_call":
        return "margin_calls"
    if rule.scope != "loan" and rule.severity != "warning":
        return None
    return {"critical": "close_outs", "warning": "warnings"}.get(rule.severity)


def summarise(res: BacktestResult, book: list[bytes], rulebook: Rulebook, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """Per loan: alert counts by kind and by rule, feed-silent episodes per asset, interval coverage."""
    loans: dict[str, list[str]] = defaultdict(list)
    for raw in book:
        ev = LoanEventAdapter.validate_json(raw)
        if isinstance(ev, LoanOpened):
            loans.setdefault(ev.loan_id, [])
        elif isinstance(ev, CollateralPledged):
            loans[ev.loan_id].append(ev.asset_id)

    def local(at: dt.datetime) -> str:
        return at.astimezone(zone).isoformat(timespec="seconds")

    episodes: dict[str, dict[str, dict[str, str | None]]] = defaultdict(dict)  # asset -> alert id -> episode
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    first: dict[str, dict[str, str]] = defaultdict(dict)  # loan -> rule -> first firing (window end, local)
    for a in res.alerts:
        if a.shadow:
            continue
        if a.rule_id == FEED_SILENT and a.asset_id is not None:
            ep = episodes[a.asset_id].setdefault(a.alert_id, {"start": None, "end": None})
            ep["start" if a.status == "firing" else "end"] = local(a.at)
        if a.status != "firing":
            continue
        by_rule[a.loan_id][a.rule_id] += 1
        first[a.loan_id].setdefault(a.rule_id, local(a.at))
        kind = kind_of(rulebook, a.rule_id)
        if kind is not None:
            counts[a.loan_id][kind] += 1
    issued = Counter(m.loan_id for m in res.margin_calls if m.status == "issued")
    low: dict[str, float] = {}
    for s in res.snapshots:
        if s.status not in ("calibrating", "closed") and s.coverage_ratio is not None:
            low[s.loan_id] = min(low.get(s.loan_id, float("inf")), s.coverage_ratio)
    # the watch list (issue 19): each entry, change of reasons and exit, with the reasons that held
    watch: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for w in res.watch_list:
        watch[w.loan_id].append(
            {
                "at": local(w.at),
                "status": w.status,
                "rule": w.rule_id,
                "reasons": [f"{r.rule_id}: {r.summary_en}" for r in w.reasons],
            }
        )
    late: Counter[str] = Counter()
    for v in res.valuations:
        late[v.asset_id] += v.late_events
    out: dict[str, Any] = {}
    for loan, assets in sorted(loans.items()):
        cov, cov_n = interval_coverage(v for v in res.valuations if v.asset_id in assets)
        out[loan] = {
            "assets": assets,
            "margin_calls": counts[loan]["margin_calls"],
            "margin_calls_issued": issued[loan],
            "close_outs": counts[loan]["close_outs"],
            "warnings": counts[loan]["warnings"],
            "alerts_firing_by_rule": dict(sorted(by_rule[loan].items())),
            "first_firing_at": dict(sorted(first[loan].items(), key=lambda kv: kv[1])),
            "min_coverage": round(low[loan], 4) if loan in low else None,
            "feed_silent": {
                a: sorted(episodes[a].values(), key=lambda e: e["start"] or e["end"] or "") for a in assets
            },
            "late_events": {a: late[a] for a in assets},
            "watch_list": watch[loan],
            "interval_coverage": round(cov, 4) if cov is not None else None,
            "interval_coverage_windows": cov_n,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the week, write the JSON summary, print the table; 0 on success, 2 on a setup error."""
    ap = argparse.ArgumentParser(description="Madison Metro week backtest (three route-group loans).")
    ap.add_argument("--inject", action="append", default=[], metavar="INCIDENT", help="e.g. outage:ASSET@2d+6h")
    ap.add_argument("--out", type=Path, default=RESULT, help=f"JSON summary (default {RESULT.relative_to(ROOT)})")
    ap.add_argument("--data", type=Path, default=POLLS, help="folder of vehicles_*.csv.gz polls")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(
            f"{args.data}: no such folder. The Madison polls are read in place from ../shared/data/"
            "madison-metro-bus-avl/polls (not shipped with pledgewatch); give --data PATH to them.",
            file=sys.stderr,
        )
        return 2
    settings = Settings()
    rulebook = load_rulebook(settings.rulebook)
    try:
        book, events, incidents = load_inputs(BOOK, args.data, args.inject)
    except (PledgewatchError, FileNotFoundError, ValueError) as exc:
        print(f"madison week: {exc}", file=sys.stderr)
        return 2
    zone = zoneinfo.ZoneInfo(timezone_from_pledges(book))
    res = run_backtest(book, events, rulebook, params(settings), incidents)
    loans = summarise(res, book, rulebook, zone)
    summary: dict[str, Any] = {
        "benchmark": "madison_week",
        # no wall-clock stamp or run time: a rerun on the same code and data leaves git status clean
        "data": "../shared/data/madison-metro-bus-avl/polls" if args.data == POLLS else str(args.data),
        "window_s": params(settings).window_s,
        "inject": args.inject,
        "rulebook": f"{rulebook.name} v{rulebook.version}",
        "records": res.events,
        "valuations": len(res.valuations),
        "dead_letters": dict(res.sensor.dead_letters),
        "interval_coverage": round(c, 4) if (c := interval_coverage(res.valuations)[0]) is not None else None,
        "loans": loans,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"{res.events:,} records, {len(res.valuations):,} valuations in {res.seconds:.1f} s; wrote {args.out}")
    head = (
        f"{'loan':<10} {'asset':<26} {'warn':>5} {'m.call':>6} {'close':>6} {'silent':>6} {'min cov':>8} "
        f"{'late':>6} {'watch':>6}"
    )
    print(head)
    print("-" * len(head))
    for loan, s in loans.items():
        cov = f"{s['min_coverage']:.1%}" if s["min_coverage"] is not None else "-"
        for i, a in enumerate(s["assets"]):
            first = i == 0
            print(
                f"{loan if first else '':<10} {a:<26} {s['warnings'] if first else '':>5} "
                f"{s['margin_calls'] if first else '':>6} {s['close_outs'] if first else '':>6} "
                f"{len(s['feed_silent'][a]):>6} {cov if first else '':>8} {s['late_events'][a]:>6} "
                f"{sum(w['status'] == 'entered' for w in s['watch_list']) if first else '':>6}"
            )
    for loan, s in loans.items():
        for w in s["watch_list"]:
            print(f"{loan} {w['at']} watch list {w['status']} ({w['rule']}): {'; '.join(w['reasons']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
