"""Compare activity forecasters by progressive validation (predict one step, then learn) on real series.

Run: ``.venv/bin/python benchmarks/forecasters.py`` (needs ../shared/data). Writes
``benchmarks/results/forecasters.json`` and the ``forecasters`` rows of ``docs/benchmarks.md``.

Series
- Auckland trip updates: trips completed per 15-min window for each of the four route groups over
  both archived days (season = 96 windows = 1 day); scored on day 2, after one season of history.
- CTA daily bus boardings 2001-01-01..2024-10-31 (sorted, duplicates dropped; season = 7 days);
  scored from the second year on.

Forecasters (one step ahead)
- ``seasonal_naive``: the value one season ago.
- ``pledgewatch``: the default of ``monitor.valuation``: seasonal shape from the first season (the
  appraisal's baseline), river ``HoltWinters(alpha=0.1)`` on the deseasonalised level.
- ``pledgewatch_adaptive``: candidate for issue 4: the same with seasonal indices learned (gamma 0.3).
- ``holtwinters_additive``: river ``HoltWinters(alpha=0.3, beta=0.01, gamma=0.2, seasonality=season)``.
- ``snarimax``: river ``SNARIMAX(p=1, d=0, q=0, m=season, sp=1)``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from river import time_series

from monitor.sources.auckland import events_from_polls, read_polls

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ASSETS = ("akl-routes-0xx", "akl-routes-2xx", "akl-routes-7xx", "akl-routes-9xx")


def auckland_series() -> dict[str, list[float]]:
    start = dt.datetime(2016, 5, 19, tzinfo=dt.timezone(dt.timedelta(hours=12))).timestamp()
    counts: dict[str, Counter[int]] = {a: Counter() for a in ASSETS}
    for ev in events_from_polls(read_polls(SHARED / "auckland-bus-tripupdates" / "snapshots"), set(ASSETS)):
        if ev.kind == "trip_completed":
            k = int((ev.observed_at.timestamp() - start) // 900)
            if 0 <= k < 192:
                counts[ev.asset_id][k] += 1
    return {a: [float(c[k]) for k in range(192)] for a, c in counts.items()}


def cta_series() -> list[float]:
    rows = {}
    with (SHARED / "cta-daily-boardings" / "CTA_-_Ridership_-_Daily_Boarding_Totals.csv").open() as fh:
        for r in csv.DictReader(fh):
            rows[dt.datetime.strptime(r["service_date"], "%m/%d/%Y").date()] = float(r["bus"])  # noqa: DTZ007
    return [rows[d] for d in sorted(rows)]


class SeasonalNaive:
    def __init__(self, season: int) -> None:
        self.season, self.hist = season, []  # type: ignore[var-annotated]

    def forecast(self) -> float:
        return self.hist[-self.season]

    def learn(self, y: float) -> None:
        self.hist.append(y)


class Pledgewatch:
    """The default forecaster: fixed seasonal baseline from the first season × HoltWinters level."""

    def __init__(self, season: int, first_season: list[float]) -> None:
        mean = statistics.fmean(first_season) or 1.0
        self.base = [max(v, 0.25 * mean) for v in first_season]  # a floor keeps near-zero slots from exploding
        self.season, self.t = season, 0
        self.model = time_series.HoltWinters(alpha=0.1)
        for _ in range(8):
            self.model.learn_one(1.0)

    def forecast(self) -> float:
        return max(0.0, self.model.forecast(horizon=1)[0]) * self.base[self.t % self.season]

    def learn(self, y: float) -> None:
        self.model.learn_one(y / self.base[self.t % self.season])
        self.t += 1


class PledgewatchAdaptive(Pledgewatch):
    """Candidate: the default with seasonal indices that learn too (multiplicative Holt-Winters, gamma)."""

    def __init__(self, season: int, first_season: list[float], gamma: float = 0.3) -> None:
        super().__init__(season, first_season)
        self.gamma = gamma

    def learn(self, y: float) -> None:
        slot = self.t % self.season
        level = max(self.model.forecast(horizon=1)[0], 1e-9)
        super().learn(y)
        floor = 0.25 * statistics.fmean(self.base)
        self.base[slot] = max(floor, (1 - self.gamma) * self.base[slot] + self.gamma * y / level)


class RiverModel:
    def __init__(self, model: object) -> None:
        self.model, self.n = model, 0

    def forecast(self) -> float:
        return float(self.model.forecast(horizon=1)[0])  # type: ignore[attr-defined]

    def learn(self, y: float) -> None:
        self.model.learn_one(y)  # type: ignore[attr-defined]
        self.n += 1


def evaluate(series: list[float], season: int, make: Callable[[list[float]], object]) -> dict[str, float]:
    """Warm up on the first season, then predict-then-learn over the rest."""
    model = make(series[:season])
    for y in series[:season]:
        model.learn(y)  # type: ignore[attr-defined]
    abs_err, pct_err, cost = [], [], 0.0
    for y in series[season:]:
        t0 = time.perf_counter()
        yhat = model.forecast()  # type: ignore[attr-defined]
        model.learn(y)  # type: ignore[attr-defined]
        cost += time.perf_counter() - t0
        abs_err.append(abs(y - yhat))
        if y > 0:
            pct_err.append(abs(y - yhat) / y)
    n = len(series) - season
    return {
        "mae": statistics.fmean(abs_err),
        "mape": statistics.fmean(pct_err) if pct_err else float("nan"),
        "us_per_update": cost / n * 1e6,
        "n": n,
    }


def models(season: int) -> dict[str, Callable[[list[float]], object]]:
    return {
        "seasonal_naive": lambda first: SeasonalNaive(season),
        "pledgewatch": lambda first: Pledgewatch(season, first),
        "pledgewatch_adaptive": lambda first: PledgewatchAdaptive(season, first),
        "holtwinters_additive": lambda first: RiverModel(
            time_series.HoltWinters(alpha=0.3, beta=0.01, gamma=0.2, seasonality=season)
        ),
        "snarimax": lambda first: RiverModel(time_series.SNARIMAX(p=1, d=0, q=0, m=season, sp=1)),
    }


def main() -> None:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for asset, series in auckland_series().items():
        results[f"auckland/{asset}"] = {name: evaluate(series, 96, mk) for name, mk in models(96).items()}
    results["cta/bus-daily"] = {name: evaluate(cta_series(), 7, mk) for name, mk in models(7).items()}
    summary: dict[str, dict[str, float]] = {}
    for group in ("auckland", "cta"):
        keys = [k for k in results if k.startswith(group)]
        for name in models(7):
            summary.setdefault(group, {})[name] = statistics.fmean(results[k][name]["mae"] for k in keys)
    out = {
        "benchmark": "forecasters",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "per_series": results,
        "mean_mae": summary,
    }
    (ROOT / "benchmarks" / "results" / "forecasters.json").write_text(json.dumps(out, indent=2) + "\n")
    doc = ROOT / "docs" / "benchmarks.md"
    lines = [ln for ln in doc.read_text().splitlines() if not ln.startswith("| forecasters ")]
    for key, per in results.items():
        cells = ", ".join(
            f"{n} MAE {m['mae']:,.1f} / MAPE {m['mape']:.1%} / {m['us_per_update']:.0f} µs" for n, m in per.items()
        )
        lines.append(
            f"| forecasters | {key}: one-step progressive validation ({int(per['seasonal_naive']['n'])} "
            f"steps) | {cells} | {out['when'][:10]} |"
        )
    doc.write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=2))
    for key, per in results.items():
        print(key, {n: (round(m["mae"], 2), round(m["mape"], 3), round(m["us_per_update"], 1)) for n, m in per.items()})


if __name__ == "__main__":
    main()
