"""The per-record path (:meth:`AssetBook.on_record`, issue 18) gives what applying one by one gives.

:func:`monitor.core.apply_telemetry_record` applies a record's observations in one call per record
(the asset looked up once, the events metric counted once per outcome). Here every record goes both
ways: through it, and through the step as it was before, decoding and then calling
:meth:`AssetBook.on_telemetry` per observation. Outputs (valuations, alerts, dead letters with their
indices), metric counts and the final state of the book must be the same, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import itertools
import pickle
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.backtest import load_loan_book
from monitor.core import Monitor, Provenance, apply_telemetry_record, decode_loan_event
from monitor.core.assets import AssetBook, AssetMonitor
from monitor.core.common import Output
from monitor.core.decode import RejectedObservation, dead_letter, decode_telemetry_record, is_batch, telemetry_records
from monitor.core.step import RecordEffects
from monitor.errors import InputRejected
from monitor.incidents import parse_incident
from monitor.sensors import CountingSensor
from monitor.simulate import Fleet
from tests.conftest import BOOK, T0, make_event, make_loan, make_pledge, sample_telemetry

NOW = 2.0e9
LIMITS = (NOW, 300.0, 0.0, 1_048_576)


def _one_by_one(book: AssetBook, raw: bytes | None, origin: Provenance, key: str | None, tick: bool) -> RecordEffects:
    """The step before the per-record path: decode, then :meth:`AssetBook.on_telemetry` per observation."""
    outputs: list[Output] = []

    def refuse(exc: InputRejected, observation: RejectedObservation | None = None) -> None:
        data, index = (raw, None) if observation is None else (observation.raw, observation.index)
        dl = dead_letter(
            data, exc, topic=origin.topic, partition=origin.partition, offset=origin.offset, key=key, now=NOW,
            observation_index=index,
        )  # fmt: skip
        outputs.append(Output("dead-letter", key or "", dl))

    try:
        observations, rejected = decode_telemetry_record(raw, *LIMITS)
    except InputRejected as exc:
        book.on_reject(exc)
        refuse(exc)
        return RecordEffects(outputs, None, None)
    for bad in rejected:
        book.on_reject(bad.error)
    batch = is_batch(raw)
    asset_id = observations[0].asset_id if observations else None
    newest: float | None = None
    refused = {bad.index for bad in rejected}
    indices = [i for i in range(len(observations) + len(refused)) if i not in refused]
    for index, ev in zip(indices, observations, strict=True):
        source = Provenance(origin.topic, origin.partition, origin.offset, index if batch else None)
        try:
            outputs += book.on_telemetry(ev, tick=tick, source=source)
        except InputRejected as exc:
            book.on_reject(exc)
            if batch:
                rejected.append(RejectedObservation(index, ev.model_dump_json().encode(), exc))
            else:
                refuse(exc)
            continue
        ts = ev.observed_at.timestamp()
        newest = ts if newest is None or ts > newest else newest
    for bad in rejected:
        refuse(bad.error, bad)
    return RecordEffects(outputs, asset_id, newest)


def _outputs(outputs: list[Output]) -> list[tuple[str, str, str]]:
    return [(o.topic, o.key, o.message.model_dump_json()) for o in outputs]


def _state(mon: Monitor) -> dict[str, Any]:
    book = mon.asset_book
    assets = {}
    for asset_id, asset in book.assets.items():
        state = asset.__getstate__()
        state.pop("params")
        assets[asset_id] = pickle.dumps(state)
    held = {a: [(e.model_dump_json(), s) for e, s in items] for a, items in book.held.items()}
    sensor = mon.sensor
    assert isinstance(sensor, CountingSensor)
    return {
        "clock": book.clock,
        "next_tick": book._next_tick,
        "held": held,
        "assets": assets,
        "events": dict(sensor.events),
        "dead_letters": dict(sensor.dead_letters),
        "alerts": dict(sensor.alerts),
        "loans": sorted(mon.loans),
    }


def _run(loan_events: list[Any], records: list[tuple[str | None, bytes | None]], per_record: bool, tick: bool) -> Any:
    """Every record through one path; the driver ticks as the worker does when ``tick`` is False."""
    mon = Monitor(_RULEBOOK, sensor=CountingSensor())
    for ev in loan_events:
        mon.on_loan_event(ev)
    book = mon.asset_book
    seen: list[Any] = []
    for offset, (key, raw) in enumerate(records):
        origin = Provenance("pledge.telemetry", 0, offset)
        if per_record:
            fx = apply_telemetry_record(book, raw, origin, key, LIMITS, tick=tick)
        else:
            fx = _one_by_one(book, raw, origin, key, tick)
        seen.append((_outputs(fx.outputs), fx.asset_id, fx.newest))
        mon._route(fx.outputs)
        if not tick and fx.newest is not None and book.tick_due(fx.newest):
            routed = mon._route(book.tick(fx.newest))
            seen.append((_outputs(routed), None, None))
    seen.append((_outputs(mon._route(mon.flush(book.clock or 0.0))), None, None))
    return seen, _state(mon)


def _same(loan_events: list[Any], records: list[tuple[str | None, bytes | None]], tick: bool = False) -> Any:
    new = _run(loan_events, records, per_record=True, tick=tick)
    old = _run(loan_events, records, per_record=False, tick=tick)
    assert new[0] == old[0]
    assert new[1] == old[1]
    return new


def _rulebook() -> Any:
    from rules.rulebook import load_rulebook
    from tests.conftest import ROOT

    return load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")


_RULEBOOK = _rulebook()


def test_simulated_fleet_with_an_outage_is_the_same_per_record_and_one_by_one() -> None:
    fleet = Fleet(4, 12, seed=7, incidents=[parse_incident("outage:sim-0001@2h+1h")])
    loans = [decode_loan_event(raw) for raw in fleet.loan_book()]
    records = [(key.decode(), value) for key, value, _ in fleet.polls(12_000)]
    assert any(b'"observations"' in v for _, v in records)
    seen, _ = _same(loans, records)
    assert sum(1 for step in seen for o in step[0] if o[0] == "valuations") > 10


def test_the_auckland_sample_in_poll_records_is_the_same_per_record_and_one_by_one() -> None:
    loans = [decode_loan_event(raw) for raw in load_loan_book(BOOK)]
    events = list(sample_telemetry())[:20_000]
    records = [(key, value) for key, value, _ in telemetry_records(events)]
    assert len(records) < len(events)
    seen, _ = _same(loans, records, tick=True)
    assert any(o[0] == "valuations" for step in seen for o in step[0])


def _ev(event_id: str, minutes: float, **kw: Any) -> dict[str, Any]:
    t = T0 + dt.timedelta(minutes=minutes)
    ev = make_event(event_id=event_id, observed_at=t, received_at=t, attributes={"trip_id": event_id}, **kw)
    return orjson.loads(ev.model_dump_json())


def _batch(asset: str, *obs: dict[str, Any]) -> tuple[str, bytes]:
    return asset, orjson.dumps({"schema_version": 1, "asset_id": asset, "observations": list(obs)})


def _single(ob: dict[str, Any]) -> tuple[str, bytes]:
    return ob["asset_id"], orjson.dumps(ob)


def _hand_made() -> list[tuple[str | None, bytes | None]]:
    naive = _ev("n1", 1) | {"observed_at": "2024-03-04T00:01:00"}
    digits = _ev("n2", 1) | {"observed_at": "1709510460"}
    return [
        _batch(
            "A1",
            _ev("e0", 0),
            _ev("e0", 0),  # a duplicate within the record
            _ev("e0", 0, metrics={"trips": 2.0}),  # a contradicting one
            naive,  # refused by the decoder
            digits,  # C15
            _ev("u1", 1, kind="bogus"),  # refused by the core
            _ev("r1", 2, metrics={"trips": 0.0, "on_time_trips": 0.0}),  # undefined ratio
            _ev("e5", 20),
            _ev("e1", 30),  # closes [00:00, 00:15) in the middle of the record
            _ev("e2", 1),  # now late
            _ev("e3", 31),
            _ev("x1", 300),  # far ahead: held (C19)
            _ev("e4", 32),  # back at the asset's time: the held one is refused implausible_time
            _ev("e1", 30),  # a duplicate of an earlier record's
        ),
        _single(_ev("s1", 33)),
        _single(_ev("s2", 33, kind="bogus")),  # a single record the core refuses
        _batch("A9", _ev("a1", 33, asset_id="A9"), _ev("a2", 34, asset_id="A9")),  # unknown asset: held
        _batch("A9", _ev("a1", 33, asset_id="A9"), _ev("a2", 34, asset_id="A9")),
        _batch(
            "A1",
            _ev("h1", 400, kind="feed_poll", metrics={"entities": 5.0}),  # ahead, held
            _ev("h2", 402, kind="feed_poll", metrics={"entities": 5.0}),  # a second heartbeat ahead: confirmed
            _ev("h3", 403),
            _ev("h4", 380),  # late by then
            _ev("h5", 420, kind="bogus"),
        ),
        _batch("A1", _ev("z1", 430), _ev("z2", 1000), _ev("z3", 431)),  # z2 held ahead, still held at the end
        (None, None),  # a tombstone
        ("A1", b"{"),
        ("A1", b'{"asset_id":"A1","observations":[]}'),
        _single(_ev("s3", 1200)),
        _batch("A1", _ev("w1", 1500, asset_id="A2")),  # an observation naming another asset
    ]


def test_hand_made_polls_are_the_same_per_record_and_one_by_one() -> None:
    loans = [make_loan(), make_pledge()]
    for tick in (False, True):
        seen, state = _same(loans, _hand_made(), tick=tick)
        reasons = [orjson.loads(o[2])["reason"] for step in seen for o in step[0] if o[0] == "dead-letter"]
        assert {"naive_time", "unknown_metric", "undefined_ratio", "implausible_time", "tombstone"} <= set(reasons)
        assert state["events"][("pledge.telemetry", "duplicate")] >= 3
        assert state["events"][("pledge.telemetry", "late")] >= 2
        assert seen[0][0][0][0] == "valuations"  # the window closed in the middle of the first record
        assert state["events"][("pledge.telemetry", "held")] >= 2


_KINDS = st.sampled_from(
    [
        ("trip_completed", {"trips": 1.0}),
        ("trip_completed", {"trips": 2.0}),
        ("feed_poll", {"entities": 3.0}),
        ("trip_update", {"delay_s": 30.0}),
        ("bogus", {}),
        ("trip_completed", {"trips": 0.0, "on_time_trips": 0.0}),
    ]
)
_OBS = st.tuples(
    st.sampled_from(["A1", "A1", "A1", "A2", "A9"]),  # A2 pledged later in the list, A9 never
    st.integers(0, 40),  # event id from a small pool: duplicates, contradictions
    st.integers(-30, 600),  # minutes: late, ahead (C19), implausible before T0 - 30 d never
    _KINDS,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obs=st.lists(_OBS, min_size=1, max_size=60), cuts=st.lists(st.integers(1, 8), min_size=1, max_size=60))
def test_any_telemetry_cut_into_records_is_the_same_per_record_and_one_by_one(
    obs: list[tuple[str, int, int, tuple[str, dict[str, float]]]], cuts: list[int]
) -> None:
    evs = [
        (asset, _ev(f"{asset}-{n}", minutes, asset_id=asset, kind=kind, metrics=metrics))
        for asset, n, minutes, (kind, metrics) in obs
    ]
    records: list[tuple[str | None, bytes | None]] = []
    it = iter(evs)
    for size in itertools.cycle(cuts):
        chunk = list(itertools.islice(it, size))
        if not chunk:
            break
        for asset, group in itertools.groupby(chunk, key=lambda p: p[0]):
            items = [ob for _, ob in group]
            records.append(_single(items[0]) if len(items) == 1 else _batch(asset, *items))
    loans = [make_loan(), make_pledge()]
    _same(loans, records)
    _same([*loans, make_pledge(asset_id="A2", event_id="L1:pledged:A2")], records, tick=True)


def _fleet_monitor() -> tuple[Monitor, list[tuple[str, bytes]]]:
    fleet = Fleet(2, 20, seed=11)
    mon = Monitor(_RULEBOOK, sensor=CountingSensor())
    for raw in fleet.loan_book():
        mon.on_loan_event(decode_loan_event(raw))
    records = [(key.decode(), value) for key, value, _ in fleet.polls(6_000)]
    for offset, (key, raw) in enumerate(records[: len(records) // 2]):
        fx = apply_telemetry_record(mon.asset_book, raw, Provenance(partition=0, offset=offset), key, LIMITS, tick=True)
        mon._route(fx.outputs)
    return mon, records


def test_a_checkpoint_packs_the_dedup_memory_and_old_checkpoints_still_restore() -> None:
    mon, records = _fleet_monitor()
    for asset in mon.assets.values():
        assert len(asset.seen) > 100
        state = asset.__getstate__()
        assert isinstance(state["seen"], tuple)  # packed: ids in one string, two arrays
        back = pickle.loads(pickle.dumps(asset))
        assert list(back.seen.items()) == list(asset.seen.items())
        old = asset.__getstate__()
        old["seen"] = dict(asset.seen)  # a checkpoint from before issue 18 holds the dict
        legacy = AssetMonitor.__new__(AssetMonitor)
        legacy.__setstate__(old)
        assert list(legacy.seen.items()) == list(asset.seen.items())
    # the records of the first half delivered again after a restore: every one a duplicate, as without it
    restored = Monitor(_RULEBOOK, sensor=CountingSensor())
    for raw in Fleet(2, 20, seed=11).loan_book():
        restored.on_loan_event(decode_loan_event(raw))
    for asset in mon.assets.values():
        restored.asset_book.restore(pickle.loads(pickle.dumps(asset)))
    for book in (mon.asset_book, restored.asset_book):
        for offset, (key, raw) in enumerate(records[:50]):
            fx = apply_telemetry_record(book, raw, Provenance(partition=0, offset=offset), key, LIMITS, tick=False)
            assert [o.topic for o in fx.outputs] == []
    assert mon.sensor.events[("pledge.telemetry", "duplicate")] > 0  # type: ignore[attr-defined]
    assert (
        restored.sensor.events[("pledge.telemetry", "duplicate")]  # type: ignore[attr-defined]
        == sum(len(orjson.loads(raw).get("observations", [None])) for _, raw in records[:50])
    )


def test_checkpoints_between_records_pack_the_memory_as_it_grows_and_is_pruned() -> None:
    from monitor.core.assets import _unpack_seen

    mon, records = _fleet_monitor()
    book = mon.asset_book
    for offset, (key, raw) in enumerate(records[len(records) // 2 :]):
        fx = apply_telemetry_record(book, raw, Provenance(partition=0, offset=offset), key, LIMITS, tick=True)
        mon._route(fx.outputs)
        asset = book.assets[key]
        if offset % 3 == 0:
            packed = asset.__getstate__()["seen"]
            assert list(_unpack_seen(packed).items()) == list(asset.seen.items())
            assert list(pickle.loads(pickle.dumps(asset)).seen.items()) == list(asset.seen.items())
    asset = next(iter(book.assets.values()))
    asset.seen = {**asset.seen}
    asset.__getstate__()
    first = next(iter(asset.seen))
    del asset.seen[first]  # a memory changed in place: packed whole again
    asset.seen[first] = (1.0, 2)
    assert list(_unpack_seen(asset.__getstate__()["seen"]).items()) == list(asset.seen.items())


def test_a_memory_that_does_not_pack_stays_a_dict() -> None:
    from monitor.core.assets import _pack_seen, _unpack_seen

    odd = {"a\nb": (1.0, 2), "c": (2.0, 3)}
    assert _pack_seen(odd) is odd and _unpack_seen(odd) is odd
    assert _unpack_seen(_pack_seen({"x": (1.0, 2**64 - 1)})) == {"x": (1.0, 2**64 - 1)}
    big = {"x": (1.0, 2**64)}
    assert _pack_seen(big) is big
