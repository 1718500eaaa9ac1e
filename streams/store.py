"""The worker's state tables: pickled core objects in faust tables whose writes need no record in hand.

faust writes a table entry twice: to the changelog topic (the durable copy) and to the local store.
With ``use_partitioner=True`` (our tables) the changelog partition is the key's (Kafka's default
partitioner, murmur2), chosen without any record. faust's RocksDB store, though, puts the local copy
into the database of *the partition of the record being handled* (``current_event()``) and refuses a
write outside one (faust-streaming/faust#497, open). The worker's timers (the stream clock closing a
silent asset's windows, the checkpoint of a partition that stopped delivering) write state with no
record in hand; they used to send ``__clock__`` records through Kafka, and to set faust's private
``_current_event`` by hand, only to get one.

:class:`KeyPartitionedRocksDB` places the local copy where the changelog copy goes, in the database
of the key's changelog partition, so a write needs no record and the two copies always agree (a
record that came on another partition than its key's no longer writes the key into a database whose
changelog partition does not hold it). It is registered under the store URL ``pledgewatch-rocksdb://``.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any

from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore  # imports without rocksdict; opening a database needs it
from kafka.partitioner.default import murmur2

__all__ = ["ROCKSDB_URL", "STATE_MAX_BYTES", "KeyPartitionedRocksDB", "StateTable", "key_partition"]

log = logging.getLogger(__name__)

#: Largest checkpoint of one asset or loan written to its state table's changelog, bytes. An asset's state
#: is mostly its de-duplication memory (≈ 50 bytes an event id over ``dedup_horizon_s``: ≈ 0.6 MB for the
#: busiest Auckland route group) and held records of a not yet pledged asset (up to ``hold_unknown``),
#: which passed Kafka's default 1 MiB message limit and crashed faust's producer (a clean-clone CI run).
#: The changelog topics and the producer take this much; Kafka's own request limit is 100 MiB.
STATE_MAX_BYTES = 16 * 1024 * 1024
#: Store URL of :class:`KeyPartitionedRocksDB` (its scheme is its name in faust's store registry).
ROCKSDB_URL = "pledgewatch-rocksdb://"


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client, aiokafka and faust do).

    Parameters
    ----------
    key
        The record key's bytes.
    partitions
        Partitions of the topic (≥ 1).

    Examples
    --------
    >>> key_partition(b"akl-routes-7xx", 4) == key_partition(b"akl-routes-7xx", 4)
    True
    >>> 0 <= key_partition(b"L-AKL-001", 3) < 3
    True
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitionedRocksDB(RocksDBStore):
    """faust's RocksDB store whose local copy of a key lives in its changelog partition's database.

    Only ``_set``, the one hook of faust's store contract that reads the record in hand, changes:
    reads already search the key's database (``use_partitioner`` tables), deletes every database
    that may hold the key, and recovery writes each changelog partition into its own database.
    """

    def _set(self, key: bytes, value: bytes | None) -> None:
        partitions = self.table.changelog_topic.partitions or self.app.conf.topic_partitions
        partition = key_partition(key, partitions)
        db = self._db_for_partition(partition)
        self._key_index[key] = partition
        db.put(key, value)


# faust resolves a store URL's scheme through this registry (``faust.stores.STORES``, a ``FactoryMapping``
# whose ``data`` is its public alias table); an entry point in the ``faust.stores`` group would do the same
# but only once the package is installed, not for a checkout on PYTHONPATH (the benchmarks' old commits)
STORES.data.setdefault("pledgewatch-rocksdb", f"{__name__}:KeyPartitionedRocksDB")


class StateTable:
    """A faust table of pickled core objects (``AssetMonitor`` / ``LoanMonitor``) behind a dict of live ones.

    Parameters
    ----------
    table
        faust table with bytes keys and values (its changelog is the durable copy).
    live
        The book's dict of live objects, keyed by asset or loan id.
    held
        For the asset table: the book's records held for assets whose pledge has not arrived (a list per
        asset id), stored in the same table.
    restore
        Puts a loaded object into the book (default: into ``live``); the asset book's
        :meth:`~monitor.core.AssetBook.restore` also has its next tick check the restored asset.
    """

    def __init__(
        self,
        table: Any,
        live: dict[str, Any],
        held: dict[str, list[Any]] | None = None,
        restore: Callable[[Any], None] | None = None,
    ) -> None:
        self.table = table
        self.live = live
        self.held = held
        self.restore = restore

    def load(self, key: str) -> None:
        """Bring ``key``'s state from the table into the book (after a restart or rebalance)."""
        if key in self.live or (self.held is not None and key in self.held):
            return
        raw = self.table.get(key.encode())
        if raw:
            obj = pickle.loads(raw)  # only our own changelog is read here
            if isinstance(obj, list) and self.held is not None:
                self.held[key] = obj  # telemetry held for an asset whose pledge has not arrived
            elif self.restore is not None:
                self.restore(obj)
            else:
                self.live[key] = obj

    def load_all(self) -> list[str]:
        """Bring every key of the table's assigned partitions into the book; returns the keys loaded.

        After a restart or a rebalance, an asset that stays silent sends no record that would load
        it, yet its silence must keep closing windows (and its loans must see the valuations).
        """
        loaded = []
        for raw_key in list(self.table.keys()):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if key not in self.live and (self.held is None or key not in self.held):
                self.load(key)
                loaded.append(key)
        return loaded

    def save(self, key: str) -> None:
        """Write ``key``'s state to the changelog and the local store (no record needs to be in hand).

        A state larger than :data:`STATE_MAX_BYTES` is not written (Kafka would refuse it and faust's
        producer would stop for good); an error names the asset and what to lower instead.
        """
        obj = self.live.get(key)
        if obj is None and self.held is not None:
            obj = self.held.get(key)
        if obj is not None:
            blob = pickle.dumps(obj, protocol=5)
            if len(blob) > STATE_MAX_BYTES:
                log.error(
                    "%s: state of %s bytes not checkpointed, expected at most %s (STATE_MAX_BYTES); it lives in "
                    "memory only until it shrinks. Lower PLEDGEWATCH_DEDUP_HORIZON_S (event ids remembered) "
                    "or split the asset",
                    key,
                    f"{len(blob):,}",
                    f"{STATE_MAX_BYTES:,}",
                )
                return
            self.table[key.encode()] = blob

    def delete(self, key: str) -> None:
        """Remove ``key``'s state from the table (a tombstone in the changelog); the book must not hold it.

        For held records dead-lettered (:meth:`monitor.core.AssetBook.expire_held`): kept, they would come
        back into the hold at the next restart or rebalance.
        """
        if key.encode() in self.table:
            del self.table[key.encode()]
