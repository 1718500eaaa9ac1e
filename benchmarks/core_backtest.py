"""Throughput of the core in-process (the ``pledgewatch backtest`` path) on the shipped real sample.

Run: ``.venv/bin/python benchmarks/core_backtest.py [--repeat 5] [--warmup 1]``. Writes
``benchmarks/results/core_backtest.json`` and the row of this benchmark in
``docs/benchmarks.md``. Each record goes through JSON encode, strict decode,
windowing, and (once per window) valuation and rules, as in the worker.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
from pathlib import Path

from report import header, publish  # benchmarks/report.py (the scripts run from benchmarks/)

from monitor.backtest import load_loan_book, pledged_assets, read_telemetry, run_backtest
from monitor.incidents import parse_incident
from rules.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (imports, CEL, first model fits)")
    args = ap.parse_args()
    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    events = list(read_telemetry(SAMPLE, pledged_assets(book)))
    raw = [e.model_dump_json().encode() for e in events]
    rb = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    incidents = [parse_incident("outage:akl-routes-7xx@3h")]
    cold = []
    for _ in range(args.warmup):  # the first run in a process is 20-25 % slower: lazy imports, caches, allocator
        t0 = time.perf_counter()
        run_backtest(book, raw, rb)
        cold.append(len(raw) / (time.perf_counter() - t0))
    rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = run_backtest(book, raw, rb)
        rates.append(len(raw) / (time.perf_counter() - t0))
    with_incident = run_backtest(book, events, rb, incidents=incidents)
    prof = cProfile.Profile()
    prof.runcall(run_backtest, book, raw, rb)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:10]
    profile = [[f"{Path(f).name}:{line}({fn})", round(v[2] / total, 3)] for (f, line, fn), v in top]
    result = {
        **header("core_backtest"),
        "records": len(raw),
        "repeat": args.repeat,
        "events_per_s_median": round(statistics.median(rates)),
        "events_per_s_all": [round(r) for r in rates],
        "warmup_runs_events_per_s": [round(r) for r in cold],
        "valuations": len(res.valuations),
        "alerts_with_demo_incident": len(with_incident.alerts),
        "profile_own_time_share": profile,
    }
    publish(
        "core_backtest",
        result,
        [
            (
                f"in-process core on the Auckland sample ({len(raw):,} records, 1 core)",
                f"{result['events_per_s_median']:,} records/s (median of {args.repeat} after {args.warmup} warm-up "
                f"run{'s' if args.warmup != 1 else ''}" + (f" at {round(cold[0]):,}/s" if cold else "") + ")",
            )
        ],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
