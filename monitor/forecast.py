"""The activity forecaster of the valuation: robust multiplicative level × learned seasonal indices.

::

    forecast_t(j) = L_t × s_j                        (activity units per window)
    L_t = EW_α(y*) / EW_α(s)                          (ratio of exponentially weighted sums)
    r_t = y_t / s_j − L_{t−1}                         (ratio residual)
    w_j = sqrt(s_j / s̄)                               (count weight; s̄ = EW_α(s), the typical window)
    r*_t = clip(w_j r_t, ±k σ_{t−1}) / w_j            (Huber-cleaned residual, on the count scale)
    y*_t = s_j × (L_{t−1} + r*_t)                     (the window's activity, cleaned)
    s_j ← s_j + g_j (y*_t / L_{t−1} − s_j),  g_j = max(γ, 1 / (n_j + 1))  (n_j visits, the start one)
    σ_t = (1 − λ) σ_{t−1} + λ min(|w_j r_t|, 2k σ_{t−1}) / 0.798

It is Holt-Winters' multiplicative seasonal method without trend (Winters, 1960, *Management
Science* 6(3)) in the robust form of Gelper, Fried & Croux (2010, "Robust forecasting with
exponential and Holt-Winters smoothing", *Journal of Forecasting* 29(3)): each observation is
cleaned with a Huber ψ (clip at ``k`` scales) before it updates the level **and** the seasonal
index, and the scale is an exponentially weighted mean absolute residual with bounded influence
(÷ 0.798 = E|N(0,1)| makes it a standard deviation for normal residuals). Activity is a count, whose
ratio residual has variance ∝ 1 / s_j (Poisson), so residuals are compared on the count scale
``w_j r`` (the Pearson residual of a Poisson model relative to the typical window, McCullagh &
Nelder 1989, §2.4): a thin night window is neither clipped for its natural noise nor allowed to
inflate the scale that judges the busy ones.

A slot's index is the running mean of its cleaned visits (``g_j = 1 / (n_j + 1)`` after ``n_j``
visits, its starting value counting as one) until it forgets at the floor ``γ``: one light night,
storm or unrecognised holiday moves a slot by at most ``g_j k σ s_j / (w_j L)`` (with γ = 0.2,
k = 2 and a 10 % scale, 4 % of the slot once it has five visits), where the unclipped update of
``γ = 0.5`` moved it halfway (issue 15). When the starting values are themselves learned from the
data (no appraisal baseline), the indices stay at them and only the level learns, so level and
season cannot trade scale between them (:class:`monitor.valuation.AssetValuer`). The
level is a ratio of weighted sums rather than a mean of ratios, so windows with small expected
activity (a bus network at night) weigh in proportion to their expected count.

Chosen by progressive validation against seasonal-naive and river's ``HoltWinters`` and ``SNARIMAX``
on the Auckland trip updates and the CTA daily boardings (``benchmarks/forecasters.py``,
``docs/valuation.md``). Pure Python floats and a dict: cheap to update (a few µs), to copy for the
anomaly counterfactual, and to checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["SeasonalLevel"]

_NORMAL_MAD = 0.7979  # E|Z| for Z ~ N(0, 1)


@dataclass(slots=True)
class SeasonalLevel:
    """Robust multiplicative level × seasonal-index forecaster of activity per window.

    Parameters
    ----------
    alpha
        Level smoothing per learned window, 0..1 (0.05 by default in ``ValuationParams``).
    gamma
        Floor of the seasonal index's smoothing per visit of a slot, 0..1 (0.2): a slot averages
        its first ``1 / γ`` visits and then forgets at ``γ`` per visit.
    clip_k
        Huber clip in scales (2.0); ``math.inf`` disables the cleaning.
    scale_lambda
        Smoothing of the residual scale σ (0.1).
    scale0
        Starting σ of the ratio residual (0.1 = 10 %).

    Slots ``j`` are the caller's (window positions in the season); ``base`` is the appraisal's
    expected activity of the window, used as the index of a slot not visited yet.
    """

    alpha: float
    gamma: float
    clip_k: float = 2.0
    scale_lambda: float = 0.1
    scale0: float = 0.1
    sum_y: float = 1.0
    sum_s: float = 1.0
    scale: float = field(default=0.0)
    season: dict[int, float] = field(default_factory=dict)
    visits: dict[int, int] = field(default_factory=dict)
    n: int = 0

    def __post_init__(self) -> None:
        if self.scale <= 0.0:
            self.scale = self.scale0

    @property
    def level(self) -> float:
        """Current level L (ratio of activity to the seasonal indices; 1.0 before any learning)."""
        return self.sum_y / self.sum_s if self.sum_s > 0 else 1.0

    def index(self, slot: int, base: float) -> float:
        """Seasonal index of ``slot`` (activity units per window): learned, else ``base``."""
        return self.season.get(slot, base)

    def forecast(self, slot: int, base: float) -> float:
        """Forecast of a window's activity (activity units; ≥ 0)."""
        return max(0.0, self.level * self.index(slot, base))

    def residual(self, slot: int, base: float, y: float) -> float | None:
        """Ratio residual ``y / s_j − L`` of an observation before learning it (``None`` if s_j = 0)."""
        s = self.index(slot, base)
        return y / s - self.level if s > 0 else None

    def weight(self, slot: int, base: float) -> float:
        """Count weight ``sqrt(s_j / s̄)`` of a slot: its ratio residual × this is on the typical window's scale."""
        s = self.index(slot, base)
        return math.sqrt(s / self.sum_s) if s > 0 and self.sum_s > 0 else 1.0

    def learn(self, slot: int, base: float, y: float, level_too: bool = True, season_too: bool = True) -> float | None:
        """Learn one window's activity ``y`` (activity units) at ``slot``.

        ``level_too=False`` updates only the seasonal index (used for windows whose expected
        activity is too small to say anything about the level). ``season_too=False`` keeps the
        slot's index at ``base`` (used when ``base`` is itself learned from the data, so level and
        season cannot trade scale between them).

        Returns the window's ratio on the typical window's scale, Huber-cleaned, ``L + w r*``
        (homoscedastic, so a drift detector can watch it), or ``None`` when nothing was learned.
        """
        s = self.index(slot, base)
        if s <= 0.0 or not math.isfinite(y):
            return None
        level = self.level
        r = y / s - level
        w = self.weight(slot, base)
        if w <= 0.0:
            # an index so small beside the typical window that its weight underflows (a subnormal
            # index, found by the model contract's property test) is an off-service slot, as s = 0 is
            return None
        lim = self.clip_k * self.scale / w
        rc = r if -lim <= r <= lim else (lim if r > 0 else -lim)
        y_clean = max(0.0, s * (level + rc))
        if level_too:
            self.scale = (1 - self.scale_lambda) * self.scale + self.scale_lambda * min(
                abs(w * r), 2 * self.clip_k * self.scale
            ) / _NORMAL_MAD
            self.sum_y = (1 - self.alpha) * self.sum_y + self.alpha * y_clean
            self.sum_s = (1 - self.alpha) * self.sum_s + self.alpha * s
        if level > 0 and season_too:
            n = self.visits.get(slot, 0)
            g = max(self.gamma, 1.0 / (n + 2))  # the starting index counts as one visit
            self.season[slot] = s + g * (y_clean / level - s)
            self.visits[slot] = n + 1
        self.n += 1
        return level + w * rc

    # --- river's model contract (``learn_one`` / ``predict_one`` over plain dicts) -------------
    #: the constructor's parameters; the other fields are learned state
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "gamma", "clip_k", "scale_lambda", "scale0")

    def learn_one(self, x: dict[str, Any], y: float) -> None:
        """Learn one window's activity ``y`` (activity units) for ``x = {"slot": int, "base": float}``.

        river's regressor contract (``river.base.Regressor.learn_one``): ``x`` is read, never changed,
        and features other than ``slot`` and ``base`` are ignored. Same as :meth:`learn` with the level
        and the season both learning.

        Raises
        ------
        ValueError
            When ``x`` lacks ``slot`` or ``base``, naming the key.

        >>> m = SeasonalLevel(alpha=0.5, gamma=0.2)
        >>> m.predict_one({"slot": 3, "base": 10.0})
        10.0
        >>> m.learn_one({"slot": 3, "base": 10.0, "route": "7xx"}, 12.0)  # 20 % above: cleaned at 2 scales
        >>> round(m.predict_one({"slot": 3, "base": 10.0}), 3)
        10.909
        """
        slot, base = _slot_base(x)
        self.learn(slot, base, float(y))

    def predict_one(self, x: dict[str, Any]) -> float:
        """Forecast of a window's activity (activity units, ≥ 0) for ``x = {"slot": int, "base": float}``.

        Raises
        ------
        ValueError
            When ``x`` lacks ``slot`` or ``base``.
        """
        slot, base = _slot_base(x)
        return self.forecast(slot, base)

    def _get_params(self) -> dict[str, float]:
        """The constructor's parameters under their names (river's ``Base._get_params``)."""
        return {name: getattr(self, name) for name in self.PARAMS}

    def clone(self) -> SeasonalLevel:
        """A new, unlearned forecaster with the same parameters (river's ``Base.clone``)."""
        return SeasonalLevel(
            alpha=self.alpha, gamma=self.gamma, clip_k=self.clip_k, scale_lambda=self.scale_lambda, scale0=self.scale0
        )

    def reset_level(self, level: float) -> None:
        """Restart the level at ``level`` (ratio, ≥ 0), keeping the weight of the typical window.

        Used when a level shift is confirmed: the level's past is then a different regime.
        """
        self.sum_y = max(0.0, level) * self.sum_s

    def prime(self, base_mean: float) -> None:
        """Start the level at 1.0 with the weight of one average window (``base_mean`` activity units)."""
        self.sum_y = self.sum_s = max(base_mean, 1e-9)


def _slot_base(x: dict[str, Any]) -> tuple[int, float]:
    """``(slot, base)`` of a forecaster's feature dict; ValueError naming a missing or unusable key."""
    try:
        return int(x["slot"]), float(x["base"])
    except KeyError as exc:
        raise ValueError(
            f"forecaster features: {exc.args[0]!r} missing, expected {{'slot': int, 'base': float}}"
        ) from None
    except (TypeError, ValueError):
        raise ValueError(
            f"forecaster features: slot={x.get('slot')!r}, base={x.get('base')!r}; expected an int and a number"
        ) from None
