"""Cure deadlines on mainland China's business days, never guessed where the calendar is not known.

Where each day's status comes from, first match wins:

1. **The bank's own holiday calendar file** (``PLEDGEWATCH_HOLIDAY_CALENDAR``, :func:`load_calendar_file`),
   for the years it lists: what the bank's operations calendar says.
2. **``chinese-calendar``** (maintained; the State Council's annual holiday notices, 2004 onwards,
   make-up working days included), for the years it covers.
3. **Provisional**, for a year neither covers (the notice for a year is published late in the year
   before; the library ships it some weeks after: chinese-calendar #66, #94): Monday–Friday without
   the **fixed-date statutory holidays** of the national holiday measures (全国年节及纪念日放假办法),
   known for every year — New Year's Day (1 Jan), Labour Day (1 May; also 2 May from 2025) and
   National Day (1–3 Oct), as revised by State Council Decree No. 795 (2024, in force 2025-01-01).
   The lunar-date holidays (Spring Festival, Qingming, Dragon Boat, Mid-Autumn) and the make-up
   working days are only known from the notice. A deadline that counted a provisional day is
   flagged (:class:`Deadline`'s ``provisional``, the margin call's ``deadline_provisional``), and the
   year is logged once (case C25).

A calendar-day cure (``"<n>d"``) ending on a day that is not a business day follows the contract's
``cure_convention`` (:func:`cure_deadline`): ``following`` (the default, the *following business
day* convention of ISDA's 2006 definitions, section 4.12) moves it to the same time on the next
business day; ``calendar`` keeps it.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

import chinese_calendar

from monitor.errors import ConfigError
from monitor.schemas import parse_cure_period

__all__ = [
    "BusinessCalendar",
    "Deadline",
    "cure_deadline",
    "fixed_statutory_holidays",
    "is_business_day",
    "load_calendar_file",
    "use_calendar",
]

log = logging.getLogger(__name__)
CN = zoneinfo.ZoneInfo("Asia/Shanghai")


def fixed_statutory_holidays(year: int) -> set[dt.date]:
    """The Gregorian-date statutory holidays of ``year`` (known for every year, without the annual notice).

    New Year's Day, Labour Day (two days from 2025, one before) and National Day (three days), per the
    national holiday measures as revised by State Council Decree No. 795 (2024) and No. 644 (2013).

    Examples
    --------
    >>> sorted(d.isoformat() for d in fixed_statutory_holidays(2027))[:3]
    ['2027-01-01', '2027-05-01', '2027-05-02']
    """
    days = {dt.date(year, 1, 1), dt.date(year, 5, 1), *(dt.date(year, 10, d) for d in (1, 2, 3))}
    if year >= 2025:
        days.add(dt.date(year, 5, 2))
    return days


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Mainland China's business days: the bank's file, then ``chinese-calendar``, then provisional.

    ``days``: the bank file's entries, date → ``True`` (working day) / ``False`` (holiday);
    ``years``: the years the file covers (every date of such a year not listed is a working day
    from Monday to Friday and a rest day on the weekend); ``source``: the file, for messages.
    """

    days: dict[dt.date, bool] = field(default_factory=dict)
    years: frozenset[int] = frozenset()
    source: str = ""

    def is_official(self, year: int) -> bool:
        """Whether ``year``'s holidays are known from the bank's file or a State Council notice."""
        if year in self.years:
            return True
        try:
            chinese_calendar.is_workday(dt.date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_business_day(self, day: dt.date) -> bool:
        """True when ``day`` is a working day (holidays and make-up working days counted).

        Examples
        --------
        >>> cal = BusinessCalendar()
        >>> cal.is_business_day(dt.date(2024, 10, 1)), cal.is_business_day(dt.date(2024, 9, 29))
        (False, True)
        >>> cal.is_business_day(dt.date(2027, 1, 1))  # a year without the notice: fixed-date holidays known
        False
        """
        if day.year in self.years:
            return self.days.get(day, day.weekday() < 5)
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            _warn_provisional(day.year)
            return day.weekday() < 5 and day not in fixed_statutory_holidays(day.year)


_warned: set[int] = set()


def _warn_provisional(year: int) -> None:
    if year not in _warned:
        _warned.add(year)
        log.warning(
            "holiday calendar: no official holiday notice for %d (chinese-calendar %s has none, no bank calendar "
            "file lists it); counting Monday-Friday without the fixed-date statutory holidays, and every cure "
            "deadline that counts a day of %d is marked provisional (set PLEDGEWATCH_HOLIDAY_CALENDAR)",
            year,
            getattr(chinese_calendar, "__version__", "?"),
            year,
        )


_calendar = BusinessCalendar()


def use_calendar(calendar: BusinessCalendar) -> None:
    """Make ``calendar`` the one cure deadlines use in this process (set once at start from the settings)."""
    global _calendar
    _calendar = calendar


def is_business_day(day: dt.date) -> bool:
    """True when ``day`` is a working day in mainland China, by the process's calendar (:func:`use_calendar`)."""
    return _calendar.is_business_day(day)


def load_calendar_file(path: str | Path) -> BusinessCalendar:
    """Read a bank holiday calendar: CSV with a header ``date,type[,name]``, one row per exception.

    ``date`` is ``YYYY-MM-DD``; ``type`` is ``holiday`` (a weekday without business) or ``workday`` (a
    weekend day with business, 调休). Every year with a row is covered whole by the file: its other
    days are Monday–Friday working days. Lines starting with ``#`` are comments.

    Raises
    ------
    ConfigError
        When the file cannot be read, or a row has a bad date or type (names the file, the line, the
        value and what was expected).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"holiday_calendar: {p} cannot be read ({exc.strerror}); expected a CSV file") from None
    numbered = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    rows = [line for _, line in numbered]
    reader = csv.DictReader(rows)
    if reader.fieldnames is None or not {"date", "type"} <= {f.strip() for f in reader.fieldnames}:
        raise ConfigError(f"holiday_calendar: {p}: header {reader.fieldnames}, expected date,type[,name]")
    days: dict[dt.date, bool] = {}
    for i, row in enumerate(reader, 1):
        n = numbered[i][0]  # the file's own line number (comments and blank lines counted)
        raw_date, kind = (row.get("date") or "").strip(), (row.get("type") or "").strip().lower()
        try:
            day = dt.date.fromisoformat(raw_date)
        except ValueError:
            raise ConfigError(f"holiday_calendar: {p} line {n}: date {raw_date!r}, expected YYYY-MM-DD") from None
        if kind not in ("holiday", "workday"):
            raise ConfigError(f"holiday_calendar: {p} line {n}: type {kind!r}, expected holiday or workday")
        days[day] = kind == "workday"
    return BusinessCalendar(days, frozenset(d.year for d in days), str(p))


@dataclass(frozen=True, slots=True)
class Deadline:
    """A cure deadline (aware UTC) and whether it counted a day of a year without the official calendar."""

    at: dt.datetime
    provisional: bool


def cure_deadline(issued_at: dt.datetime, cure_period: str, convention: str = "following") -> Deadline:
    """Deadline of a margin call: ``issued_at`` plus the contract's cure period.

    Parameters
    ----------
    issued_at
        Aware time the margin call was issued.
    cure_period
        ``"<n>h"`` (hours), ``"<n>d"`` (calendar days) or ``"<n>bd"`` (business days: the end,
        23:59:59 Asia/Shanghai, of the n-th business day after the issue date).
    convention
        For ``"<n>d"``: ``"following"`` moves a deadline on a day without business to the same time
        on the next business day; ``"calendar"`` keeps it. Hours are hours under either.

    Returns
    -------
    Deadline
        The aware UTC deadline; ``provisional`` when a day it depends on lies in a year without the
        official holiday notice (module docstring).

    Raises
    ------
    ValueError
        When ``cure_period`` does not parse or ``convention`` is neither value.

    Examples
    --------
    >>> cure_deadline(dt.datetime(2024, 9, 30, 2, tzinfo=dt.UTC), "2bd").at.isoformat()
    '2024-10-09T15:59:59+00:00'
    >>> d = cure_deadline(dt.datetime(2026, 12, 31, 2, tzinfo=dt.UTC), "1bd")  # 1 Jan 2027 is a holiday
    >>> d.at.isoformat(), d.provisional
    ('2027-01-04T15:59:59+00:00', True)
    """
    if convention not in ("following", "calendar"):
        raise ValueError(f"cure_convention: got {convention!r}, expected following or calendar")
    n, unit = parse_cure_period(cure_period)
    cal = _calendar
    if unit == "h":
        return Deadline((issued_at + dt.timedelta(hours=n)).astimezone(dt.UTC), False)
    if unit == "d":
        end = issued_at.astimezone(CN) + dt.timedelta(days=n)
        provisional = not cal.is_official(end.year)
        if convention == "following":
            while not cal.is_business_day(end.date()):
                end += dt.timedelta(days=1)
                provisional = provisional or not cal.is_official(end.year)
        return Deadline(end.astimezone(dt.UTC), provisional)
    day = issued_at.astimezone(CN).date()
    counted = 0
    provisional = False
    while counted < n:
        day += dt.timedelta(days=1)
        provisional = provisional or not cal.is_official(day.year)
        if cal.is_business_day(day):
            counted += 1
    end = dt.datetime.combine(day, dt.time(23, 59, 59), CN)
    return Deadline(end.astimezone(dt.UTC), provisional)
