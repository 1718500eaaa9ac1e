"""The group's stream clock as one worker sees it, and the reports the workers send each other.

The group's stream clock (:class:`monitor.core.watermarks.Watermarks`, case C05) needs every telemetry
partition's status, and a worker knows only those assigned to it. Every 5 s each worker sends its
report (``Watermarks.report``: its partitions' newest event time, ``idle`` or ``hold``) as a record
keyed ``__clock__`` (:data:`CLOCK_KEY`) to every partition of ``internal.asset-pledges``, which is
co-partitioned with the telemetry; each worker merges the reports it reads on its own partitions.

Why in band, through the data's own partitions, and not on a topic of their own: a report read on
partition *p* comes after every record produced to *p* before it was sent, so a worker learns that
another worker's partition has reached event time *T* only once it has read its own partition up to
about the same moment (Flink and Kafka Streams carry watermarks in band for the same reason). Read out
of band, from a topic every worker follows (tried on 2026-12-07), a report arrived ahead of the data:
a worker whose partition looked caught up against a stale high watermark while its event loop stalled
3 s took it for idle, followed the other worker's clock, and closed its own asset's windows before
their last records were read (fault (c), 1 run in 5: a window one observation short).

The timer no longer needs these records to write state (:mod:`streams.store`); they carry reports only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from monitor.core.watermarks import Status, Watermarks
from monitor.settings import Settings

__all__ = ["CLOCK_HELD_WARN_S", "CLOCK_KEY", "GroupClock"]

log = logging.getLogger(__name__)

#: Key of the report records on ``internal.asset-pledges`` (no asset id can be it: ids are checked).
CLOCK_KEY = b"__clock__"
#: Seconds the group's stream clock may stand still, with a partition not idle, before the worker warns
#: (:meth:`GroupClock.check_held`): a live feed polls every 10-60 s and moves event time that often, so a
#: minute without movement means a partition holds the clock, and silent assets' windows stay open.
CLOCK_HELD_WARN_S = 60.0
#: Seconds between two reads of the consumer's assignment (:meth:`GroupClock.telemetry_partitions`).
ASSIGNMENT_CACHE_S = 0.5


class GroupClock:
    """The consumer group's stream clock as one worker sees it: its own partitions and the others' reports.

    The rules (holding, idleness, the group's clock) are the core's :class:`Watermarks`; this class
    supplies what only Kafka knows: the assignment, each assigned partition's committed offset and
    high watermark, and the other workers' reports read in band (module docstring).

    Parameters
    ----------
    app
        The faust app: its ``consumer`` (assignment, high watermarks, committed offsets) and ``producer``.
    settings
        Topic names and the number of telemetry partitions.
    worker
        This worker's id, named in its reports.
    started
        Monotonic seconds the worker started (default: now): a partition never heard of holds the clock
        until the reports had time to come.
    """

    def __init__(self, app: Any, settings: Settings, worker: str, started: float | None = None) -> None:
        self.app = app
        self.worker = worker
        self.telemetry_topic = settings.topic("telemetry")
        self.topic = settings.topic("asset-pledges")
        self.partitions = settings.partitions
        self.watermarks = Watermarks(settings.partitions, started=time.monotonic() if started is None else started)
        self._assigned: tuple[float, list[Any]] = (-1.0, [])
        #: (the group clock last seen, when it last changed) and when the held clock was last reported
        self.seen: tuple[float | None, float] = (None, time.monotonic())
        self.warned = 0.0
        #: monotonic seconds since faust has been rebalancing without a break, or None
        self.rebalancing_since: float | None = None
        self.rebalance_warned = 0.0

    def telemetry_partitions(self, now: float) -> list[Any]:
        """The assigned telemetry partitions, re-read from the consumer at most every :data:`ASSIGNMENT_CACHE_S`.

        faust's ``assignment()`` crosses to the consumer thread and builds a set of new TP tuples (≈4 %
        of the worker's time when called per record). A partition revoked in the meantime only lingers
        for that long: aiokafka then refuses its ``highwater`` (an assertion), the partition is skipped and
        the assignment is read again at the next record.
        """
        at, tps = self._assigned
        if now - at >= ASSIGNMENT_CACHE_S:
            topic = self.telemetry_topic
            tps = [tp for tp in self.app.consumer.assignment() if tp.topic == topic]
            self._assigned = (now, tps)
        return tps

    def own_statuses(self, now: float) -> dict[int, Status]:
        """The clock status of each assigned telemetry partition (:meth:`Watermarks.status`).

        The consumer supplies what the core cannot know: the committed offset and the high watermark
        as last fetched. A partition revoked since the cached assignment was read is left out (and
        the assignment is read again next time).
        """
        statuses: dict[int, Status] = {}
        for tp in self.telemetry_partitions(now):
            status = self._status(tp, now)
            if status is not None:
                statuses[tp.partition] = status
        return statuses

    def _status(self, tp: Any, now: float) -> Status | None:
        """One assigned partition's :meth:`Watermarks.status`, or None if it was revoked.

        Revoked since the cached assignment was read: the assignment is then read again next time.
        """
        consumer = self.app.consumer
        try:
            highwater = consumer.highwater(tp)
        except AssertionError:  # revoked since the cached assignment was read: re-read it next time
            self._assigned = (-1.0, [])
            return None
        # private: faust keeps no public committed offset (docs/kafka.md)
        committed = consumer._committed_offset.get(tp)
        return self.watermarks.status(tp.partition, committed, highwater, now)

    def below(self, partition: int, bound: float | None, now: float) -> bool:
        """Whether this worker's ``partition`` alone holds the group's clock below ``bound`` (POSIX s).

        True only when the partition is assigned here and its status (:meth:`Watermarks.status`) is an
        event time earlier than ``bound``: the group's clock, the least such time of all partitions,
        then cannot reach ``bound`` (:meth:`watermark` is at most that time, or None). False when it
        might: ``bound`` None, the partition not assigned (any more), or its status idle or held. One
        high watermark read instead of one per assigned partition, for the record that just came on
        ``partition`` (the worker reads the whole clock only when this is False: 5 % of a saturated
        worker's samples went to reading it per record, py-spy 2026-12-08). Like :meth:`own_statuses`,
        a partition revoked since the cached assignment was read makes the assignment read again.
        """
        if bound is None:
            return False
        for tp in self.telemetry_partitions(now):
            if tp.partition != partition:
                continue
            status = self._status(tp, now)
            return isinstance(status, float) and status < bound
        return False

    def watermark(self) -> float | None:
        """Return the consumer group's stream clock (:meth:`Watermarks.clock`), POSIX s, or None while it holds.

        Assigned partitions count by their status here, the others by their owners' latest reports
        (read in band); a worker whose own partitions are all idle (a frozen feed's, case
        C05) follows the other workers' partitions instead of standing still.
        """
        return self.watermarks.clock(self.own_statuses(time.monotonic()))

    def report(self, statuses: Mapping[int, Status] | None = None) -> bytes:
        """Return this worker's report as JSON bytes (:meth:`Watermarks.report`); ``statuses`` when read already."""
        if statuses is None:
            statuses = self.own_statuses(time.monotonic())
        return json.dumps(self.watermarks.report(statuses, self.worker, time.time())).encode()

    async def send_report(self, statuses: Mapping[int, Status] | None = None) -> None:
        """Send this worker's report to every partition of ``internal.asset-pledges``, each acknowledged.

        To every partition, not only the assigned ones: each worker reads the statuses of the partitions
        it does not hold from the others' reports, on its own partitions (the channel is co-partitioned
        with the telemetry, ``create_topics``).
        """
        value = self.report(statuses)
        for part in range(self.partitions):
            await self.app.producer.send_and_wait(self.topic, CLOCK_KEY, value, part, None, None)

    def on_report(self, value: bytes | None) -> None:
        """Take in a worker's report (:meth:`Watermarks.merge`); one that is not JSON is ignored, as is junk in it."""
        try:
            report = json.loads(value or b"{}")
        except ValueError:
            return
        self.watermarks.merge(report)

    def others(self, statuses: Mapping[int, Status]) -> dict[int, Status]:
        """The reported statuses of the partitions not among ``statuses`` (this worker's own)."""
        return {p: s for p, (_, s) in self.watermarks.reports.items() if p not in statuses}

    def describe(self, statuses: Mapping[int, Status], now: float) -> str:
        """One line for the worker's log: own statuses, the others' reports, the group clock, the assignment."""
        assigned = sorted(tp.partition for tp in self.telemetry_partitions(now))
        return (
            f"own {dict(statuses)}, reports {self.others(statuses)}, group clock {self.watermarks.clock(statuses)} "
            f"(idle {self.watermarks.group_idle}), assigned {assigned}"
        )

    def check_held(self, now: float, statuses: Mapping[int, Status] | None = None) -> bool:
        """Warn, once a minute, while the group's stream clock stands still and not every partition is idle.

        A clock that stands still closes no silent asset's window, so no ``feed-silent`` alert can
        fire: the operator needs to know which partition holds it and why (its status: ``hold`` or
        its newest event time, and the reports of the other workers). Returns whether it warned.
        """
        if statuses is None:
            statuses = self.own_statuses(now)
        clock = self.watermarks.clock(statuses)
        if self.watermarks.group_idle or clock != self.seen[0]:
            self.seen = (clock, now)
            return False
        held_s = now - self.seen[1]
        if held_s < CLOCK_HELD_WARN_S or now - self.warned < CLOCK_HELD_WARN_S:
            return False
        self.warned = now
        log.warning(
            "stream clock held at %s for %.0f s: this worker's partitions %s, the others' reports %s",
            clock,
            held_s,
            statuses,
            self.others(statuses),
        )
        return True

    def check_rebalancing(self, rebalancing: bool, now: float) -> bool:
        """Warn, once a minute, while faust has been rebalancing for :data:`CLOCK_HELD_WARN_S` or more.

        The clock's tick waits while faust rebalances (``app.rebalancing``, until the tables' recovery
        completes), so a recovery that never completes (a changelog partition the assignment left out,
        a changelog faust cannot read to its end) stops every window of this worker from closing: no
        ``feed-silent`` alert could fire. A rebalance normally takes seconds. Returns whether it warned.
        """
        if not rebalancing:
            self.rebalancing_since = None
            return False
        if self.rebalancing_since is None:
            self.rebalancing_since = now
        held_s = now - self.rebalancing_since
        if held_s < CLOCK_HELD_WARN_S or now - self.rebalance_warned < CLOCK_HELD_WARN_S:
            return False
        self.rebalance_warned = now
        log.warning(
            "stream clock not ticked for %.0f s: faust is still rebalancing (tables' recovery not complete); "
            "no window closes until it ends: see faust's recovery log lines for the changelog partitions it awaits",
            held_s,
        )
        return True
