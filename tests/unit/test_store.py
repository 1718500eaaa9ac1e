"""State writes need no record in hand (issue 18): the store places a key by its changelog partition.

faust's own RocksDB store refuses a write outside a record (faust-streaming/faust#497); the worker
used to send ``__clock__`` records through Kafka and set faust's private ``_current_event`` by hand
to get one. The real worker's restarts and rebalances run in ``tests/integration``.
"""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams.store import ROCKSDB_URL, KeyPartitionedRocksDB, key_partition

pytest.importorskip("rocksdict")

PARTITIONS = 4


def asset_table(tmp_path: Path, store: str) -> faust.Table:
    """A state table as the worker declares it (bytes, ``use_partitioner``), not started: no broker."""
    app = faust.App(f"t-{tmp_path.name}", store=store, datadir=str(tmp_path), topic_partitions=PARTITIONS)
    return app.Table(
        "asset-state", key_type=bytes, value_type=bytes, partitions=PARTITIONS, use_partitioner=True, default=None
    )


def test_a_write_outside_any_record_lands_in_the_keys_changelog_partition(tmp_path: Path) -> None:
    store = asset_table(tmp_path, ROCKSDB_URL).data
    assert isinstance(store, KeyPartitionedRocksDB)
    for key in (b"akl-routes-7xx", b"akl-routes-9xx", b"wmata-metrobus", b"L-AKL-001"):
        store[key] = b"state of " + key
        assert store[key] == b"state of " + key
        # the local copy sits in the database of the partition Kafka's default partitioner gives the key,
        # the one faust's producer sends the changelog entry to (use_partitioner)
        part = key_partition(key, PARTITIONS)
        assert store._db_for_partition(part).get(key) == b"state of " + key
        others = [p for p in range(PARTITIONS) if p != part]
        assert all(store._db_for_partition(p).get(key) is None for p in others)
    del store[b"akl-routes-7xx"]
    assert b"akl-routes-7xx" not in store


def test_fausts_own_rocksdb_store_refuses_the_same_write(tmp_path: Path) -> None:
    """Why the store exists: without a record in hand faust's store has no partition to write to."""
    store = asset_table(tmp_path, "rocksdb://").data
    with pytest.raises(AssertionError):
        store[b"akl-routes-7xx"] = b"state"


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=256))
def test_property__key_partition_is_the_producers_partitioner(key: bytes, partitions: int) -> None:
    """The partition aiokafka's default partitioner (faust's producer, so the changelog's) gives the key."""
    every = list(range(partitions))
    assert key_partition(key, partitions) == DefaultPartitioner()(key, every, every)
