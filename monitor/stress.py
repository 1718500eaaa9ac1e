"""What-if on the current portfolio: shock activity and quality, see which loans cross which line.

For each pledged asset, from its latest valuation (``docs/valuation.md``)::

    V' = V_0 × min(I_t × (1 − a), cap) × min(Q_t × (1 − q) / Q_0, 1)

where ``a`` is the activity drop and ``q`` the quality drop (ratios 0..1) applied to that asset (or
to all). An asset not yet valued keeps its appraisal. Each loan's shocked coverage is
``Σ V' / outstanding``, judged against its own lines, with the top-up that would restore its warning
line (:func:`monitor.core.margin.required_top_up`). Pure functions of the snapshots; no state changes.

The portfolio's concentration (:func:`concentration`) is judged before and after the same shock:
each loan's exposure record with its shocked assets' values, through a fresh
:class:`~monitor.core.portfolio.PortfolioBook` and the rulebook's limits, so a shock that leaves one
borrower group, asset profile or region uncovered shows as a breach after it.

Sources: a backtest of recorded data (``pledgewatch stress`` default: the shipped sample), or the
latest records of the ``loan-risk`` and ``valuations`` topics of a running deployment (``--source topics``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from monitor.core import line_status, required_top_up
from monitor.core.money import fen, ratio, yuan
from monitor.core.portfolio import ConcentrationRow, PortfolioBook
from monitor.errors import ConfigError
from monitor.schemas import CollateralValuation, LoanExposure, LoanRiskSnapshot
from rules.rulebook import Rulebook

__all__ = ["ConcentrationChange", "Shock", "StressResult", "concentration", "stress"]


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


@dataclass(frozen=True, slots=True)
class ConcentrationChange:
    """One key of one dimension before and after the shock (shares and limit: ratios 0..1; yuan)."""

    before: ConcentrationRow | None
    after: ConcentrationRow

    @property
    def breaches(self) -> bool:
        """True when the key is above its limit after the shock but was not before."""
        return self.after.breached and not (self.before is not None and self.before.breached)


def _judged(exposures: Iterable[LoanExposure], rulebook: Rulebook) -> list[ConcentrationRow]:
    book = PortfolioBook()
    for rec in exposures:
        book.on_exposure(rec.model_copy(update={"as_of": rec.as_of.replace(year=2000)}), rulebook)  # one instant
    book.flush(rulebook)
    return book.rows(rulebook)


def concentration(
    exposures: Iterable[LoanExposure],
    valuations: dict[str, CollateralValuation],
    shock: Shock,
    rulebook: Rulebook,
    cap: float = 1.0,
) -> list[ConcentrationChange]:
    """The portfolio's concentration before and after ``shock``, every key, largest share after first.

    Parameters
    ----------
    exposures
        Each open loan's latest exposure record (``pledge.portfolio-exposure`` or a backtest's).
    valuations
        Latest valuation per asset; a shocked asset's value is :func:`shocked_value` of it (an asset
        without one keeps its value in the record).
    shock
        The drop to apply.
    rulebook
        Its ``concentration:`` limits; a key is breached when its share is above its limit (judged
        fresh, without the hysteresis of a breach already firing).

    Returns
    -------
    list of ConcentrationChange
        By dimension, then share after the shock (largest first).
    """
    recs = [r for r in exposures if not r.closed]
    shocked = []
    for rec in recs:
        slices = []
        for sl in rec.slices:
            v = valuations.get(sl.asset_id)
            if v is not None and shock.applies(sl.asset_id):
                sl = sl.model_copy(update={"value": yuan(fen(shocked_value(v, shock, cap)))})
            slices.append(sl)
        shocked.append(rec.model_copy(update={"slices": slices}))
    before = {(r.dimension, r.key): r for r in _judged(recs, rulebook)}
    return [ConcentrationChange(before.get((r.dimension, r.key)), r) for r in _judged(shocked, rulebook)]
