"""Activity- and quality-indexed revaluation of one pledged data asset (``docs/valuation.md``).

::

    V_t = V_0 × min(I_t, cap) × min(Q_t / Q_0, 1)
    I_t = Σ_h d^h · forecast_t(h) / Σ_h d^h · baseline(h)

The activity forecaster (:class:`monitor.forecast.SeasonalLevel`) is robust
multiplicative Holt-Winters without trend: seasonal indices per window slot start
at the appraisal's baseline (or the one measured in calibration) and learn, and a
level ``L`` (ratio of activity to those indices) learns one window at a time from
Huber-cleaned observations. So ``forecast_t(h) = L_t × s(slot_{t+h})`` and ``I_t``
is its discount-weighted sum over the horizon relative to the appraisal's
baseline. It was chosen by progressive validation against seasonal-naive and
river's forecasters (``docs/valuation.md``). A river ``HalfSpaceTrees`` scores the
window's features scaled to [0, 1] with fixed limits from the asset profile; a
window it flags *above* the forecast is **not learned** (``learn_anomalous=False``,
after river's ``AnomalyFilter(protect_anomaly_detector=...)``), so padded data
cannot lift the value, while one below is learned (clipped like every window):
prudence lets bad news count. Two river ``PageHinkley`` detectors watch the
activity ratio for a structural decline or increase. The 90 % interval on ``I_t`` is the rolling
90 % quantile of absolute one-step ratio errors scaled to the level's EWMA
(× sqrt(α / (2 − α))). The one-step 90 % prediction band of a window's activity is the
forecaster's own band (normal quantile of its robust scale, Poisson floor) widened or narrowed by
online split-conformal calibration on the normalized errors of the asset's recent windows
(:meth:`AssetValuer._band`; ``docs/valuation.md``, "Interval coverage").
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import warnings
import zoneinfo
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import river
from river import anomaly, base, drift, stats
from scipy.stats import poisson

from monitor.forecast import SeasonalLevel
from monitor.profiles import AssetProfile
from monitor.schemas import DIMENSIONS, Drift, ValuationStatus
from monitor.service_calendar import country_of_timezone, day_type

#: Ordinal of Monday 1970-01-05, the origin of season slots (so daily slots align by weekday).
_SEASON_ORIGIN = dt.date(1970, 1, 5).toordinal()

#: Residuals the empirical 90 % quantile needs before it replaces the robust scale's normal quantile:
#: with n residuals the 90 % quantile is about the (n/10)-th largest, so from 24 on it rests on 2-3
#: of them rather than on the single largest.
MIN_RESIDUALS = 24

#: Nominal coverage of the one-step prediction band of a window's activity (``activity_forecast_lower``
#: / ``_upper``), 0..1.
BAND_LEVEL = 0.9
#: Normalized one-step errors (windows) the band's conformal quantile is taken over: the residual
#: quantile's own memory (96: a day of 15-min windows, four days of hourly ones, a quarter of a year of
#: daily ones), so the band follows a change of regime as fast as the level's interval does, and its
#: quantile rests on the ~10 largest errors rather than on one.
BAND_MEMORY = 96
#: Step of the band's warm-up multiplier in natural-log units per window (quantile tracking,
#: :meth:`AssetValuer._band`): a miss widens the band by e^(0.9 × 0.2) = +20 %, a covered window
#: narrows it by e^(−0.1 × 0.2) = −2 %, so four misses double it (0.72 > ln 2) and the 19 windows of
#: the warm-up can take it anywhere from ×0.68 (all covered) to ×30 (all missed).
BAND_WARMUP_STEP = 0.2


def conformal_rank(n: int, level: float = BAND_LEVEL) -> int:
    """Rank ``⌈(n + 1) level⌉`` of the split-conformal quantile among ``n`` scores (1-based).

    With ``n`` exchangeable scores, a new one is at most the score of this rank with probability at least
    ``level`` (Vovk, Gammerman & Shafer 2005, *Algorithmic Learning in a Random World*; Lei, G'Sell,
    Rinaldo, Tibshirani & Wasserman 2018, *JASA* 113(523), Theorem 2.2). Larger than ``n`` (no finite
    quantile has that guarantee) while ``n < level / (1 − level)``: 9 scores for 90 %; the largest score
    itself until 19.

    >>> conformal_rank(96), conformal_rank(19), conformal_rank(18), conformal_rank(8)
    (88, 18, 18, 9)
    """
    # rounded first: a product that is a whole number in exact arithmetic must not round up past it
    return math.ceil(round((n + 1) * level, 9))


#: Fewest scores whose conformal quantile is not the largest of them (:func:`conformal_rank` ≤ n − 1):
#: 19 at 90 %. Below it one odd window (a service's first trips, a storm day) would set the band alone:
#: a single error 7× the usual made the band 0–88 trips for a forecast of 19 on the Auckland sample.
MIN_BAND_SCORES = next(n for n in range(2, 10_000) if conformal_rank(n) <= n - 1)

__all__ = [
    "BAND_LEVEL",
    "BAND_MEMORY",
    "BAND_WARMUP_STEP",
    "MIN_BAND_SCORES",
    "MIN_RESIDUALS",
    "AssetValuer",
    "FixedScaler",
    "ValuationParams",
    "WindowResult",
    "conformal_rank",
    "model_stamp",
]

MODEL_VERSIONS = {
    "river": str(getattr(river, "__version__", "unknown")),
    "forecaster": "robust-seasonal-level/2",
    "anomaly": "halfspacetrees/1",
    "drift": "pagehinkley/1",
    "valuation": "pledgewatch-index/2",
}


@dataclass(frozen=True, slots=True)
class ValuationParams:
    """Parameters of the valuation (every one documented in ``docs/valuation.md``).

    Attributes
    ----------
    window_s
        Window length in seconds.
    cap
        Upper bound of the activity index (1.0: the lower-of rule, never above appraisal).
    horizon_windows, discount
        Forecast horizon H (windows) and per-window discount d of the activity index.
    alpha
        Largest smoothing of the level per learned window, 0..1 (:class:`monitor.forecast.SeasonalLevel`);
        the level's memory is sized by its information below it (``level_halfwidth``).
    level_halfwidth
        Largest 90 % half-width (ratio of the level, 0..1) that the level's own noise may have in
        steady state: the level's smoothing is the largest ``α ≤ alpha`` with
        ``q sqrt(α / (2 − α)) ≤ level_halfwidth`` (``q`` the 90 % one-step error on the typical
        window's count scale). 0.03, so that the measurement's noise spans under a third of the
        10-point gap between the warning and margin-call lines of a typical pledge contract
        (130 % / 120 %, about 7.7 % of the value at the warning line): noise alone cannot carry a
        healthy loan from one line across the next. A thin asset (a few trips a window) gets a
        long memory; a busy one keeps ``alpha``.
    level_memory_floor_s
        Shortest memory of the level in seconds of learned windows (7 days): the smallest
        smoothing is ``2 window_s / level_memory_floor_s`` (an EWMA's mean age is ``1/α``
        windows, its effective span ``2/α``). A week is the weekly profile's own cycle: a level
        still follows a gradual change within it, and abrupt ones are the level-shift detector's.
    shift_ratio
        Design size δ of the level shift the detector looks for (ratio, 0..1): 0.25, the middle of the
        10–40 % falls of activity that take a loan pledged at 130–150 % coverage from its pledge to its
        margin-call or close-out line. Two one-sided CUSUMs of the window's (quasi-)Poisson log
        likelihood ratio, rate ``(1 − δ) μ`` (down) and ``μ / (1 − δ)`` (up) against the forecast
        ``μ`` (Page 1954; Lorden 1971): busy assets confirm a cut within a window or two, thin ones
        take the hours their few counts need. Each window's ratio is divided by the activity's
        dispersion ``φ = σ² s̄ / L`` (1 for a Poisson count, never taken below it; McCullagh &
        Nelder 1989, §4.5).
    large_shift_ratio
        Second design of the decline CUSUM (ratio, 0..1): 0.5, a halving. A CUSUM designed for a
        fall to ``ρ_d`` gains ``μ (ρ ln ρ_d + 1 − ρ_d)`` nats a window on a true fall to ``ρ``; for a
        60 % cut the 25 % design gains 58 % of what the matched test would, and it gains nothing at
        all past a 75 % cut's ``ρ ln ρ_d`` balance. With both designs, every fall from 25 % to 70 %
        is detected at ≥ 85 % of the matched test's speed (at 20 %: 75 %). The two decline CUSUMs
        run side by side; each gets ``ln 2`` more nats (union bound), so the false-signal rate stays
        the one stated below. Rises keep the single 25 % design: believing a higher value slowly is
        the prudent side.
    shift_warning_every_s, shift_confirm_every_s
        Longest mean time between false signals the detector may give on an asset in steady state,
        in seconds: 1 year for the early warning, 10 years for a confirmed shift. A CUSUM of log
        likelihood ratios with decision interval ``h`` has an in-control run length of at least
        ``e^h`` windows (Lorden 1971; Siegmund 1985, §II.2), so ``h = ln(every_s / window_s)``
        (15-min windows: 10.5 and 12.8). A window adds at most ``h/2`` (no single window, a bad poll
        cycle, confirms a shift). On confirmation the level restarts at the mean ratio of the run's
        windows and learns as their running mean; its interval is that of a mean of that many windows.
    gamma
        Smoothing of a slot's seasonal index per visit, 0..1.
    clip_k, scale_lambda
        Huber clip of a window's ratio residual, in residual scales, and the smoothing of that
        scale (Gelper, Fried & Croux 2010).
    calibration_windows
        Windows after pledge used to measure baseline and Q_0 when the appraisal lacks them.
    quality_halflife_windows
        Half-life (windows) of the exponentially weighted level of each quality dimension;
        ``Q_t`` is the weighted mean of those levels. A dimension not measurable in a window
        (e.g. accuracy of a window without records) keeps its level.
    anomaly_threshold
        HalfSpaceTrees score at or above which a window is anomalous (0..1).
    hst_window
        HalfSpaceTrees reference window (windows); no window is flagged before this many.
    learn_anomalous
        Whether the forecaster learns windows flagged anomalous *above* its forecast (default
        False: padded or fabricated activity cannot lift the value). Anomalous windows below the
        forecast are always learned, clipped like every window (prudence).
    anomaly_hold_windows
        Consecutive anomalous windows after which the anomaly counts as a new regime and is learned
        (by the forecaster and the detector): protection is for transient spikes, and a persisting
        one is what the ``anomaly-persisting`` rule puts before a person.
    min_expected_activity
        Windows whose expected activity is below this (e.g. at night) teach the level nothing
        (their seasonal index still learns).
    drift_hold_windows
        Windows a detected drift stays reported.
    seed
        Seed of HalfSpaceTrees.
    """

    window_s: float = 900.0
    cap: float = 1.0
    horizon_windows: int = 96
    discount: float = 0.99
    alpha: float = 0.05
    level_halfwidth: float = 0.03
    level_memory_floor_s: float = 7 * 86_400.0
    shift_ratio: float = 0.25
    large_shift_ratio: float = 0.5
    shift_warning_every_s: float = 365 * 86_400.0
    shift_confirm_every_s: float = 3_650 * 86_400.0
    gamma: float = 0.2
    clip_k: float = 2.0
    scale_lambda: float = 0.1
    calibration_windows: int = 96
    quality_halflife_windows: float = 4.0
    anomaly_threshold: float = 0.85
    hst_window: int = 32
    learn_anomalous: bool = False
    anomaly_hold_windows: int = 8
    min_expected_activity: float = 1.0
    drift_hold_windows: int = 16
    seed: int = 42


def model_stamp(profile: AssetProfile, params: ValuationParams) -> dict[str, object]:
    """What a model checkpoint must match to be reused: model versions, the asset profile, parameters.

    The whole profile is stamped (kinds, ranges, season, grace, …), so a profile file changed under
    a running asset rebuilds its models by replay like a parameter change (C12).
    """
    # computed once per (profile, params) pair: a checkpoint is written per record on the hot path,
    # and the pair is held here, so an id is never reused for another object while cached
    cached = _STAMPS.get((id(profile), id(params)))
    if cached is not None and cached[0] is profile and cached[1] is params:
        return cached[2]
    stamp: dict[str, object] = {
        "models": dict(MODEL_VERSIONS),
        "features": sorted(profile.feature_limits.items()),
        "profile": asdict(profile),
        "params": asdict(params),
    }
    _STAMPS[(id(profile), id(params))] = (profile, params, stamp)
    return stamp


_STAMPS: dict[tuple[int, int], tuple[AssetProfile, ValuationParams, dict[str, object]]] = {}


class FixedScaler(base.Transformer):
    """Scale features to [0, 1] with fixed limits; unknown features are dropped, never NaN.

    A river transformer (``river.base.Transformer``): stateless, so ``learn_one`` learns nothing, and
    ``FixedScaler(limits) | window_anomaly_detector(params)`` is the valuer's anomaly model as one
    river pipeline (the model contract suite, ``tests/unit/test_model_contract.py``, runs on it).

    River 0.26.1's ``MinMaxScaler`` yields NaN for a feature it has not seen (online-ml/river#2001),
    which HalfSpaceTrees then silently mis-scores; fixed limits from the asset profile avoid both.

    Examples
    --------
    >>> FixedScaler({"a": (0.0, 10.0)}).transform_one({"a": 15.0, "new": 3.0})
    {'a': 1.0}
    """

    def __init__(self, limits: dict[str, tuple[float, float]]) -> None:
        self.limits = dict(limits)

    def transform_one(self, x: dict[Any, Any]) -> dict[Any, Any]:
        """Scale ``x`` (feature name -> float): known finite features to [0, 1] (clipped); others dropped."""
        out: dict[Any, float] = {}
        for name, (lo, hi) in self.limits.items():
            v = x.get(name)
            if v is None or not math.isfinite(v):
                continue
            z = (v - lo) / (hi - lo)
            out[name] = 0.0 if z < 0.0 else 1.0 if z > 1.0 else z
        return out


def window_anomaly_detector(params: ValuationParams) -> anomaly.HalfSpaceTrees:
    """The anomaly detector of a window's scaled features, as every valuer builds it.

    river's ``HalfSpaceTrees`` (Tan, Ting & Liu 2011, "Fast anomaly detection for streaming data",
    IJCAI) with 10 trees (river's default) of height 6 rather than river's 8: a reference window of
    ``params.hst_window`` (32) windows spreads its mass over 2^6 = 64 leaves a tree, where 256 would
    leave most leaves empty and every window look rare. Seeded by ``params.seed`` so that a replay
    scores alike. Scores are 0..1; features must be scaled to [0, 1] first (:class:`FixedScaler`).
    """
    return anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=params.hst_window, seed=params.seed)


@dataclass(slots=True)
class WindowResult:
    """What the valuer concluded for one closed window (inputs of ``CollateralValuation``)."""

    status: ValuationStatus
    value: float
    value_lower: float
    value_upper: float
    activity_index: float
    activity_index_lower: float
    activity_index_upper: float
    expected_activity: float
    quality_score: float
    quality_baseline: float
    quality: dict[str, float | None]
    window_quality: dict[str, float | None]
    anomaly_score: float
    anomalous: bool
    learned: bool
    drift: Drift
    windows_seen: int
    attribution: dict[str, float]
    attribution_since_pledge: dict[str, float]
    service_expected: bool = True
    silent_in_service_s: float = 0.0
    in_silence_grace: bool = False
    priced_quality_score: float = 0.0
    activity_forecast_band: tuple[float, float] | None = None
    activity_shortfall: bool = False
    shortfall_ratio: float | None = None


@dataclass(slots=True)
class _CusumRun:
    """One one-sided CUSUM of the level-shift detector and the run of windows behind its statistic.

    ``ratio`` is its design: the rate, as a ratio of the forecast, it tests against the forecast
    (below 1 a decline, above 1 an increase). ``stat`` in nats; ``activity`` and ``index`` the run's
    Σ activity and Σ seasonal index (their ratio is the run's level); ``windows`` its length; ``phi``
    the dispersion when it began.
    """

    ratio: float = 1.0
    stat: float = 0.0
    activity: float = 0.0
    index: float = 0.0
    windows: int = 0
    phi: float = 1.0

    def reset(self) -> None:
        """Back to 0: no evidence, no run (the design stays)."""
        self.stat = self.activity = self.index = 0.0
        self.windows = 0
        self.phi = 1.0


class AssetValuer:
    """Per-asset valuation models (river), learning one closed window at a time.

    Parameters
    ----------
    profile
        The asset's profile (feature limits, quality weights, silence grace).
    appraisal_value
        V_0 in yuan.
    baseline
        The appraisal's activity per season slot of the profile (``bus_dispatch``: 24 hourly
        values, the same for every day type; ``daily_ridership``: 364 daily values), local time,
        or ``None`` to learn the expected service from the data.
    quality_baseline
        Q_0 (0..1) from the appraisal, or ``None`` to calibrate.
    timezone
        IANA zone of the asset's operations (for local time of day and day of week).
    params
        :class:`ValuationParams`.
    country
        ISO 3166-1 alpha-2 code whose public holidays run a Sunday service (``None``: the country
        of ``timezone`` in the IANA ``zone.tab``; see :func:`monitor.calendar.day_type`).

    Expected service
    ----------------
    A profile with sub-daily slots (``bus_dispatch``) keeps its reference of expected activity
    per **day type × window of the day** (weekday, Saturday, Sunday / public holiday: the
    service calendars of a bus timetable). Without an appraisal baseline each slot's reference is
    the activity of its first window with data; a slot not seen yet is *unknown*: neither
    judged nor counted in the index, and silence there is not silence. A slot whose reference is
    0 is off-service. ``daily_ridership`` keeps its 52-week year of daily slots (weekday-aligned).
    """

    def __init__(
        self,
        profile: AssetProfile,
        appraisal_value: float,
        baseline: list[float] | None,
        quality_baseline: float | None,
        timezone: str,
        params: ValuationParams,
        country: str | None = None,
    ) -> None:
        self.profile = profile
        self.appraisal_value = appraisal_value
        self.timezone = timezone
        self.params = params
        self.country = country if country is not None else country_of_timezone(timezone)
        self._tz = zoneinfo.ZoneInfo(timezone)
        self._baseline = list(baseline) if baseline else None
        self._q0 = quality_baseline
        self._fc = SeasonalLevel(
            alpha=params.alpha, gamma=params.gamma, clip_k=params.clip_k, scale_lambda=params.scale_lambda
        )
        #: sub-daily profile: slots are day type × window of the day (else the profile's season)
        #: slot length: the profile's slot (an hour for bus_dispatch), or the window when longer, so a
        #: slot pools the windows of its hour (a 15-min window of one route holds a handful of trips)
        self._slot_s = max(profile.season_slot_s, params.window_s)
        self._day_slots = max(1, round(86_400.0 / self._slot_s))
        self._by_day_type = profile.season_slot_s < 86_400.0 and self._day_slots * self._slot_s == 86_400.0
        #: windows of one visit of a slot; the learned reference averages the first two visits
        self._visit_windows = max(1, round(self._slot_s / params.window_s))
        self._season_windows = max(1, round(profile.season_s / params.window_s))
        #: expected service learned from the data, per slot (activity per window); used without a baseline
        self._learn_reference = self._baseline is None and self._by_day_type
        #: learned reference per slot: sum and count of the activity of its first windows with data
        self._ref_sum: dict[int, float] = {}
        self._ref_n: dict[int, int] = {}
        self._hst = window_anomaly_detector(params)
        self._scaler = FixedScaler(profile.feature_limits)
        self._ph_down = drift.PageHinkley(mode="down", min_instances=12, threshold=3.0, delta=0.05)
        self._ph_up = drift.PageHinkley(mode="up", min_instances=12, threshold=3.0, delta=0.05)
        self._resid = stats.RollingQuantile(q=0.9, window_size=96)
        self._resid_n = 0
        #: the band's conformal calibration: normalized one-step errors of the last BAND_MEMORY windows
        #: in expected service that had a band (:meth:`_band`)
        self._band_scores: deque[float] = deque(maxlen=BAND_MEMORY)
        #: the band's warm-up multiplier, natural log (0: the forecaster's own band)
        self._band_log_q = 0.0
        #: the level's smoothing now (sized by information) and windows learned since a confirmed
        #: level shift (``None``: none, or its running mean has handed over to the EWMA)
        self._alpha_now = params.alpha
        self._since_shift: int | None = None
        #: the level-shift CUSUMs (down, up); their decision intervals ln(every_s / window_s) in nats
        #: (early warning, confirmed shift) and the most one window may add: 1/m of the confirmation
        #: interval, m the windows of the profile's shortest confirmable run (two at least)
        self._cusum_up = _CusumRun(ratio=1.0 / (1.0 - params.shift_ratio))
        self._cusum_down = tuple(_CusumRun(ratio=1.0 - d) for d in (params.shift_ratio, params.large_shift_ratio))
        # a family of K decline designs signals falsely at most K times as often as one (a union
        # bound; Lorden 1971, §3): each gets ln K more nats
        fam = math.log(len(self._cusum_down))
        self._warn_h = math.log(max(math.e, params.shift_warning_every_s / params.window_s))
        self._conf_h = math.log(max(math.e, params.shift_confirm_every_s / params.window_s))
        self._warn_h_down = self._warn_h + fam
        self._conf_h_down = self._conf_h + fam
        self._confirm_windows = max(2, math.ceil(profile.shift_confirm_s / params.window_s - 1e-9))
        #: activity over forecast of the decline CUSUM's run past its warning interval, or the ratio of
        #: a confirmed decline while it is reported (``None``: no shortfall)
        self._shortfall_ratio: float | None = None
        self._shortfall_run = False
        #: lag-1 autocorrelation of the learned windows' errors: EW covariance, variance, last error
        self._e_cov = 0.0
        self._e_var = 0.0
        self._e_prev: float | None = None
        self._drift: Drift = "none"
        self._drift_left = 0
        self._anomalous_run = 0
        # window start -> (window slot, reference activity or None): the horizon slides one window at a time
        self._horizon_cache: dict[float, tuple[int, float | None]] = {}
        #: reported quality levels (what the data shows now) and priced ones (what the value uses):
        #: they part only while a silence in expected service is within its grace
        self._dims_ewm: dict[str, float | None] = dict.fromkeys(DIMENSIONS, quality_baseline)
        self._dims_price: dict[str, float | None] = dict.fromkeys(DIMENSIONS, quality_baseline)
        self._dims_price_before = dict(self._dims_price)
        self._q_ewm = quality_baseline if quality_baseline is not None else 0.0
        self._q_price = self._q_ewm
        self._calib_q: list[float] = []
        self._calib_slots: dict[int, list[float]] = {}
        self.windows_seen = 0
        #: expected-service time (s) since the last window with data
        self.silent_in_service_s = 0.0
        # (activity factor, quality factor, dimension levels) of the previous valuation; at pledge V = V_0
        self._prev: tuple[float, float, dict[str, float | None]] = (1.0, 1.0, dict(self._dims_price))
        self._since_pledge: dict[str, float] = {}
        if self._baseline is not None:
            self._fc.prime(self._mean_expected())

    # --- helpers -----------------------------------------------------------------------
    def _local(self, ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, self._tz)

    def _local_s(self, ts: float) -> float:
        """Local wall-clock seconds since Monday 1970-01-05 (the season's origin)."""
        t = self._local(ts)
        days = t.date().toordinal() - _SEASON_ORIGIN
        return days * 86400.0 + t.hour * 3600.0 + t.minute * 60.0 + t.second

    def _slot(self, ts: float) -> int:
        """Baseline slot (0..season_slots-1) of the instant ``ts``, local time."""
        pr = self.profile
        return int(self._local_s(ts) // pr.season_slot_s) % pr.season_slots

    def _wslot(self, start: float) -> int:
        """Slot of the window starting at ``start`` (by its midpoint): day type × window of day, or season window."""
        ws = self.params.window_s
        if self._by_day_type:
            t = self._local(start + ws / 2)
            tod = int((t.hour * 3600 + t.minute * 60 + t.second) // self._slot_s)
            return day_type(t.date(), self.country) * self._day_slots + tod
        return int(self._local_s(start + ws / 2) // ws) % self._season_windows

    def _mean_expected(self) -> float:
        assert self._baseline is not None
        return sum(self._baseline) / len(self._baseline) * self.params.window_s / self.profile.season_slot_s

    def reference(self, start: float) -> float | None:
        """Expected activity of the window starting at ``start`` (activity units), ``None`` while unknown.

        From the appraisal's baseline (a window no longer than a slot takes its share of the slot
        holding its midpoint; a longer window sums the slots it covers), else from the slot's
        first window with data. 0 means off-service.
        """
        if self._baseline is None:
            if not self._learn_reference:
                return None
            slot = self._wslot(start)
            n = self._ref_n.get(slot, 0)
            return self._ref_sum[slot] / n if n else None
        ws, slot_s = self.params.window_s, self.profile.season_slot_s
        if ws <= slot_s:
            return self._baseline[self._slot(start + ws / 2)] * ws / slot_s
        k = max(1, round(ws / slot_s))
        return sum(self._baseline[self._slot(start + (i + 0.5) * slot_s)] for i in range(k))

    def expected_activity(self, start: float) -> float:
        """Expected activity of the window starting at ``start`` (activity units); 0 if unknown or off-service."""
        ref = self.reference(start)
        return ref if ref is not None else 0.0

    @property
    def calibrating(self) -> bool:
        """True until the expected service and Q_0 are known (from the appraisal or calibration)."""
        if self._learn_reference:
            return self._q0 is None or not self._ref_n
        return self._baseline is None or self._q0 is None

    def _activity_index(self, next_start: float, model: SeasonalLevel | None = None) -> float:
        """``I = Σ_h d^h L s(slot_{t+h}) / Σ_h d^h ref(t+h)`` over the horizon's known slots (ratio)."""
        p = self.params
        m = model or self._fc
        level = m.level
        num = den = 0.0
        w = 1.0
        cache = self._horizon_cache
        if len(cache) > 4 * p.horizon_windows:
            for old in [k for k in cache if k < next_start]:
                del cache[old]
        for h in range(p.horizon_windows):
            t = next_start + h * p.window_s
            hit = cache.get(t)
            if hit is None:
                hit = cache[t] = (self._wslot(t), self.reference(t))
            slot, base = hit
            if base is not None:
                num += w * max(0.0, level * m.index(slot, base))
                den += w * base
            w *= p.discount
        return num / den if den > 0 else max(0.0, level)

    def _finish_calibration(self) -> None:
        if self._baseline is None and self._calib_slots and not self._learn_reference:
            allv = [v for vs in self._calib_slots.values() for v in vs]
            mean = sum(allv) / len(allv)
            # activity per window -> activity per slot (a window longer than a slot spreads evenly)
            per_window_to_slot = self.profile.season_slot_s / self.params.window_s
            self._baseline = [
                (sum(vs) / len(vs) if (vs := self._calib_slots.get(k)) else mean) * per_window_to_slot
                for k in range(self.profile.season_slots)
            ]
            if sum(self._baseline) <= 0:
                self._baseline = None
                return
            self._horizon_cache.clear()
            self._fc.prime(self._mean_expected())
        if self._learn_reference and self._ref_n:
            served = [v / self._ref_n[k] for k, v in self._ref_sum.items() if v > 0]
            self._fc.prime(sum(served) / len(served) if served else 1.0)
        if self._q0 is None and self._calib_q:
            self._q0 = max(1e-6, sum(self._calib_q) / len(self._calib_q))

    def _q90(self, band: bool = False) -> float:
        """90 % quantile of the absolute one-step ratio residual on the typical window's count scale.

        The rolling empirical quantile of the last 96 learned windows once it rests on at least
        :data:`MIN_RESIDUALS` of them; before that (a quantile of a handful of residuals is their
        largest one) the normal 90 % quantile 1.645 × the larger of the forecaster's robust scale and
        (with ``band``: for one window's count, as the level-shift detector's dispersion reads it) the
        Poisson floor ``1 / sqrt(L s̄)``: a count of mean ``L s̄`` is never less noisy than Poisson, so a
        warm-up scale still near its start cannot make it narrower than counting noise. The level's
        own interval keeps the robust scale: it averages many windows, and widening it in warm-up
        would call margin on noise the level does not carry. The one-step prediction band of a
        window's activity is calibrated on its own errors instead (:meth:`_band`).
        """
        if self._resid_n >= MIN_RESIDUALS:
            q = self._resid.get()
            if q is not None and math.isfinite(q):
                return float(q)
        # a Poisson count y ~ L s_j has ratio residual variance L / s_j, on the typical window's scale
        # (× s_j / s̄) L / s̄
        level, weight = self._fc.level, self._fc.sum_s
        poisson = math.sqrt(level / weight) if band and level > 0 and weight > 0 else 0.0
        return 1.645 * max(self._fc.scale, poisson)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; one from before the band's conformal calibration starts it empty.

        An empty calibration is the band's warm-up (the forecaster's own band, :meth:`_band`) for the
        next :data:`MIN_BAND_SCORES` windows in service; nothing else of the models changes.
        """
        state.setdefault("_band_scores", deque(maxlen=BAND_MEMORY))
        state.setdefault("_band_log_q", 0.0)
        self.__dict__.update(state)

    def _band_base(self) -> float:
        """The forecaster's own 90 % half-width of a window's one-step error, on the typical window's count scale.

        ``z₀.₉₅ × max(σ, sqrt(L / s̄))``: the normal quantile of the robust residual scale σ (Gelper, Fried
        & Croux 2010), never below that of Poisson counting noise (a count of mean ``L s̄`` has ratio
        residual variance ``L / s̄`` on this scale). The conformal calibration (:meth:`_band`) measures
        errors in units of it, so a window's band scales with the asset's current noise (locally
        weighted conformal inference: Papadopoulos, Gammerman & Vovk 2008; Lei et al. 2018, §5.2).
        """
        level, weight = self._fc.level, self._fc.sum_s
        poisson_scale = math.sqrt(level / weight) if level > 0 and weight > 0 else 0.0
        return 1.645 * max(self._fc.scale, poisson_scale)

    def _band(self, mu: float, unit: float) -> tuple[float, float] | None:
        """One-step 90 % prediction band of a window's activity (activity units), before seeing it.

        ``mu`` is the forecast ``L s_j`` and ``unit`` the activity of one unit of the count-scale
        residual in this window (``s_j / w_j``). The band is ``mu ± Q̂ b unit``, ``b`` the forecaster's
        own half-width (:meth:`_band_base`) and ``Q̂`` a multiplier calibrated on the asset's own
        normalized errors ``|y − mu| / (b unit)`` (scores, :meth:`_band_learn`):

        - from :data:`MIN_BAND_SCORES` scores on, ``Q̂`` is their split-conformal quantile (rank
          :func:`conformal_rank`) over the last :data:`BAND_MEMORY` banded windows in expected service,
          anomalous ones included (the band is judged on every such window, so it is calibrated on all
          of them; online split-conformal prediction over a sliding window: Vovk et al. 2005; Gibbs &
          Candès 2021, "Adaptive conformal inference under distribution shift", *NeurIPS*). ``Q̂ > 1``
          where the errors are heavier-tailed than the normal quantile of the robust scale assumes,
          or the forecast's own error (a season learned from a few visits, an hourly baseline spread
          evenly over its windows) adds to the activity's noise; ``Q̂ < 1`` where they are lighter.
        - before, ``exp(_band_log_q)``: the forecaster's own band (×1) adjusted by quantile tracking,
          ``log Q̂ ← log Q̂ + η (miss − 0.1)`` with η = :data:`BAND_WARMUP_STEP` (Angelopoulos, Barber
          & Bates 2023, "Conformal PID control for time series prediction", *NeurIPS*: the long-run
          miss rate is within ``(B + η) / (η T)`` of 10 % on any sequence), so the warm-up learns from
          its misses without one odd error setting the band. Its band is also widened to the exact
          Poisson 5 % / 95 % quantiles of ``mu`` (a count is never less noisy than Poisson; the normal
          approximation is too narrow for a window of a few trips). Once calibrated, that floor is
          dropped: a measured 90 % quantile joined with a Poisson 90 % band would cover more than 90 %.

        ``None`` when the base is 0 or not finite.
        """
        base = self._band_base()
        if not (math.isfinite(base) and base > 0.0 and math.isfinite(unit) and unit > 0.0):
            return None
        n = len(self._band_scores)
        calibrated = n >= MIN_BAND_SCORES
        q_hat = sorted(self._band_scores)[conformal_rank(n) - 1] if calibrated else math.exp(self._band_log_q)
        half = q_hat * base * unit
        lo, hi = max(0.0, mu - half), mu + half
        if not calibrated and mu > 0.0:
            lo = min(lo, float(poisson.ppf(0.05, mu)))
            hi = max(hi, float(poisson.ppf(0.95, mu)))
        return lo, hi

    def _band_learn(self, mu: float, unit: float, activity: float, band: tuple[float, float]) -> None:
        """Score a banded window in expected service: its normalized error joins the calibration (:meth:`_band`).

        ``|y − mu| / (b unit)`` in units of the forecaster's own half-width ``b`` as the band used it
        (called before the forecaster learns the window); while the warm-up lasts its multiplier also
        tracks the miss (``band`` is the band made for this window).
        """
        base = self._band_base()
        if not (math.isfinite(base) and base > 0.0 and math.isfinite(unit) and unit > 0.0):
            return
        if not math.isfinite(activity):
            return
        if len(self._band_scores) < MIN_BAND_SCORES:
            miss = not band[0] <= activity <= band[1]
            self._band_log_q += BAND_WARMUP_STEP * (float(miss) - (1.0 - BAND_LEVEL))
        self._band_scores.append(abs(activity - mu) / (base * unit))

    def _level_alpha(self, q: float) -> float:
        """Smoothing of the level sized by its information (``level_halfwidth``), in [floor, ``alpha``].

        ``q`` is the 90 % one-step error on the typical window's count scale (:meth:`_q90`); the
        largest ``α`` with ``q sqrt(α / (2 − α)) ≤ H`` is ``2u / (1 + u)``, ``u = (H / q)²``.
        """
        p = self.params
        floor = min(p.alpha, 2.0 * p.window_s / p.level_memory_floor_s)
        if not math.isfinite(q) or q <= 0.0:
            return p.alpha
        u = (p.level_halfwidth / q) ** 2
        return min(p.alpha, max(floor, 2.0 * u / (1.0 + u)))

    def _level_var(self) -> float:
        """Variance factor of the level in ``q²``: the EWMA's, or ``1/n`` for a fresh shift's mean of n windows."""
        a = self._alpha_now
        var = a / (2.0 - a)
        if self._since_shift is not None:
            var = max(var, 1.0 / max(1, self._since_shift))
        return var

    def _serial_inflation(self, e: float) -> float:
        """Variance inflation ``(1 + ρ) / (1 − ρ)`` of a run's evidence for serially correlated errors.

        ``e`` is this window's error on a common scale; ``ρ`` is the exponentially weighted lag-1
        autocorrelation of consecutive learned windows' errors (λ = 0.02: a mean age of 50 windows,
        half the 96-window memory of the residual quantile the dispersion comes from, so it follows a
        change of regime within that memory). The
        CUSUM assumes independent windows; errors that come in spells (weather, holiday weeks in
        daily ridership) make a run's sum vary ``(1 + ρ) / (1 − ρ)`` times more (the long-run
        variance of an AR(1) sum: Box, Jenkins & Reinsel, *Time Series Analysis*, §3.2), so the
        evidence is divided by it. Bounded to [1, 10]: a negative ρ never sharpens the evidence.
        Returns the factor as of *before* this window (a run's own errors must not blunt it).
        """
        lam = 0.02
        rho = self._e_cov / self._e_var if self._e_var > 0 else 0.0
        factor = min(10.0, max(1.0, (1.0 + rho) / (1.0 - rho))) if rho < 0.999 else 10.0
        if not math.isfinite(e):
            return factor
        e = max(-4.0, min(4.0, e))  # one outlier cannot set the autocorrelation
        if self._e_prev is not None:
            self._e_cov = (1 - lam) * self._e_cov + lam * e * self._e_prev
        self._e_var = (1 - lam) * self._e_var + lam * e * e
        self._e_prev = e
        return factor

    def _watch_shift(self, activity: float, mu: float, s_j: float, phi: float) -> Drift | None:
        """Feed one window to the level-shift CUSUMs; the shift confirmed, if any.

        ``activity`` is the window's count, ``mu`` its forecast (both activity units), ``s_j`` its
        seasonal index and ``phi`` the dispersion. Returns ``"decline"`` / ``"increase"`` when a
        run passes the confirmation interval over at least two windows spanning the profile's
        ``shift_confirm_s``; the level then restarts at the run's mean ratio ``Σ y / Σ s``.
        """
        confirmed: Drift | None = None
        level_before = max(self._fc.level, 1e-12)
        family: list[tuple[_CusumRun, float, Drift]] = [(run, self._conf_h_down, "decline") for run in self._cusum_down]
        family.append((self._cusum_up, self._conf_h, "increase"))
        for run, conf_h, name in family:
            # quasi-Poisson log likelihood ratio of the window: rate ratio × μ against μ, divided by φ
            llr = (activity * math.log(run.ratio) + mu * (1.0 - run.ratio)) / phi
            if run.windows == 0:
                run.phi = phi
            else:
                # judged with the dispersion known when the run began: the run's own errors must
                # not make the evidence against it look like noise
                llr *= phi / run.phi
            # a window adds at most 1/m of the confirmation interval: the run must be that long in
            # evidence, not only in time, so one extreme day (a blizzard) after a few ordinary ones
            # does not confirm a shift
            stat = run.stat + min(llr, conf_h / self._confirm_windows)
            if stat <= 0.0:
                run.reset()
                continue
            run.stat, run.activity, run.index, run.windows = (
                stat,
                run.activity + activity,
                run.index + s_j,
                run.windows + 1,
            )
            if confirmed is None and stat >= conf_h and run.windows >= self._confirm_windows and run.index > 0:
                confirmed = name
                self._fc.reset_level(run.activity / run.index)
                self._since_shift = run.windows
        if confirmed is not None:
            for run, _, _ in family:
                run.reset()
            # the errors' autocorrelation so far mixes the old regime with the shift's own run
            self._e_cov, self._e_var, self._e_prev = 0.0, 0.0, None
        level = self._fc.level
        live = [run for run in self._cusum_down if run.stat > 0.0 and run.index > 0]
        # the shortfall's size: the longest live decline run's mean ratio (the best-informed one)
        lead = max(live, key=lambda run: run.index, default=None)
        if confirmed == "decline":
            self._shortfall_ratio = level / level_before
        elif (
            lead is not None
            and level > 0
            and (self._shortfall_run or any(run.stat >= self._warn_h_down for run in live))
        ):
            # from the warning limit on, the shortfall lasts as long as a run of evidence (until every
            # decline CUSUM is back at 0), so evidence hovering at the limit does not flap
            self._shortfall_run = True
            self._shortfall_ratio = lead.activity / (level * lead.index)
        elif self._drift != "decline":
            self._shortfall_ratio = None
        if not live:
            self._shortfall_run = False
        return confirmed

    def _quality(self, dims: dict[str, float | None]) -> float:
        weights = self.profile.quality_weights
        num = den = 0.0
        for name, v in dims.items():
            if v is not None:
                num += weights.get(name, 1.0) * v
                den += weights.get(name, 1.0)
        return num / den if den else 0.0

    @staticmethod
    def _smooth(levels: dict[str, float | None], dims: dict[str, float | None], a: float) -> None:
        for k, v in dims.items():
            if v is None:
                continue  # not measurable this window (no records): the dimension keeps its level
            old = levels.get(k)
            levels[k] = v if old is None else (1 - a) * old + a * v

    # --- the per-window update -----------------------------------------------------------
    def update(
        self,
        start: float,
        activity: float,
        dims: dict[str, float | None],
        features: dict[str, float],
        silent: bool = False,
    ) -> WindowResult:
        """Learn one closed window and revalue the asset.

        Parameters
        ----------
        start
            Window start, POSIX seconds.
        activity
            Activity measured in the window (profile units, e.g. trips completed).
        dims
            The window's six quality dimensions (0..1 or ``None``).
        features
            Raw window features (scaled here with the profile's fixed limits).
        silent
            True for a window without any record: it carries no activity evidence, so neither the
            forecaster nor the anomaly detector learns it. Off-service (no activity expected), it
            changes nothing. In expected service it lowers the reported accessibility and
            completeness at once and widens the interval; the value's own quality levels follow only
            once the silence outlasts the profile's ``silence_grace_s`` (``docs/valuation.md``).

        Returns
        -------
        WindowResult
            Value in yuan with its interval, index, quality, anomaly and drift.
        """
        p = self.params
        self.windows_seen += 1
        slot = self._wslot(start)
        ref = self.reference(start)
        # expected service: at least one unit of activity expected (min_expected_activity). Below it
        # a window is the service's edge (its first or last trips); an empty feed there is not yet
        # evidence of an outage, so silence is counted only from it on
        service = ref is not None and ref >= p.min_expected_activity
        resumed = not silent and self.silent_in_service_s > 0.0
        if not silent:
            self.silent_in_service_s = 0.0
        elif service:
            if self.silent_in_service_s == 0.0:
                # the silence began inside the previous window: that partly dark window belongs to
                # the silence, whose price is the grace's to decide, not to its edge
                self._dims_price = self._dims_price_before
            self.silent_in_service_s += p.window_s
        grace = self.profile.silence_grace_s
        in_grace = 0.0 < self.silent_in_service_s <= grace
        wq = self._quality(dims)
        a = 1.0 - 0.5 ** (1.0 / p.quality_halflife_windows)
        acc_now = dims.get("accessibility")
        if not silent or service:
            self._smooth(self._dims_ewm, dims, a)
            self._dims_price_before = dict(self._dims_price)
            if resumed and acc_now is not None and acc_now < 1.0:
                pass  # the feed came back inside this window: its dark part belongs to the silence
            elif not in_grace:
                self._smooth(self._dims_price, dims, a)
        self._q_ewm = self._quality(self._dims_ewm)
        self._q_price = self._quality(self._dims_price)

        x = self._scaler.transform_one(features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = float(self._hst.score_one(x)) if x else 0.0
        if not math.isfinite(score):
            score = 0.0
        anomalous = self.windows_seen > p.hst_window and score >= p.anomaly_threshold
        if not silent:
            self._anomalous_run = self._anomalous_run + 1 if anomalous else 0
        # an anomaly that persists past the hold is a new regime (a recovery, a new timetable), not a
        # glitch: from then on the window is learned by the forecaster and by the detector itself
        regime = anomalous and self._anomalous_run > p.anomaly_hold_windows
        if x and (not anomalous or regime) and not silent:
            self._hst.learn_one(x)

        calibrating_before = self.calibrating
        first_visit = False
        if not silent and self._learn_reference:
            # the slot's reference is the mean activity of its first two visits' windows with data
            # (0: off-service). During the first visit the slot is not judged (it would be judged
            # against itself); during the second it is, and still refines the reference
            n = self._ref_n.get(slot, 0)
            if n < 2 * self._visit_windows:
                first_visit = n < self._visit_windows
                self._ref_sum[slot] = self._ref_sum.get(slot, 0.0) + max(0.0, activity)
                self._ref_n[slot] = n + 1
                self._horizon_cache.clear()
        if calibrating_before and not silent:
            if self._baseline is None and not self._learn_reference:
                self._calib_slots.setdefault(self._slot(start + p.window_s / 2), []).append(activity)
            if self._q0 is None:
                self._calib_q.append(wq)
            if self.windows_seen >= p.calibration_windows:
                self._finish_calibration()

        learned = False
        expected = ref if ref is not None else 0.0
        counterfactual_index: float | None = None
        forecast_band: tuple[float, float] | None = None
        # a window the feed was observable less than half of (it went dark or came back inside it)
        # is not activity evidence: its count says when the feed went dark, not how much ran. Half,
        # because past it most of the window's activity was unobserved; a missed poll or two (an
        # adapter that reports completions at the next poll loses nothing) stays above it
        acc = dims.get("accessibility")
        observed = acc is None or acc >= 0.5
        if not calibrating_before and not silent and observed and not first_visit and expected > 0:
            level_too = expected >= p.min_expected_activity
            r = self._fc.residual(slot, expected, activity)
            wgt = self._fc.weight(slot, expected)
            q_prev = self._q90(band=True)
            s_j = self._fc.index(slot, expected)
            # one-step 90 % prediction band of this window's activity, made before seeing it, then
            # scored against it (windows in expected service only: the band is judged on those)
            mu, unit = max(0.0, self._fc.level * s_j), s_j / wgt
            forecast_band = self._band(mu, unit)
            if forecast_band is not None and service:
                self._band_learn(mu, unit, activity, forecast_band)
            if anomalous and not regime and not p.learn_anomalous and r is not None and r > 0:
                # flagged above the forecast: not learned. The counterfactual (what the index would
                # be had the window been learned) is the anomaly handling's effect on the value.
                shadow = copy.deepcopy(self._fc)
                shadow.learn(slot, expected, activity, level_too, not self._learn_reference)
                counterfactual_index = self._activity_index(start + p.window_s, shadow)
            else:
                shift: Drift | None = None
                if level_too and r is not None:
                    q_step = self._q90()
                    # the level's memory sized by its information, or a fresh shift's running mean
                    alpha = self._level_alpha(q_step)
                    if self._since_shift is not None:
                        if 1.0 / (self._since_shift + 1) > alpha:
                            alpha = 1.0 / (self._since_shift + 1)
                            self._since_shift += 1
                        else:
                            self._since_shift = None
                    self._alpha_now = self._fc.alpha = alpha
                    # the activity's dispersion φ = var / mean of a window's count: one-step errors on
                    # the typical window's scale have variance φ L / s̄, so φ = σ² s̄ / L. Never below
                    # 1: a timetable makes ordinary days more regular than Poisson, but a week of
                    # them has not seen the breakdowns, detours and missed poll cycles that are the
                    # detector's real noise, and a φ learned from a regular week would let two odd
                    # hours confirm a shift (odd data is uncertainty first, docs/valuation.md)
                    # (a series so regular that its errors are all 0 is judged at φ = 1, not skipped)
                    level, weight = self._fc.level, self._fc.sum_s
                    if level > 0 and weight > 0:
                        if math.isfinite(q_prev) and q_prev > 0:
                            phi = max(1.0, (q_prev / 1.645) ** 2 * weight / level)
                            phi *= self._serial_inflation(r * wgt / q_prev)
                        else:
                            phi = self._serial_inflation(math.nan)
                        shift = self._watch_shift(activity, self._fc.forecast(slot, expected), s_j, phi)
                    # Huber-cleaned like the level's own input (|w r| ≤ k σ): a regime change's
                    # errors widen the interval by at most k σ, not for the 96 windows they stay in
                    self._resid.update(min(abs(r) * wgt, 2 * p.clip_k * self._fc.scale))
                    self._resid_n += 1
                if shift is not None:
                    # the level restarted at the run's mean: this window is in it, not learned twice
                    self._drift, self._drift_left = shift, p.drift_hold_windows
                    y_std = None
                else:
                    y_std = self._fc.learn(slot, expected, activity, level_too, not self._learn_reference)
                learned = True
                if level_too and y_std is not None:
                    # the detectors watch the cleaned ratio on the typical window's count scale, so a
                    # thin night window's Poisson noise is not read as a structural change
                    y = y_std
                    self._ph_down.update(y)
                    self._ph_up.update(y)
                    if self._ph_down.drift_detected:
                        self._drift, self._drift_left = "decline", p.drift_hold_windows
                    elif self._ph_up.drift_detected:
                        self._drift, self._drift_left = "increase", p.drift_hold_windows
        if self._drift_left > 0:
            self._drift_left -= 1
        else:
            self._drift = "none"
            if not self._shortfall_run:
                self._shortfall_ratio = None

        q0 = self._q0 if self._q0 is not None else max(wq, 1e-6)
        if self.calibrating:
            index = 1.0
            half = 0.0
        else:
            index = self._activity_index(start + p.window_s)
            q = self._q90()
            # I = L × S: the level L is an EWMA of ratio observations whose one-step errors (on the
            # typical window's count scale) have the 90 % quantile q, so its own 90 % half-width is
            # q × sqrt(α / (2 − α)) (the EWMA control limit, Roberts 1959; Lucas & Saccucci 1990), and
            # it moves I by that × S = I / L. Each window of expected service without data adds the
            # variance of one step of the random walk the EWMA is optimal for, α² / (1 − α) × q²
            # (Muth 1960; Harvey 1989, §2.3): the interval widens with the silent time in service.
            level = self._fc.level
            scale = index / level if level > 0 else 1.0
            dark = self.silent_in_service_s / p.window_s
            a = self._alpha_now
            spread = math.sqrt(self._level_var() + dark * a**2 / (1.0 - a))
            half = q * spread * scale if q is not None and math.isfinite(q) else 0.0
        lower = max(0.0, index - half)
        upper = index + half
        # warm-up: until the expected service and Q_0 are known the appraisal stands in
        # (docs/valuation.md); a window measured against a Q_0 not yet known must not value it at 0
        qf = 1.0 if self.calibrating or q0 <= 0 else min(self._q_price / q0, 1.0)
        v0 = self.appraisal_value
        attribution = self._attribute(min(index, p.cap), qf, counterfactual_index)
        return WindowResult(
            status="calibrating" if self.calibrating else "active",
            value=v0 * min(index, p.cap) * qf,
            value_lower=v0 * min(lower, p.cap) * qf,
            value_upper=v0 * min(upper, p.cap) * qf,
            activity_index=index,
            activity_index_lower=lower,
            activity_index_upper=upper,
            expected_activity=expected,
            quality_score=self._q_ewm,
            quality_baseline=q0,
            quality=dict(self._dims_ewm),
            window_quality=dims,
            anomaly_score=score,
            anomalous=anomalous,
            learned=learned,
            drift=self._drift,
            windows_seen=self.windows_seen,
            attribution=attribution,
            attribution_since_pledge={k: round(v, 2) for k, v in self._since_pledge.items()},
            service_expected=service,
            silent_in_service_s=self.silent_in_service_s,
            in_silence_grace=in_grace,
            priced_quality_score=self._q_price,
            activity_forecast_band=forecast_band,
            activity_shortfall=self._shortfall_ratio is not None,
            shortfall_ratio=self._shortfall_ratio,
        )

    def _attribute(self, a1: float, qf1: float, counterfactual: float | None) -> dict[str, float]:
        """Split the value change since the previous valuation into activity, each dimension, anomaly handling.

        ``V = V_0 × A × Qf``; with midpoint weights the activity part is ``V_0 ΔA (Qf_0 + Qf_1)/2`` and the
        quality part ``V_0 ΔQf (A_0 + A_1)/2``, which sum to ΔV exactly. The quality part is shared among
        dimensions by their weighted change; the anomaly part is what learning a flagged window would
        have added to the activity part (yuan; it is included in neither of the others).
        """
        v0 = self.appraisal_value
        a0, qf0, dims0 = self._prev
        out: dict[str, float] = {}
        activity = v0 * (a1 - a0) * (qf0 + qf1) / 2
        anomaly = 0.0
        if counterfactual is not None:
            a_cf = min(counterfactual, self.params.cap)
            anomaly = activity - v0 * (a_cf - a0) * (qf0 + qf1) / 2
            activity -= anomaly
        out["activity"] = activity
        out["anomaly_handling"] = anomaly
        quality = v0 * (qf1 - qf0) * (a0 + a1) / 2
        weights = self.profile.quality_weights
        deltas = {
            k: weights.get(k, 1.0) * ((self._dims_price.get(k) or 0.0) - (dims0.get(k) or 0.0)) for k in DIMENSIONS
        }
        total = sum(deltas.values())
        for k in DIMENSIONS:
            share = deltas[k] / total if total else 1.0 / len(DIMENSIONS)
            out[f"quality.{k}"] = quality * share
        self._prev = (a1, qf1, dict(self._dims_price))
        for k, v in out.items():
            self._since_pledge[k] = self._since_pledge.get(k, 0.0) + v
        return {k: round(v, 2) for k, v in out.items()}
