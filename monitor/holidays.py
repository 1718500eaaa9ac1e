"""Cure deadlines, counting Chinese public holidays and make-up working days for business days.

Business days come from the maintained ``chinese-calendar`` library (State Council
holiday notices, 2004 onwards), not a hand-typed list. For a year the library does
not cover yet, Monday–Friday is used and a warning is logged once per year.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

import chinese_calendar

from monitor.schemas import parse_cure_period

__all__ = ["cure_deadline", "is_business_day"]

log = logging.getLogger(__name__)
_warned: set[int] = set()
CN = zoneinfo.ZoneInfo("Asia/Shanghai")


def is_business_day(day: dt.date) -> bool:
    """True when ``day`` is a working day in mainland China (holidays and make-up days counted).

    Examples
    --------
    >>> is_business_day(dt.date(2024, 10, 1)), is_business_day(dt.date(2024, 9, 29))
    (False, True)
    """
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned:
            _warned.add(day.year)
            log.warning("chinese-calendar has no data for %d; counting Monday-Friday as business days", day.year)
        return day.weekday() < 5


def cure_deadline(issued_at: dt.datetime, cure_period: str) -> dt.datetime:
    """Deadline of a margin call: ``issued_at`` plus the contract's cure period.

    Parameters
    ----------
    issued_at
        Aware time the margin call was issued.
    cure_period
        ``"<n>h"``, ``"<n>d"`` (calendar days) or ``"<n>bd"`` (business days: the deadline is the
        end, 23:59:59 Asia/Shanghai, of the n-th business day after the issue date).

    Returns
    -------
    datetime
        Aware UTC deadline.

    Raises
    ------
    ValueError
        When ``cure_period`` does not parse.

    Examples
    --------
    >>> cure_deadline(dt.datetime(2024, 9, 30, 2, tzinfo=dt.UTC), "2bd").isoformat()
    '2024-10-09T15:59:59+00:00'
    """
    n, unit = parse_cure_period(cure_period)
    if unit == "h":
        return (issued_at + dt.timedelta(hours=n)).astimezone(dt.UTC)
    if unit == "d":
        return (issued_at + dt.timedelta(days=n)).astimezone(dt.UTC)
    day = issued_at.astimezone(CN).date()
    counted = 0
    while counted < n:
        day += dt.timedelta(days=1)
        if is_business_day(day):
            counted += 1
    end = dt.datetime.combine(day, dt.time(23, 59, 59), CN)
    return end.astimezone(dt.UTC)
