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

from dataclasses import dataclass, field

from monitor.errors import ConfigError

__all__ = ["DAILY_RIDERSHIP", "PROFILES", "AssetProfile", "KindSpec", "MetricSpec", "get_profile"]


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


_COUNT = "count"

BUS_DISPATCH = AssetProfile(
    name="bus_dispatch",
    kinds={
        "feed_poll": KindSpec(
            metrics={"entities": MetricSpec(_COUNT, (0, 20_000))},
            required_metrics=("entities",),
        ),
        "trip_update": KindSpec(
            metrics={
                "delay_s": MetricSpec("s", (-1_800, 7_200)),
                "stop_sequence": MetricSpec(_COUNT, (0, 500)),
            },
            required_metrics=("delay_s",),
            required_attributes=("trip_id", "route_id"),
        ),
        "trip_completed": KindSpec(
            metrics={
                "trips": MetricSpec(_COUNT, (0, 50)),
                "on_time_trips": MetricSpec(_COUNT, (0, 50)),
                "duration_s": MetricSpec("s", (0, 6 * 3_600)),
                "final_delay_s": MetricSpec("s", (-1_800, 7_200)),
                "stop_sequence": MetricSpec(_COUNT, (0, 500)),
            },
            required_metrics=("trips",),
            required_attributes=("trip_id",),
            ratios={"on_time_ratio": ("on_time_trips", "trips")},
        ),
        "vehicle_position": KindSpec(
            metrics={
                "lat": MetricSpec("deg", (-90, 90)),
                "lon": MetricSpec("deg", (-180, 180)),
                "speed_mps": MetricSpec("m/s", (0, 40)),
                "bearing_deg": MetricSpec("deg", (0, 360)),
                "passengers": MetricSpec(_COUNT, (0, 250)),
                # speed implied by the distance from the bus's previous fix (GTFS-rt adapters); beyond
                # 30 m/s (≈ 108 km/h) the fix is a GPS glitch, so the record is implausible (C18)
                "jump_speed_mps": MetricSpec("m/s", (0, 30)),
            },
            required_metrics=("lat", "lon"),
        ),
        "timepoint_departure": KindSpec(
            metrics={
                "deviation_s": MetricSpec("s", (-3_600, 7_200)),
                "on_time": MetricSpec(_COUNT, (0, 1)),
            },
            required_metrics=("deviation_s", "on_time"),
            required_attributes=("trip_id", "route_id"),
        ),
        "boarding": KindSpec(
            metrics={"passengers": MetricSpec(_COUNT, (0, 250))},
            required_metrics=("passengers",),
        ),
        "dispatch": KindSpec(
            metrics={
                "vehicles": MetricSpec(_COUNT, (0, 5_000)),
                "vehicle_km": MetricSpec("km", (0, 1_000_000)),
                "trips": MetricSpec(_COUNT, (0, 100_000)),
                "missed_trips": MetricSpec(_COUNT, (0, 100_000)),
            },
        ),
    },
    activity=("trip_completed", "trips"),
    poll_kind="feed_poll",
    poll_interval_s=120.0,
    latency_sla_s=300.0,
    feature_limits={
        "activity_ratio": (0.0, 3.0),
        "mean_delay_s": (-600.0, 1_800.0),
        "late_share": (0.0, 1.0),
        "updates_per_poll": (0.0, 500.0),
        "passengers": (0.0, 250.0),
        "delay_s": (0.0, 3_600.0),
        "trips": (0.0, 50.0),
    },
    quality_weights={
        "normativity": 1.0,
        "completeness": 1.0,
        "accuracy": 1.0,
        "consistency": 1.0,
        "timeliness": 1.0,
        "accessibility": 1.0,
    },
)

#: Daily ridership totals of a transit operator (e.g. the CTA's daily boarding totals): one record a
#: day per asset, whose ``boardings`` is the activity measure. The record is its own heartbeat, so a
#: day without it has completeness and accessibility 0. Use with daily windows
#: (``PLEDGEWATCH_WINDOW_S=86400``); the season is a 52-week year of daily slots.
DAILY_RIDERSHIP = AssetProfile(
    name="daily_ridership",
    kinds={
        "daily_total": KindSpec(
            metrics={"boardings": MetricSpec(_COUNT, (0, 50_000_000))},
            required_metrics=("boardings",),
            required_attributes=("day_type",),
        ),
    },
    activity=("daily_total", "boardings"),
    poll_kind="daily_total",
    poll_interval_s=86_400.0,
    latency_sla_s=2 * 86_400.0,
    feature_limits={"activity_ratio": (0.0, 3.0)},
    quality_weights=dict.fromkeys(
        ("normativity", "completeness", "accuracy", "consistency", "timeliness", "accessibility"), 1.0
    ),
    season_slot_s=86_400.0,
    season_slots=364,
    silence_grace_s=3 * 86_400.0,
    shift_confirm_s=7 * 86_400.0,
)

#: Every profile by name.
PROFILES: dict[str, AssetProfile] = {p.name: p for p in (BUS_DISPATCH, DAILY_RIDERSHIP)}


def get_profile(name: str) -> AssetProfile:
    """Return the profile called ``name``.

    Raises
    ------
    ConfigError
        When no profile has that name.

    Examples
    --------
    >>> get_profile("bus_dispatch").activity
    ('trip_completed', 'trips')
    """
    try:
        return PROFILES[name]
    except KeyError:
        msg = f"asset_profile: got {name!r}, expected one of {sorted(PROFILES)}"
        raise ConfigError(msg) from None
