"""Does a Prometheus scrape stall event processing? 1,000 loans of 2 assets each in one worker's registry.

Run: ``.venv/bin/python benchmarks/scrape.py``. Writes ``benchmarks/results/scrape.json`` and the
``scrape`` rows of ``docs/benchmarks.md``.

1. The registry holds the metrics of 1,000 loans and 2,000 assets (every per-loan and per-asset
   series, from real valuations of the Auckland sample re-labelled), plus the pipeline metrics.
2. Cost of one scrape (``Metrics.exposition``, the ``/metrics`` body), median of 30.
3. The core processes the Auckland sample (54,755 records) with the Prometheus sensor on that same
   registry, once without scrapes and once with a thread scraping every second (15 s is usual; 1 s
   is 15× harsher), and once scraping back to back (the worst case). The GIL makes a scrape stop the
   event loop for its duration, so the slowdown is what a scrape costs processing.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from report import publish  # benchmarks/report.py (the scripts run from benchmarks/)

from monitor.backtest import load_loan_book, pledged_assets, read_telemetry, run_backtest
from monitor.core import CoreParams, Monitor, decode_loan_event
from rules.rulebook import load_rulebook
from streams.prometheus import Metrics, PrometheusSensor

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
BOOK = ROOT / "examples" / "loan_book.jsonl"
RULES = ROOT / "rules" / "rulebooks" / "default.yaml"
LOANS = 1_000
PASSES = 4


def populated_registry() -> tuple[Metrics, PrometheusSensor]:
    """A registry with the series of 1,000 loans and 2,000 assets."""
    book = load_loan_book(BOOK)
    res = run_backtest(book, read_telemetry(SAMPLE, pledged_assets(book)), load_rulebook(RULES))
    val = res.valuations[-1]
    snap = res.of("loan-risk")[-1]
    metrics = Metrics.create(CollectorRegistry())
    sensor = PrometheusSensor(metrics)
    for i in range(LOANS):
        loan = f"L-{i:05d}"
        assets = [f"A-{i:05d}-{k}" for k in range(2)]
        for a in assets:
            sensor.on_valuation(val.model_copy(update={"asset_id": a, "loan_ids": [loan]}))
        parts = [s.model_copy(update={"asset_id": a}) for s, a in zip(snap.assets * 2, assets, strict=False)]
        sensor.on_loan_risk(snap.model_copy(update={"loan_id": loan, "assets": parts}))
        sensor.on_alert("coverage-below-warning", "warning", "firing", False, loan)
    return metrics, sensor


def process(reg_sensor: PrometheusSensor, events: list, book: list[bytes], scrape: str, metrics: Metrics) -> dict:  # type: ignore[type-arg]
    """Process the sample 4 times (fresh cores, about 5 s) with the sensor; scrape as asked meanwhile."""
    rulebook = load_rulebook(RULES)
    monitors = []
    for _ in range(PASSES):
        mon = Monitor(rulebook, CoreParams(), reg_sensor)
        for raw in book:
            mon.on_loan_event(decode_loan_event(raw))
        monitors.append(mon)
    stop = threading.Event()
    scrapes: list[float] = []

    def scraper() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            metrics.exposition()
            scrapes.append(time.perf_counter() - t0)
            if scrape == "1s":
                stop.wait(1.0)

    th = threading.Thread(target=scraper, daemon=True) if scrape != "none" else None
    t0 = time.perf_counter()
    if th:
        th.start()
    for mon in monitors:
        for ev in events:
            mon.on_telemetry(ev)
    seconds = time.perf_counter() - t0
    stop.set()
    if th:
        th.join()
    return {"scrape": scrape, "events_per_s": PASSES * len(events) / seconds, "scrapes": len(scrapes)}


def main() -> None:
    """Measure and write the results."""
    metrics, sensor = populated_registry()
    body = metrics.exposition()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        metrics.exposition()
        times.append(time.perf_counter() - t0)
    scrape_ms = statistics.median(times) * 1e3
    book = load_loan_book(BOOK)
    events = list(read_telemetry(SAMPLE, pledged_assets(book)))
    runs = {}
    for mode in ("none", "1s", "continuous", "none", "1s", "none", "1s"):
        r = process(sensor, events, book, mode, metrics)
        runs.setdefault(mode, []).append(r["events_per_s"])
    base = statistics.median(runs["none"])
    out = {
        "benchmark": "scrape",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loans": LOANS,
        "assets": 2 * LOANS,
        "series": series,
        "bytes": len(body),
        "scrape_ms_median": round(scrape_ms, 1),
        "events_per_s": {k: round(statistics.median(v)) for k, v in runs.items()},
        "slowdown_scrape_every_1s": round(1 - statistics.median(runs["1s"]) / base, 4),
        "slowdown_scrape_continuous": round(1 - statistics.median(runs["continuous"]) / base, 4),
    }
    publish(
        "scrape",
        out,
        [
            (
                f"/metrics of one worker holding {LOANS:,} loans and {2 * LOANS:,} assets ({series:,} series, "
                f"{len(body) / 1e6:.1f} MB) while the core processes the Auckland sample",
                f"one scrape {scrape_ms:.0f} ms; processing {out['events_per_s']['none']:,} records/s unscraped, "
                f"{out['slowdown_scrape_every_1s']:.1%} slower scraped every 1 s, "
                f"{out['slowdown_scrape_continuous']:.1%} slower scraped back to back",
            )
        ],
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
