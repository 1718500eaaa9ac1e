"""The worker's repair of faust's stuck commits (records skipped in a rebalance, faust-streaming #216).

The fake consumer holds only faust's offset bookkeeping; the real case runs in
``tests/integration/test_faults.py::test_fault_c__...`` against the broker.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP as FaustTP

from streams.offsets import OFFSET_HOLE_GRACE_S, OffsetHoleRepair, offset_holes
from streams.worker import Node

TP = FaustTP("it.internal.loan-valuations", 1)
CHANGELOG = FaustTP("it-loan-state-changelog", 1)


def test_offset_holes__a_hole_below_the_lowest_ack_that_nothing_in_flight_fills() -> None:
    assert offset_holes({TP: 54}, {TP: [77]}, []) == {TP: (54, 77)}
    assert offset_holes({TP: 54}, {TP: [77, 78]}, [(TP, 60)]) == {}  # 60 is still being processed
    assert offset_holes({TP: 54}, {TP: [77]}, [(TP, 80)]) == {TP: (54, 77)}  # in flight, but above the hole
    assert offset_holes({TP: 54}, {TP: [55, 56]}, []) == {}  # faust commits these itself
    assert offset_holes({TP: 54}, {TP: []}, []) == {}
    assert offset_holes({TP: None}, {TP: [77]}, []) == {}  # faust commits past it when it knows no offset


def test_offset_holes__a_tail_that_no_acknowledgement_shows() -> None:
    """Fault (d): records processed, their acknowledgements dropped when a rebalance revoked the partition,
    the partition back with the same member at its old position: nothing will ever commit them."""
    pos = {TP: 57}
    assert offset_holes({TP: 54}, {}, [], pos) == {TP: (54, 57)}
    assert offset_holes({TP: None}, {}, [], pos) == {TP: (0, 57)}  # nothing ever committed: from the start
    # each place a read record can legitimately be keeps it from being taken for lost
    assert offset_holes({TP: 54}, {TP: [54]}, [], pos) == {}  # acknowledged: faust commits it
    assert offset_holes({TP: 54}, {}, [(TP, 55)], pos) == {}  # in flight or waiting for the checkpoint
    assert offset_holes({TP: 54}, {}, [], pos, queued=[TP.topic]) == {}  # in the agent's buffer
    assert offset_holes({TP: 57}, {}, [], pos) == {}  # all committed
    assert offset_holes({TP: 54}, {}, [], {TP: None}) == {}  # position unknown
    other = FaustTP("it.telemetry", 1)  # another topic's buffer does not hold this partition's records
    assert offset_holes({TP: 54}, {}, [(other, 9)], pos, queued=[other.topic]) == {TP: (54, 57)}


class FakeConsumer:
    def __init__(self) -> None:
        self._committed_offset: dict[Any, int | None] = {TP: 54}
        self._acked: dict[Any, list[int]] = {TP: [77]}
        self._unacked_messages: set[Any] = set()
        # a changelog partition read to its end by a standby, nothing committed: not a hole
        self.positions: dict[Any, int] = {TP: 78, CHANGELOG: 81}
        self.seeks: list[tuple[Any, int]] = []

    def assignment(self) -> set[Any]:
        return {TP, CHANGELOG}  # the tables' changelog partitions are assigned too, never committed

    async def position(self, tp: Any) -> int:
        return self.positions[tp]

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.positions[tp] = offset


class FakeQueue:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def empty(self) -> bool:
        return not self.items


def fake_node(consumer: FakeConsumer, queue: FakeQueue | None = None) -> Any:
    channels = {TP.topic: [SimpleNamespace(queue=queue or FakeQueue())]}
    app = SimpleNamespace(
        consumer=consumer,
        topics=SimpleNamespace(_topic_name_index=channels),
        flow_control=SimpleNamespace(is_active=lambda: True),
    )
    return SimpleNamespace(
        app=app,
        offset_holes=OffsetHoleRepair(app, frozenset({TP.topic})),
        asset_handling=False,
        pending_acks={},
        in_hand={},
    )


def repair_at(node: Any, at: float) -> list[Any]:
    """One run of the worker's 5-s repair, with the Node's own account of the records it holds."""
    return asyncio.run(node.offset_holes.run(lambda: Node.in_flight(node), now=at))


def test_repair__seeks_back_to_the_committed_offset_once_the_hole_outlived_the_grace() -> None:
    consumer = FakeConsumer()
    node = fake_node(consumer)

    def repair(at: float) -> list[Any]:
        return repair_at(node, at)

    assert repair(0.0) == [] and consumer.seeks == []
    consumer._acked[TP] = [77, 78]  # the same hole: the grace keeps counting from its first sight
    assert repair(OFFSET_HOLE_GRACE_S - 1) == []
    assert repair(OFFSET_HOLE_GRACE_S) == [TP] and consumer.seeks == [(TP, 54)]
    # a hole that changes (the commit moved) starts its grace again
    consumer._committed_offset[TP] = 60
    assert repair(OFFSET_HOLE_GRACE_S + 1) == []
    assert repair(2 * OFFSET_HOLE_GRACE_S) == [] and consumer.seeks == [(TP, 54)]
    assert repair(2 * OFFSET_HOLE_GRACE_S + 1) == [TP] and consumer.seeks[-1] == (TP, 60)
    # once the re-read records are acknowledged the hole is gone and nothing more happens
    consumer._acked[TP] = [60, 61, 62]
    assert repair(10 * OFFSET_HOLE_GRACE_S) == []


def test_repair__a_dropped_tail_is_re_read_unless_a_record_of_it_is_somewhere_else() -> None:
    consumer = FakeConsumer()
    consumer._acked = {}
    consumer._committed_offset[TP], consumer.positions[TP] = 76, 78
    queue = FakeQueue()
    node = fake_node(consumer, queue)

    def repair(at: float) -> list[Any]:
        return repair_at(node, at)

    # each of: a record in the agent's buffer, one in hand, one waiting for the checkpoint, a telemetry
    # record half handled, keeps the partition from being re-read (it would be processed twice)
    event = SimpleNamespace(message=SimpleNamespace(tp=TP, offset=76))
    for busy in (
        lambda: queue.items.append(event),
        lambda: node.in_hand.update({"pledge.loan-book": (TP, 76)}),
        lambda: node.pending_acks.update({1: [event]}),
        lambda: setattr(node, "asset_handling", True),
    ):
        busy()
        assert repair(0.0) == [] and repair(10 * OFFSET_HOLE_GRACE_S) == [] and consumer.seeks == []
        queue.items.clear(), node.in_hand.clear(), node.pending_acks.clear()
        node.asset_handling = False
        node.offset_holes.seen = {}
    # in a rebalance (flow control off) faust's fetcher may hold records handed to no queue yet
    node.app.flow_control = SimpleNamespace(is_active=lambda: False)
    assert repair(50.0) == [] and repair(50.0 + 10 * OFFSET_HOLE_GRACE_S) == [] and consumer.seeks == []
    node.app.flow_control = SimpleNamespace(is_active=lambda: True)
    assert repair(100.0) == []
    assert repair(100.0 + OFFSET_HOLE_GRACE_S) == [TP] and consumer.seeks == [(TP, 76)]
