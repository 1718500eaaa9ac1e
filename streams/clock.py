"""The workers' stream-clock reports: each worker tells the others how far its partitions have got.

The group's stream clock (:class:`monitor.core.watermarks.Watermarks`, case C05) needs every telemetry
partition's status, and a worker knows only those assigned to it. Every 5 s each worker sends one
report (``Watermarks.report``: its partitions' newest event time, ``idle`` or ``hold``) to the
one-partition topic ``internal.stream-clock``, and every worker reads that topic whole, outside the
consumer group, with a consumer of its own (the pattern of the rules-control follower).

These reports used to travel as ``__clock__`` records on every partition of ``internal.asset-pledges``,
so that the timer's work would run inside a record of each partition (faust tables wrote only there,
faust-streaming/faust#497). State writes no longer need a record (:mod:`streams.store`), so the
reports only carry reports: one record a worker every 5 s instead of one a partition.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from monitor.core.watermarks import Status, Watermarks
from monitor.settings import Settings
from streams.topics import follow_partition

__all__ = ["CLOCK_HELD_WARN_S", "REPORT_LOOKBACK_S", "GroupClock", "follow_reports", "report_key"]

log = logging.getLogger(__name__)

#: Seconds the group's stream clock may stand still, with a partition not idle, before the worker warns
#: (:meth:`GroupClock.check_held`): a live feed polls every 10-60 s and moves event time that often, so a
#: minute without movement means a partition holds the clock, and silent assets' windows stay open.
CLOCK_HELD_WARN_S = 60.0
#: Seconds between two reads of the consumer's assignment (:meth:`GroupClock.telemetry_partitions`).
ASSIGNMENT_CACHE_S = 0.5
#: Seconds of reports a starting worker reads back: three report periods (the clock timer's 5 s), so it
#: knows every running worker's latest report at once instead of holding its clock until they next send.
REPORT_LOOKBACK_S = 15.0


def report_key(worker: str) -> bytes:
    """Record key of a worker's reports (its id): one worker's reports stay in order on the one partition."""
    return worker.encode()


async def follow_reports(
    settings: Settings, merge: Callable[[bytes | None], None], lookback_s: float = REPORT_LOOKBACK_S
) -> None:
    """Read the stream-clock reports for ever, from ``lookback_s`` ago, handing each record's value to ``merge``.

    Parameters
    ----------
    settings
        Broker address and security options, topic names.
    merge
        Called with each report's bytes (JSON of :meth:`Watermarks.report`; :meth:`GroupClock.on_report`
        ignores what it cannot read).
    lookback_s
        Seconds back from now to start reading; the end of the topic when nothing is that recent.
    """
    async for record in follow_partition(settings, "stream-clock", "pledgewatch-clock-reports", since_s=lookback_s):
        merge(record.value)


class GroupClock:
    """The consumer group's stream clock as one worker sees it: its own partitions and the others' reports.

    The rules (holding, idleness, the group's clock) are the core's :class:`Watermarks`; this class
    supplies what only Kafka knows: the assignment, each assigned partition's committed offset and
    high watermark, and the other workers' reports from ``internal.stream-clock``.

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
        self.topic = settings.topic("stream-clock")
        self.watermarks = Watermarks(settings.partitions, started=time.monotonic() if started is None else started)
        self._assigned: tuple[float, list[Any]] = (-1.0, [])
        #: (the group clock last seen, when it last changed) and when the held clock was last reported
        self.seen: tuple[float | None, float] = (None, time.monotonic())
        self.warned = 0.0

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
        consumer = self.app.consumer
        statuses: dict[int, Status] = {}
        for tp in self.telemetry_partitions(now):
            try:
                highwater = consumer.highwater(tp)
            except AssertionError:  # revoked since the cached assignment was read: re-read it next time
                self._assigned = (-1.0, [])
                continue
            committed = consumer._committed_offset.get(
                tp
            )  # private: faust keeps no public committed offset (docs/kafka.md)
            statuses[tp.partition] = self.watermarks.status(tp.partition, committed, highwater, now)
        return statuses

    def watermark(self) -> float | None:
        """Return the consumer group's stream clock (:meth:`Watermarks.clock`), POSIX s, or None while it holds.

        Assigned partitions count by their status here, the others by their owners' latest reports
        (``internal.stream-clock``); a worker whose own partitions are all idle (a frozen feed's, case
        C05) follows the other workers' partitions instead of standing still.
        """
        return self.watermarks.clock(self.own_statuses(time.monotonic()))

    def report(self, statuses: Mapping[int, Status] | None = None) -> bytes:
        """Return this worker's report as JSON bytes (:meth:`Watermarks.report`); ``statuses`` when read already."""
        if statuses is None:
            statuses = self.own_statuses(time.monotonic())
        return json.dumps(self.watermarks.report(statuses, self.worker, time.time())).encode()

    async def send_report(self, statuses: Mapping[int, Status] | None = None) -> None:
        """Send this worker's report to ``internal.stream-clock`` and wait for the broker's acknowledgement."""
        await self.app.producer.send_and_wait(self.topic, report_key(self.worker), self.report(statuses), 0, None, None)

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
