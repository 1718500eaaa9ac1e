"""Money exact to the fen: amounts, the demands of a margin call, and the ratios the lines are judged on.

Amounts travel as JSON numbers with at most two decimals (docs/core-banking.md, "Amounts") and are
held as ``float`` in the messages; every computation on them here is decimal. Case C26: a demand
computed in binary floats (``required_repayment=115384615.10000014``) is not an amount a bank can
ask for, and one rounded to the nearest fen can leave the loan a fen short of its line.

- :func:`fen` reads an amount as the decimal it was written as (the shortest repr of the float, which
  is the JSON number's text) and rounds it half-up to the fen (a value; float noise from adding and
  subtracting fen amounts is far below a fen).
- :func:`demands`: the top-up and the repayment that restore the warning line, exact (rational
  arithmetic) and **rounded up** to the fen, so paying either restores the line exactly — also as
  :func:`ratio` computes coverage, which rounds the exact quotient once, monotonically.
- :func:`ratio`: a coverage ratio as the correctly rounded float of the exact decimal quotient, so
  that an amount at the line gives a ratio at the line, never a ulp below it.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction

__all__ = ["FEN", "demands", "fen", "ratio", "yuan"]

FEN = Decimal("0.01")


def fen(amount: float | Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    """``amount`` (yuan) as a decimal rounded to the fen (half-up by default).

    Examples
    --------
    >>> fen(1150000000.37), fen(0.1 + 0.2), fen(2.675)
    (Decimal('1150000000.37'), Decimal('0.30'), Decimal('2.68'))
    """
    d = amount if isinstance(amount, Decimal) else Decimal(repr(float(amount)))
    return d.quantize(FEN, rounding=rounding)


def yuan(amount: Decimal) -> float:
    """The float a message carries for a fen amount (its JSON text is the same decimal, at most two places)."""
    return float(amount)


def _ceil_fen(x: Fraction) -> Decimal:
    return (Decimal(math.ceil(x * 100)) / 100).quantize(FEN)


def demands(warning: float, outstanding: float | Decimal, collateral: float | Decimal) -> tuple[Decimal, Decimal]:
    """``(top-up, repayment)`` in yuan that restore ``collateral ≥ warning × outstanding``, rounded up to the fen.

    ``top-up = max(0, warning × outstanding − collateral)`` of extra collateral, ``repayment =
    max(0, outstanding − collateral / warning)`` (DESIGN, "Loan level"); ``collateral`` (usually the
    90 % lower bound) is counted down to the fen and the results up, in exact rational arithmetic,
    so ``collateral + top-up ≥ warning × outstanding`` and ``collateral ≥ warning × (outstanding −
    repayment)`` hold exactly.

    Raises
    ------
    ValueError
        When ``warning`` is not positive.

    Examples
    --------
    >>> demands(1.3, 1_000_000_000.00, 1_150_000_000.37)  # case C26
    (Decimal('149999999.63'), Decimal('115384615.10'))
    """
    if not warning > 0:
        raise ValueError(f"warning: got {warning!r}, expected a positive ratio")
    w = Fraction(Decimal(repr(float(warning))))
    o = Fraction(fen(outstanding))
    c = Fraction(fen(collateral, ROUND_FLOOR))
    top = _ceil_fen(max(Fraction(0), w * o - c))
    repay = _ceil_fen(max(Fraction(0), o - c / w))
    return top, repay


def ratio(numerator: float | Decimal, denominator: float | Decimal) -> float | None:
    """``numerator / denominator`` of two fen amounts as the correctly rounded float; None when the denominator is 0.

    Examples
    --------
    >>> ratio(1_150_000_000.37, 884_615_384.90), 1_150_000_000.37 / 884_615_384.90
    (1.3, 1.2999999999999998)
    """
    d = fen(denominator)
    if d == 0:
        return None
    return float(Fraction(fen(numerator)) / Fraction(d))
