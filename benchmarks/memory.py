"""Memory of the core: state per asset, RSS per 1,000 assets, and RSS flat over 10 million records.

Run: ``.venv/bin/python benchmarks/memory.py [--events 10000000]``. Writes
``benchmarks/results/memory.json`` and the ``memory`` rows of ``docs/benchmarks.md``.

The core (:class:`monitor.core.router.Monitor`) runs in this process on simulated telemetry
(:mod:`monitor.simulate`, seeded from the Auckland sample), its outputs dropped as a worker drops
them once published; the records are generated in a child process (the second core) and arrive as
JSON bytes, so this process's RSS is the core's own.

1. **Per asset**: 1,000 assets × 2 buses for 2 days of event time; then the pickled size of each
   asset's models (``AssetValuer``: river's HalfSpaceTrees and forecasters, the "model state") and
   of its whole checkpoint (models + open windows + de-duplication memory of the last 6 h), and
   the RSS growth per 1,000 assets.
2. **Flat RSS**: 100 assets × 50 buses for ``--events`` records; RSS sampled every million. After
   the first two million (the de-duplication horizon, 6 h of event time, fills in ≈ 0.9 M), the
   samples must stay within ±5 % of their mean.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

from report import header, publish  # benchmarks/report.py (the scripts run from benchmarks/)

from monitor.core import CoreParams, Monitor, decode_loan_event, decode_telemetry
from monitor.errors import InputRejected
from monitor.sensors import CountingSensor
from monitor.simulate import Fleet
from rules.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 20_000


def rss_bytes() -> int:
    """Resident set size of this process, bytes (``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _generate(assets: int, vehicles: int, events: int, queue: Any) -> None:
    fleet = Fleet(assets, vehicles, seed=11)
    chunk: list[bytes] = []
    for _, value, _ in fleet.records(events):
        chunk.append(value)
        if len(chunk) == CHUNK:
            queue.put(chunk)
            chunk = []
    queue.put(chunk)
    queue.put(None)


def run_core(assets: int, vehicles: int, events: int, every: int = 0) -> tuple[Monitor, list[dict[str, float]], float]:
    """Feed ``events`` simulated records to a fresh core; returns it, RSS samples every ``every`` records, seconds."""
    fleet = Fleet(assets, vehicles, seed=11)
    monitor = Monitor(load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"), CoreParams(), CountingSensor())
    for raw in fleet.loan_book():
        monitor.on_loan_event(decode_loan_event(raw))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue(maxsize=64)
    child = ctx.Process(target=_generate, args=(assets, vehicles, events, queue), daemon=True)
    child.start()
    now = time.time()
    n = 0
    samples: list[dict[str, float]] = []
    t0 = time.perf_counter()
    while (chunk := queue.get()) is not None:
        for raw in chunk:
            try:
                monitor.on_telemetry(decode_telemetry(raw, now))
            except InputRejected:
                pass
            n += 1
            if every and n % every == 0:
                samples.append({"records": n, "rss_mb": round(rss_bytes() / 2**20, 1)})
    seconds = time.perf_counter() - t0
    child.join()
    return monitor, samples, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000, help="records of the flat-RSS run")
    args = ap.parse_args()

    base = rss_bytes()
    per_hour = Fleet(1000, 2, seed=11).events_per_hour
    monitor, _, _ = run_core(1000, 2, int(per_hour * 48))
    grown = rss_bytes() - base
    models = [len(pickle.dumps(a.valuer, protocol=5)) for a in monitor.assets.values()]
    whole = [len(pickle.dumps(a, protocol=5)) for a in monitor.assets.values()]
    windows = statistics.mean(len(a.history) for a in monitor.assets.values())
    del monitor

    _, samples, seconds = run_core(100, 50, args.events, every=1_000_000)
    steady = [s["rss_mb"] for s in samples if s["records"] > 2_000_000]
    mean = statistics.mean(steady) if steady else float("nan")
    spread = max(abs(x - mean) / mean for x in steady) if steady else float("nan")
    result = {
        **header("memory"),
        "per_asset": {
            "assets": 1000,
            "windows_valued_per_asset": round(windows, 1),
            "model_state_kb_mean": round(statistics.mean(models) / 1024, 1),
            "model_state_kb_max": round(max(models) / 1024, 1),
            "checkpoint_kb_mean": round(statistics.mean(whole) / 1024, 1),
            "rss_mb_per_1000_assets": round(grown / 2**20, 1),
        },
        "flat": {
            "assets": 100,
            "vehicles": 50,
            "records": args.events,
            "seconds": round(seconds, 1),
            "records_per_s": round(args.events / seconds),
            "samples": samples,
            "steady_mean_mb": round(mean, 1),
            "steady_max_deviation": round(spread, 4),
        },
    }
    pa, fl = result["per_asset"], result["flat"]
    publish(
        "memory",
        result,
        [
            (
                "state per asset (1,000 simulated assets after 2 days of event time)",
                f"models {pa['model_state_kb_mean']:.1f} KB (max {pa['model_state_kb_max']:.1f}), whole checkpoint "
                f"{pa['checkpoint_kb_mean']:.1f} KB; RSS {pa['rss_mb_per_1000_assets']:.1f} MB per 1,000 assets",
            ),
            (
                f"RSS over {args.events:,} records (100 assets × 50 buses, in-process core)",
                f"{fl['steady_mean_mb']:.1f} MB after the first 2 M, largest deviation "
                f"{fl['steady_max_deviation']:.1%} (target ±5 %); {fl['records_per_s']:,} records/s",
            ),
        ],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
