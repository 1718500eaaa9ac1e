"""Adapter for the CTA daily boarding totals (Chicago Transit Authority, City of Chicago open data).

One CSV row a service day: ``service_date`` (MM/DD/YYYY), ``day_type`` (W weekday, A Saturday,
U Sunday/holiday), ``bus``, ``rail_boardings``, ``total_rides``. Each row becomes one
``daily_total`` record per pledged asset (``cta-bus``: the ``bus`` column, ``cta-rail``:
``rail_boardings``), observed at local noon of the service day (``America/Chicago``), with
``boardings`` as the activity measure of the ``daily_ridership`` profile.

Quirks of the published file (``SOURCE.md`` beside the data): 62 exact duplicate rows
(2011-10..2014-07) and rows out of date order (642 places, e.g. December 2014 shuffled). This is an
archive export, not a live feed, so the adapter replays it in service-date order, as the operator's
daily job would have published it; the duplicates are kept, so the core drops them by event id and
counts them (``duplicates_in_window``), and a row repeated with *different* figures is a conflicting
duplicate (dead letter, lowers consistency).

:func:`renewal_loan_book` builds the real-history acceptance loan of ``docs/valuation.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import ConfigError
from monitor.schemas import (
    Appraisal,
    BalanceChanged,
    CollateralPledged,
    LoanOpened,
    TelemetryEvent,
    Thresholds,
)
from monitor.sources import Pledged, first_line

__all__ = [
    "ASSET_COLUMNS",
    "SOURCE",
    "CtaDailySource",
    "DailyRow",
    "events_from_daily_rows",
    "read_daily_boardings",
    "renewal_loan_book",
    "season_slot",
]

#: Asset id -> CSV column of its boardings.
ASSET_COLUMNS = {"cta-bus": "bus", "cta-rail": "rail_boardings"}
TIMEZONE = "America/Chicago"
_FIELDS = ("service_date", "day_type", "bus", "rail_boardings", "total_rides")
_SEASON_ORIGIN = dt.date(1970, 1, 5).toordinal()


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One row of the file: the service day, its day type and boardings per column (counts)."""

    line: int
    day: dt.date
    day_type: str
    boardings: dict[str, float]


def season_slot(day: dt.date) -> int:
    """Slot of ``day`` in the ``daily_ridership`` season: ``(day − 1970-01-05) mod 364`` (0..363)."""
    return (day.toordinal() - _SEASON_ORIGIN) % 364


def read_daily_boardings(path: str | Path) -> list[DailyRow]:
    """Rows of the CSV in file order (duplicates and disorder included).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ConfigError
        When a header is missing or a row has a bad date or count; the message names the line,
        the field, the value and what was expected.
    """
    rows: list[DailyRow] = []
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:  # -sig: a byte-order mark is not the header
        reader = csv.DictReader(fh)
        missing = [f for f in _FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            msg = f"{path}: header lacks {missing}, expected the columns {list(_FIELDS)}"
            raise ConfigError(msg)
        for rec in reader:
            line = reader.line_num
            try:
                day = dt.datetime.strptime(rec["service_date"], "%m/%d/%Y").date()  # noqa: DTZ007 - a date
            except ValueError:
                msg = f"{path}:{line}: service_date {rec['service_date']!r}, expected MM/DD/YYYY"
                raise ConfigError(msg) from None
            counts: dict[str, float] = {}
            for col in ("bus", "rail_boardings"):
                try:
                    counts[col] = float(int(rec[col]))
                except (TypeError, ValueError):
                    msg = f"{path}:{line}: {col} {rec[col]!r}, expected a whole number of boardings"
                    raise ConfigError(msg) from None
            rows.append(DailyRow(line, day, rec["day_type"], counts))
    return rows


def events_from_daily_rows(
    rows: Iterable[DailyRow],
    assets: set[str] | None = None,
    timezone: str = TIMEZONE,
    timezones: dict[str, str] | None = None,
) -> Iterator[TelemetryEvent]:
    """One ``daily_total`` record per row and asset, in service-date order (stable for duplicates).

    ``assets`` limits the output to those asset ids (default: both). Each record is stamped at
    local noon of its service day in the asset's zone: ``timezones[asset]`` (the pledge's
    ``asset_timezone``), else ``timezone`` — so a service day is the asset's own (case C17).
    """
    zones = {a: zoneinfo.ZoneInfo((timezones or {}).get(a, timezone)) for a in ASSET_COLUMNS}
    wanted = [a for a in ASSET_COLUMNS if assets is None or a in assets]
    for row in sorted(rows, key=lambda r: r.day):
        for asset in wanted:
            noon = dt.datetime.combine(row.day, dt.time(12), tzinfo=zones[asset])
            yield TelemetryEvent(
                event_id=f"{asset}:{row.day.isoformat()}",
                asset_id=asset,
                observed_at=noon,
                entity_id="cta",
                kind="daily_total",
                metrics={"boardings": row.boardings[ASSET_COLUMNS[asset]]},
                attributes={"day_type": row.day_type},
            )


def renewal_loan_book(
    rows: Iterable[DailyRow],
    yuan_per_boarding: float = 0.05,
    starting_coverage: float = 1.5,
    lines: tuple[float, float, float] = (0.85, 0.75, 0.65),
    first_year: int = 2001,
    last_year: int = 2024,
) -> list[LoanOpened | CollateralPledged | BalanceChanged]:
    """The real-history acceptance loan: both assets pledged to one loan renewed every 1 January.

    - 1 January ``first_year``: the loan opens and both assets are pledged with an appraisal that
      has no baseline and no Q_0, so the whole first year (364 daily windows) is the calibration
      period; its value is ``yuan_per_boarding`` × that year's boardings (the appraiser's estimate).
    - every later 1 January: each asset is re-appraised with the previous 364 days as its baseline
      (``baseline_activity`` by :func:`season_slot`), value = ``yuan_per_boarding`` × their sum
      (a fictional income-approach stand-in: a fixed data-licence income per boarding), Q_0 = 1.0
      (the file has no missing day); the loan is re-sized so coverage starts at
      ``starting_coverage`` again (``BalanceChanged``).
    - lines: warning / margin call / close-out at ``lines`` × the starting coverage.

    Raises
    ------
    ConfigError
        When a year lacks the 364 days its renewal needs.
    """
    tz = zoneinfo.ZoneInfo(TIMEZONE)
    by_day: dict[dt.date, DailyRow] = {}
    for r in rows:
        by_day.setdefault(r.day, r)
    thresholds = Thresholds(
        warning=round(lines[0] * starting_coverage, 6),
        margin_call=round(lines[1] * starting_coverage, 6),
        close_out=round(lines[2] * starting_coverage, 6),
    )
    loan = "L-CTA-RIDERSHIP"

    def at(year: int) -> dt.datetime:
        return dt.datetime(year, 1, 1, tzinfo=tz)

    def year_total(asset: str, start: dt.date, days: int) -> list[tuple[dt.date, float]]:
        out = []
        for k in range(days):
            d = start + dt.timedelta(days=k)
            if d not in by_day:
                msg = f"CTA data: no row for {d.isoformat()}, needed for the appraisal of {asset}"
                raise ConfigError(msg)
            out.append((d, by_day[d].boardings[ASSET_COLUMNS[asset]]))
        return out

    events: list[LoanOpened | CollateralPledged | BalanceChanged] = []
    first_values = {
        a: yuan_per_boarding * sum(v for _, v in year_total(a, dt.date(first_year, 1, 1), 364)) for a in ASSET_COLUMNS
    }
    outstanding = sum(first_values.values()) / starting_coverage
    events.append(
        LoanOpened(
            event_id=f"{loan}:opened",
            loan_id=loan,
            effective_at=at(first_year),
            borrower_id="B-CTA-EXAMPLE",
            principal=round(outstanding, 2),
            outstanding=round(outstanding, 2),
            start=dt.date(first_year, 1, 1),
            maturity=dt.date(last_year + 1, 1, 1),
            thresholds=thresholds,
            cure_period="10d",
        )
    )

    def pledge(asset: str, year: int, appraisal: Appraisal) -> CollateralPledged:
        return CollateralPledged(
            event_id=f"{loan}:pledged:{asset}:{year}",
            loan_id=loan,
            effective_at=at(year),
            asset_id=asset,
            asset_profile="daily_ridership",
            asset_timezone=TIMEZONE,
            region="US-IL",
            appraisal=appraisal,
            pledge_registration_no=f"EXAMPLE-PLEDGE-{asset.upper()}",
        )

    appraiser = "Example Appraisal Co. (fictional)"
    for asset, value in first_values.items():
        first = Appraisal(value=round(value, 2), appraised_on=dt.date(first_year - 1, 12, 15), appraiser=appraiser)
        events.append(pledge(asset, first_year, first))
    for year in range(first_year + 1, last_year + 1):
        start = dt.date(year, 1, 1) - dt.timedelta(days=364)
        total = 0.0
        for asset in ASSET_COLUMNS:
            days = year_total(asset, start, 364)
            baseline = [0.0] * 364
            for d, v in days:
                baseline[season_slot(d)] = v
            value = yuan_per_boarding * sum(v for _, v in days)
            total += value
            fresh = Appraisal(
                value=round(value, 2),
                appraised_on=dt.date(year - 1, 12, 31),
                appraiser=appraiser,
                baseline_activity=baseline,
                quality_baseline=1.0,
            )
            events.append(pledge(asset, year, fresh))
        events.append(
            BalanceChanged(
                event_id=f"{loan}:renewed:{year}",
                loan_id=loan,
                effective_at=at(year),
                outstanding=round(total / starting_coverage, 2),
            )
        )
    return events


class CtaDailySource:
    """CTA daily boarding totals (``service_date,day_type,bus,rail_boardings,total_rides``)."""

    name = "cta-daily"
    accepts = "daily boardings CSV with the columns " + ",".join(_FIELDS)

    def recognise(self, path: Path) -> bool:
        """Whether the file's header names every column of the daily boardings."""
        first = first_line(path)
        if first is None:
            return False
        header = next(csv.reader([first[1]]), [])
        return all(f in header for f in _FIELDS)

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """One ``daily_total`` event per service day and pledged mode (``cta-bus``, ``cta-rail``).

        Stamped at local noon in the pledge's ``asset_timezone`` (America/Chicago without a pledge).
        """
        assets = set(pledged.assets) if pledged.assets is not None else None
        zones = {p.asset_id: p.asset_timezone for p in pledged.pledges}
        return events_from_daily_rows(read_daily_boardings(path), assets, timezones=zones)


SOURCE = CtaDailySource()
