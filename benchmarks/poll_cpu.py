"""CPU time an observation of the worker's poll path in-process: decode alone, and decode + the core.

Run from a clone's root: ``.venv/bin/python benchmarks/poll_cpu.py [observations] [repeat] [label]``
(defaults 150000, 3). The workload of :func:`core_backtest.poll_path` (``e2e.py``'s poll load, each
record through :func:`~monitor.core.apply_telemetry_record`, its outputs routed), timed with
``time.process_time`` rather than the wall clock: on a machine shared with other processes CPU time is
what a change to the core moves (``docs/benchmarks.md``). Prints the median of ``repeat`` runs after one
warm-up, µs an observation. It imports the clone it is run from (``benchmarks/`` of the working
directory and its installed ``monitor``), so the same file measures another checkout (the base of a
comparison) when run from that checkout's root with its own venv.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))

from core_backtest import POLL_ASSETS, POLL_SEED, POLL_VEHICLES, ROOT

from monitor.core import Monitor, Provenance, apply_telemetry_record, decode_loan_event
from monitor.core.common import EARLIEST
from monitor.core.decode import MAX_BYTES, decode_telemetry_record
from monitor.simulate import Fleet
from rules.rulebook import load_rulebook


def main() -> None:
    """Print ``label decode X decode+core Y core Y-X`` (µs of CPU an observation, medians)."""
    observations = int(sys.argv[1]) if len(sys.argv) > 1 else 150_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    label = sys.argv[3] if len(sys.argv) > 3 else os.getcwd()
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
        limits = (now, 300.0, EARLIEST, MAX_BYTES)
        for offset, raw in enumerate(polls):
            fx = apply_telemetry_record(assets, raw, Provenance(partition=0, offset=offset), None, limits)
            mon._route(fx.outputs)
            if fx.newest is not None and assets.tick_due(fx.newest):
                mon._route(assets.tick(fx.newest))

    res = {}
    for name, run in (("decode", decode_only), ("decode+core", whole)):
        run()
        times = []
        for _ in range(repeat):
            t0 = time.process_time()
            run()
            times.append((time.process_time() - t0) / observations * 1e6)
        res[name] = statistics.median(times)
    core = res["decode+core"] - res["decode"]
    print(f"{label} decode {res['decode']:.2f} decode+core {res['decode+core']:.2f} core {core:.2f}", flush=True)


if __name__ == "__main__":
    main()
