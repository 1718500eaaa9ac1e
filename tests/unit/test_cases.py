"""Field failure cases of ../shared/cases/CASES.md, in the core (broker versions in tests/integration)."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from monitor.backtest import run_backtest
from monitor.core import CoreParams, Monitor, decode_telemetry
from monitor.errors import InputRejected
from monitor.schemas import CollateralValuation
from monitor.sensors import CountingSensor
from tests.conftest import T0, healthy_window_events, make_event, make_loan, make_pledge

W = dt.timedelta(minutes=15)
NOW = (T0 + dt.timedelta(days=1)).timestamp()


def loan_book() -> list[bytes]:
    return [make_loan().model_dump_json().encode(), make_pledge().model_dump_json().encode()]


def windows(n: int, start: int = 0, prefix: str = "h") -> list[bytes]:
    return [
        e.model_dump_json().encode()
        for i in range(start, start + n)
        for e in healthy_window_events("A1", T0 + i * W, prefix=prefix)
    ]


def test_case_c02_duplicate_event_counts_once_and_is_learned_once(rulebook) -> None:  # type: ignore[no-untyped-def]
    e9001 = make_event(
        event_id="e-9001",
        observed_at=T0 + 3 * W + dt.timedelta(minutes=5),
        received_at=T0 + 3 * W + dt.timedelta(minutes=5),
    )
    base = windows(8)
    once = run_backtest(loan_book(), [*base[:40], e9001.model_dump_json().encode(), *base[40:]], rulebook, now=NOW)
    twice = run_backtest(loan_book(), base[:40] + [e9001.model_dump_json().encode()] * 2 + base[40:], rulebook, now=NOW)
    w3 = next(v for v in twice.valuations if v.window_start == T0 + 3 * W)
    w3_once = next(v for v in once.valuations if v.window_start == T0 + 3 * W)
    assert w3.activity == w3_once.activity == 11.0  # 10 healthy trips + e-9001, once
    assert w3.duplicates == 1
    assert twice.sensor.events[("pledge.telemetry", "duplicate")] == 1
    strip = lambda v: v.model_dump(exclude={"duplicates"})  # noqa: E731
    assert [strip(v) for v in twice.valuations] == [strip(v) for v in once.valuations]
    assert len(twice.margin_calls) == len(once.margin_calls)


def test_case_c03_bad_records_are_dead_lettered_and_the_good_one_processed(rulebook) -> None:  # type: ignore[no-untyped-def]
    good = make_event(event_id="good-1", observed_at=T0 + dt.timedelta(minutes=1))
    bad = [
        b"\xff\xfe not json",
        orjson.dumps({**orjson.loads(good.model_dump_json()), "event_id": "b", "metrics": {"trips": "forty"}}),
        None,
        orjson.dumps(
            {**orjson.loads(good.model_dump_json()), "event_id": "d", "metrics": {"trips": 0.0, "on_time_trips": 0.0}}
        ),
    ]
    later = windows(3, start=1)  # later windows move the clock so window 0 closes
    res = run_backtest(loan_book(), [*bad, good.model_dump_json().encode(), *later], rulebook, now=NOW)
    assert dict(res.sensor.dead_letters) == {
        "undecodable": 1,
        "schema_violation": 1,
        "tombstone": 1,
        "undefined_ratio": 1,
    }
    assert res.sensor.events[("pledge.telemetry", "invalid")] == 4
    assert res.sensor.events[("pledge.telemetry", "ok")] == 1 + len(later)
    assert res.valuations[0].window_start == T0 and res.valuations[0].activity == 1.0


def test_case_c09_nan_and_inf_never_reach_a_model(rulebook) -> None:  # type: ignore[no-untyped-def]
    poison = (
        b'{"event_id":"p1","asset_id":"A1","observed_at":"2024-03-04T00:20:00Z","kind":"vehicle_position",'
        b'"metrics":{"on_time_ratio":"NaN","passengers":1e309}}'
    )
    with pytest.raises(InputRejected):
        decode_telemetry(poison, NOW)
    head = b'{"event_id":"p1","asset_id":"A1","observed_at":"2024-03-04T00:20:00Z","kind":"vehicle_position","metrics":'
    for metrics, reason in [
        (b'{"on_time_ratio":"NaN"}', "schema_violation"),  # a string is not a number, whatever it says
        (b'{"passengers":1e309}', "non_finite"),  # each on its own, so neither hides behind the other
        (b'{"passengers":NaN}', "non_finite"),  # the bare token a careless producer writes
    ]:
        with pytest.raises(InputRejected) as info:
            decode_telemetry(head + metrics + b"}", NOW)
        assert info.value.reason == reason, metrics
    clean = run_backtest(loan_book(), windows(6), rulebook, now=NOW)
    dirty = run_backtest(loan_book(), windows(1) + [poison] * 5 + windows(5, start=1), rulebook, now=NOW)
    assert [v.model_dump() for v in dirty.valuations] == [v.model_dump() for v in clean.valuations]
    assert dict(dirty.sensor.dead_letters) == {"non_finite": 5}
    probe = {"activity_ratio": 1.0, "mean_delay_s": 60.0, "late_share": 0.1, "updates_per_poll": 20.0}
    mon_a, mon_b = Monitor(rulebook, CoreParams()), Monitor(rulebook, CoreParams())
    for mon, data in ((mon_a, windows(6)), (mon_b, windows(1) + [poison] * 5 + windows(5, start=1))):
        for raw in loan_book():
            from monitor.core import decode_loan_event

            mon.on_loan_event(decode_loan_event(raw))
        for raw in data:
            try:
                mon.on_telemetry(decode_telemetry(raw, NOW))
            except InputRejected:
                pass
    score = lambda m: m.assets["A1"].valuer._hst.score_one(m.assets["A1"].valuer._scaler.transform_one(probe))  # noqa: E731
    assert score(mon_a) == score(mon_b)
    for v in dirty.valuations:
        assert CollateralValuation.model_validate_json(v.model_dump_json()) == v


@pytest.mark.parametrize("value", [1733900000, 1733900000000, 1733900000000000])
def test_case_c15_integer_epochs_are_never_guessed(value: int) -> None:
    raw = orjson.dumps(
        {"event_id": "e", "asset_id": "A1", "observed_at": value, "kind": "trip_completed", "metrics": {"trips": 1}}
    )
    with pytest.raises(InputRejected) as info:
        decode_telemetry(raw, NOW)
    assert info.value.reason == "schema_violation"


def test_case_c15_times_outside_the_plausible_window_and_aware_utc_storage() -> None:
    for t, ok in [
        ("2014-12-31T23:00:00Z", False),
        ("2024-03-05T00:10:00Z", False),
        ("2024-03-04T09:00:00+08:00", True),
    ]:
        raw = orjson.dumps(
            {"event_id": "e", "asset_id": "A1", "observed_at": t, "kind": "trip_completed", "metrics": {"trips": 1}}
        )
        if ok:
            ev = decode_telemetry(raw, NOW)
            assert ev.observed_at.utcoffset() == dt.timedelta(0)  # stored as UTC, not just aware
            assert ev.observed_at == dt.datetime(2024, 3, 4, 1, tzinfo=dt.UTC)
            assert orjson.loads(ev.model_dump_json())["observed_at"].endswith("Z")
        else:
            with pytest.raises(InputRejected) as info:
                decode_telemetry(raw, NOW)
            assert info.value.reason == "implausible_time"


def test_case_c16_misspelled_field_or_unknown_metric_is_rejected_and_changes_no_valuation(rulebook) -> None:  # type: ignore[no-untyped-def]
    typo = orjson.dumps({**orjson.loads(make_event(event_id="t1").model_dump_json()), "passanger_count": 0})
    unknown = (
        make_event(
            event_id="t2", kind="boarding", metrics={"passanger_count": 0.0}, observed_at=T0 + dt.timedelta(minutes=2)
        )
        .model_dump_json()
        .encode()
    )
    clean = run_backtest(loan_book(), windows(6), rulebook, now=NOW)
    dirty = run_backtest(loan_book(), windows(1) + [typo, unknown] * 20 + windows(5, start=1), rulebook, now=NOW)
    assert dirty.sensor.dead_letters == {"extra_field": 20, "unknown_metric": 20}
    assert [v.model_dump() for v in dirty.valuations] == [v.model_dump() for v in clean.valuations]
    assert not dirty.alerts and not dirty.margin_calls


def test_sensor_counts_are_per_outcome() -> None:
    s = CountingSensor()
    s.on_event("t", "ok")
    s.on_event("t", "ok")
    assert s.events[("t", "ok")] == 2


@pytest.mark.parametrize("value", ["1733900000", "1733900000000", "1733900000.5", "2024-W10-1T08:00Z"])
def test_case_c15_digit_strings_and_odd_formats_are_never_guessed(value: str) -> None:
    raw = orjson.dumps({"event_id": "e", "asset_id": "A1", "observed_at": value, "kind": "trip_completed"})
    with pytest.raises(InputRejected) as info:
        decode_telemetry(raw, NOW)
    assert info.value.reason == "schema_violation" and "RFC 3339" in info.value.message


def test_case_c15_received_at_and_loan_effective_at_are_range_checked() -> None:
    from monitor.core import decode_loan_event

    raw = orjson.dumps(
        {
            "event_id": "e",
            "asset_id": "A1",
            "observed_at": "2024-03-04T00:00:00Z",
            "received_at": "2099-01-01T00:00:00Z",
            "kind": "trip_completed",
        }
    )
    with pytest.raises(InputRejected, match="received_at"):
        decode_telemetry(raw, NOW)
    future = make_loan(effective_at=dt.datetime(2099, 1, 1, tzinfo=dt.UTC)).model_dump_json().encode()
    with pytest.raises(InputRejected) as info:
        decode_loan_event(future, NOW)
    assert info.value.reason == "implausible_time"


def test_case_c16_misspelled_profile_or_required_field_is_rejected_at_the_door() -> None:
    from monitor.core import decode_loan_event

    pledge = orjson.loads(make_pledge().model_dump_json())
    with pytest.raises(InputRejected, match="asset_profile"):
        decode_loan_event(orjson.dumps({**pledge, "asset_profile": "bus_dispatc"}))
    body = orjson.loads(make_event().model_dump_json())
    body["knd"] = body.pop("kind")
    with pytest.raises(InputRejected) as info:
        decode_telemetry(orjson.dumps(body), NOW)
    assert info.value.reason == "extra_field"


def test_case_c09_amounts_are_bounded_so_sums_stay_finite() -> None:
    from monitor.core import decode_loan_event

    with pytest.raises(InputRejected):
        decode_loan_event(
            orjson.dumps(
                {
                    "event_id": "i",
                    "loan_id": "L1",
                    "effective_at": "2024-03-04T00:00:00Z",
                    "type": "interest_accrued",
                    "amount": 1.7e308,
                }
            )
        )


def test_case_c02_same_id_other_content_is_a_contradiction_even_after_its_window_closed(rulebook) -> None:  # type: ignore[no-untyped-def]
    original = make_event(event_id="e-9001", observed_at=T0 + 3 * W + dt.timedelta(minutes=5))
    forged = make_event(event_id="e-9001", observed_at=T0 + 3 * W + dt.timedelta(minutes=5), metrics={"trips": 3.0})
    data = [*windows(4), original.model_dump_json().encode(), *windows(3, start=4)]
    data += [forged.model_dump_json().encode(), *windows(3, start=7)]
    res = run_backtest(loan_book(), data, rulebook, now=NOW)
    assert min(v.window_quality["consistency"] or 1.0 for v in res.valuations) < 1.0
    assert sum(v.duplicates for v in res.valuations) == 1


def test_case_c02_loan_event_replayed_with_other_content_is_dead_lettered(rulebook) -> None:  # type: ignore[no-untyped-def]
    other = make_loan(thresholds=make_loan().thresholds.model_copy(update={"warning": 1.5}))
    res = run_backtest(
        [*loan_book(), make_loan().model_dump_json().encode(), other.model_dump_json().encode()], [], rulebook, now=NOW
    )
    assert res.sensor.dead_letters == {"conflicting_duplicate": 1}
    assert res.sensor.events[("pledge.loan-book", "duplicate")] == 1


def test_case_c03_telemetry_before_its_pledge_is_held_and_bounded_in_total(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook, CoreParams(hold_unknown=5))
    for i in range(5):
        assert mon.on_telemetry(make_event(event_id=f"x{i}", asset_id=f"NEW{i}")) == []
    with pytest.raises(InputRejected) as info:
        mon.on_telemetry(make_event(event_id="x9", asset_id="NEW9"))
    assert info.value.reason == "unknown_asset"


def test_case_c03_a_held_record_is_counted_once_when_its_pledge_arrives(rulebook) -> None:  # type: ignore[no-untyped-def]
    """Found by the ingress fuzz on the real worker: a held record was counted "held" and again "ok".
    Each record is counted once, by what happened when it came; the feed's own duplicate too."""
    from monitor.sensors import CountingSensor

    sensor = CountingSensor()
    mon = Monitor(rulebook, sensor=sensor)
    mon.on_loan_event(make_loan())
    assert mon.on_telemetry(make_event(event_id="early", asset_id="A1")) == []
    assert mon.on_telemetry(make_event(event_id="early", asset_id="A1")) == []  # the feed sends it twice
    mon.on_loan_event(make_pledge(asset_id="A1"))
    assert {o: n for (topic, o), n in sensor.events.items() if topic == "pledge.telemetry"} == {"held": 2}
    assert mon.assets["A1"].seen.get("early") is not None  # and it did reach the asset when replayed


def test_case_c18_impossible_readings_lower_accuracy_stay_out_of_activity_and_never_become_the_position(
    rulebook,
) -> None:  # type: ignore[no-untyped-def]
    """C18: (0,0), a swapped lat/lon, a position outside the service area, passengers -3 and 65533."""
    import datetime as dt

    from monitor.core import Monitor
    from monitor.schemas import ServiceArea
    from tests.conftest import T0, healthy_window_events, make_loan, make_pledge

    berlin = ServiceArea(min_lat=52.3, max_lat=52.7, min_lon=13.0, max_lon=13.8)
    w = dt.timedelta(minutes=15)
    t = T0 + 8 * w + dt.timedelta(minutes=5)

    def position(i: int, **metrics: float) -> object:
        return make_event(
            event_id=f"vp-{i}",
            kind="vehicle_position",
            entity_id="bus-7",
            observed_at=t + dt.timedelta(seconds=8 * i),
            received_at=t + dt.timedelta(seconds=8 * i + 1),
            metrics=metrics,
            attributes={},
        )

    good = [position(0, lat=52.52, lon=13.40, passengers=30.0), position(2, lat=52.53, lon=13.41, passengers=31.0)]
    bad = {
        "zero position": position(1, lat=0.0, lon=0.0, passengers=30.0),
        "swapped lat/lon": position(3, lat=13.40, lon=52.52, passengers=30.0),
        "outside the service area": position(4, lat=48.14, lon=11.58, passengers=30.0),
        "passengers -3": position(5, lat=52.52, lon=13.40, passengers=-3.0),
        "passengers 65533": position(6, lat=52.52, lon=13.40, passengers=65533.0),
    }

    def run(extra: list) -> tuple:  # type: ignore[type-arg]
        mon = Monitor(rulebook)
        positions.clear()
        mon.on_loan_event(make_loan())
        mon.on_loan_event(make_pledge(service_area=berlin))
        out = []
        for i in range(12):
            evs = healthy_window_events("A1", T0 + i * w)
            if i == 8:
                evs = sorted([*evs, *good[:1], *extra, *good[1:]], key=lambda e: e.observed_at)
            for ev in evs:
                out += mon.on_telemetry(ev)
                positions.append(mon.assets["A1"].last_position)
        (v8,) = [o.message for o in out if o.topic == "valuations" and o.message.window_start == T0 + 8 * w]
        return mon, out, v8

    positions: list = []  # type: ignore[type-arg]

    def features(m: Monitor) -> dict:  # type: ignore[type-arg]
        """The model features of window 8 (from the replay history the asset keeps)."""
        return next(h[3] for h in m.assets["A1"].history if h[0] == (T0 + 8 * w).timestamp())

    clean_mon, _, clean = run([])
    assert clean.quality["accuracy"] == 1.0
    single = []
    for name, ev in bad.items():
        mon, out, v8 = run([ev])
        single.append(v8.quality["accuracy"])
        assert v8.quality["accuracy"] < clean.quality["accuracy"], name  # lowers the window's accuracy
        assert v8.activity == clean.activity, name  # left out of activity
        assert not [o for o in out if o.topic == "margin-calls"], name  # none alone makes a margin call
        assert mon.assets["A1"].last_position == (52.53, 13.41), name  # never becomes (0, 0) or the bad one
        assert set(positions) <= {None, (52.52, 13.40), (52.53, 13.41)}, name  # not even for one record
        assert features(mon) == features(clean_mon), name  # left out of the model features
    mon, out, v8 = run(list(bad.values()))
    assert v8.quality["accuracy"] < min(single)  # five of them lower it more than any one
    assert v8.activity == clean.activity
    assert mon.assets["A1"].last_position == (52.53, 13.41)


def test_case_c03_loan_event_of_a_loan_never_opened_is_rejected_as_unknown_loan(rulebook) -> None:  # type: ignore[no-untyped-def]
    from monitor.core import Monitor
    from monitor.schemas import Repayment

    mon = Monitor(rulebook)
    with pytest.raises(InputRejected) as info:
        mon.on_loan_event(Repayment(event_id="r1", loan_id="L-NONE", effective_at=T0, amount=1.0))
    assert info.value.reason == "unknown_loan" and "L-NONE" in str(info.value)
