"""The load generator (``pledgewatch simulate``): seeded, strictly valid, shaped by the Auckland sample."""

from __future__ import annotations

import statistics

import orjson
import pytest

from monitor.backtest import run_backtest
from monitor.core import decode_loan_event, decode_telemetry
from monitor.errors import ConfigError
from monitor.incidents import parse_incident
from monitor.schemas import CollateralPledged, LoanOpened
from monitor.simulate import Fleet, load_fleet_sample
from rules.rulebook import load_rulebook
from tests.conftest import ROOT

NOW = 2e9


@pytest.fixture(scope="module")
def sample():  # type: ignore[no-untyped-def]
    return load_fleet_sample()


def test_same_seed_same_bytes_other_seed_other_bytes(sample) -> None:  # type: ignore[no-untyped-def]
    a = list(Fleet(3, 4, seed=5, sample=sample).records(2_000))
    assert a == list(Fleet(3, 4, seed=5, sample=sample).records(2_000))
    assert a != list(Fleet(3, 4, seed=6, sample=sample).records(2_000))


def test_every_record_decodes_strictly_in_event_time_order_keyed_by_asset(sample) -> None:  # type: ignore[no-untyped-def]
    recs = list(Fleet(4, 10, sample=sample).records(5_000))
    assert len(recs) == 5_000
    times = [t for _, _, t in recs]
    assert times == sorted(times)
    kinds = set()
    for key, value, ts in recs:
        ev = decode_telemetry(value, NOW)
        assert ev.asset_id.encode() == key
        assert abs(ev.observed_at.timestamp() - ts) < 1e-3
        kinds.add(ev.kind)
    assert kinds == {"trip_update", "trip_completed", "feed_poll"}
    ids = [orjson.loads(v)["event_id"] for _, v, _ in recs]
    assert len(set(ids)) == len(ids)  # no accidental duplicates


def test_cadence_follows_the_sample(sample) -> None:  # type: ignore[no-untyped-def]
    """The gap between a trip's updates is drawn from the sample: same median within 10 %."""
    last: dict[str, float] = {}
    gaps = []
    for _, value, ts in Fleet(2, 20, sample=sample).records(20_000):
        rec = orjson.loads(value)
        if rec["kind"] == "trip_update":
            trip = rec["attributes"]["trip_id"]
            if trip in last:
                gaps.append(ts - last[trip])
            last[trip] = ts
    assert statistics.median(gaps) == pytest.approx(statistics.median(sample.gaps_s), rel=0.1)


def test_loan_book_opens_each_loan_at_the_opening_coverage(sample) -> None:  # type: ignore[no-untyped-def]
    book = [decode_loan_event(raw, NOW) for raw in Fleet(3, 5, sample=sample).loan_book(8_000_000.0)]
    opened = [e for e in book if isinstance(e, LoanOpened)]
    pledged = [e for e in book if isinstance(e, CollateralPledged)]
    assert len(opened) == len(pledged) == 3
    assert opened[0].outstanding == pytest.approx(8_000_000.0 / 1.6)
    assert pledged[0].asset_id == "sim-0000"


def test_an_outage_silences_the_asset_and_fires_its_alerts_only(sample) -> None:  # type: ignore[no-untyped-def]
    fleet = Fleet(3, 20, sample=sample, incidents=[parse_incident("outage:sim-0001@2h")])
    recs = list(fleet.records(60_000))
    start = fleet.start
    assert not [t for k, _, t in recs if k == b"sim-0001" and t >= start + 7200]
    assert [t for k, _, t in recs if k == b"sim-0002" and t >= start + 7200]
    res = run_backtest(fleet.loan_book(), [v for _, v, _ in recs], load_rulebook(ROOT / "rules/rulebooks/default.yaml"))
    firing = {a.loan_id for a in res.alerts if a.status == "firing"}
    assert firing == {"SIM-L0001"}


def test_a_cut_stops_its_trips_while_the_collector_keeps_polling_and_calls_margin_on_that_loan_only(sample) -> None:  # type: ignore[no-untyped-def]
    """``cut:sim-0001@2h:0.8``: the records left are those of the run without it, byte for byte, less the
    reports of the trips the cut stops (the ones :func:`trip_is_cut` chooses, as a replay would) from 2 h
    on; the asset's heartbeats keep coming; the valuation sees the collapse and only SIM-L0001 gets a
    margin call (an outage of the same length is still inside the 12-h silence grace and gets none)."""
    from monitor.incidents import trip_is_cut

    plain = list(Fleet(3, 20, sample=sample).records(60_000))
    fleet = Fleet(3, 20, sample=sample, incidents=[parse_incident("cut:sim-0001@2h:0.8")])
    recs = list(fleet.records(60_000))
    start = fleet.start
    cut_ids = set()
    for key, value, ts in plain:
        rec = orjson.loads(value)
        trip = rec.get("attributes", {}).get("trip_id")
        if key == b"sim-0001" and ts >= start + 7200 and trip is not None and trip_is_cut(trip, 0.8):
            cut_ids.add(rec["event_id"])
    assert len(cut_ids) > 1_000
    kept = [r for r in plain if b"feed_poll" not in r[1] and orjson.loads(r[1])["event_id"] not in cut_ids]
    trips = [r for r in recs if b"feed_poll" not in r[1]]  # heartbeats count the buses that reported: fewer
    assert trips[: len(kept) - 2_000] == kept[: len(kept) - 2_000]  # the tail differs: the limit counts records
    polls = [orjson.loads(v) for k, v, t in recs if k == b"sim-0001" and t >= start + 7200 and b"feed_poll" in v]
    before = [orjson.loads(v) for k, v, t in recs if k == b"sim-0001" and t < start + 7200 and b"feed_poll" in v]
    ratio = statistics.mean(p["metrics"]["entities"] for p in polls) / statistics.mean(
        p["metrics"]["entities"] for p in before[len(before) // 2 :]
    )
    assert len(polls) > 60 and 0.1 < ratio < 0.3, ratio  # about a fifth of the buses still report
    res = run_backtest(fleet.loan_book(), [v for _, v, _ in recs], load_rulebook(ROOT / "rules/rulebooks/default.yaml"))
    assert {c.loan_id for c in res.margin_calls} == {"SIM-L0001"}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"assets": 0, "vehicles": 5}, "expected at least 1 × 1"),
        ({"assets": 2, "vehicles": 5, "incidents": [parse_incident("freeze:sim-0000@1h")]}, "expected outage or cut"),
        ({"assets": 2, "vehicles": 5, "incidents": [parse_incident("outage:sim-0009@1h")]}, "sim-0009"),
        ({"assets": 4, "vehicles": 1, "incidents": [parse_incident("cut:G-007@1h")]}, "no group without --groups"),
        ({"assets": 4, "vehicles": 1, "groups": 2, "incidents": [parse_incident("cut:G-007@1h")]}, "G-000 … G-001"),
    ],
)
def test_bad_fleet_is_one_clear_error(sample, kwargs, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=needle):
        Fleet(sample=sample, **kwargs)
