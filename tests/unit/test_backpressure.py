"""Telemetry that comes before its pledge: a full hold pauses its partitions instead of refusing (issue 18).

One fault-(c) run dead-lettered 11,348 observations of two *pledged* assets ``unknown_asset``: the loan
side routed their pledges seconds late during a rebalance and the hold's bound turned a delay into a
refusal. :class:`streams.backpressure.HoldBackpressure` is driven here with the real core and a consumer
that records its pauses; the probe of the loan side is a function the test controls. The same path on
the real broker is ``tests/integration/test_stream.py``'s late-pledge test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

import pytest

from monitor.core import AssetBook, CoreParams, Provenance
from monitor.errors import InputRejected
from monitor.sensors import CountingSensor
from streams.backpressure import HoldBackpressure
from tests.conftest import T0, make_event, make_pledge

TOPIC = "it.telemetry"


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    """faust's consumer as the backpressure uses it: assignment, pause and resume (recorded)."""

    def __init__(self, partitions: Iterable[int]) -> None:
        self.assigned = {TP(TOPIC, p) for p in partitions} | {TP("it.asset-pledges", p) for p in partitions}
        self.paused: set[TP] = set()
        self.calls: list[tuple[str, list[int]]] = []

    def assignment(self) -> set[TP]:
        return self.assigned

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        self.paused |= set(tps)
        self.calls.append(("pause", sorted(tp.partition for tp in tps)))

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        self.paused -= set(tps)
        self.calls.append(("resume", sorted(tp.partition for tp in tps)))


class App:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer


class Probe:
    """The loan side as the test says it is: None while behind, else the pledges channel's end offsets."""

    def __init__(self) -> None:
        self.answer: dict[int, int] | None = None
        self.asked: list[set[int]] = []
        self.resets = 0

    def reset(self) -> None:  # an episode of a full hold ended: the loan book's ends are noted anew next time
        self.resets += 1

    def __call__(self, partitions: Iterable[int]) -> dict[int, int] | None:
        self.asked.append(set(partitions))
        return self.answer


def _feed(book: AssetBook, bp: HoldBackpressure, asset: str, n: int, partition: int, first_offset: int = 0) -> None:
    for i in range(n):
        ev = make_event(event_id=f"{asset}-{i}", asset_id=asset, observed_at=T0 + dt.timedelta(seconds=30 * i))
        out = book.on_telemetry(ev, tick=False, source=Provenance(TOPIC, partition, first_offset + i))
        assert out == []
        bp.after_telemetry(partition, asset in book.held)


def _setup(limit: int = 5) -> tuple[AssetBook, HoldBackpressure, Consumer, Probe]:
    book = AssetBook(CoreParams(hold_unknown=limit), CountingSensor())
    consumer, probe = Consumer([0, 1, 2]), Probe()
    bp = HoldBackpressure(App(consumer), book, limit, TOPIC, probe)
    return book, bp, consumer, probe


def test_a_full_hold_pauses_the_partition_that_feeds_it_and_a_late_pledge_resumes_it_losing_nothing() -> None:
    book, bp, consumer, probe = _setup(limit=5)
    _feed(book, bp, "A1", 12, partition=1)  # 7 past the bound: held, not refused
    assert book.held_count() == 12 and consumer.calls == [("pause", [1])] and bp.paused == {1}
    assert asyncio.run(bp.check(1.8e9)) == [] and probe.asked == [{1}]  # the loan side is still behind
    out = book.register(make_pledge(asset_id="A1"), tick=False)  # the pledge, routed late
    bp.relieve()
    assert consumer.calls[-1] == ("resume", [1]) and not bp.paused and book.held_count() == 0
    assert not [o for o in out if o.topic == "dead-letter"]
    assert len(book.assets["A1"].seen) == 12  # every held observation reached the asset


def test_held_observations_are_dead_lettered_only_once_the_loan_side_has_routed_every_pledge() -> None:
    book, bp, consumer, probe = _setup(limit=5)
    _feed(book, bp, "X9", 6, partition=2, first_offset=100)
    assert bp.paused == {2}
    assert asyncio.run(bp.check(1.8e9)) == []  # behind: no verdict
    probe.answer = {2: 50}  # caught up; the pledges channel's partition 2 ends at offset 50
    bp.on_pledges_record(2, 40)
    assert asyncio.run(bp.check(1.8e9)) == []  # pledges up to 49 not all read: one may still release the hold
    bp.on_pledges_record(2, 49)
    out = asyncio.run(bp.check(1.8e9))
    assert [(o.message.reason, o.message.partition, o.message.offset) for o in out] == [
        ("unknown_asset", 2, 100 + i) for i in range(6)
    ]
    assert book.held_count() == 0 and consumer.calls[-1] == ("resume", [2]) and not bp.paused
    assert probe.resets == 1 and bp.target is None, "the next full hold waits for the loan events of its own time"


def test_a_pledged_assets_records_on_other_partitions_keep_flowing() -> None:
    book, bp, consumer, _ = _setup(limit=3)
    book.register(make_pledge(asset_id="A1"), tick=False)
    _feed(book, bp, "X9", 4, partition=2)
    bp.after_telemetry(0, False)  # a pledged asset's record on partition 0 while the hold is full
    assert consumer.paused == {TP(TOPIC, 2)}


def test_the_backtest_still_refuses_past_the_bound() -> None:
    book = AssetBook(CoreParams(hold_unknown=2), CountingSensor())
    for i in range(2):
        book.on_telemetry(make_event(event_id=f"e{i}", asset_id="X9"))
    with pytest.raises(InputRejected) as info:
        book.on_telemetry(make_event(event_id="e2", asset_id="X9"))
    assert info.value.reason == "unknown_asset"


def test_a_revoked_partition_is_forgotten_and_a_reassignment_pauses_again() -> None:
    book, bp, consumer, _ = _setup(limit=2)
    _feed(book, bp, "X9", 3, partition=0)
    assert bp.paused == {0}
    book.held.clear()  # what the worker does with a revoked partition's held records
    bp.forget([0])
    assert not bp.paused
    _feed(book, bp, "X9", 3, partition=0, first_offset=10)
    assert bp.paused == {0} and consumer.calls.count(("pause", [0])) == 2


def test_held_records_without_origin_pause_the_partition_in_hand() -> None:
    book, bp, consumer, _ = _setup(limit=2)
    old = [make_event(event_id="old-a", asset_id="X9"), make_event(event_id="old-b", asset_id="X9")]
    book.held["X9"] = old  # type: ignore[assignment]  # the checkpoint layout from before origins were kept
    book.on_telemetry(make_event(event_id="new", asset_id="X9"))  # no origin either
    assert book.held_partitions() == set()
    bp.after_telemetry(1, True)
    assert bp.paused == {1} and consumer.paused == {TP(TOPIC, 1)}


def _metrics() -> Any:
    from prometheus_client import CollectorRegistry

    from streams.prometheus import Metrics

    return Metrics.create(CollectorRegistry())


def test_the_gauges_show_the_hold_and_the_paused_partitions() -> None:
    book = AssetBook(CoreParams(hold_unknown=2), CountingSensor())
    metrics = _metrics()
    bp = HoldBackpressure(App(Consumer([0])), book, 2, TOPIC, Probe(), metrics)
    _feed(book, bp, "X9", 3, partition=0)

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert sample("pledgewatch_held_observations") == 3 and sample("pledgewatch_paused_partitions") == 1
    book.held.clear()  # what a revocation does: the held gauge reads the book at each scrape
    assert sample("pledgewatch_held_observations") == 0
