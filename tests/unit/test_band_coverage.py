"""The one-step 90 % prediction band of a window's activity covers about 90 % (model-risk finding, band-coverage).

A new user's trial found the band covering 81.0 % of the demo's Auckland windows: over-confident. The
band is now calibrated online on the asset's own normalized errors (split-conformal quantile, quantile
tracking in warm-up; ``AssetValuer._band``, ``docs/valuation.md`` "Interval coverage"). A calibrated
band's empirical coverage over ``n`` independent windows lies within ``±2 sqrt(0.9 × 0.1 / n)`` of 90 %
about 95 % of the time: that is the tolerance each test states.
"""

from __future__ import annotations

import math
import pickle
import random

from monitor.backtest import interval_coverage, load_loan_book, run_backtest
from monitor.incidents import parse_incident
from monitor.profiles import get_profile
from monitor.schemas import DIMENSIONS
from monitor.valuation import (
    BAND_MEMORY,
    MIN_BAND_SCORES,
    AssetValuer,
    ValuationParams,
    WindowResult,
    conformal_rank,
)
from tests.conftest import ROOT, sample_telemetry

PROFILE = get_profile("bus_dispatch")
START = 1_709_510_400.0  # 2024-03-04T00:00Z, a Monday
#: trips per hour of a bus route group with a morning and an evening peak (24 local hours, UTC)
HOURLY = [4, 2, 2, 2, 4, 20, 60, 120, 140, 90, 70, 60, 60, 60, 70, 90, 130, 150, 110, 70, 40, 30, 20, 10]


def tolerance(n: int, p: float = 0.9) -> float:
    """Two binomial standard errors of the coverage of ``n`` independent windows."""
    return 2.0 * math.sqrt(p * (1.0 - p) / n)


def dims() -> dict[str, float | None]:
    return dict.fromkeys(DIMENSIONS, 0.99)


def features(trips: float) -> dict[str, float]:
    return {"activity_ratio": trips / 20.0, "mean_delay_s": 120.0, "late_share": 0.1, "updates_per_poll": 20.0}


def heavy_tailed_heteroscedastic(days: int, seed: int, df: int = 2, peak_spread: float = 0.3) -> list[float]:
    """15-min trip counts: Poisson around the timetable times a Student-t (``df`` degrees of freedom) factor.

    The factor's log-spread is ``peak_spread`` at the busiest hour and grows to ``peak_spread + 0.2`` at
    night: heteroscedastic in a way the Poisson count weight does not describe, and heavy-tailed (t₂ has
    no variance; clipped at ±4 spreads), so neither the normal quantile of the robust scale nor the
    Poisson floor is the right 90 % width.
    """
    rng = random.Random(seed)
    peak = max(HOURLY)
    out: list[float] = []
    for i in range(days * 96):
        mean = HOURLY[(i // 4) % 24] / 4.0
        spread = peak_spread + 0.2 * (1.0 - mean * 4.0 / peak)
        t = rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(df)) / df)
        lam = max(0.0, mean * math.exp(spread * max(-4.0, min(4.0, t))))
        out.append(float(_poisson(rng, lam)))
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's Poisson sampler (λ here is at most ~60, so exp(−λ) does not underflow)."""
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def covered(results: list[tuple[float, WindowResult]]) -> tuple[float, int]:
    """Coverage of the windows ``interval_coverage`` counts: in expected service, with data and a band."""
    judged = [(y, r.activity_forecast_band) for y, r in results if r.service_expected and r.activity_forecast_band]
    inside = sum(lo <= y <= hi for y, (lo, hi) in judged)  # type: ignore[misc]
    return inside / len(judged), len(judged)


def run_valuer(counts: list[float]) -> tuple[AssetValuer, list[tuple[float, WindowResult]]]:
    v = AssetValuer(PROFILE, 10_000_000.0, [float(h) for h in HOURLY], 0.99, "UTC", ValuationParams())
    return v, [(y, v.update(START + i * 900, y, dims(), features(y))) for i, y in enumerate(counts)]


def test_band__covers_90pct_of_heavy_tailed_heteroscedastic_first_days() -> None:
    """Ten assets' first day (the length of the Auckland sample) of synthetic counts, pooled: coverage
    within the binomial tolerance of 90 %.

    The old band (normal quantile of the robust scale, which starts at 10 %, until 24 learned windows;
    then the rolling quantile of the learned windows' clipped residuals) covered 82.4 % of these 840
    windows (tolerance ±2.1 points); the calibrated one 90.8 %.
    """
    inside = n = 0
    for seed in range(100, 110):
        cov, m = covered(run_valuer(heavy_tailed_heteroscedastic(1, seed))[1])
        inside, n = inside + round(cov * m), n + m
    assert n > 800
    assert abs(inside / n - 0.9) <= tolerance(n), f"coverage {inside / n:.3f} of {n} windows, ±{tolerance(n):.3f}"


def test_band__covers_90pct_of_a_heavy_tailed_series_in_steady_state() -> None:
    """Three weeks of one asset: still within tolerance once calibrated (the conformal rank 88 of 96 expects
    88 / 97 = 90.7 %; counts are whole numbers, so ties add a little)."""
    cov, n = covered(run_valuer(heavy_tailed_heteroscedastic(21, 1, df=3, peak_spread=0.1))[1])
    assert n > 1500
    assert abs(cov - 0.9) <= tolerance(n), f"coverage {cov:.3f} of {n} windows, tolerance ±{tolerance(n):.3f}"


def test_band__the_auckland_sample_and_the_demo_incidents_are_covered_within_tolerance(rulebook) -> None:  # type: ignore[no-untyped-def]
    """The shipped Auckland sample (148 windows) and the demo's run with its two incidents (121): before
    the calibration 85.8 % and 81.0 % (the latter outside its ±5.5 points), now 91.2 % and 89.3 %."""
    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    demo = [parse_incident("cut:akl-routes-7xx@3h:0.6"), parse_incident("outage:akl-routes-9xx@3h")]
    for incidents in ([], demo):
        res = run_backtest(book, sample_telemetry(), rulebook, incidents=incidents)
        cov, n = interval_coverage(res.valuations)
        assert cov is not None and n > 100
        assert abs(cov - 0.9) <= tolerance(n), f"{incidents}: coverage {cov:.3f} of {n}, ±{tolerance(n):.3f}"


def test_band__one_odd_window_does_not_set_the_band_and_the_calibration_state_is_bounded() -> None:
    """An error 20× the usual in warm-up widens the band once (quantile tracking), not for the next windows
    (the conformal quantile is never the largest score); the scores kept stay at BAND_MEMORY."""
    counts = [HOURLY[(i // 4) % 24] / 4.0 for i in range(96 * 3)]
    counts[30] = 20 * counts[30]  # 07:30, the first morning: a burst of duplicated trips, say
    v, results = run_valuer(counts)
    widths = [(r.activity_forecast_band[1] - r.activity_forecast_band[0]) / max(1.0, y) for y, r in results[31:96]]  # type: ignore[index]
    assert max(widths) < 3.0  # a band of the counts' order, never 0..20× the forecast
    assert len(v._band_scores) == BAND_MEMORY
    assert len(pickle.dumps(v)) < 100_000  # checkpoint budget per asset


def test_band__a_checkpoint_from_before_the_calibration_loads_and_warms_up() -> None:
    """Old checkpoints lack the calibration's state: they load, and the band starts from the model's own."""
    v, _ = run_valuer([HOURLY[(i // 4) % 24] / 4.0 for i in range(232)])  # to Wednesday 10:00
    state = v.__dict__.copy()
    del state["_band_scores"], state["_band_log_q"]
    old = AssetValuer.__new__(AssetValuer)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    assert len(restored._band_scores) == 0 and restored._band_log_q == 0.0
    r = restored.update(START + 232 * 900, 15.0, dims(), features(15.0))
    assert r.activity_forecast_band is not None and len(restored._band_scores) == 1


def test_conformal_rank__is_finite_from_9_scores_and_not_the_largest_from_19() -> None:
    assert [conformal_rank(n) <= n for n in (8, 9)] == [False, True]
    assert MIN_BAND_SCORES == 19 and conformal_rank(18) == 18 and conformal_rank(19) == 18
    assert conformal_rank(BAND_MEMORY) == 88  # ⌈97 × 0.9⌉
