"""What-if on the current portfolio: shock activity and quality, see which loans cross which line.

For each pledged asset, from its latest valuation (``docs/valuation.md``)::

    V' = V_0 × min(I_t × (1 − a), cap) × min(Q_t × (1 − q) / Q_0, 1)

where ``a`` is the activity drop and ``q`` the quality drop (ratios 0..1) applied to that asset (or
to all). An asset not yet valued keeps its appraisal. Each loan's shocked coverage is
``Σ V' / outstanding``, judged against its own lines, with the top-up that would restore its warning
line (:func:`monitor.core.margin.required_top_up`). Pure functions of the snapshots; no state changes.

Sources: a backtest of recorded data (``pledgewatch stress`` default: the shipped sample), or the
latest records of the ``loan-risk`` and ``valuations`` topics of a running deployment (``--source topics``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from monitor.core import line_status, required_top_up
from monitor.core.money import fen, ratio, yuan
from monitor.errors import ConfigError
from monitor.schemas import CollateralValuation, LoanRiskSnapshot

__all__ = ["Shock", "StressResult", "stress"]


@dataclass(frozen=True, slots=True)
class Shock:
    """A drop of activity and quality (ratios 0..1) for some assets (``assets`` empty: all).

    Raises
    ------
    ConfigError
        When a drop is outside 0..1.
    """

    activity_drop: float = 0.0
    quality_drop: float = 0.0
    assets: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name, v in (("activity_drop", self.activity_drop), ("quality_drop", self.quality_drop)):
            if not 0.0 <= v <= 1.0:
                msg = f"{name}: got {v}, expected a ratio between 0 and 1 (0.3 = a 30 % drop)"
                raise ConfigError(msg)

    def applies(self, asset_id: str) -> bool:
        """Whether this shock hits ``asset_id``."""
        return not self.assets or asset_id in self.assets


@dataclass(frozen=True, slots=True)
class StressResult:
    """One loan before and after the shock (values in yuan, coverage ratios)."""

    loan_id: str
    outstanding: float
    collateral_before: float
    collateral_after: float
    coverage_before: float | None
    coverage_after: float | None
    line_before: str
    line_after: str
    required_top_up_collateral: float
    required_repayment: float

    @property
    def crosses(self) -> bool:
        """True when the shock moves the loan below a line it was above."""
        order = ["ok", "warning", "margin_call", "close_out"]
        return order.index(self.line_after) > order.index(self.line_before)


def shocked_value(v: CollateralValuation, shock: Shock, cap: float = 1.0) -> float:
    """The asset's value under the shock (yuan)."""
    if not shock.applies(v.asset_id):
        return v.value
    index = min(v.activity_index * (1.0 - shock.activity_drop), cap)
    q0 = v.quality_baseline
    qf = min(v.quality_score * (1.0 - shock.quality_drop) / q0, 1.0) if q0 > 0 else 1.0
    return v.appraisal_value * max(0.0, index) * qf


def stress(
    loans: Iterable[LoanRiskSnapshot],
    valuations: dict[str, CollateralValuation],
    shock: Shock,
    cap: float = 1.0,
) -> list[StressResult]:
    """Every open loan before and after ``shock``, worst coverage after first."""
    out = []
    for snap in loans:
        if snap.status == "closed":
            continue
        shocked = Decimal(0)  # each asset's value to the fen, summed in decimal, as the loan does (C26)
        for a in snap.assets:
            v = valuations.get(a.asset_id)
            shocked += fen(shocked_value(v, shock, cap) if v is not None else a.value)
        after = yuan(shocked)
        o = snap.outstanding
        cov_after = ratio(after, o)
        extra, repay = required_top_up(snap.thresholds.warning, o, after)
        out.append(
            StressResult(
                loan_id=snap.loan_id,
                outstanding=o,
                collateral_before=snap.collateral_value,
                collateral_after=after,
                coverage_before=snap.coverage_ratio,
                coverage_after=cov_after,
                line_before=line_status(snap.coverage_ratio, snap.thresholds),
                line_after=line_status(cov_after, snap.thresholds),
                required_top_up_collateral=extra,
                required_repayment=repay,
            )
        )
    return sorted(out, key=lambda r: r.coverage_after if r.coverage_after is not None else float("inf"))
