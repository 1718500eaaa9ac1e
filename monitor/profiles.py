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

__all__ = ["PROFILES", "AssetProfile", "KindSpec", "MetricSpec", "get_profile"]


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
            },
            required_metrics=("lat", "lon"),
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

#: Every profile by name.
PROFILES: dict[str, AssetProfile] = {BUS_DISPATCH.name: BUS_DISPATCH}


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
