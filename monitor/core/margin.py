"""Margin maths: which line a coverage ratio is below and the top-up that restores the warning line."""

from __future__ import annotations

from monitor.core.money import demands, yuan
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
    """Top-up that restores the warning line (DESIGN, "Loan level"), exact to the fen and rounded up.

    Returns
    -------
    tuple
        ``(extra_collateral, repayment)`` in yuan: ``max(0, warning × outstanding − collateral)``
        of extra collateral, or ``max(0, outstanding − collateral / warning)`` of repayment, each
        computed exactly and rounded up to the fen (:func:`monitor.core.money.demands`), so paying
        either brings the coverage to at least the warning line (case C26).

    Raises
    ------
    ValueError
        When ``warning`` is not positive.

    Examples
    --------
    >>> required_top_up(1.3, 7_000_000, 8_400_000)
    (700000.0, 538461.54)
    >>> required_top_up(1.3, 1_000_000_000.00, 1_150_000_000.37)  # C26: not 115384615.10000014
    (149999999.63, 115384615.1)
    """
    top, repay = demands(warning, outstanding, collateral_value)
    return yuan(top), yuan(repay)
