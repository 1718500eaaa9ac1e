"""Compare activity forecasters by progressive validation (predict one step, then learn) on real series.

Run: ``.venv/bin/python benchmarks/forecasters.py`` (needs ../shared/data). Writes
``benchmarks/results/forecasters.json`` and the ``forecasters`` rows of ``docs/benchmarks.md``.

Series
- Auckland trip updates: trips completed per 15-min window for each of the four route groups over
  both archived days (season = 96 windows = 1 day). The appraisal's baseline is day 1's hourly
  counts (as in ``examples/loan_book.jsonl``); every model learns day 1 and is scored on day 2.
- CTA daily boardings 2001-01-01..2024-10-31, bus and rail (sorted, duplicates dropped). The loan is
  renewed every 1 January with the previous year as the appraisal's baseline (364 daily slots);
  every model is scored on 2002-01-01..2024-10-31.

Forecasters (one step ahead)
- ``seasonal_naive``: the value one season ago (Auckland: same window yesterday; CTA: same weekday
  last week, the stronger of the weekly and yearly naive forecasts on this series).
- ``pledgewatch``: the default, ``monitor.forecast.SeasonalLevel`` with ``ValuationParams``' defaults
  and the valuer's gating (windows expected below ``min_expected_activity`` teach the level nothing).
- ``fixed_shape_level``: the previous default: the appraisal's shape, fixed, × river
  ``HoltWinters(alpha=0.1)`` on the deseasonalised level.
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
from typing import Protocol

from report import publish  # benchmarks/report.py (the scripts run from benchmarks/)
from river import time_series

from monitor.forecast import SeasonalLevel
from monitor.sources.auckland import events_from_polls, read_polls
from monitor.valuation import ValuationParams

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


def cta_series() -> tuple[list[dt.date], dict[str, list[float]]]:
    rows: dict[dt.date, tuple[float, float]] = {}
    with (SHARED / "cta-daily-boardings" / "CTA_-_Ridership_-_Daily_Boarding_Totals.csv").open() as fh:
        for r in csv.DictReader(fh):
            day = dt.datetime.strptime(r["service_date"], "%m/%d/%Y").date()  # noqa: DTZ007
            rows[day] = (float(r["bus"]), float(r["rail_boardings"]))
    days = sorted(rows)
    return days, {"bus": [rows[d][0] for d in days], "rail": [rows[d][1] for d in days]}


SEASON_ORIGIN = dt.date(1970, 1, 5).toordinal()


def year_slot(day: dt.date) -> int:
    """Daily slot of the 52-week year, as ``monitor.valuation`` computes it for ``daily_ridership``."""
    return (day.toordinal() - SEASON_ORIGIN) % 364


class Model(Protocol):
    """One forecaster under progressive validation: ``forecast(t)`` then ``learn(t, y)``."""

    def forecast(self, t: int) -> float: ...

    def learn(self, t: int, y: float) -> None: ...


class SeasonalNaive(Model):
    def __init__(self, season: int, series: list[float]) -> None:
        self.season, self.series = season, series

    def forecast(self, t: int) -> float:
        return self.series[t - self.season]

    def learn(self, t: int, y: float) -> None:
        pass


class Pledgewatch(Model):
    """The default of ``monitor.valuation``: robust level × learned seasonal indices, appraisal-seeded.

    ``base(t)`` is the appraisal's expected activity of step t and ``slot(t)`` its window slot;
    ``renew(t)`` says whether the loan is renewed (fresh appraisal, fresh model) before step t.
    """

    def __init__(
        self,
        base: Callable[[int], float],
        slot: Callable[[int], int],
        mean_base: Callable[[int], float],
        renew: Callable[[int], bool] = lambda t: False,
    ) -> None:
        self.base, self.slot, self.mean_base, self.renew = base, slot, mean_base, renew
        self.params = ValuationParams()
        self.model: SeasonalLevel | None = None

    def _fresh(self, t: int) -> SeasonalLevel:
        p = self.params
        m = SeasonalLevel(alpha=p.alpha, gamma=p.gamma, clip_k=p.clip_k, scale_lambda=p.scale_lambda)
        m.prime(self.mean_base(t))
        return m

    def forecast(self, t: int) -> float:
        if self.model is None or self.renew(t):
            self.model = self._fresh(t)
        return self.model.forecast(self.slot(t), self.base(t))

    def learn(self, t: int, y: float) -> None:
        if self.model is None or self.renew(t):
            self.model = self._fresh(t)
        b = self.base(t)
        if b > 0:
            self.model.learn(self.slot(t), b, y, level_too=b >= self.params.min_expected_activity)


class FixedShapeLevel(Model):
    """The previous default: the appraisal's shape, fixed, × river ``HoltWinters(alpha=0.1)`` level."""

    def __init__(self, base: Callable[[int], float], renew: Callable[[int], bool] = lambda t: False) -> None:
        self.base, self.renew = base, renew
        self.model = self._fresh()

    @staticmethod
    def _fresh() -> time_series.HoltWinters:
        m = time_series.HoltWinters(alpha=0.1)
        for _ in range(8):
            m.learn_one(1.0)
        return m

    def forecast(self, t: int) -> float:
        if self.renew(t):
            self.model = self._fresh()
        return max(0.0, self.model.forecast(horizon=1)[0]) * self.base(t)

    def learn(self, t: int, y: float) -> None:
        b = self.base(t)
        if b >= 10.0:
            self.model.learn_one(y / b)


class RiverModel(Model):
    def __init__(self, model: object) -> None:
        self.model = model

    def forecast(self, t: int) -> float:
        return float(self.model.forecast(horizon=1)[0])  # type: ignore[attr-defined]

    def learn(self, t: int, y: float) -> None:
        self.model.learn_one(y)  # type: ignore[attr-defined]


def evaluate(series: list[float], first: int, model: Model) -> dict[str, float]:
    """Learn steps before ``first``, then predict-then-learn from ``first`` on; errors of the latter."""
    for t in range(first):
        model.learn(t, series[t])
    abs_err, pct_err, cost = [], [], 0.0
    for t in range(first, len(series)):
        y = series[t]
        t0 = time.perf_counter()
        yhat = model.forecast(t)
        model.learn(t, y)
        cost += time.perf_counter() - t0
        abs_err.append(abs(y - yhat))
        if y > 0:
            pct_err.append(abs(y - yhat) / y)
    n = len(series) - first
    return {
        "mae": statistics.fmean(abs_err),
        "mape": statistics.fmean(pct_err) if pct_err else float("nan"),
        "us_per_update": cost / n * 1e6,
        "n": n,
    }


def auckland_models(series: list[float]) -> dict[str, Model]:
    hourly = [sum(series[4 * h : 4 * h + 4]) for h in range(24)]  # the appraisal: day 1, per hour

    def base(t: int) -> float:
        return hourly[(t % 96) // 4] / 4

    mean = sum(hourly) / 96
    return {
        "seasonal_naive": SeasonalNaive(96, series),
        "pledgewatch": Pledgewatch(base, lambda t: t % 96, lambda t: mean),
        "fixed_shape_level": FixedShapeLevel(base),
        "holtwinters_additive": RiverModel(time_series.HoltWinters(alpha=0.3, beta=0.01, gamma=0.2, seasonality=96)),
        "snarimax": RiverModel(time_series.SNARIMAX(p=1, d=0, q=0, m=96, sp=1)),
    }


def cta_models(days: list[dt.date], series: list[float]) -> dict[str, Model]:
    index = {d: i for i, d in enumerate(days)}
    baselines: dict[int, dict[int, float]] = {}

    def baseline(year: int) -> dict[int, float]:
        """The appraisal at renewal on 1 January: the 364 days before it, by slot."""
        if year not in baselines:
            end = index[dt.date(year, 1, 1)]
            baselines[year] = {year_slot(days[i]): series[i] for i in range(end - 364, end)}
        return baselines[year]

    def base(t: int) -> float:
        return baseline(days[t].year)[year_slot(days[t])]

    def mean(t: int) -> float:
        return statistics.fmean(baseline(days[t].year).values())

    def renew(t: int) -> bool:
        return days[t].month == 1 and days[t].day == 1

    return {
        "seasonal_naive": SeasonalNaive(7, series),
        "pledgewatch": Pledgewatch(base, lambda t: year_slot(days[t]), mean, renew),
        "fixed_shape_level": FixedShapeLevel(base, renew),
        "holtwinters_additive": RiverModel(time_series.HoltWinters(alpha=0.3, beta=0.01, gamma=0.2, seasonality=7)),
        "snarimax": RiverModel(time_series.SNARIMAX(p=1, d=0, q=0, m=7, sp=1)),
    }


def main() -> None:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for asset, series in auckland_series().items():
        results[f"auckland/{asset}"] = {n: evaluate(series, 96, m) for n, m in auckland_models(series).items()}
    days, cta = cta_series()
    first = days.index(dt.date(2002, 1, 1))
    for mode, series in cta.items():
        results[f"cta/{mode}-daily"] = {n: evaluate(series, first, m) for n, m in cta_models(days, series).items()}
    names = list(next(iter(results.values())))
    summary: dict[str, dict[str, float]] = {}
    for group in ("auckland", "cta"):
        keys = [k for k in results if k.startswith(group)]
        for name in names:
            summary.setdefault(group, {})[name] = statistics.fmean(results[k][name]["mae"] for k in keys)
    out = {
        "benchmark": "forecasters",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "per_series": results,
        "mean_mae": summary,
    }
    publish(
        "forecasters",
        out,
        [
            (
                f"{key}: one-step progressive validation ({int(per['seasonal_naive']['n'])} steps)",
                ", ".join(
                    f"{n} MAE {m['mae']:,.1f} / MAPE {m['mape']:.1%} / {m['us_per_update']:.0f} µs"
                    for n, m in per.items()
                ),
            )
            for key, per in results.items()
        ],
    )
    print(json.dumps(summary, indent=2))
    for key, per in results.items():
        print(key, {n: (round(m["mae"], 2), round(m["mape"], 3), round(m["us_per_update"], 1)) for n, m in per.items()})


if __name__ == "__main__":
    main()
