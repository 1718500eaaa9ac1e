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
from monitor.core import Monitor, Provenance, apply_telemetry_record, decode_loan_event
from monitor.core.common import EARLIEST
from monitor.core.decode import MAX_BYTES, decode_telemetry_record
from monitor.incidents import parse_incident
from monitor.simulate import Fleet
from rules.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"


#: the poll load of ``e2e.py`` (g): 20 assets × 70 buses, ≈ 60 observations a poll record
POLL_ASSETS, POLL_VEHICLES, POLL_SEED = 20, 70, 3


def poll_path(observations: int, repeat: int) -> dict[str, float]:
    """µs an observation of the worker's poll path in-process: decode alone, and decode + the core.

    The records of ``e2e.py``'s poll load, each through the worker's step
    (:func:`~monitor.core.apply_telemetry_record`: decode, then the observations one by one, no tick
    per observation; one per record), its outputs routed by :class:`monitor.core.Monitor` so that the
    loan side's rules run at each window close. Median of
    ``repeat`` runs after one warm-up. Where a worker's time goes beyond this is faust, Kafka and the
    checkpoint (``e2e.py``'s py-spy profile).
    """
    fleet = Fleet(POLL_ASSETS, POLL_VEHICLES, seed=POLL_SEED)
    polls = [value for _, value, _ in fleet.polls(observations)]
    book = [decode_loan_event(raw) for raw in fleet.loan_book()]
    rulebook = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    now = time.time()

    def decode_only() -> None:
        for raw in polls:
            decode_telemetry_record(raw, now)

    def whole() -> None:
        mon = Monitor(rulebook)
        for ev in book:
            mon.on_loan_event(ev)
        assets = mon.asset_book
        limits = (now, 300.0, EARLIEST, MAX_BYTES)  # decode_telemetry_record's defaults, as decode_only uses
        for offset, raw in enumerate(polls):  # the worker's one call per record, its outputs routed in memory
            fx = apply_telemetry_record(assets, raw, Provenance(partition=0, offset=offset), None, limits)
            mon._route(fx.outputs)
            if fx.newest is not None and assets.tick_due(fx.newest):
                mon._route(assets.tick(fx.newest))

    out: dict[str, float] = {"observations": observations, "records": len(polls)}
    for name, run in (("decode_us", decode_only), ("decode_and_core_us", whole)):
        run()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) / observations * 1e6)
        out[name] = round(statistics.median(times), 2)
    return out


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
        "poll_path": (polls := poll_path(150_000, 3)),
    }
    publish(
        "core_backtest",
        result,
        [
            (
                f"in-process core on the Auckland sample ({len(raw):,} records, 1 core)",
                f"{result['events_per_s_median']:,} records/s (median of {args.repeat} after {args.warmup} warm-up "
                f"run{'s' if args.warmup != 1 else ''}" + (f" at {round(cold[0]):,}/s" if cold else "") + ")",
            ),
            (
                f"the worker's poll path in-process ({polls['observations']:,} observations in {polls['records']:,} "
                f"poll records of e2e's load; median of 3)",
                f"{polls['decode_and_core_us']} µs an observation ({1e6 / polls['decode_and_core_us']:,.0f}/s), of "
                f"which decode {polls['decode_us']} µs",
            ),
        ],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
