"""Offset holes: records faust read but will never commit, found and re-read (faust-streaming/faust#216).

faust commits a partition only up to its first unacknowledged offset. A record its fetcher read but
its stream skipped in a rebalance, or one processed whose acknowledgement a rebalance dropped, leaves
a hole the commit can never pass; after a crash the successor would re-read everything behind it, and
the consumer-lag alarms would fire for good. :func:`offset_holes` finds such holes from faust's own
bookkeeping, and :class:`OffsetHoleRepair` seeks a partition back once its hole has outlived
:data:`OFFSET_HOLE_GRACE_S`. docs/reliability.md §2 tells the story; the private faust members read
here are listed in docs/kafka.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["OFFSET_HOLE_GRACE_S", "OffsetHoleRepair", "offset_holes", "queued_topics"]

log = logging.getLogger(__name__)

#: Seconds an offset hole must persist, unchanged and with nothing of it in flight, before the worker
#: re-reads it (see :func:`offset_holes`): the next run of the 5 s timer. A partition's records reach one
#: agent in offset order and are acknowledged in that order, so a later offset acknowledged while an
#: earlier one is neither acknowledged nor in flight can only be a record faust dropped; the wait is
#: short because re-read records whose window has closed meanwhile only count as late.
OFFSET_HOLE_GRACE_S = 5.0


def queued_topics(app: Any) -> set[str]:
    """Names of the input topics with records in an agent's buffer that its stream has not taken yet.

    faust's conductor puts each record read into the queue of every channel subscribed to its topic;
    a record there is read (its offset is faust's read offset) but neither in flight nor acknowledged.
    """
    index = getattr(app.topics, "_topic_name_index", {})  # private: faust's conductor (docs/kafka.md)
    return {name for name, channels in list(index.items()) if any(not c.queue.empty() for c in list(channels))}


def offset_holes(
    committed: Mapping[Any, int | None],
    acked: Mapping[Any, list[int]],
    in_flight: Iterable[tuple[Any, int]],
    position: Mapping[Any, int | None] | None = None,
    queued: Iterable[str] = (),
) -> dict[Any, tuple[int, int]]:
    """Partitions whose committed offset can no longer advance: ``tp -> (re-read from, first offset past the hole)``.

    faust commits a partition up to the first run of consecutive acknowledged offsets, and commits
    nothing while the lowest acknowledged offset is more than one past the committed one (it waits for
    the records in between). A record that faust's fetcher read but its stream skipped during a
    rebalance (a message of the previous generation, or read while flow control was off) is never
    delivered again unless the consumer seeks back, which it does not always do (faust-streaming
    issue #216, "Recovery ... resumes from kafka before seeking to committed offsets"; seen here in
    ``tests/integration/test_faults.py::test_fault_c__...``: offsets 54..76 of a loan-valuations
    partition skipped, 77 processed, the commit stuck at 54 for good).

    Two kinds of hole are found:

    * **below an acknowledgement**: the lowest acknowledged offset is more than one past the committed
      one and no record in flight lies in between;
    * **at the tail**: the consumer's position is past the committed offset and no record of the
      partition is acknowledged, in flight or queued for its agent. faust forgets a partition's
      acknowledgements when a rebalance revokes it (``Consumer.on_partitions_revoked``); when the
      partition comes back to the same member, the consumer resumes from its position, so records
      processed but not yet committed are never committed (fault (d) of
      ``tests/integration/test_faults.py``: loan-book partitions 2 and 3 records short of their end
      for 900 s). Re-reading them processes them a second time, which every handler tolerates
      (:meth:`OffsetHoleRepair.run`).

    Parameters
    ----------
    committed
        faust's committed offset per partition (the next offset to process; ``None`` or 0 = none known).
    acked
        Acknowledged, not yet committed offsets per partition.
    in_flight
        ``(tp, offset)`` of records read and not yet acknowledged: those a stream took and not acked,
        the one being handled, and those waiting for the state checkpoint.
    position
        The consumer's position per assigned input partition (the next offset it will hand to faust;
        ``None`` = unknown). Without it, only holes below an acknowledgement are found.
    queued
        Names of topics with records handed to an agent's buffer and not yet taken by its stream.

    Returns
    -------
    dict
        Only partitions with a hole that no record in flight or queued will fill.
    """
    lowest_in_flight: dict[Any, int] = {}
    for tp, offset in in_flight:
        lowest_in_flight[tp] = min(offset, lowest_in_flight.get(tp, offset))
    holes = {}
    for tp, offsets in acked.items():
        start = committed.get(tp)
        if not start or not offsets:  # faust itself commits past a hole when it knows no committed offset
            continue
        low = min(offsets)
        if low - start > 1 and lowest_in_flight.get(tp, low) >= low:
            holes[tp] = (start, low)
    busy = set(queued)
    for tp, pos in (position or {}).items():
        start = committed.get(tp) or 0
        if pos is None or pos <= start or acked.get(tp) or tp in lowest_in_flight or tp.topic in busy:
            continue
        holes[tp] = (start, pos)
    return holes


class OffsetHoleRepair:
    """Re-reads any input partition whose commit is stuck behind skipped or forgotten records.

    Parameters
    ----------
    app
        The faust app: its consumer (committed, acknowledged and in-flight offsets, positions, seek),
        its conductor (records queued for an agent) and its flow control (off in a rebalance).
    input_topics
        Names of the agents' input topics, the only ones the group commits.
    """

    def __init__(self, app: Any, input_topics: frozenset[str]) -> None:
        self.app = app
        self.input_topics = input_topics
        #: partition -> ((committed, lowest acked), first seen, monotonic seconds)
        self.seen: dict[Any, tuple[tuple[int, int], float]] = {}

    async def run(self, in_flight: Callable[[], list[tuple[Any, int]] | None], now: float | None = None) -> list[Any]:
        """Seek back each partition whose hole (:func:`offset_holes`) has stayed unchanged :data:`OFFSET_HOLE_GRACE_S`.

        The consumer seeks the partition back to its committed offset and the skipped records are
        processed. Records past the hole are processed a second time, which every handler tolerates:
        telemetry is de-duplicated by event id, loan events by theirs, and a valuation not newer than
        the one applied is dropped (:meth:`monitor.core.loans.LoanMonitor.on_valuation`).

        Parameters
        ----------
        in_flight
            The worker's own unacknowledged records, ``(tp, offset)`` (waiting for a checkpoint, in an
            agent's hands), or None while a record is half handled: then nothing is judged.
        now
            Monotonic seconds (default: now).

        Returns
        -------
        list
            The partitions re-read.
        """
        consumer: Any = self.app.consumer  # faust.transport.consumer.Consumer: its offset bookkeeping is private
        now = time.monotonic() if now is None else now
        if in_flight() is None:  # a telemetry record is half handled: it is in none of the lists below
            return []
        position: dict[Any, int | None] = {}
        if self.app.flow_control.is_active():  # off in a rebalance: faust's fetcher may hold records then
            for tp in [tp for tp in consumer.assignment() if tp.topic in self.input_topics]:
                try:
                    position[tp] = await consumer.position(tp)
                except Exception:  # noqa: BLE001  # revoked meanwhile, or no position yet: unknown, not an error
                    position[tp] = None
        # read after the awaits above, in one step: nothing is handled or acknowledged in between
        own = in_flight()
        if own is None:  # a telemetry record became half handled while we asked
            return []
        holes = offset_holes(
            consumer._committed_offset,
            consumer._acked,
            [(m.tp, m.offset) for m in list(consumer._unacked_messages)] + own,
            position=position,
            queued=queued_topics(self.app),
        )
        seen = self.seen
        # a hole keeps its first-seen time while it stays the same; one that changed starts again
        self.seen = {tp: seen[tp] if tp in seen and seen[tp][0] == hole else (hole, now) for tp, hole in holes.items()}
        repaired = []
        for tp, ((start, low), since) in list(self.seen.items()):
            if now - since < OFFSET_HOLE_GRACE_S:
                continue
            log.warning(
                "%s[%d]: offsets %d..%d were read but the commit cannot pass them (skipped in a rebalance, or "
                "their acknowledgements dropped when it revoked the partition); re-reading from %d",
                tp.topic,
                tp.partition,
                start,
                low - 1,
                start,
            )
            await consumer.seek(tp, start)  # faust sets its read offset too, so the records pass its filter
            del self.seen[tp]
            repaired.append(tp)
        return repaired
