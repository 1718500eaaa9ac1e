"""A worker forgets the state of the partitions a rebalance revokes (it may come back stale otherwise)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.worker import Node, _partition


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
    )
    revoked = {TP("it.telemetry", revoked_part), TP("it.loan-book", 1), TP("it.internal.asset-pledges", 2)}
    gone = Node.on_partitions_revoked(node, revoked)
    assert ids[0] in gone
    assert all(part[a] != revoked_part for a in [*node.assets.assets, *node.assets.held])
    assert {a for a in ids if part[a] != revoked_part} == {*node.assets.assets, *node.assets.held}
    assert {k for k in loans if _partition(k, n) == 1} == set(gone) - set(ids)
    assert all(_partition(k, n) != 1 for k in node.loans.loans)
    assert revoked_part not in node.dirty and node.loaded_for == frozenset()
    # an asset whose records were seen on a partition is placed by that partition, not by its key
    node.assets.assets["odd"] = object()
    node.asset_partition["odd"] = revoked_part
    assert Node.on_partitions_revoked(node, {TP("it.telemetry", revoked_part)}) == ["odd"]
