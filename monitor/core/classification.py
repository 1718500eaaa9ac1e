"""The suggested risk category of a loan (五级分类): the most severe floor of the criteria that apply.

Two kinds of criteria (``docs/rules.md``, *Risk classification*):

- regulation, from 《商业银行金融资产风险分类办法》 (CBIRC & PBOC Order 2023 No. 1, in force since
  2023-07-01): principal or interest past due more than 0 days is at least special mention, more than
  90 days at least substandard, more than 270 days at least doubtful, more than 360 days loss; a
  restructured loan is, during its observation period, at least special mention and no better than
  its category before the restructuring;
- the bank's policy on the monitor's own signals (watch list, coverage lines, margin calls), set in
  the rulebook's ``classification:`` section (:class:`rules.classification.ClassificationPolicy`).

Pure functions: the loan state (:mod:`monitor.core.loans`) gathers the :class:`Signals` and emits a
``ClassificationSuggestion`` when the category changes. A suggestion only: the bank's credit
committee decides.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from monitor.schemas import Category, ClassificationReason
from rules.classification import ClassificationPolicy, rank

__all__ = ["DPD_BANDS", "Signals", "criteria", "dpd_floor", "line_held", "suggest"]

#: (more than this many days past due, at least this category), most severe first: the Measures' bands.
DPD_BANDS: tuple[tuple[int, Category], ...] = (
    (360, "loss"),
    (270, "doubtful"),
    (90, "substandard"),
    (0, "special_mention"),
)


def dpd_floor(days_past_due: int) -> Category:
    """The least severe category the Measures allow for a loan ``days_past_due`` days past due.

    Parameters
    ----------
    days_past_due
        Whole days the oldest unpaid principal or interest is overdue (≥ 0).

    Returns
    -------
    Category
        ``normal`` at 0 days, ``special_mention`` for 1..90, ``substandard`` for 91..270,
        ``doubtful`` for 271..360, ``loss`` beyond 360.

    Examples
    --------
    >>> [dpd_floor(d) for d in (0, 1, 90, 91, 271, 361)]
    ['normal', 'special_mention', 'special_mention', 'substandard', 'doubtful', 'loss']
    """
    for days, category in DPD_BANDS:
        if days_past_due > days:
            return category
    return "normal"


def line_held(held: bool, coverage: float | None, line: float, release: float) -> bool:
    """Whether a coverage line counts as breached now: below ``line``, or held and still below ``release``.

    The default rulebook's hysteresis (``docs/rules.md``, case C21): the warning line is released one
    contract gap above it (warning + (warning − margin call)), the close-out line at the margin-call
    line. ``coverage`` ``None`` (lines not judged) is never a breach.

    Examples
    --------
    >>> line_held(False, 1.31, 1.3, 1.4), line_held(True, 1.31, 1.3, 1.4), line_held(True, 1.41, 1.3, 1.4)
    (False, True, False)
    """
    if coverage is None:
        return False
    return coverage < line or (held and coverage < release)


@dataclass(frozen=True, slots=True)
class Signals:
    """What the criteria read, for one loan at one moment.

    Attributes
    ----------
    days_past_due
        Whole days past due now (core banking's newest report, aged in event time).
    observation_end
        Last day of the restructuring observation period holding now, else ``None``.
    prior_category
        The suggested category just before that restructuring (``normal`` without one).
    watch_reasons
        Rule ids of the watch-list reasons that hold (empty: off the list).
    coverage_ratio
        Collateral value / outstanding, or ``None`` while the lines are not judged (calibrating).
    below_warning, below_close_out
        The coverage ratio is below the warning (close-out) line, with the default rulebook's
        hysteresis (:func:`line_held`): a coverage hovering at a line is one episode, not one
        suggestion per crossing.
    open_margin_call, expired_margin_call
        Id of an issued (not cured, expired or withdrawn) margin call, and of an expired one whose
        close-out alert still fires; ``None`` when there is none.
    """

    days_past_due: int = 0
    observation_end: dt.date | None = None
    prior_category: Category = "normal"
    watch_reasons: tuple[str, ...] = ()
    coverage_ratio: float | None = None
    below_warning: bool = False
    below_close_out: bool = False
    open_margin_call: str | None = None
    expired_margin_call: str | None = None


def criteria(s: Signals, policy: ClassificationPolicy) -> list[ClassificationReason]:
    """Every criterion that sets a floor above ``normal`` now, most severe first.

    Parameters
    ----------
    s
        The loan's signals now.
    policy
        The bank's floors of the monitor's signals (``normal``: switched off, not listed).

    Returns
    -------
    list of ClassificationReason
        One per criterion that applies: its id, regulation or bank policy, its floor, and the fact
        and value that made it apply. Ordered by floor (most severe first), then as listed in
        ``docs/rules.md``.

    Examples
    --------
    >>> [(r.criterion, r.floor, r.value) for r in criteria(Signals(days_past_due=95), ClassificationPolicy())]
    [('days-past-due', 'substandard', 95.0)]
    """
    out: list[ClassificationReason] = []

    def add(criterion: str, floor: Category, fact: str, value: float | str | bool, regulation: bool) -> None:
        if floor != "normal":
            source: Literal["regulation", "bank_policy"] = "regulation" if regulation else "bank_policy"
            out.append(ClassificationReason(criterion=criterion, source=source, floor=floor, fact=fact, value=value))

    if s.days_past_due > 0:
        add("days-past-due", dpd_floor(s.days_past_due), "days_past_due", float(s.days_past_due), True)
    if s.observation_end is not None:
        floor = max(policy.restructured, s.prior_category, key=rank)
        add("restructured", floor, "restructuring_observation_end", s.observation_end.isoformat(), True)
    if s.watch_reasons:
        add("watch-list", policy.watch_list, "watch_list", ", ".join(s.watch_reasons), False)
    cov = s.coverage_ratio
    if cov is not None and s.below_warning:
        add("below-warning", policy.below_warning, "coverage_ratio", cov, False)
    if s.open_margin_call is not None:
        add("margin-call-open", policy.margin_call_open, "margin_call_id", s.open_margin_call, False)
    if s.expired_margin_call is not None:
        add("margin-call-expired", policy.margin_call_expired, "margin_call_id", s.expired_margin_call, False)
    if cov is not None and s.below_close_out:
        add("close-out", policy.close_out, "coverage_ratio", cov, False)
    order = {id(r): i for i, r in enumerate(out)}
    return sorted(out, key=lambda r: (-rank(r.floor), order[id(r)]))


def suggest(reasons: list[ClassificationReason]) -> Category:
    """The suggested category: the most severe floor among ``reasons``, ``normal`` when there is none.

    Examples
    --------
    >>> suggest([])
    'normal'
    """
    return max((r.floor for r in reasons), key=rank, default="normal")
