"""One telemetry record in, its effects out (:func:`monitor.core.apply_telemetry_record`, issue 18).

The worker makes this one call per telemetry record; what it returns is everything the record did.
Each refusal comes back as a dead letter under the record's origin, with the observation's index
for a batch; the clock moves only with the observations the core took.
"""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest

from monitor.core import Monitor, Provenance, apply_telemetry_record
from monitor.schemas import DeadLetter, TelemetryEvent
from tests.conftest import T0, make_event, make_loan, make_pledge

#: ``(now, max_skew_s, earliest, max_bytes)``: a wall clock well after the test's event times
LIMITS = (T0.timestamp() + 86_400.0, 300.0, 0.0, 1_048_576)
ORIGIN = Provenance("it.telemetry", 2, 41)


def _pledged(rulebook) -> Monitor:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook)
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    return mon


def _batch(*events: TelemetryEvent) -> bytes:
    obs = b",".join(e.model_dump_json().encode() for e in events)
    return b'{"schema_version":1,"asset_id":"A1","observations":[' + obs + b"]}"


def _dead(fx) -> list[DeadLetter]:  # type: ignore[no-untyped-def]
    return [o.message for o in fx.outputs if o.topic == "dead-letter"]


def test_a_batch_is_applied_and_its_refused_observations_are_dead_lettered_with_their_index(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _pledged(rulebook)
    ok1 = make_event(event_id="b0", attributes={"trip_id": "t1"})
    later = T0 + dt.timedelta(minutes=2)
    ok2 = make_event(event_id="b2", observed_at=later, received_at=later, attributes={"trip_id": "t2"})
    ratio = make_event(event_id="b1", metrics={"trips": 0.0, "on_time_trips": 0.0})  # the core refuses it
    raw = _batch(ok1, ratio, ok2)
    loaded: list[str] = []
    fx = apply_telemetry_record(mon.asset_book, raw, ORIGIN, "A1", LIMITS, load=loaded.append)
    assert loaded == ["A1"] and fx.asset_id == "A1"
    assert fx.newest == later.timestamp()  # the newest observation the core took
    assert {"b0", "b2"} <= set(mon.assets["A1"].seen) and "b1" not in mon.assets["A1"].seen
    [dl] = _dead(fx)
    assert (dl.reason, dl.source_topic, dl.partition, dl.offset, dl.key, dl.observation_index) == (
        "undefined_ratio",
        "it.telemetry",
        2,
        41,
        "A1",
        1,
    )
    assert orjson.loads(base64.b64decode(dl.original_b64))["event_id"] == "b1"  # the observation's own JSON


def test_an_observation_the_decoder_refuses_is_dead_lettered_and_the_others_are_applied(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _pledged(rulebook)
    raw = _batch(make_event(event_id="n0"), make_event(event_id="n1", attributes={"trip_id": "t9"}))
    raw = raw.replace(b'"event_id":"n0"', b'"event_id":"n0","passanger_count":3', 1)  # a typo (C16)
    fx = apply_telemetry_record(mon.asset_book, raw, ORIGIN, "A1", LIMITS)
    assert [(d.reason, d.observation_index) for d in _dead(fx)] == [("extra_field", 0)]
    assert "n1" in mon.assets["A1"].seen and fx.newest is not None


def test_a_single_record_the_core_refuses_is_dead_lettered_whole_and_moves_no_clock(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _pledged(rulebook)
    raw = make_event(event_id="s1", metrics={"trips": 0.0, "on_time_trips": 0.0}).model_dump_json().encode()
    fx = apply_telemetry_record(mon.asset_book, raw, ORIGIN, "A1", LIMITS)
    [dl] = _dead(fx)
    assert (dl.reason, dl.observation_index, base64.b64decode(dl.original_b64)) == ("undefined_ratio", None, raw)
    assert fx.asset_id == "A1" and fx.newest is None  # named the asset, took nothing


def test_a_record_that_cannot_be_used_as_a_whole_names_no_asset(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _pledged(rulebook)
    for raw, reason in ((None, "tombstone"), (b"{not json", "undecodable"), (b"[1]", "not_an_object")):
        fx = apply_telemetry_record(mon.asset_book, raw, ORIGIN, None, LIMITS)
        assert [(d.reason, d.offset, d.key) for d in _dead(fx)] == [(reason, 41, None)]
        assert (fx.asset_id, fx.newest) == (None, None)


def test_the_step_and_the_in_process_router_leave_the_same_state(rulebook) -> None:  # type: ignore[no-untyped-def]
    """The worker's step and the backtest's per-observation path apply a record alike."""
    events = [
        make_event(
            event_id=f"e{i}",
            observed_at=T0 + dt.timedelta(minutes=3 * i),
            received_at=T0 + dt.timedelta(minutes=3 * i),
            attributes={"trip_id": f"t{i}"},
        )
        for i in range(12)
    ]
    stepped, routed = _pledged(rulebook), _pledged(rulebook)
    outs = []
    for i in range(0, 12, 4):
        fx = apply_telemetry_record(stepped.asset_book, _batch(*events[i : i + 4]), ORIGIN, "A1", LIMITS, tick=True)
        outs += [o.message for o in fx.outputs]
    routed_outs = [o.message for ev in events for o in routed.asset_book.on_telemetry(ev)]
    assert [v.window_start for v in outs] == [v.window_start for v in routed_outs] and outs
    a, b = stepped.assets["A1"], routed.assets["A1"]
    assert (a.seen, a.closed_until, a.max_ts) == (b.seen, b.closed_until, b.max_ts)


def test_record_sources_are_the_provenance_list_the_step_built_before() -> None:
    # the lazy sequence (issue 18: no tuple per observation on the common path) must equal, item by item,
    # [Provenance(topic, partition, offset, i if batch else None) for i in indices]
    from monitor.core.step import RecordSources

    for indices, batch in (([0, 1, 3, 4], True), (range(5), True), (range(1), False), ([], True)):
        lazy = RecordSources(ORIGIN, indices, batch)
        eager = [Provenance(ORIGIN.topic, ORIGIN.partition, ORIGIN.offset, i if batch else None) for i in indices]
        assert len(lazy) == len(eager) and list(lazy) == eager and lazy[1:3] == eager[1:3]
        if eager:
            assert lazy[-1] == eager[-1]
        with pytest.raises(IndexError):
            lazy[len(eager)]


def test_a_held_observation_of_a_batch_keeps_its_index_in_the_record(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook)
    mon.on_loan_event(make_loan())  # no pledge yet: the asset's observations are held with their origin
    raw = _batch(make_event(event_id="h0"), make_event(event_id="h1", attributes={"trip_id": "t2"}))
    raw = raw.replace(b'"event_id":"h0"', b'"event_id":"h0","passanger_count":3', 1)  # refused by the decoder
    fx = apply_telemetry_record(mon.asset_book, raw, ORIGIN, "A1", LIMITS)
    assert [(d.reason, d.observation_index) for d in _dead(fx)] == [("extra_field", 0)]
    [(ev, source)] = mon.asset_book.held["A1"]
    assert ev.event_id == "h1" and source == Provenance(ORIGIN.topic, 2, 41, 1)
