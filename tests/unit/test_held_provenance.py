"""A record the core holds keeps where it came from (the batch-record flake of the real-broker suite).

The worker can take an asset's telemetry before the asset side has its pledge (the pledge travels
through the loan agent and an internal topic): such a record is held. One the profile refuses when
the pledge arrives was dead-lettered with no partition, offset or batch index, so a producer could
not find which observation of which record was bad. Same for a record held far ahead of the asset's
own event time (C19).
"""

from __future__ import annotations

import datetime as dt

import pytest

from monitor.core import CoreParams, Monitor, Provenance
from monitor.errors import InputRejected
from monitor.schemas import DeadLetter
from tests.conftest import T0, make_event, make_loan, make_pledge


def dead_letters(outputs: list) -> list[DeadLetter]:  # type: ignore[type-arg]
    return [o.message for o in outputs if o.topic == "dead-letter"]


def test_a_record_held_for_its_pledge_and_refused_on_release_is_dead_lettered_under_its_origin(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook)
    mon.on_loan_event(make_loan())
    bad = make_event(event_id="ratio", metrics={"trips": 0.0, "on_time_trips": 0.0})
    good = make_event(event_id="ok", attributes={"trip_id": "t2"})
    assert mon.on_telemetry(bad, Provenance("it.telemetry", 3, 41, 2)) == []  # held: no pledge yet
    assert mon.on_telemetry(good, Provenance("it.telemetry", 3, 41, 3)) == []
    dls = dead_letters(mon.on_loan_event(make_pledge()))
    assert [(d.reason, d.source_topic, d.partition, d.offset, d.observation_index) for d in dls] == [
        ("undefined_ratio", "it.telemetry", 3, 41, 2)
    ]
    assert "ok" in mon.assets["A1"].seen and "ratio" not in mon.assets["A1"].seen


def test_a_held_record_from_an_old_checkpoint_without_origin_is_still_released(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook)
    mon.on_loan_event(make_loan())
    mon.asset_book.held["A1"] = [make_event(event_id="old")]  # the pre-provenance checkpoint layout
    mon.on_loan_event(make_pledge())
    assert "old" in mon.assets["A1"].seen


def _pledged(rulebook) -> Monitor:  # type: ignore[no-untyped-def]
    mon = Monitor(rulebook)
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    mon.on_telemetry(make_event(event_id="now"))
    return mon


def test_a_record_far_ahead_that_the_profile_refuses_is_refused_in_hand_not_held(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _pledged(rulebook)
    ahead = T0 + dt.timedelta(days=2)
    bad = make_event(
        event_id="ahead-bad", observed_at=ahead, received_at=ahead, metrics={"trips": 0.0, "on_time_trips": 0.0}
    )
    with pytest.raises(InputRejected) as info:
        mon.on_telemetry(bad, Provenance(partition=1, offset=7))
    assert info.value.reason == "undefined_ratio" and mon.assets["A1"].ahead == []


def test_records_held_ahead_and_not_confirmed_are_dead_lettered_under_their_origin(rulebook) -> None:  # type: ignore[no-untyped-def]
    mon = _pledged(rulebook)
    ahead = T0 + dt.timedelta(days=2)
    mon.on_telemetry(make_event(event_id="ahead", observed_at=ahead, received_at=ahead), Provenance("t", 1, 7, 0))
    back = T0 + dt.timedelta(minutes=1)
    dls = dead_letters(
        mon.on_telemetry(make_event(event_id="back", observed_at=back, received_at=back), Provenance("t", 1, 8))
    )
    assert [(d.reason, d.partition, d.offset, d.observation_index) for d in dls] == [("implausible_time", 1, 7, 0)]


def test_an_old_checkpoint_of_records_held_ahead_restores_with_no_origin() -> None:
    from monitor.core import AssetMonitor

    asset = AssetMonitor(make_pledge(), CoreParams())
    state = asset.__getstate__()
    state["ahead"] = [(make_event(), T0.timestamp())]  # the pre-provenance (record, time) pairs
    restored = AssetMonitor.__new__(AssetMonitor)
    restored.__setstate__(state)
    assert restored.ahead == [(make_event(), T0.timestamp(), None)]


def test_a_record_delivered_again_while_held_is_a_duplicate_not_held_twice(rulebook) -> None:  # type: ignore[no-untyped-def]
    """The stream test's applied-count drift (+35..65 on clean clones): records sent right after their
    pledge are held, a startup rebalance re-reads them before their offsets are committed, and each
    was held, and counted ``held``, a second time."""
    from monitor.sensors import CountingSensor

    sensor = CountingSensor()
    mon = Monitor(rulebook, sensor=sensor)
    mon.on_loan_event(make_loan())
    early = make_event(event_id="early")
    mon.on_telemetry(early, Provenance(partition=0, offset=5))
    mon.on_telemetry(early, Provenance(partition=0, offset=5))  # re-read
    assert sensor.events[("pledge.telemetry", "held")] == 1
    assert sensor.events[("pledge.telemetry", "duplicate")] == 1
    assert len(mon.asset_book.held["A1"]) == 1
    mon.on_loan_event(make_pledge())
    assert "early" in mon.assets["A1"].seen and sensor.events[("pledge.telemetry", "ok")] == 0  # counted held


def test_the_feeds_own_duplicate_of_a_held_record_is_held_for_the_window_to_count(rulebook) -> None:  # type: ignore[no-untyped-def]
    """Another Kafka record with the same event id is the feed's duplicate, not a re-delivery: the
    window counts it when the pledge comes, as in the backtest (where the pledge comes first)."""
    mon = Monitor(rulebook)
    mon.on_loan_event(make_loan())
    mon.on_telemetry(make_event(event_id="twice"), Provenance(partition=0, offset=5))
    mon.on_telemetry(make_event(event_id="twice"), Provenance(partition=0, offset=6))
    mon.on_telemetry(make_event(event_id="once", attributes={"trip_id": "t2"}))  # no origin (a backtest)
    mon.on_telemetry(make_event(event_id="once", attributes={"trip_id": "t2"}))
    assert len(mon.asset_book.held["A1"]) == 4
    mon.on_loan_event(make_pledge())
    assert sum(w.duplicates for w in mon.assets["A1"].windows.values()) == 2


def test_a_reread_of_a_full_hold_is_a_duplicate_not_a_dead_letter(rulebook) -> None:  # type: ignore[no-untyped-def]
    """Review finding: with the hold full, the re-read copy was refused ``unknown_asset`` (dead-lettered)
    while its first copy was applied when the pledge came: one record in both places."""
    mon = Monitor(rulebook, CoreParams(hold_unknown=2))
    mon.on_loan_event(make_loan())
    for offset in (1, 2):
        mon.on_telemetry(make_event(event_id=f"e{offset}"), Provenance(partition=0, offset=offset))
    assert mon.on_telemetry(make_event(event_id="e1"), Provenance(partition=0, offset=1)) == []  # no raise
    with pytest.raises(InputRejected):  # a new record still finds the hold full
        mon.on_telemetry(make_event(event_id="e3"), Provenance(partition=0, offset=3))


@pytest.mark.parametrize("tick", [False, True])
def test_releasing_held_records_in_the_stream_closes_no_other_assets_window(rulebook, tick: bool) -> None:  # type: ignore[no-untyped-def]
    """Review finding: the release ticked the book's clock with a held record's own time, closing
    every loaded asset's windows (owned by this worker or not) past the group's clock."""
    mon = Monitor(rulebook)
    book = mon.asset_book
    book.register(make_pledge(), tick=tick)
    book.on_telemetry(make_event(event_id="a1"), tick=False)
    later = T0 + dt.timedelta(days=1)
    book.on_telemetry(make_event(event_id="b1", asset_id="A2", observed_at=later, received_at=later), tick=False)
    out = book.register(make_pledge(asset_id="A2", event_id="L1:pledged:A2"), tick=tick)
    closed_a1 = [o for o in out if o.topic == "valuations" and o.key == "A1"]
    assert bool(closed_a1) is tick  # in-process (tick=True) the backtest's clock does close it
