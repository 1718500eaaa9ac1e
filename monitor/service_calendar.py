"""Day types of a bus service calendar: weekday, Saturday, Sunday / public holiday, per country.

Bus timetables run a few service calendars, not seven: GTFS feeds describe service by
``calendar.txt`` weekday flags, and agencies almost always publish a weekday, a Saturday and a
Sunday/holiday timetable (public holidays run the Sunday one). The valuation's expected service is
kept per day type × window of the day (:class:`monitor.valuation.AssetValuer`), so a weekday-only
route's weekend, or a holiday, is judged against its own kind of day and never moves the weekday's
estimate.

- Public holidays come from maintained libraries, never a hand-typed list: ``chinese-calendar``
  for China (State Council notices, including make-up working days on a weekend, which run a
  weekday service) and ``holidays`` (python-holidays) for every other country.
- The weekend is the country's (``holidays``' ``weekend``, e.g. Friday–Saturday in some countries);
  its last day and public holidays are the Sunday type, its other day the Saturday type.
- The country is the pledge's ``asset_country`` or, without it, the country of the asset's IANA
  time zone in the tz database's ``zone.tab``. A zone with no single country (``UTC``) has no
  public holidays and a Saturday–Sunday weekend.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import logging
from pathlib import Path

__all__ = ["DAY_TYPES", "country_of_timezone", "day_type"]

log = logging.getLogger(__name__)

#: Day types, by index: 0 weekday, 1 Saturday (first weekend day), 2 Sunday or public holiday.
DAY_TYPES = ("weekday", "saturday", "sunday_holiday")


@functools.cache
def _zone_countries() -> dict[str, str]:
    text = ""
    try:
        text = (importlib.resources.files("tzdata") / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        system = Path("/usr/share/zoneinfo/zone.tab")
        if system.exists():
            text = system.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[2]] = parts[0]
    return out


def country_of_timezone(timezone: str) -> str | None:
    """ISO 3166-1 alpha-2 country of an IANA zone (``zone.tab``), ``None`` for a zone of no one country.

    Examples
    --------
    >>> country_of_timezone("America/Chicago"), country_of_timezone("Asia/Shanghai"), country_of_timezone("UTC")
    ('US', 'CN', None)
    """
    return _zone_countries().get(timezone)


@functools.cache
def _calendar(country: str | None) -> object | None:
    if country is None or country == "CN":
        return None
    import holidays

    try:
        return holidays.country_holidays(country)
    except NotImplementedError:
        log.warning("no public-holiday calendar for country %r; only its weekend is a day type", country)
        return None


def _weekend(country: str | None) -> tuple[int, ...]:
    cal = _calendar(country)
    weekend = getattr(cal, "weekend", None) if cal is not None else None
    return tuple(sorted(weekend)) if weekend else (5, 6)


@functools.lru_cache(maxsize=8192)
def day_type(day: dt.date, country: str | None) -> int:
    """Day type of a local service date: 0 weekday, 1 Saturday, 2 Sunday or public holiday.

    Parameters
    ----------
    day
        Local date of service (the asset's time zone).
    country
        ISO 3166-1 alpha-2 code (``None``: no holidays, Saturday–Sunday weekend).

    Examples
    --------
    >>> [day_type(dt.date(2025, 9, d), "US") for d in (26, 27, 28, 1)]  # Fri, Sat, Sun, Labor Day
    [0, 1, 2, 2]
    >>> day_type(dt.date(2024, 10, 1), "CN"), day_type(dt.date(2024, 9, 29), "CN")  # National Day; make-up Sunday
    (2, 0)
    """
    if country == "CN":
        import chinese_calendar

        try:
            off, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError:
            off, name = None, None  # a year the library does not cover yet: weekend only
        if off is not None:
            if name is not None and off:
                return 2  # a public holiday (State Council notice)
            if off:
                return 1 if day.weekday() == 5 else 2
            return 0  # a working day, a make-up working day on a weekend included
    cal = _calendar(country)
    if cal is not None and day in cal:  # type: ignore[operator]
        return 2
    weekend = _weekend(country)
    if day.weekday() in weekend:
        return 2 if day.weekday() == weekend[-1] else 1
    return 0
