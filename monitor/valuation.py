"""Activity- and quality-indexed revaluation of one pledged data asset (``docs/valuation.md``).

::

    V_t = V_0 × min(I_t, cap) × min(Q_t / Q_0, 1)
    I_t = Σ_h d^h · forecast_t(h) / Σ_h d^h · baseline(h)

The activity forecaster is seasonal by decomposition: the seasonal shape is the
appraisal's hourly activity profile (or the one measured in calibration), and a
river ``HoltWinters`` model learns the *level* of the deseasonalised series
``y_t = activity_t / baseline(slot_t)`` one window at a time. So
``forecast_t(h) = level_t(h) × baseline(slot_{t+h})`` and ``I_t`` is the
discount-weighted forecast of that level. A river ``HalfSpaceTrees`` scores the
window's features scaled to [0, 1] with fixed limits from the asset profile;
a window it flags is **not learned** by the forecaster (``learn_anomalous=False``,
after river's ``AnomalyFilter(protect_anomaly_detector=...)``), so padded data
cannot lift the value. Two river ``PageHinkley`` detectors watch ``y_t`` for a
structural decline or increase. The interval on ``I_t`` is the rolling 90 %
quantile of absolute one-step errors of ``y_t``.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import warnings
import zoneinfo
from dataclasses import asdict, dataclass
from typing import Any

import river
from river import anomaly, drift, stats, time_series

from monitor.profiles import AssetProfile
from monitor.schemas import DIMENSIONS

__all__ = ["AssetValuer", "FixedScaler", "ValuationParams", "WindowResult", "model_stamp"]

MODEL_VERSIONS = {
    "river": str(getattr(river, "__version__", "unknown")),
    "forecaster": "holtwinters-level-x-baseline/1",
    "anomaly": "halfspacetrees/1",
    "drift": "pagehinkley/1",
    "valuation": "pledgewatch-index/1",
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
        Smoothing of the level (river ``HoltWinters(alpha)``), 0..1.
    prior_windows
        How many windows of evidence the appraisal's baseline counts as (level primed at 1.0).
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
        Whether the forecaster learns windows flagged anomalous (default False).
    min_expected_activity
        Windows whose expected activity is below this (e.g. at night) teach the level nothing.
    drift_hold_windows
        Windows a detected drift stays reported.
    seed
        Seed of HalfSpaceTrees.
    """

    window_s: float = 900.0
    cap: float = 1.0
    horizon_windows: int = 96
    discount: float = 0.99
    alpha: float = 0.1
    prior_windows: int = 8
    calibration_windows: int = 96
    quality_halflife_windows: float = 4.0
    anomaly_threshold: float = 0.85
    hst_window: int = 32
    learn_anomalous: bool = False
    min_expected_activity: float = 10.0
    drift_hold_windows: int = 16
    seed: int = 42


def model_stamp(profile: AssetProfile, params: ValuationParams) -> dict[str, object]:
    """What a model checkpoint must match to be reused: model versions, feature schema, parameters."""
    return {
        "models": dict(MODEL_VERSIONS),
        "features": sorted(profile.feature_limits.items()),
        "params": asdict(params),
    }


class FixedScaler:
    """Scale features to [0, 1] with fixed limits; unknown features are dropped, never NaN.

    River 0.26.1's ``MinMaxScaler`` yields NaN for a feature it has not seen (online-ml/river#2001),
    which HalfSpaceTrees then silently mis-scores; fixed limits from the asset profile avoid both.

    Examples
    --------
    >>> FixedScaler({"a": (0.0, 10.0)}).transform_one({"a": 15.0, "new": 3.0})
    {'a': 1.0}
    """

    def __init__(self, limits: dict[str, tuple[float, float]]) -> None:
        self.limits = dict(limits)

    def transform_one(self, x: dict[str, float]) -> dict[str, float]:
        """Scale ``x``: known finite features to [0, 1] (clipped); others dropped."""
        out: dict[str, float] = {}
        for name, (lo, hi) in self.limits.items():
            v = x.get(name)
            if v is None or not math.isfinite(v):
                continue
            z = (v - lo) / (hi - lo)
            out[name] = 0.0 if z < 0.0 else 1.0 if z > 1.0 else z
        return out


@dataclass(slots=True)
class WindowResult:
    """What the valuer concluded for one closed window (inputs of ``CollateralValuation``)."""

    status: str
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
    drift: str
    windows_seen: int
    attribution: dict[str, float]
    attribution_since_pledge: dict[str, float]


class AssetValuer:
    """Per-asset valuation models (river), learning one closed window at a time.

    Parameters
    ----------
    profile
        The asset's profile (feature limits, quality weights).
    appraisal_value
        V_0 in yuan.
    baseline_per_hour
        24 hourly activity values (local time) from the appraisal, or ``None`` to calibrate.
    quality_baseline
        Q_0 (0..1) from the appraisal, or ``None`` to calibrate.
    timezone
        IANA zone of the asset's operations (for the hour-of-day slot).
    params
        :class:`ValuationParams`.
    """

    def __init__(
        self,
        profile: AssetProfile,
        appraisal_value: float,
        baseline_per_hour: list[float] | None,
        quality_baseline: float | None,
        timezone: str,
        params: ValuationParams,
    ) -> None:
        self.profile = profile
        self.appraisal_value = appraisal_value
        self.timezone = timezone
        self.params = params
        self._tz = zoneinfo.ZoneInfo(timezone)
        self._baseline = list(baseline_per_hour) if baseline_per_hour else None
        self._q0 = quality_baseline
        self._forecaster = time_series.HoltWinters(alpha=params.alpha)
        self._level_n = 0
        self._hst = anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=params.hst_window, seed=params.seed)
        self._scaler = FixedScaler(profile.feature_limits)
        self._ph_down = drift.PageHinkley(mode="down", min_instances=12, threshold=3.0, delta=0.05)
        self._ph_up = drift.PageHinkley(mode="up", min_instances=12, threshold=3.0, delta=0.05)
        self._resid = stats.RollingQuantile(q=0.9, window_size=96)
        self._drift = "none"
        self._drift_left = 0
        self._dims_ewm: dict[str, float | None] = dict.fromkeys(DIMENSIONS, quality_baseline)
        self._q_ewm = quality_baseline if quality_baseline is not None else 0.0
        self._calib_q: list[float] = []
        self._calib_hours: dict[int, list[float]] = {}
        self.windows_seen = 0
        # (activity factor, quality factor, dimension levels) of the previous valuation; at pledge V = V_0
        self._prev: tuple[float, float, dict[str, float | None]] = (1.0, 1.0, dict(self._dims_ewm))
        self._since_pledge: dict[str, float] = {}
        if self._baseline is not None:
            for _ in range(params.prior_windows):
                self._learn_level(1.0)

    # --- helpers -----------------------------------------------------------------------
    def _hour(self, ts: float) -> int:
        return dt.datetime.fromtimestamp(ts, self._tz).hour

    def expected_activity(self, start: float) -> float:
        """Baseline activity of the window starting at ``start`` (activity units); 0 if unknown."""
        if self._baseline is None:
            return 0.0
        return self._baseline[self._hour(start)] * self.params.window_s / 3600.0

    @property
    def calibrating(self) -> bool:
        """True until baseline and Q_0 are known (from the appraisal or calibration)."""
        return self._baseline is None or self._q0 is None

    def _learn_level(self, y: float) -> None:
        self._forecaster.learn_one(y)
        self._level_n += 1

    def _level_forecast(self, horizon: int, model: Any = None) -> list[float]:
        if self._level_n < 2:
            return [1.0] * horizon
        return [max(0.0, v) for v in (model or self._forecaster).forecast(horizon=horizon)]

    def _activity_index(self, next_start: float, model: Any = None) -> float:
        p = self.params
        levels = self._level_forecast(p.horizon_windows, model)
        num = den = 0.0
        w = 1.0
        for h in range(p.horizon_windows):
            base = self.expected_activity(next_start + h * p.window_s)
            num += w * levels[h] * base
            den += w * base
            w *= p.discount
        return num / den if den > 0 else levels[0]

    def _finish_calibration(self) -> None:
        if self._baseline is None and self._calib_hours:
            allv = [v for vs in self._calib_hours.values() for v in vs]
            mean = sum(allv) / len(allv)
            per_window_to_hour = 3600.0 / self.params.window_s
            self._baseline = [
                (sum(vs) / len(vs) if (vs := self._calib_hours.get(h)) else mean) * per_window_to_hour
                for h in range(24)
            ]
            if sum(self._baseline) <= 0:
                self._baseline = None
                return
            for _ in range(self.params.prior_windows):
                self._learn_level(1.0)
        if self._q0 is None and self._calib_q:
            self._q0 = max(1e-6, sum(self._calib_q) / len(self._calib_q))

    def _quality(self, dims: dict[str, float | None]) -> float:
        weights = self.profile.quality_weights
        num = den = 0.0
        for name, v in dims.items():
            if v is not None:
                num += weights.get(name, 1.0) * v
                den += weights.get(name, 1.0)
        return num / den if den else 0.0

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
            forecaster nor the anomaly detector learns it; its effect on the value goes through the
            accessibility and completeness dimensions.

        Returns
        -------
        WindowResult
            Value in yuan with its interval, index, quality, anomaly and drift.
        """
        p = self.params
        self.windows_seen += 1
        wq = self._quality(dims)
        a = 1.0 - 0.5 ** (1.0 / p.quality_halflife_windows)
        for k, v in dims.items():
            if v is None:
                continue  # not measurable this window (no records): the dimension keeps its level
            old = self._dims_ewm.get(k)
            self._dims_ewm[k] = v if old is None else (1 - a) * old + a * v
        self._q_ewm = self._quality(self._dims_ewm)

        x = self._scaler.transform_one(features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = float(self._hst.score_one(x)) if x else 0.0
        if not math.isfinite(score):
            score = 0.0
        anomalous = self.windows_seen > p.hst_window and score >= p.anomaly_threshold
        if x and not anomalous and not silent:
            self._hst.learn_one(x)

        calibrating_before = self.calibrating
        if calibrating_before and not silent:
            if self._baseline is None:
                self._calib_hours.setdefault(self._hour(start), []).append(activity)
            if self._q0 is None:
                self._calib_q.append(wq)
            if self.windows_seen >= p.calibration_windows:
                self._finish_calibration()

        learned = False
        expected = self.expected_activity(start)
        counterfactual_index: float | None = None
        if not calibrating_before and not silent and expected >= p.min_expected_activity:
            y = activity / expected
            if anomalous and not p.learn_anomalous:
                # what the index would be had the window been learned: the anomaly handling's effect
                shadow = copy.deepcopy(self._forecaster)
                shadow.learn_one(y)
                counterfactual_index = self._activity_index(start + p.window_s, shadow)
            if not anomalous or p.learn_anomalous:
                if self._level_n >= 2:
                    pred = self._level_forecast(1)[0]
                    self._resid.update(abs(y - pred))
                self._learn_level(y)
                learned = True
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

        q0 = self._q0 if self._q0 is not None else max(wq, 1e-6)
        if self.calibrating:
            index = 1.0
            half = 0.0
        else:
            index = self._activity_index(start + p.window_s)
            q = self._resid.get() if self._level_n > p.prior_windows + 2 else 0.0
            half = q if q is not None and math.isfinite(q) else 0.0
        lower = max(0.0, index - half)
        upper = index + half
        qf = min(self._q_ewm / q0, 1.0) if q0 > 0 else 1.0
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
        deltas = {k: weights.get(k, 1.0) * ((self._dims_ewm.get(k) or 0.0) - (dims0.get(k) or 0.0)) for k in DIMENSIONS}
        total = sum(deltas.values())
        for k in DIMENSIONS:
            share = deltas[k] / total if total else 1.0 / len(DIMENSIONS)
            out[f"quality.{k}"] = quality * share
        self._prev = (a1, qf1, dict(self._dims_ewm))
        for k, v in out.items():
            self._since_pledge[k] = self._since_pledge.get(k, 0.0) + v
        return {k: round(v, 2) for k, v in out.items()}
