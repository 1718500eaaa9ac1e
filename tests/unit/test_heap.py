"""The worker's long-lived state is frozen out of the collector's full passes, and thawed before it is forgotten."""

from __future__ import annotations

import gc

import pytest

from streams.heap import FrozenState


@pytest.fixture
def thawed():  # type: ignore[no-untyped-def]
    gc.unfreeze()
    yield
    gc.unfreeze()  # never leave the test process frozen


class Node:
    """A stand-in for a model's tree: a cycle (parent <-> child), as garbage only the collector frees."""

    def __init__(self) -> None:
        self.child: Node | None = None
        self.parent: Node | None = None


def tree() -> Node:
    root = Node()
    root.child = Node()
    root.child.parent = root
    return root


def test_freeze_takes_live_state_out_of_full_passes_and_refreezes_on_its_period(thawed) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    heap = FrozenState(every_s=600.0, clock=lambda: now[0])
    assert not heap.maybe_refreeze(), "no periodic freeze before a first one (a worker still loading)"
    state = [tree() for _ in range(1000)]
    count = heap.freeze("partitions assigned")
    assert count == gc.get_freeze_count() >= 2000
    live_after = len(gc.get_objects())
    assert live_after < count, "the frozen state is out of what a full pass walks"
    now[0] = 599.0
    assert not heap.maybe_refreeze()
    more = [tree() for _ in range(100)]  # state created since (an asset pledged meanwhile)
    now[0] = 600.0
    assert heap.maybe_refreeze()
    assert gc.get_freeze_count() >= count + 200
    assert state and more


def test_thaw_lets_forgotten_cyclic_state_be_collected(thawed) -> None:  # type: ignore[no-untyped-def]
    heap = FrozenState()
    state = [tree() for _ in range(500)]
    heap.freeze("partitions assigned")
    del state  # forgotten while frozen: the cycles are not freed by reference counts
    gc.collect()
    assert sum(isinstance(o, Node) for o in gc.get_objects()) == 0  # frozen objects are not listed...
    gc.unfreeze()
    assert sum(isinstance(o, Node) for o in gc.get_objects()) == 1000  # ...but still there: a leak while frozen
    gc.freeze()
    heap.thaw()  # what a revocation does before forgetting
    assert gc.get_freeze_count() == 0 and heap.frozen_at is None
    gc.collect()
    assert sum(isinstance(o, Node) for o in gc.get_objects()) == 0
