"""The worker's repair of faust's stuck commits (records skipped in a rebalance, faust-streaming #216).

The fake consumer holds only faust's offset bookkeeping; the real case runs in
``tests/integration/test_faults.py::test_fault_c__...`` against the broker.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP as FaustTP

from streams.worker import OFFSET_HOLE_GRACE_S, Node, offset_holes

TP = FaustTP("it.internal.loan-valuations", 1)


def test_offset_holes__a_hole_below_the_lowest_ack_that_nothing_in_flight_fills() -> None:
    assert offset_holes({TP: 54}, {TP: [77]}, []) == {TP: (54, 77)}
    assert offset_holes({TP: 54}, {TP: [77, 78]}, [(TP, 60)]) == {}  # 60 is still being processed
    assert offset_holes({TP: 54}, {TP: [77]}, [(TP, 80)]) == {TP: (54, 77)}  # in flight, but above the hole
    assert offset_holes({TP: 54}, {TP: [55, 56]}, []) == {}  # faust commits these itself
    assert offset_holes({TP: 54}, {TP: []}, []) == {}
    assert offset_holes({TP: None}, {TP: [77]}, []) == {}  # faust commits past it when it knows no offset


class FakeConsumer:
    def __init__(self) -> None:
        self._committed_offset: dict[Any, int | None] = {TP: 54}
        self._acked: dict[Any, list[int]] = {TP: [77]}
        self._unacked_messages: set[Any] = set()
        self.seeks: list[tuple[Any, int]] = []

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_repair__seeks_back_to_the_committed_offset_once_the_hole_outlived_the_grace() -> None:
    consumer = FakeConsumer()
    node = SimpleNamespace(app=SimpleNamespace(consumer=consumer), offset_holes_seen={})

    def repair(at: float) -> list[Any]:
        return asyncio.run(Node.repair_offset_holes(node, now=at))  # type: ignore[arg-type]

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
