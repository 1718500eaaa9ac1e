"""Message schemas of every pledgewatch topic (the contract of ``docs/topics.md``).

All models are strict: unknown fields are rejected (``extra="forbid"``), floats
must be finite, numbers are never read from strings, and every time must carry
a UTC offset. Amounts are yuan (CNY), ratios are plain floats (1.25 = 125 %),
durations are seconds unless a field name says otherwise.

Examples
--------
>>> ev = TelemetryEvent.model_validate_json(
...     '{"event_id": "e1", "asset_id": "A1", "observed_at": "2016-05-19T08:00:00+12:00",'
...     ' "kind": "trip_completed", "metrics": {"trips": 1}}')
>>> ev.observed_at.isoformat()  # stored in UTC
'2016-05-18T20:00:00+00:00'
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError
from monitor.profiles import PROFILES, get_profile

__all__ = [
    "CATEGORIES",
    "CONCENTRATION_DIMENSIONS",
    "DIMENSIONS",
    "REASON_CODES",
    "Alert",
    "Appraisal",
    "BalanceChanged",
    "ClassificationReason",
    "ClassificationSuggestion",
    "CollateralPledged",
    "CollateralReleased",
    "CollateralValuation",
    "DeadLetter",
    "ExposureSlice",
    "GroupListing",
    "InterestAccrued",
    "LinesChanged",
    "LoanClosed",
    "LoanEvent",
    "LoanEventAdapter",
    "LoanExposure",
    "LoanOpened",
    "LoanRestructured",
    "LoanRiskSnapshot",
    "MarginCall",
    "PaymentOverdue",
    "Repayment",
    "RulebookStatus",
    "RulebookUpdate",
    "ServiceArea",
    "TelemetryBatch",
    "TelemetryEvent",
    "Thresholds",
    "parse_cure_period",
]

SCHEMA_VERSION = 1

#: The closed vocabularies of the messages, named so the core can type its values with them.
ValuationStatus = Literal["calibrating", "active"]
Drift = Literal["none", "decline", "increase"]
LoanStatus = Literal["ok", "warning", "margin_call", "close_out", "calibrating", "closed"]
LineStatus = Literal["ok", "warning", "margin_call", "close_out"]
AlertStatus = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]
Scope = Literal["loan", "asset"]
#: What an alert is about: a rule's loan or asset, or the whole portfolio (a concentration limit)
AlertScope = Literal["loan", "asset", "portfolio"]
#: The dimensions the portfolio's concentration is measured along (docs/rules.md, *Concentration*)
ConcentrationDimension = Literal["borrower_group", "asset_profile", "region"]
CONCENTRATION_DIMENSIONS: tuple[ConcentrationDimension, ...] = ("borrower_group", "asset_profile", "region")
#: The five risk categories of a loan, least severe first (《商业银行金融资产风险分类办法》, CBIRC & PBOC
#: Order 2023 No. 1): 正常 normal, 关注 special mention, 次级 substandard, 可疑 doubtful, 损失 loss.
Category = Literal["normal", "special_mention", "substandard", "doubtful", "loss"]
CATEGORIES: tuple[Category, ...] = ("normal", "special_mention", "substandard", "doubtful", "loss")

#: The six quality dimensions, named as GB/T 36344-2018 names them.
DIMENSIONS: tuple[str, ...] = (
    "normativity",
    "completeness",
    "accuracy",
    "consistency",
    "timeliness",
    "accessibility",
)

#: Reason codes carried by :class:`DeadLetter` records (``docs/topics.md``).
REASON_CODES: dict[str, str] = {
    "undecodable": "bytes are not UTF-8 JSON",
    "tombstone": "record value is null",
    "oversized": "record larger than max_message_bytes (1 MiB by default); not parsed",
    "not_an_object": "JSON value is not an object",
    "schema_violation": "a field has the wrong type or is missing",
    "extra_field": "a field the schema does not know (misspelling?)",
    "non_finite": "a number is NaN or infinite",
    "naive_time": "a time without a UTC offset",
    "implausible_time": "a time before the earliest plausible time (2015 by default) or beyond the allowed clock skew",
    "unknown_metric": "a metric or kind the asset profile does not know",
    "undefined_ratio": "a derived ratio has a zero denominator",
    "unknown_asset": "no loan has pledged this asset",
    "unknown_loan": "a loan event for a loan that was never opened",
    "conflicting_duplicate": "an event id already seen with different content",
    "processing_error": "the core raised on this record; the worker log has the traceback",
}

_ID = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@/\-]+$")]
#: Amounts in yuan; bounded so that sums of them stay finite (1e15 yuan is far beyond any loan).
MAX_YUAN = 1e15
_YUAN = Annotated[float, Field(ge=0.0, le=MAX_YUAN)]
#: an amount a bank books or demands: exact to the fen, computed in decimal (monitor.core.money), written
#: as a JSON number with at most two decimals (docs/core-banking.md, "Amounts"; case C26)
_FEN = Annotated[
    float,
    Field(
        ge=0.0,
        le=MAX_YUAN,
        description="yuan exact to the fen: a JSON number with at most two decimals; read it as a decimal",
    ),
]
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


#: Recently parsed time strings: a feed's records share their poll's receive time, and a vehicle's
#: updates their observation times, so most strings were parsed a moment ago (datetimes are immutable).
_PARSED: dict[str, dt.datetime] = {}
_PARSED_MAX = 4096


def _rfc3339_only(value: Any) -> Any:
    """Accept datetimes and RFC 3339 strings only: never guess an epoch unit from a number or digit string.

    An aware time comes back in UTC (every input time is stored in UTC; the offset it came with is
    only a way of writing it, case C15); a naive one comes back naive, for the strict aware-datetime
    check after this to reject (reason ``naive_time``). One Python call a field: this runs twice per
    telemetry record, so the last few thousand strings are remembered.
    """
    if not isinstance(value, str):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.UTC)
        return value  # naive datetimes and numbers fail the strict datetime check after this
    hit = _PARSED.get(value)
    if hit is not None:
        return hit
    parsed = _parse_rfc3339(value)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[value] = parsed
    return parsed


def _iso_in_utc(value: str) -> dt.datetime:
    """``value`` (``z`` read as ``Z``) by ``datetime.fromisoformat``, an aware time converted to UTC.

    Raises ValueError for text ``fromisoformat`` refuses, OverflowError for an aware time that leaves
    the calendar in UTC. No RFC 3339 check: :func:`_parse_rfc3339` makes it (the decoder's fast path,
    ``monitor.core.decode_fast``, makes it once for a whole record).
    """
    parsed = dt.datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
    return parsed if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _parse_rfc3339(value: str) -> dt.datetime:
    try:
        if not _RFC3339.match(value):
            raise ValueError(value)
        return _iso_in_utc(value)
    except ValueError:
        msg = (
            f"an RFC 3339 time such as 2024-03-04T08:00:00+08:00 (epoch numbers are never guessed), got {value[:40]!r}"
        )
        raise ValueError(msg) from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: in UTC it falls before year 1
        msg = f"a time within the years 0001 to 9999 once converted to UTC, got {value[:40]!r}"
        raise ValueError(msg) from None


#: An aware time given as an RFC 3339 string (or a datetime in Python); digit strings are refused, and
#: the time is stored in UTC (case C15).
Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]


def _member(field: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise naming the field and the choices."""
    if value not in allowed:
        msg = f"{field}: got {value!r}, expected one of {sorted(allowed)}"
        raise ValueError(msg)
    return value


class _Strict(BaseModel):
    """Base of every topic message: strict, closed, finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True, ser_json_inf_nan="null")


class TelemetryEvent(_Strict):
    """One operational record behind a pledged data asset (topic ``pledge.telemetry``).

    Attributes
    ----------
    event_id
        Unique per source; a repeated id is a duplicate and counted once.
    asset_id
        The pledged data asset (Kafka key).
    observed_at
        Event time, RFC 3339 with offset. Naive times are rejected.
    received_at
        When the collector received it (optional); drives the timeliness dimension.
    entity_id
        The entity reporting (e.g. a vehicle).
    kind
        Record kind known to the asset profile (``trip_update``, ``trip_completed``, ``feed_poll``...).
    metrics
        Metric name -> finite float, units as the asset profile gives them.
    attributes
        Name -> string (route, trip id...).
    """

    schema_version: Literal[1] = 1
    event_id: _ID
    asset_id: _ID
    observed_at: Time
    received_at: Time | None = None
    entity_id: str | None = Field(default=None, max_length=200)
    kind: Annotated[str, Field(min_length=1, max_length=64)]
    metrics: dict[str, float] = Field(default_factory=dict)
    attributes: dict[str, str] = Field(default_factory=dict)


#: Most observations one telemetry record may carry: a poll of a large fleet's route group (a few
#: hundred vehicles) fits with room; beyond it a producer should split. Bounds the work one record can
#: cause, as ``max_message_bytes`` bounds its bytes.
MAX_BATCH_OBSERVATIONS = 10_000


class TelemetryBatch(_Strict):
    """Several observations of one asset in one record (topic ``pledge.telemetry``), e.g. one poll.

    Each observation is a whole :class:`TelemetryEvent`, decoded by the same rules as a record of its
    own; an observation that breaks them is dead-lettered alone, with its index, and the others are
    used. Batches amortise the stream framework's per-record cost over many observations (issue 18).

    Attributes
    ----------
    asset_id
        The asset every observation names (the Kafka key).
    observations
        1 to :data:`MAX_BATCH_OBSERVATIONS` observations, in the order they are applied.
    """

    schema_version: Literal[1] = 1
    asset_id: _ID
    observations: Annotated[list[TelemetryEvent], Field(min_length=1, max_length=MAX_BATCH_OBSERVATIONS)]

    @model_validator(mode="after")
    def _one_asset(self) -> TelemetryBatch:
        for i, ob in enumerate(self.observations):
            if ob.asset_id != self.asset_id:
                msg = f"observations.{i}.asset_id: got {ob.asset_id!r}, expected the batch's asset {self.asset_id!r}"
                raise ValueError(msg)
        return self


class Thresholds(_Strict):
    """Coverage-ratio lines of one loan contract (ratios, e.g. 1.30 = 130 %).

    Raises
    ------
    pydantic.ValidationError
        Unless ``warning > margin_call > close_out > 0``.
    """

    warning: Annotated[float, Field(gt=0)]
    margin_call: Annotated[float, Field(gt=0)]
    close_out: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.warning > self.margin_call > self.close_out:
            msg = (
                f"thresholds must satisfy warning > margin_call > close_out, got "
                f"warning={self.warning}, margin_call={self.margin_call}, close_out={self.close_out}"
            )
            raise ValueError(msg)
        return self


_CURE = re.compile(r"^(\d{1,4})(h|d|bd)$")


def parse_cure_period(text: str) -> tuple[int, str]:
    """Parse a cure period such as ``"10d"`` (calendar days), ``"48h"`` or ``"5bd"`` (business days).

    Returns
    -------
    tuple
        ``(count, unit)`` with unit ``"h"``, ``"d"`` or ``"bd"``.

    Raises
    ------
    ValueError
        When the text is not ``<count><h|d|bd>``.

    Examples
    --------
    >>> parse_cure_period("10d")
    (10, 'd')
    """
    m = _CURE.match(text)
    if not m:
        msg = f"cure_period: got {text!r}, expected <count><h|d|bd> such as '10d', '48h' or '5bd'"
        raise ValueError(msg)
    return int(m.group(1)), m.group(2)


class Appraisal(_Strict):
    """The appraisal of a data asset at pledge (income approach, China Appraisal Society 2023 guidance).

    Attributes
    ----------
    value
        Appraised value V_0 in yuan.
    baseline_activity
        Optional: the activity the appraisal assumed, one value per season slot of the asset
        profile in the asset's local time (``bus_dispatch``: 24 values, activity per hour of
        day; ``daily_ridership``: 364 values, activity per day of a 52-week year). The length
        is checked against the profile by :class:`CollateralPledged`. Without it the baseline
        comes from the calibration period after pledge.
    quality_baseline
        Optional Q_0 (0..1) assessed by the appraiser; without it Q_0 is measured in calibration.
    """

    value: Annotated[float, Field(gt=0, le=MAX_YUAN)]
    method: str = "income"
    appraised_on: dt.date
    appraiser: str
    baseline_activity: list[Annotated[float, Field(ge=0, le=1e9)]] | None = None
    quality_baseline: Annotated[float, Field(gt=0, le=1)] | None = None

    @field_validator("baseline_activity")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and sum(v) <= 0:
            msg = f"baseline_activity: got {len(v)} values summing to {sum(v)}, expected a positive sum"
            raise ValueError(msg)
        return v


class _LoanEventBase(_Strict):
    schema_version: Literal[1] = 1
    event_id: _ID
    loan_id: _ID
    effective_at: Time


class LoanOpened(_LoanEventBase):
    """A loan is booked; its contract fixes the lines and the cure period.

    ``borrower_group`` (optional) names the group of connected clients the borrower belongs to
    (集团客户 / 关联客户 in the sense of the CBIRC's 2018 large-exposure measures: entities under
    common control or economically dependent); the portfolio's concentration is measured per group.
    Without it the borrower is a group of its own (:attr:`group`).
    """

    type: Literal["loan_opened"] = "loan_opened"
    borrower_id: _ID
    borrower_group: _ID | None = None
    principal: Annotated[float, Field(gt=0, le=MAX_YUAN)]
    outstanding: _YUAN
    currency: Literal["CNY"] = "CNY"
    start: dt.date
    maturity: dt.date
    thresholds: Thresholds
    cure_period: str = "10d"
    #: a calendar-day cure ending on a day without business: ``following`` (the default) moves it to
    #: the next business day, ``calendar`` keeps it (``monitor.holidays.cure_deadline``)
    cure_convention: Literal["following", "calendar"] = "following"

    @field_validator("cure_period")
    @classmethod
    def _cure(cls, v: str) -> str:
        parse_cure_period(v)
        return v

    @property
    def group(self) -> str:
        """The borrower group the loan counts towards: ``borrower_group``, else the borrower id (a group of one).

        Examples
        --------
        >>> ev = LoanOpened.model_construct(borrower_id="B1", borrower_group=None)
        >>> ev.group
        'B1'
        """
        return getattr(self, "borrower_group", None) or self.borrower_id  # a model pickled before the field


class ServiceArea(_Strict):
    """The area an asset's vehicles serve: a latitude / longitude box in degrees (WGS 84).

    A reported position outside it (a swapped latitude and longitude, a vehicle far off its
    network) is implausible: it lowers the window's accuracy and is left out of activity (C18).
    """

    min_lat: Annotated[float, Field(ge=-90.0, le=90.0)]
    max_lat: Annotated[float, Field(ge=-90.0, le=90.0)]
    min_lon: Annotated[float, Field(ge=-180.0, le=180.0)]
    max_lon: Annotated[float, Field(ge=-180.0, le=180.0)]

    @model_validator(mode="after")
    def _ordered(self) -> ServiceArea:
        if not (self.min_lat < self.max_lat and self.min_lon < self.max_lon):
            msg = (
                f"service_area: got lat {self.min_lat}..{self.max_lat}, lon {self.min_lon}..{self.max_lon}; "
                "expected min_lat < max_lat and min_lon < max_lon"
            )
            raise ValueError(msg)
        return self

    def contains(self, lat: float, lon: float) -> bool:
        """True when (``lat``, ``lon``) in degrees lies inside the box (edges included)."""
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


class CollateralPledged(_LoanEventBase):
    """A data asset is pledged to the loan (registered with its pledge registration number).

    ``service_area`` (optional) bounds the positions its vehicles may report (C18). ``routes``
    (optional) names the route designators whose operational data make up the asset, for source
    adapters that group a feed by the pledge (BusTime: ``monitor.sources.bustime``); without it an
    adapter's own grouping applies. ``asset_country`` (ISO 3166-1 alpha-2, optional) names whose
    public holidays run a Sunday service; without it the country of ``asset_timezone`` in the IANA
    ``zone.tab`` applies (``docs/valuation.md``, expected service). Without ``asset_timezone`` the
    profile's ``timezone`` applies, else Asia/Shanghai. ``region`` (optional) is where the asset's
    operations are, as an ISO 3166-2 subdivision code (``NZ-AUK``, ``US-IL``, ``CN-31``) or an ISO
    3166-1 country code; the portfolio's concentration is measured per region (:attr:`region_key`).
    """

    type: Literal["collateral_pledged"] = "collateral_pledged"
    asset_id: _ID
    asset_profile: str = "bus_dispatch"
    asset_timezone: str = "Asia/Shanghai"
    appraisal: Appraisal
    pledge_registration_no: Annotated[str, Field(min_length=1, max_length=100)]
    service_area: ServiceArea | None = None
    routes: Annotated[list[Annotated[str, Field(min_length=1, max_length=40)]], Field(min_length=1)] | None = None
    asset_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    region: Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")] | None = None

    @property
    def region_key(self) -> str:
        """The region the asset counts towards: ``region``, else ``asset_country``, else ``unknown``.

        The country of ``asset_timezone`` is not guessed: a zone names where the clock runs, and
        one region of ``unknown`` is visible on the concentration page, a guessed one is not.

        Examples
        --------
        >>> CollateralPledged.model_construct(region=None, asset_country="NZ").region_key
        'NZ'
        """
        return getattr(self, "region", None) or getattr(self, "asset_country", None) or "unknown"

    @model_validator(mode="after")
    def _profile_zone(self) -> CollateralPledged:
        # a pledge without asset_timezone takes its profile's zone, when the profile names one
        if "asset_timezone" not in self.model_fields_set:
            zone = get_profile(self.asset_profile).timezone
            if zone is not None:
                object.__setattr__(self, "asset_timezone", zone)  # frozen model: set once, while validating
        return self

    @field_validator("asset_profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        # a built-in profile's name or the path of a profile file (docs/sources.md, asset profiles)
        try:
            get_profile(v)
        except ConfigError as exc:
            why = str(exc).splitlines()[0].removeprefix("asset_profile: ")
            msg = f"a built-in profile ({', '.join(sorted(PROFILES))}) or a valid profile file; {why}"
            raise ValueError(msg) from None
        return v

    @field_validator("asset_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            msg = f"asset_timezone: got {v!r}, expected an IANA time zone such as 'Asia/Shanghai'"
            raise ValueError(msg) from None
        return v

    @model_validator(mode="after")
    def _baseline_shape(self) -> CollateralPledged:
        base = self.appraisal.baseline_activity
        profile = get_profile(self.asset_profile)
        if base is not None and len(base) != profile.season_slots:
            msg = (
                f"appraisal.baseline_activity: got {len(base)} values, expected for profile "
                f"{self.asset_profile}: {profile.describe_season()}"
            )
            raise ValueError(msg)
        return self


class BalanceChanged(_LoanEventBase):
    """Outstanding principal set to a new value (yuan), e.g. after a drawdown."""

    type: Literal["balance_changed"] = "balance_changed"
    outstanding: _YUAN


class Repayment(_LoanEventBase):
    """A repayment of ``amount`` yuan, reducing the outstanding."""

    type: Literal["repayment"] = "repayment"
    amount: Annotated[float, Field(gt=0, le=MAX_YUAN)]


class InterestAccrued(_LoanEventBase):
    """Interest of ``amount`` yuan accrued; outstanding includes accrued interest."""

    type: Literal["interest_accrued"] = "interest_accrued"
    amount: Annotated[float, Field(gt=0, le=MAX_YUAN)]


class CollateralReleased(_LoanEventBase):
    """A pledged asset is released from the loan."""

    type: Literal["collateral_released"] = "collateral_released"
    asset_id: _ID


class LinesChanged(_LoanEventBase):
    """The contract's coverage lines are amended."""

    type: Literal["lines_changed"] = "lines_changed"
    thresholds: Thresholds


class LoanClosed(_LoanEventBase):
    """The loan is closed; open margin calls are withdrawn."""

    type: Literal["loan_closed"] = "loan_closed"


#: Most days past due a report may carry (about 100 years): bounds the arithmetic, far beyond any loan.
MAX_DAYS_PAST_DUE = 36_500


class PaymentOverdue(_LoanEventBase):
    """Core banking's count of days past due of the loan (principal or interest), as of a moment.

    ``days_past_due`` is the number of days the oldest unpaid principal or interest instalment is
    overdue at ``as_of`` (0: nothing is overdue, the arrears are cleared). The monitor ages the
    newest report by the whole days of event time since its ``as_of`` while it is above 0, until
    core banking reports again (``docs/rules.md``, *Risk classification*). Its floors come from
    《商业银行金融资产风险分类办法》 (more than 0, 90, 270, 360 days past due).

    Raises
    ------
    pydantic.ValidationError
        When ``days_past_due`` is not an integer in 0..36500, or ``as_of`` is later than ``effective_at``.
    """

    type: Literal["payment_overdue"] = "payment_overdue"
    days_past_due: Annotated[int, Field(ge=0, le=MAX_DAYS_PAST_DUE)]
    #: the moment the count holds (e.g. the end of core banking's business day)
    as_of: Time

    @field_validator("as_of")
    @classmethod
    def _not_ahead(cls, v: dt.datetime, info: ValidationInfo) -> dt.datetime:
        # the error reads "<type>.as_of: got <value>, expected <this>" at the decoder (names the field)
        effective = info.data.get("effective_at")
        if effective is not None and v > effective:
            msg = f"a time no later than effective_at {effective.isoformat()} (a count holds before it is sent)"
            raise ValueError(msg)
        return v


class LoanRestructured(_LoanEventBase):
    """The loan's contract was adjusted in the borrower's favour because of financial difficulty (重组).

    ``restructured_on`` is the date of the adjustment; ``observation_end`` the last day (China
    Standard Time) of its observation period. Under 《商业银行金融资产风险分类办法》 the period runs
    from the first repayment date after the adjustment, covers at least two consecutive repayment
    periods and at least one year, so core banking, which knows the schedule, should send it;
    without it the rulebook's ``classification.observation_days`` after ``restructured_on`` apply.

    Raises
    ------
    pydantic.ValidationError
        When ``observation_end`` is not after ``restructured_on``.
    """

    type: Literal["loan_restructured"] = "loan_restructured"
    restructured_on: dt.date
    observation_end: dt.date | None = None

    @field_validator("observation_end")
    @classmethod
    def _end_after_start(cls, v: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("restructured_on")
        if v is not None and start is not None and v <= start:
            msg = f"a date after restructured_on {start.isoformat()}"
            raise ValueError(msg)
        return v


LoanEvent = Annotated[
    LoanOpened
    | CollateralPledged
    | BalanceChanged
    | Repayment
    | InterestAccrued
    | CollateralReleased
    | LinesChanged
    | LoanClosed
    | PaymentOverdue
    | LoanRestructured,
    Field(discriminator="type"),
]
#: Validates any loan event (tagged union on ``type``).
LoanEventAdapter: TypeAdapter[Any] = TypeAdapter(LoanEvent)


class RulebookUpdate(_Strict):
    """A rulebook published to ``pledge.rules-control`` (hot reload); ``source`` is the YAML text."""

    schema_version: Literal[1] = 1
    rulebook: _ID
    version: int
    source: str
    published_at: Time


class RulebookStatus(_Strict):
    """What one worker did with a rulebook (``pledge.rules-status``): made it active, or rejected it."""

    schema_version: Literal[1] = 1
    worker: str
    rulebook: str
    version: int | None
    status: Literal["active", "rejected"]
    reason: str
    origin: Literal["file", "topic"]
    at: AwareDatetime


class CollateralValuation(_Strict):
    """The revalued collateral of one asset at the close of one window (``pledge.valuations``).

    ``value = appraisal_value × min(activity_index, cap) × min(quality_score / quality_baseline, 1)``
    (``docs/valuation.md``). Values are yuan; indices and quality are ratios.

    ``service_expected``: the window falls in the asset's expected service (its learned weekly
    profile or appraisal expects activity); ``silent_in_service_seconds``: expected-service time
    (seconds) since the asset's last record, 0 while it reports; ``in_silence_grace``: that silence
    is shorter than the profile's silence grace, so the value is carried forward (its interval
    widening) rather than impaired. ``silent_alone_seconds``: the part of that silence during which
    another asset of the same collector was heard (the worker's assets in the same time zone): a
    silence every one of them shares is the collector's (or the ingestion's) outage, not this
    asset's feed going dark, and is not counted; with no such asset the whole silence counts.
    ``activity_forecast_lower`` / ``_upper``: the 90 % one-step prediction band of this window's
    activity made before it was seen (``None`` while calibrating or off-service); the share of
    windows inside it is the interval coverage of docs/valuation.md.
    ``activity_shortfall``: the level-shift detector's evidence of a decline is past its warning
    limit, or a decline was confirmed (and reported as ``drift``); ``shortfall_ratio``: the activity
    of that run over its forecast (0..1, e.g. 0.45 = 55 % short), ``None`` without a shortfall.
    """

    schema_version: Literal[1] = 1
    asset_id: str
    asset_profile: str
    loan_ids: list[str]
    window_start: AwareDatetime
    window_end: AwareDatetime
    status: ValuationStatus
    value: _YUAN
    value_lower: _YUAN
    value_upper: _YUAN
    appraisal_value: _YUAN
    activity: float
    activity_expected: float
    activity_index: float
    activity_index_lower: float
    activity_index_upper: float
    quality_score: float
    quality_baseline: float
    quality: dict[str, float | None]
    window_quality: dict[str, float | None]
    anomaly_score: float
    anomalous: bool
    learned: bool
    drift: Drift
    windows_seen: int
    events_in_window: int
    late_events: int
    duplicates: int
    last_event_at: AwareDatetime | None
    last_event_age_seconds: float
    model_versions: dict[str, str]
    service_expected: bool = True
    silent_in_service_seconds: float = 0.0
    silent_alone_seconds: float = 0.0
    in_silence_grace: bool = False
    activity_forecast_lower: float | None = None
    activity_forecast_upper: float | None = None
    activity_shortfall: bool = False
    shortfall_ratio: float | None = None
    attribution: dict[str, float] = Field(default_factory=dict)
    attribution_since_pledge: dict[str, float] = Field(default_factory=dict)


class AssetValue(_Strict):
    """One asset's contribution to a loan's collateral value (yuan)."""

    asset_id: str
    value: _YUAN
    value_lower: _YUAN
    status: Literal["calibrating", "active", "pending"]


class LoanRiskSnapshot(_Strict):
    """Risk position of one loan (``pledge.loan-risk``, compacted by loan id).

    ``coverage_ratio = collateral_value / outstanding``; ``ltv = 1 / coverage_ratio``; both are
    ``None`` while nothing is outstanding.
    """

    schema_version: Literal[1] = 1
    loan_id: str
    as_of: AwareDatetime
    status: LoanStatus
    currency: Literal["CNY"] = "CNY"
    outstanding: _FEN
    collateral_value: _FEN
    collateral_value_lower: _FEN
    coverage_ratio: float | None
    ltv: float | None
    thresholds: Thresholds
    required_top_up_collateral: _FEN
    required_repayment: _FEN
    assets: list[AssetValue]


class Alert(_Strict):
    """One alert transition (``pledge.alerts``): firing or resolved, never one per event.

    ``alert_id`` is deterministic: a hash of (rulebook, rule, subject, episode start).
    """

    schema_version: Literal[1] = 1
    alert_id: str
    status: AlertStatus
    rule_id: str
    severity: Severity
    #: ``portfolio``: a concentration limit (subject ``<dimension>:<key>``, ``loan_id`` empty)
    scope: AlertScope
    subject: str
    loan_id: str
    asset_id: str | None = None
    episode_start: AwareDatetime
    at: AwareDatetime
    summary: str
    summary_en: str
    facts: dict[str, float | str | None]
    rulebook: str
    rulebook_version: int
    model_versions: dict[str, str]
    shadow: bool = False


class ExposureSlice(_Strict):
    """One pledged asset's part of a loan (:class:`LoanExposure`): where it counts, and its values in yuan.

    ``appraisal_value`` fixes the asset's part of the loan's exposure (its share of the loan's
    appraised collateral); ``value`` is its collateral value now (the appraisal until first valued).
    """

    asset_id: str
    asset_profile: str
    region: str
    appraisal_value: _YUAN
    value: _YUAN


class LoanExposure(_Strict):
    """One loan's exposure and collateral for the portfolio's concentration (``pledge.portfolio-exposure``).

    Internal, keyed by loan on a compacted single-partition topic, so one worker sees the whole
    portfolio. ``exposure`` is the outstanding (principal and accrued interest, yuan); a closed loan
    is sent once with ``closed`` true and leaves the portfolio.
    """

    schema_version: Literal[1] = 1
    loan_id: str
    #: the borrower (the query API shows a relationship manager the groups of their borrowers only)
    borrower_id: str
    borrower_group: str
    as_of: AwareDatetime
    exposure: _FEN
    closed: bool = False
    slices: list[ExposureSlice] = Field(default_factory=list)


class GroupListing(_Strict):
    """One loan's standing for its borrower group's watch-list criterion (``internal.group-listing``).

    Internal, keyed by loan on a compacted single-partition topic that every worker reads whole, so a
    worker counts in ``loan.group_others_on_watch_list`` the loans of a group held by the others
    (docs/architecture.md, *The borrower group on the watch list*). Sent by the worker holding the
    loan when its standing changes. ``listed`` is whether the loan is on the watch list for a reason
    other than a group criterion now; ``listed_before`` what it was before its last change, made at
    event time ``changed_at`` (``None``: never changed), so a reader asks as of an event time as it
    would ask a loan it holds (``LoanMonitor.listed_apart_from_group``). A closed loan counts for no one.
    """

    schema_version: Literal[1] = 1
    loan_id: str
    borrower_group: str
    listed: bool
    listed_before: bool = False
    changed_at: AwareDatetime | None = None
    closed: bool = False


class MarginCall(_Strict):
    """A margin call (``pledge.margin-calls``): the amount to restore the warning line and the deadline.

    ``required_top_up_collateral = max(0, warning × outstanding − collateral_value_lower)`` yuan of
    extra collateral, or ``required_repayment = max(0, outstanding − collateral_value_lower / warning)``
    yuan: what brings the 90 % lower bound back to the warning line, where the call is cured.
    """

    schema_version: Literal[1] = 1
    margin_call_id: str
    loan_id: str
    status: Literal["issued", "cured", "expired", "withdrawn"]
    issued_at: AwareDatetime
    updated_at: AwareDatetime
    coverage_ratio: float
    collateral_value: _FEN
    outstanding: _FEN
    warning_line: float
    required_top_up_collateral: _FEN
    required_repayment: _FEN
    cure_deadline: AwareDatetime
    #: the deadline counted a day of a year without the official holiday notice (only the fixed-date
    #: statutory holidays were known): it may move once the notice is out (``monitor.holidays``, C25)
    deadline_provisional: bool = False
    alert_id: str
    rulebook: str
    rulebook_version: int


class DeadLetter(_Strict):
    """A record that could not be used, with why (``pledge.dead-letter``)."""

    schema_version: Literal[1] = 1
    source_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    reason: str
    message: str
    asset_id: str | None = None
    original_b64: str
    received_at: AwareDatetime
    #: for one observation of a :class:`TelemetryBatch`: its index (0-based); ``original_b64`` then
    #: holds that observation's JSON, not the whole record
    observation_index: int | None = None

    @field_validator("reason")
    @classmethod
    def _known(cls, v: str) -> str:
        return _member("reason", v, REASON_CODES)


class AccessLogEntry(_Strict):
    """One request for loan or asset data on a worker's query API, allowed or refused (``pledge.access-log``).

    Written by the worker the client asked (a request it forwarded to the worker holding the data is
    logged once, there where the client came in, with the final answer). Never holds a token or secret.
    """

    schema_version: Literal[1] = 1
    at: AwareDatetime
    worker: str
    #: the token's subject or the static token's name; ``anonymous`` on a loopback API without credentials
    subject: str
    role: str | None
    #: ``jwt``, ``token``, ``none`` (loopback without credentials); None when the credential was refused
    via: str | None
    action: Literal[
        "list_loans", "read_loan", "read_asset", "read_openapi", "read_portfolio", "read_concentration", "read_report"
    ]
    resource_id: str | None
    remote: str | None
    decision: Literal["allowed", "refused", "not_found", "unavailable"]
    status: int
    #: why it was refused (safe to log: names the check, never the credential)
    reason: str | None = None


class WatchReason(_Strict):
    """One reason a loan is on the watch list: the rule whose condition holds, since when, in words."""

    rule_id: str
    #: the loan, or the asset of an asset-scope rule
    subject: str
    since: AwareDatetime
    alert_id: str
    summary: str
    summary_en: str


class WatchListEvent(_Strict):
    """A loan put on the watch list (关注名单), kept on it for another reason, or taken off (``pledge.watch-list``).

    Keyed by loan, on a compacted topic: the latest record of a loan is its place on the list now,
    with every reason that holds (EBA/GL/2020/06 section 8: a watch list with entry and exit
    criteria). Rules with ``action: watch_list`` are the criteria (docs/rules.md).
    """

    schema_version: Literal[1] = 1
    loan_id: str
    borrower_id: str
    status: Literal["entered", "updated", "exited"]
    on_list: bool
    #: the rule whose firing or resolution made this record
    rule_id: str
    at: AwareDatetime
    #: every reason that holds now (empty once the loan has exited)
    reasons: list[WatchReason]
    facts: dict[str, float | str | None]
    rulebook: str
    rulebook_version: int


class ClassificationReason(_Strict):
    """One criterion that sets a floor under a loan's suggested risk category (docs/rules.md).

    ``criterion`` names it (``days-past-due``, ``restructured``: regulation; ``watch-list``,
    ``below-warning``, ``margin-call-open``, ``margin-call-expired``, ``close-out``: the bank's
    policy, set in the rulebook's ``classification:`` section); ``fact`` and ``value`` are what
    made it apply (e.g. ``days_past_due`` 95).
    """

    criterion: str
    source: Literal["regulation", "bank_policy"]
    #: the least severe category the criterion allows
    floor: Category
    fact: str
    value: float | str | bool


class ClassificationSuggestion(_Strict):
    """A change of a loan's suggested risk category (五级分类), on ``pledge.classification``.

    A suggestion only: the bank's credit committee decides the loan's category; the monitor never
    applies it. Keyed by loan on a compacted topic, so a loan's latest record is its suggestion
    now. The category is the most severe floor of ``reasons`` (``normal`` when none applies);
    ``suggestion_id`` derives from (loan, at, previous, category), so a replay cannot double it.
    """

    schema_version: Literal[1] = 1
    suggestion_id: str
    loan_id: str
    borrower_id: str
    previous_category: Category
    category: Category
    at: AwareDatetime
    #: every criterion that applies now, most severe first
    reasons: list[ClassificationReason]
    facts: dict[str, float | str | bool | None]
    rulebook: str
    rulebook_version: int
