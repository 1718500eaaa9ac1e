"""Margin maths: which line a coverage ratio is below and the top-up that restores the warning line."""

from __future__ import annotations

from monitor.schemas import LineStatus, Thresholds


def line_status(coverage: float | None, lines: Thresholds) -> LineStatus:
    """Which line a coverage ratio is below: ``ok``, ``warning``, ``margin_call`` or ``close_out``.

    Examples
    --------
    >>> line_status(1.25, Thresholds(warning=1.3, margin_call=1.2, close_out=1.1))
    'warning'
    """
    if coverage is None or coverage >= lines.warning:
        return "ok"
    if coverage >= lines.margin_call:
        return "warning"
    if coverage >= lines.close_out:
        return "margin_call"
    return "close_out"


def required_top_up(warning: float, outstanding: float, collateral_value: float) -> tuple[float, float]:
    """Top-up that restores the warning line (DESIGN, "Loan level").

    Returns
    -------
    tuple
        ``(extra_collateral, repayment)`` in yuan: ``max(0, warning × outstanding − collateral)``
        of extra collateral, or ``max(0, outstanding − collateral / warning)`` of repayment.

    Examples
    --------
    >>> extra, repay = required_top_up(1.3, 7_000_000, 8_400_000)
    >>> round(extra), round(repay)
    (700000, 538462)
    """
    return max(0.0, warning * outstanding - collateral_value), max(0.0, outstanding - collateral_value / warning)
