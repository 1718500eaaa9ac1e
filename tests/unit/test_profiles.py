"""Asset profiles as files: the built-ins are files, a pledge may name a file, broken files are refused by line."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.backtest import load_inputs, run_backtest
from monitor.cli import app
from monitor.errors import ProfileError
from monitor.profiles import BUS_DISPATCH, PROFILE_DIR, PROFILES, get_profile, load_profile, parse_profile
from monitor.valuation import ValuationParams, model_stamp
from rules.rulebook import load_rulebook
from tests.conftest import ROOT

GOOD = """\
name: small_feed
kinds:
  poll:
    metrics:
      entities: {unit: count, plausible: [0, 100]}
    required_metrics: [entities]
  done:
    metrics:
      trips: {unit: count, plausible: [0, 50]}
      late: {unit: count, plausible: [0, 50]}
    ratios:
      late_ratio: [late, trips]
activity: {kind: done, metric: trips}
poll: {kind: poll, interval_s: 60}
latency_sla_s: 300
feature_limits:
  activity_ratio: [0, 3]
quality_weights:
  accuracy: 2
season: {slot_s: 3600, slots: 24}
silence_grace_s: 43200
shift_confirm_s: 1800
"""


def test_profiles__the_built_ins_are_the_package_files_and_check_clean() -> None:
    for name, profile in PROFILES.items():
        assert load_profile(PROFILE_DIR / f"{name}.yaml") == profile
    run = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "pledgewatch"),
            "profiles",
            "check",
            *sorted(map(str, PROFILE_DIR.glob("*.yaml"))),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.count(" OK") == len(PROFILES), run.stdout + run.stderr


def test_profiles__a_valid_file_fills_unweighted_dimensions_with_1() -> None:
    p = parse_profile(GOOD, "small.yaml")
    assert p.activity == ("done", "trips") and p.poll_interval_s == 60.0
    assert p.quality_weights["accuracy"] == 2.0 and p.quality_weights["timeliness"] == 1.0


BROKEN = [
    ("duplicate key", GOOD + "latency_sla_s: 60\n", 23, "latency_sla_s: given twice (first at line 15)"),
    ("empty file", "", 1, "got an empty file, expected a mapping"),
    ("YAML syntax", GOOD.replace("latency_sla_s: 300", "latency_sla_s: [300"), 16, "YAML error"),
    ("not a mapping", "- a\n- b\n", 1, "expected a mapping of profile fields"),
    ("unknown field", GOOD + "colour: blue\n", 23, "colour: unknown field"),
    ("missing field", GOOD.replace("latency_sla_s: 300\n", ""), 1, "latency_sla_s: missing"),
    (
        "wrong type",
        GOOD.replace("latency_sla_s: 300", "latency_sla_s: soon"),
        15,
        "latency_sla_s: got 'soon', expected",
    ),
    (
        "not positive",
        GOOD.replace("interval_s: 60", "interval_s: 0"),
        14,
        "poll.interval_s: got 0, expected greater than 0",
    ),
    ("range upside down", GOOD.replace("plausible: [0, 100]", "plausible: [100, 0]"), 5, "plausible: got [100, 0]"),
    (
        "unknown activity kind",
        GOOD.replace("{kind: done, metric", "{kind: trips_done, metric"),
        13,
        "activity.kind: got 'trips_done'",
    ),
    (
        "activity metric of another kind",
        GOOD.replace("metric: trips}", "metric: entities}"),
        13,
        "activity.metric: got 'entities'",
    ),
    (
        "unknown poll kind",
        GOOD.replace("poll: {kind: poll", "poll: {kind: heartbeat"),
        14,
        "poll.kind: got 'heartbeat'",
    ),
    (
        "required metric not declared",
        GOOD.replace("required_metrics: [entities]", "required_metrics: [vehicles]"),
        6,
        "required_metrics: got 'vehicles'",
    ),
    (
        "ratio of an unknown metric",
        GOOD.replace("late_ratio: [late, trips]", "late_ratio: [early, trips]"),
        12,
        "ratios.late_ratio: got 'early'",
    ),
    ("unknown quality dimension", GOOD.replace("accuracy: 2", "beauty: 2"), 18, "quality_weights: got 'beauty'"),
    ("negative weight", GOOD.replace("accuracy: 2", "accuracy: -1"), 19, "quality_weights.accuracy: got -1"),
    ("empty season", GOOD.replace("slots: 24", "slots: 0"), 20, "season.slots: got 0"),
    (
        "feature limits upside down",
        GOOD.replace("activity_ratio: [0, 3]", "activity_ratio: [3, 3]"),
        17,
        "feature_limits.activity_ratio",
    ),
    ("bad name", GOOD.replace("name: small_feed", "name: Small Feed"), 1, "name: got 'Small Feed'"),
    (
        "activity exposure not a metric of the kind",
        GOOD.replace("{kind: done, metric: trips}", "{kind: done, metric: trips, exposure: hours}"),
        13,
        "activity.exposure: got 'hours'",
    ),
    (
        "service area box upside down",
        GOOD + "service_area:\n  box: [-89.2, 42.9, -89.6, 43.2]\n",
        24,
        "service_area.box: got [-89.2, 42.9, -89.6, 43.2], expected [west, south, east, north]",
    ),
    (
        "service area with both a box and GeoJSON",
        GOOD + "service_area:\n  box: [-89.6, 42.9, -89.2, 43.2]\n  geojson: area.geojson\n",
        23,
        "service_area: got both or neither of box and geojson",
    ),
    (
        "service area polygon crossing itself",
        GOOD + "service_area:\n  geojson: {type: Polygon, coordinates: [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}\n",
        24,
        "service_area.geojson: invalid Polygon: Self-intersection",
    ),
    (
        "service area of points",
        GOOD + "service_area:\n  geojson: {type: Point, coordinates: [0, 0]}\n",
        24,
        "service_area.geojson: got a 'Point' geometry, expected Polygon or MultiPolygon",
    ),
    ("unknown time zone", GOOD + "timezone: Mars/Olympus\n", 23, "timezone: got 'Mars/Olympus', expected an IANA"),
    (
        "service area file missing",
        GOOD + "service_area:\n  geojson: nowhere.geojson\n",
        24,
        "service_area.geojson: cannot read",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "reason"), BROKEN, ids=[c[0] for c in BROKEN])
def test_profiles_check__a_broken_profile_is_refused_with_its_line_and_reason(
    tmp_path: Path, case: str, text: str, line: int, reason: str
) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(f)
    assert any(p.startswith(f"{f}:{line}: ") and reason in p for p in err.value.problems), (case, err.value.problems)
    # the CLI in-process (the subprocess run of the entry point is the built-ins test above): 26 interpreter
    # starts and imports of the whole package took ≈ 9 s
    run = CliRunner().invoke(app, ["profiles", "check", str(f)])
    assert run.exit_code == 1 and f"{f}:{line}: " in run.stderr and reason in run.stderr.replace("\n", " "), run.stderr


def test_profiles__a_pledge_may_name_a_profile_file_and_gets_the_same_valuation(tmp_path: Path) -> None:
    custom = tmp_path / "operator_dispatch.yaml"
    custom.write_text(
        (PROFILE_DIR / "bus_dispatch.yaml").read_text().replace("name: bus_dispatch", "name: operator_dispatch")
    )
    book = ROOT / "examples" / "loan_book.jsonl"
    lines = book.read_text().splitlines()
    moved = tmp_path / "book.jsonl"
    moved.write_text(
        "\n".join(ln.replace('"asset_profile":"bus_dispatch"', f'"asset_profile":"{custom}"') for ln in lines) + "\n"
    )
    assert str(custom) in moved.read_text()
    sample = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
    rules = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    a = run_backtest(*load_inputs(book, sample)[:2], rules)
    b = run_backtest(*load_inputs(moved, sample)[:2], rules)
    assert [v.value for v in a.valuations] == [v.value for v in b.valuations] != []
    with pytest.raises(ProfileError, match="cannot read profile"):
        get_profile(str(tmp_path / "missing.yaml"))


def test_profiles__a_changed_profile_changes_the_model_checkpoint_stamp() -> None:
    params = ValuationParams()
    assert model_stamp(BUS_DISPATCH, params) == model_stamp(load_profile(PROFILE_DIR / "bus_dispatch.yaml"), params)
    assert model_stamp(BUS_DISPATCH, params) != model_stamp(replace(BUS_DISPATCH, silence_grace_s=3600.0), params)


def test_profiles__a_pledge_whose_profile_cannot_be_loaded_refuses_the_loan_book_by_line(tmp_path: Path) -> None:
    from monitor.errors import ConfigError

    book = tmp_path / "book.jsonl"
    lines = (ROOT / "examples" / "loan_book.jsonl").read_text().splitlines()
    book.write_text(
        "\n".join(ln.replace('"asset_profile":"bus_dispatch"', '"asset_profile":"nope.yaml"') for ln in lines)
    )
    sample = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
    # silently dead-lettering the pledge would leave its loan unmonitored
    with pytest.raises(
        ConfigError, match=r"book\.jsonl:2: collateral_pledged\.asset_profile: got 'nope\.yaml'.*cannot read"
    ):
        load_inputs(book, sample)


def test_profiles__a_service_area_from_a_geojson_file_beside_the_profile(tmp_path: Path) -> None:
    """A path in ``service_area.geojson`` is relative to the profile file; holes are outside."""
    area = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[-89.6, 42.9], [-89.2, 42.9], [-89.2, 43.2], [-89.6, 43.2], [-89.6, 42.9]],
                        [[-89.41, 43.06], [-89.39, 43.06], [-89.39, 43.08], [-89.41, 43.08], [-89.41, 43.06]],
                    ],
                },
            }
        ],
    }
    (tmp_path / "madison.geojson").write_text(json.dumps(area))
    f = tmp_path / "fleet.yaml"
    f.write_text(GOOD + "service_area:\n  geojson: madison.geojson\n")
    region = load_profile(f).service_area
    assert region is not None
    assert region.contains(43.0, -89.5) and region.contains(42.9, -89.4)  # inside, and on the edge
    assert not region.contains(43.07, -89.40)  # in the hole
    assert not region.contains(44.0, -89.4)


def test_profiles__a_pledge_without_asset_timezone_takes_the_profile_zone(tmp_path: Path) -> None:
    from monitor.schemas import CollateralPledged

    f = tmp_path / "madison_fleet.yaml"
    f.write_text(GOOD + "timezone: America/Chicago\n")
    base = {
        "event_id": "p",
        "loan_id": "L",
        "effective_at": "2025-09-24T17:45:00-05:00",
        "type": "collateral_pledged",
        "asset_id": "a",
        "asset_profile": str(f),
        "appraisal": {"value": 1.0, "appraised_on": "2025-09-22", "appraiser": "x"},
        "pledge_registration_no": "R",
    }

    def pledge(**kw: str) -> CollateralPledged:
        return CollateralPledged.model_validate_json(json.dumps({**base, **kw}))

    assert pledge().asset_timezone == "America/Chicago"
    assert pledge(asset_timezone="Asia/Shanghai").asset_timezone == "Asia/Shanghai"  # the pledge's own zone wins
    assert pledge(asset_profile="bus_dispatch").asset_timezone == "Asia/Shanghai"  # no zone in the profile
