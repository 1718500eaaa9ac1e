"""Asset profiles: what telemetry a kind of pledged data asset produces and how to judge it.

A profile names the record kinds and metrics an asset reports, their units and
plausible ranges, the reporting cadence, the latency SLA, which metric is the
**activity measure**, and the fixed limits used to scale window features to
[0, 1] for HalfSpaceTrees. The first profile is ``bus_dispatch``.

Ranges for bus telemetry follow GTFS-realtime conventions (speed in m/s,
positions in WGS84 degrees, delay in seconds) and the quirks documented for the
Auckland feed (day-wrap delays near −86,400 s are implausible).
"""

from __future__ import annotations

import json
import math
import re
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError, ProfileError
from monitor.geo import ServiceRegion

__all__ = [
    "BUS_DISPATCH",
    "DAILY_RIDERSHIP",
    "PROFILES",
    "AssetProfile",
    "KindSpec",
    "MetricSpec",
    "get_profile",
    "load_profile",
    "parse_profile",
]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of a record kind.

    Attributes
    ----------
    unit
        Unit of the value (``"s"``, ``"count"``, ``"deg"``, ``"m/s"``...).
    plausible
        ``(low, high)`` inclusive; a value outside lowers the accuracy dimension and the
        record is left out of activity and model features.
    """

    unit: str
    plausible: tuple[float, float]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One record kind: its metrics, required attributes and derived ratios.

    Attributes
    ----------
    metrics
        Metric name -> :class:`MetricSpec`. A metric not listed is an ``unknown_metric``.
    required_metrics, required_attributes
        Missing ones lower the completeness dimension.
    ratios
        Derived ratio name -> (numerator metric, denominator metric); a record giving the
        numerator with a zero denominator is rejected as ``undefined_ratio``.
    """

    metrics: dict[str, MetricSpec]
    required_metrics: tuple[str, ...] = ()
    required_attributes: tuple[str, ...] = ()
    ratios: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AssetProfile:
    """What a kind of pledged data asset reports and how its data quality is judged.

    Attributes
    ----------
    name
        Profile name used in ``CollateralPledged.asset_profile``.
    kinds
        Record kind -> :class:`KindSpec`.
    activity
        ``(kind, metric)`` whose sum per window is the activity measure.
    timezone
        IANA zone of the operations this kind of data comes from, used when a pledge gives no
        ``asset_timezone`` (a profile written for one operator); ``None``: the pledge's default.
    activity_exposure
        Optional metric of the activity kind giving the observed time (hours) each record stands
        for. With it a window's activity is the rate over observed time scaled to the window,
        ``Σ metric ÷ Σ exposure × window hours``, so a collector that observed part of a window
        (its own gaps, sparse polls) is not read as lost activity: unobserved time is
        uncertainty, not impairment. Without it, the plain sum.
    poll_kind, poll_interval_s
        The collector's heartbeat kind and its expected cadence in seconds; the share of
        poll slots of a window with data is the accessibility dimension.
    latency_sla_s
        A record is timely when ``received_at − observed_at`` is at most this (seconds).
    feature_limits
        Window feature -> (low, high) used to scale features to [0, 1] for HalfSpaceTrees.
    quality_weights
        Dimension -> weight of the window quality score (defaults to equal weights).
    late_delay_s
        A trip more than this late (seconds) counts towards the ``late_share`` feature.
    season_slot_s, season_slots
        Seasonality of the activity: the appraisal's ``baseline_activity`` has one value per slot
        of ``season_slot_s`` seconds of local time (activity units per slot), ``season_slots`` of
        them per season. ``bus_dispatch``: 24 hourly slots (a day); ``daily_ridership``: 364 daily
        slots (a 52-week year aligned by weekday, so holidays that fall on a weekday rule, such as
        Thanksgiving, mostly land in the same slot year on year).
    silence_grace_s
        Expected-service time (seconds) a feed may stay dark before the value itself is impaired
        (``docs/valuation.md``, silence). Until then the value is carried forward, its interval
        widening and ``feed-silent`` raised; after it the value's quality levels take the silence.
        ``bus_dispatch``: 12 h — longer than a collector or API outage that an operator's on-call
        restores within one shift (8 h) plus its escalation, shorter than one service day (18–20 h
        of a city network), so a dark day is always impaired before the next one begins.
        ``daily_ridership``: 3 days — one late daily file is routine (the totals are published
        with a lag), a dark business week is not.
    shift_confirm_s
        Shortest span (seconds of windows learned) of a run of evidence before the level-shift
        detector may confirm a shift (``docs/valuation.md``, level shifts); the detector itself
        never confirms on fewer than two windows. ``bus_dispatch``: 30 min — longer than a
        headway gap, a driver change or one late batch of polls, shorter than any cut that
        matters to a lender. ``daily_ridership``: 7 days — the longest ordinary dip of daily
        ridership is a holiday week (Christmas to New Year), which a shorter run could not be told
        apart from.
    service_area
        Where the fleet's vehicles count as in service (:class:`monitor.geo.ServiceRegion`), for
        activity measures that need no trips (``vehicle_service``); a pledge's own
        ``service_area`` box takes precedence. ``None``: everywhere.
    """

    name: str
    kinds: dict[str, KindSpec]
    activity: tuple[str, str]
    poll_kind: str
    poll_interval_s: float
    latency_sla_s: float
    feature_limits: dict[str, tuple[float, float]]
    quality_weights: dict[str, float]
    late_delay_s: float = 300.0
    season_slot_s: float = 3600.0
    season_slots: int = 24
    silence_grace_s: float = 12 * 3600.0
    shift_confirm_s: float = 1800.0
    service_area: ServiceRegion | None = None
    activity_exposure: str | None = None
    timezone: str | None = None

    @property
    def season_s(self) -> float:
        """Length of one season in seconds (``season_slot_s × season_slots``)."""
        return self.season_slot_s * self.season_slots

    def describe_season(self) -> str:
        """Human words for the baseline's shape, used in error messages."""
        if self.season_slot_s == 3600.0 and self.season_slots == 24:
            return "24 values, one per local hour of day (activity per hour)"
        if self.season_slot_s == 86400.0 and self.season_slots == 364:
            return "364 values, one per day of a 52-week year (slot = (local date - 1970-01-05) mod 364)"
        return f"{self.season_slots} values, one per {self.season_slot_s:g} s of local time"


#: Folder of the built-in profile files (package data).
PROFILE_DIR = Path(__file__).resolve().parent / "asset_profiles"
#: The quality dimensions a profile may weight (``monitor.schemas.DIMENSIONS``).
_DIMENSIONS = ("normativity", "completeness", "accuracy", "consistency", "timeliness", "accessibility")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MetricFile(_Strict):
    unit: Annotated[str, Field(min_length=1)]
    plausible: tuple[float, float]

    @model_validator(mode="after")
    def _range(self) -> _MetricFile:
        lo, hi = self.plausible
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"plausible: got [{lo:g}, {hi:g}], expected [low, high] with low <= high, both finite")
        return self


class _KindFile(_Strict):
    metrics: dict[str, _MetricFile] = Field(default_factory=dict)
    required_metrics: tuple[str, ...] = ()
    required_attributes: tuple[str, ...] = ()
    ratios: dict[str, tuple[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> _KindFile:
        for m in self.required_metrics:
            if m not in self.metrics:
                raise ValueError(
                    f"required_metrics: got {m!r}, expected one of the kind's metrics {sorted(self.metrics)}"
                )
        for name, pair in self.ratios.items():
            for m in pair:
                if m not in self.metrics:
                    raise ValueError(
                        f"ratios.{name}: got {m!r}, expected one of the kind's metrics {sorted(self.metrics)}"
                    )
        return self


class _ActivityFile(_Strict):
    kind: str
    metric: str
    exposure: str | None = None


class _PollFile(_Strict):
    kind: str
    interval_s: Annotated[float, Field(gt=0)]


class _SeasonFile(_Strict):
    slot_s: Annotated[float, Field(gt=0)]
    slots: Annotated[int, Field(ge=1)]


class _AreaFile(_Strict):
    """``service_area``: exactly one of a box ``[west, south, east, north]`` or GeoJSON (inline or a file)."""

    box: tuple[float, float, float, float] | None = None
    geojson: dict[str, Any] | str | None = None

    @model_validator(mode="after")
    def _one(self) -> _AreaFile:
        if (self.box is None) == (self.geojson is None):
            raise ValueError("got both or neither of box and geojson, expected exactly one")
        return self

    def region(self, base: Path | None) -> ServiceRegion:
        if self.box is not None:
            return ServiceRegion.from_box(*self.box)
        obj = self.geojson
        if isinstance(obj, str):
            path = Path(obj) if base is None or Path(obj).is_absolute() else base / obj
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"geojson: cannot read {path}: {exc.strerror}, expected a GeoJSON file") from None
            except ValueError as exc:
                raise ValueError(f"geojson: {path} is not JSON ({exc}), expected a GeoJSON file") from None
        return ServiceRegion.from_geojson(obj)


class _ProfileFile(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    description: str = ""
    kinds: Annotated[dict[str, _KindFile], Field(min_length=1)]
    activity: _ActivityFile
    poll: _PollFile
    latency_sla_s: Annotated[float, Field(gt=0)]
    late_delay_s: Annotated[float, Field(ge=0)] = 300.0
    feature_limits: dict[str, tuple[float, float]] = Field(default_factory=dict)
    quality_weights: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    season: _SeasonFile
    silence_grace_s: Annotated[float, Field(gt=0)]
    shift_confirm_s: Annotated[float, Field(gt=0)]
    service_area: _AreaFile | None = None
    timezone: str | None = None
    #: the area, built (and checked) by the validator below; a GeoJSON path is relative to the file
    _region: ServiceRegion | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"got {v!r}, expected an IANA time zone such as 'Asia/Shanghai'") from None
        return v

    @model_validator(mode="after")
    def _area(self, info: ValidationInfo) -> _ProfileFile:
        if self.service_area is not None:
            base = (info.context or {}).get("base")
            try:
                self._region = self.service_area.region(base)
            except ValueError as exc:
                raise ValueError(f"service_area.{exc}") from None
        return self

    @model_validator(mode="after")
    def _references(self) -> _ProfileFile:
        kind = self.kinds.get(self.activity.kind)
        if kind is None:
            raise ValueError(
                f"activity.kind: got {self.activity.kind!r}, expected one of the kinds {sorted(self.kinds)}"
            )
        if self.activity.metric not in kind.metrics:
            msg = (
                f"activity.metric: got {self.activity.metric!r}, expected a metric of {self.activity.kind}: "
                f"{sorted(kind.metrics)}"
            )
            raise ValueError(msg)
        if self.activity.exposure is not None and self.activity.exposure not in kind.metrics:
            msg = (
                f"activity.exposure: got {self.activity.exposure!r}, expected a metric of {self.activity.kind}: "
                f"{sorted(kind.metrics)}"
            )
            raise ValueError(msg)
        if self.poll.kind not in self.kinds:
            raise ValueError(f"poll.kind: got {self.poll.kind!r}, expected one of the kinds {sorted(self.kinds)}")
        for name, (lo, hi) in self.feature_limits.items():
            if not lo < hi:
                raise ValueError(f"feature_limits.{name}: got [{lo:g}, {hi:g}], expected [low, high] with low < high")
        for dim in self.quality_weights:
            if dim not in _DIMENSIONS:
                raise ValueError(f"quality_weights: got {dim!r}, expected one of the dimensions {list(_DIMENSIONS)}")
        if self.quality_weights and sum(self.quality_weights.values()) <= 0:
            raise ValueError("quality_weights: got all 0, expected at least one positive weight")
        return self

    def profile(self) -> AssetProfile:
        return AssetProfile(
            name=self.name,
            kinds={
                k: KindSpec(
                    metrics={m: MetricSpec(v.unit, v.plausible) for m, v in spec.metrics.items()},
                    required_metrics=spec.required_metrics,
                    required_attributes=spec.required_attributes,
                    ratios=dict(spec.ratios),
                )
                for k, spec in self.kinds.items()
            },
            activity=(self.activity.kind, self.activity.metric),
            activity_exposure=self.activity.exposure,
            poll_kind=self.poll.kind,
            poll_interval_s=self.poll.interval_s,
            latency_sla_s=self.latency_sla_s,
            feature_limits=dict(self.feature_limits),
            quality_weights={d: self.quality_weights.get(d, 1.0) for d in _DIMENSIONS},
            late_delay_s=self.late_delay_s,
            season_slot_s=self.season.slot_s,
            season_slots=self.season.slots,
            silence_grace_s=self.silence_grace_s,
            shift_confirm_s=self.shift_confirm_s,
            service_area=self._region,
            timezone=self.timezone,
        )


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """1-based line of the YAML node at a pydantic error location (the deepest one found)."""
    line = node.start_mark.line + 1 if node is not None else 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if nxt is None:
                break
            line, node = nxt[0].start_mark.line + 1, nxt[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _duplicate_keys(node: yaml.Node | None, path: str = "") -> list[tuple[str, int, int]]:
    """Keys given twice in one YAML mapping (YAML loaders keep the last one silently): (key, line, first line)."""
    out: list[tuple[str, int, int]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key, line = str(k.value), k.start_mark.line + 1
            full = f"{path}.{key}" if path else key
            if key in seen:
                out.append((full, line, seen[key]))
            seen.setdefault(key, line)
            out.extend(_duplicate_keys(v, full))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.extend(_duplicate_keys(v, f"{path}.{i}"))
    return out


def parse_profile(text: str, filename: str = "<profile>") -> AssetProfile:
    """Parse and validate an asset-profile YAML document.

    Raises
    ------
    ProfileError
        With one ``file:line: reason`` per problem: YAML errors, unknown or missing keys, wrong
        types, ranges with low above high, an activity or poll kind (or metric) the profile does
        not declare, a ratio or required metric that is not a metric of its kind, an unknown
        quality dimension.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", 0) + 1
        raise ProfileError([f"{filename}:{line}: YAML error: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a YAML {type(data).__name__}"
        raise ProfileError([f"{filename}:1: got {got}, expected a mapping of profile fields"])
    dupes = _duplicate_keys(node)
    if dupes:
        raise ProfileError(
            [
                f"{filename}:{line}: {key}: given twice (first at line {first}), expected once"
                for key, line, first in dupes
            ]
        )
    try:
        base = Path(filename).parent if not filename.startswith("<") else None
        return _ProfileFile.model_validate(data, context={"base": base}).profile()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
            where = ".".join(str(x) for x in loc)
            reason = err["msg"].removeprefix("Value error, ")
            # a check across fields names its field first ("activity.kind: got ..."): point at that line
            named = re.match(r"([A-Za-z_][\w.]*): ", reason) if err["type"] == "value_error" else None
            line_loc: tuple[int | str, ...] = loc
            if named:
                line_loc = loc + tuple(int(x) if x.isdigit() else x for x in named.group(1).split("."))
            if err["type"] == "missing":
                reason = "missing, expected it (docs/sources.md, asset profiles)"
            elif err["type"] == "extra_forbidden":
                reason = "unknown field, expected one of the profile's fields (docs/sources.md, asset profiles)"
            elif err["type"] != "value_error":
                expected = err["msg"].removeprefix("Input should be ").removeprefix("input should be ")
                reason = f"got {err.get('input')!r}, expected {expected[:1].lower() + expected[1:]}"
            problems.append(f"{filename}:{_line_of(node, line_loc)}: {where + ': ' if where else ''}{reason}")
        raise ProfileError(problems) from None


def load_profile(path: str | Path) -> AssetProfile:
    """Read and validate an asset-profile file (see :func:`parse_profile`).

    Raises
    ------
    ProfileError
        On any problem, including a file that cannot be read.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError([f"{p}: cannot read profile: {exc.strerror}"]) from None
    return parse_profile(text, str(p))


BUS_DISPATCH = load_profile(PROFILE_DIR / "bus_dispatch.yaml")
#: Daily ridership totals of a transit operator (``asset_profiles/daily_ridership.yaml``).
DAILY_RIDERSHIP = load_profile(PROFILE_DIR / "daily_ridership.yaml")

#: A bus fleet's positions without trips: vehicle-hours in service (``asset_profiles/bus_vehicle_service.yaml``).
BUS_VEHICLE_SERVICE = load_profile(PROFILE_DIR / "bus_vehicle_service.yaml")

#: Every profile by name.
PROFILES: dict[str, AssetProfile] = {p.name: p for p in (BUS_DISPATCH, DAILY_RIDERSHIP, BUS_VEHICLE_SERVICE)}


def get_profile(name: str) -> AssetProfile:
    """Return the built-in profile called ``name``, or the profile file at the path ``name``.

    A pledge names its asset's profile by name (``bus_dispatch``, ``daily_ridership``: the files in
    ``monitor/asset_profiles/``) or by the path of a profile file (ending ``.yaml`` / ``.yml``),
    read relative to the working directory of the process. A file is read again when it changes
    (its modification time or size); models checkpointed under another version of a profile are
    rebuilt by replay (the profile is part of the checkpoint's stamp).

    Raises
    ------
    ConfigError
        When no profile has that name; a ``ProfileError`` (a ``ConfigError``) when the file is bad.

    Examples
    --------
    >>> get_profile("bus_dispatch").activity
    ('trip_completed', 'trips')
    """
    if name.endswith((".yaml", ".yml")):
        p = Path(name)
        try:
            st = p.stat()
        except OSError as exc:
            raise ProfileError([f"asset_profile: {name}: cannot read profile: {exc.strerror}"]) from None
        return _profile_file(str(p.resolve()), st.st_mtime_ns, st.st_size)
    try:
        return PROFILES[name]
    except KeyError:
        msg = f"asset_profile: got {name!r}, expected one of {sorted(PROFILES)} or the path of a profile file (.yaml)"
        raise ConfigError(msg) from None


@lru_cache(maxsize=64)
def _profile_file(path: str, mtime_ns: int, size: int) -> AssetProfile:
    return load_profile(path)
