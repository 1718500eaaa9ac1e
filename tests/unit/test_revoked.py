"""A worker forgets the state of the partitions a rebalance revokes (it may come back stale otherwise),
and scans the tables every few seconds for any state its books miss (a silent asset nothing reloads
would never close a window again: fault a lost its frozen feed's windows on a clean clone)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.worker import LOAD_RESCAN_S, Node, _partition


def test_revoked_partitions_assets_and_loans_are_forgotten_and_reloaded_from_the_table_next_time() -> None:
    n = 4
    ids = [f"asset-{i}" for i in range(12)]
    loans = [f"L-{i}" for i in range(12)]
    part = {a: _partition(a, n) for a in ids}
    revoked_part = part[ids[0]]
    node: Any = SimpleNamespace(
        s=SimpleNamespace(partitions=n),
        telemetry_topic="it.telemetry",
        loan_topic="it.loan-book",
        assets=SimpleNamespace(assets={a: object() for a in ids[:8]}, held={a: [] for a in ids[8:]}),
        loans=SimpleNamespace(loans={k: object() for k in loans}),
        asset_partition={},  # none seen yet: Kafka's default partitioner decides
        dirty={revoked_part: {ids[0]}, (revoked_part + 1) % n: set()},
        loaded_for=frozenset({TP("it.telemetry", 0)}),
        backpressure=SimpleNamespace(forgotten=[], forget=lambda parts: node.backpressure.forgotten.append(set(parts))),
        heap=SimpleNamespace(thawed=0, thaw=lambda: setattr(node.heap, "thawed", node.heap.thawed + 1)),
        group_feed=SimpleNamespace(forgotten=[], forget=lambda lids: node.group_feed.forgotten.extend(lids)),
        sensor=SimpleNamespace(
            forgotten=[],
            on_loan_forgotten=lambda lid: node.sensor.forgotten.append(lid),
            on_asset_forgotten=lambda aid: node.sensor.forgotten.append(aid),
        ),
    )
    revoked = {TP("it.telemetry", revoked_part), TP("it.loan-book", 1), TP("it.internal.asset-pledges", 2)}
    gone = Node.on_partitions_revoked(node, revoked)
    assert node.heap.thawed == 1, "the heap is thawed so the forgotten states can be collected"
    assert ids[0] in gone
    assert all(part[a] != revoked_part for a in [*node.assets.assets, *node.assets.held])
    assert {a for a in ids if part[a] != revoked_part} == {*node.assets.assets, *node.assets.held}
    assert {k for k in loans if _partition(k, n) == 1} == set(gone) - set(ids)
    assert all(_partition(k, n) != 1 for k in node.loans.loans)
    valued = {a for a in ids[:8] if part[a] == revoked_part}  # held assets (ids[8:]) have no gauges
    assert valued, "the test needs a valued asset on the revoked partition"
    assert sorted(node.sensor.forgotten) == sorted((set(gone) - set(ids)) | valued), "their gauges are dropped"
    assert revoked_part not in node.dirty and node.loaded_for == frozenset()
    assert node.backpressure.forgotten == [{revoked_part}], "a revoked partition's pause is forgotten (faust's too)"
    assert sorted(node.group_feed.forgotten) == sorted(set(gone) - set(ids)), "what was published for them is forgotten"
    # an asset whose records were seen on a partition is placed by that partition, not by its key
    node.assets.assets["odd"] = object()
    node.asset_partition["odd"] = revoked_part
    assert Node.on_partitions_revoked(node, {TP("it.telemetry", revoked_part)}) == ["odd"]


class Table:
    def __init__(self, keys: list[str], book: dict[str, Any]) -> None:
        self.keys, self.book = keys, book

    def load_all(self) -> list[str]:
        new = [k for k in self.keys if k not in self.book]
        self.book.update(dict.fromkeys(new))
        return new


def test_the_tables_are_rescanned_for_states_the_books_miss(caplog) -> None:  # type: ignore[no-untyped-def]
    assignment = {TP("it.telemetry", 0)}
    assets: dict[str, Any] = {}
    node: Any = SimpleNamespace(
        s=SimpleNamespace(partitions=4),
        app=SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: assignment)),
        loaded_for=frozenset(),
        loaded_at=0.0,
        asset_state=Table(["a1", "a2"], assets),
        loan_state=Table([], {}),
        asset_partition={},
        assets=SimpleNamespace(clock=None, assets=assets, recheck=lambda: rechecks.append(1)),
        portfolio=SimpleNamespace(load=lambda: rebuilt.append(1)),
        heap=SimpleNamespace(freeze=lambda why: frozen.append(why)),
    )
    frozen: list[str] = []
    rechecks: list[int] = []
    rebuilt: list[int] = []
    Node.load_assigned(node, now=100.0)  # a new assignment: everything loaded, no warning
    assert set(assets) == {"a1", "a2"} and not [r for r in caplog.records if r.levelname == "WARNING"]
    assert rechecks == [1]  # the next tick checks every asset (AssetBook.recheck)
    assert rebuilt == [1]  # the portfolio's owner may have changed: its book is rebuilt from its table
    del assets["a2"]  # a path dropped it and forgot to load it again
    Node.load_assigned(node, now=100.0 + LOAD_RESCAN_S / 2)  # too soon for a rescan
    assert "a2" not in assets
    Node.load_assigned(node, now=100.0 + LOAD_RESCAN_S)
    assert "a2" in assets and rechecks == [1]  # a rescan of the same assignment is no new assignment
    assert frozen == ["partitions assigned"], "the heap is frozen after a new assignment's load, not at rescans"
    assert any("did not hold at the last scan" in r.getMessage() and "a2" in r.getMessage() for r in caplog.records)
