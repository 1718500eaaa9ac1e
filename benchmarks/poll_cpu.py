"""CPU time of the worker's poll path in-process, to compare two trees in one sitting (issue 18).

Run: ``.venv/bin/python benchmarks/poll_cpu.py TREE [OBSERVATIONS]``, e.g. a clone of the base commit
and then this tree, alternated several times. It imports ``monitor`` and ``benchmarks/core_backtest.py``
from ``TREE`` (not from the installed package: the venv only provides the dependencies) and prints one
JSON line: µs of CPU (``time.process_time``; on a shared machine other processes' load counts less than
in wall time) an observation, decode alone and decode + core, as ``core_backtest.poll_path`` runs them
(e2e's poll load, median of 3 runs after a warm-up). Compare figures only within one sitting.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    tree = Path(sys.argv[1]).resolve()
    observations = int(sys.argv[2]) if len(sys.argv) > 2 else 150_000
    sys.path[:0] = [str(tree), str(tree / "benchmarks")]
    monitor = importlib.import_module("monitor")
    if not str(monitor.__file__).startswith(str(tree)):
        sys.exit(f"monitor imported from {monitor.__file__}, expected under {tree}")
    bench: Any = importlib.import_module("core_backtest")
    fleet = bench.Fleet(bench.POLL_ASSETS, bench.POLL_VEHICLES, seed=bench.POLL_SEED)
    polls = [value for _, value, _ in fleet.polls(observations)]
    book = [bench.decode_loan_event(raw) for raw in fleet.loan_book()]
    rulebook = bench.load_rulebook(tree / "rules" / "rulebooks" / "default.yaml")
    now = time.time()

    def decode_only() -> None:
        for raw in polls:
            bench.decode_telemetry_record(raw, now)

    def whole() -> None:  # core_backtest.poll_path's loop
        mon = bench.Monitor(rulebook)
        for ev in book:
            mon.on_loan_event(ev)
        assets = mon.asset_book
        limits = (now, 300.0, bench.EARLIEST, bench.MAX_BYTES)
        for offset, raw in enumerate(polls):
            fx = bench.apply_telemetry_record(assets, raw, bench.Provenance(partition=0, offset=offset), None, limits)
            mon._route(fx.outputs)
            if fx.newest is not None and assets.tick_due(fx.newest):
                mon._route(assets.tick(fx.newest))

    out: dict[str, Any] = {"tree": str(tree), "observations": observations, "records": len(polls)}
    for name, run in (("decode_us", decode_only), ("decode_and_core_us", whole)):
        run()
        runs = []
        for _ in range(3):
            t0 = time.process_time()
            run()
            runs.append((time.process_time() - t0) / observations * 1e6)
        out[name] = round(statistics.median(runs), 2)
        out[name + "_runs"] = [round(r, 2) for r in runs]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
