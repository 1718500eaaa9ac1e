"""The stream clock of a consumer group: per-partition watermarks with idleness, shared between workers.

The core's windows close on one event-time clock. In a backtest it is the newest event time seen. In
the stream the telemetry is spread over partitions read at different speeds by several workers, so the
clock is the **lowest newest-event-time of the partitions still delivering** (Flink's per-partition
watermarks with idle sources, Flink documentation "Generating Watermarks", "Dealing With Idle
Sources"):

- a partition **holds** the clock at its newest event time while it has unread records (its high
  watermark beyond the next offset to handle: a restarted worker working off a backlog) or has
  delivered within :data:`IDLE_PARTITION_S` of processing time;
- it is **idle** once quiet that long with nothing unread, and does not count; and also, with nothing
  unread, while it delivers records whose newest event time has not moved for that long (a frozen feed
  re-sending its last poll, case C20): they bring no new event time. A partition with unread records
  holds however old its records' times, since those unread may be the ones its assets' windows wait for;
- it is in **hold** (the whole clock waits) while it has records not handled since start, or an
  unknown high watermark (no fetch since a rebalance assigned it: not known to be caught up, case C05).

A worker judges its assigned partitions itself (:meth:`Watermarks.status`) and learns the others'
from the reports the other workers send (:meth:`Watermarks.report`, :meth:`Watermarks.merge`); a
partition never reported holds the clock. So a silent asset's window closes only once the partition
that would carry its records has been read up to there, on whichever worker, and window contents
match an in-process backtest. Nothing here reads Kafka: the worker passes in offsets and high
watermarks, and the times (``now``: monotonic processing seconds; event times: POSIX seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Processing-time seconds after which a caught-up partition stops holding the clock. A live feed
#: polls every 10-60 s; 3 s is longer than the gap between two fetches of a busy partition (the
#: consumer fetches every ≤ 0.5 s) and short against a poll interval, so a quiet partition stops
#: holding the others back well before the next window closes.
IDLE_PARTITION_S = 3.0
#: Partition statuses besides an event time.
HOLD, IDLE = "hold", "idle"

Status = float | str


class Watermarks:
    """Per-partition event-time watermarks of one worker, and the group's clock from them and the reports.

    Parameters
    ----------
    partitions
        Number of telemetry partitions of the group (the topic's partition count).
    started
        Monotonic processing time (s) the worker started: for :data:`IDLE_PARTITION_S` after it, a
        partition with records but none handled yet holds the clock.
    idle_s
        :data:`IDLE_PARTITION_S` unless a test sets another.
    """

    def __init__(self, partitions: int, started: float, idle_s: float = IDLE_PARTITION_S) -> None:
        self.partitions = partitions
        self.started = started
        self.idle_s = idle_s
        #: partition -> newest event time (POSIX s) / last offset handled / monotonic time of it
        self.newest: dict[int, float] = {}
        self.offset: dict[int, int] = {}
        self.wall: dict[int, float] = {}
        #: partition -> monotonic time its newest event time last moved forward
        self.advanced: dict[int, float] = {}
        #: partition -> (sender's POSIX send time, status) from the workers' reports
        self.reports: dict[int, tuple[float, Status]] = {}
        #: whether the last :meth:`clock` found every partition of the group idle
        self.group_idle = False
        #: the newest event time (POSIX s) another worker reported having read, on any partition
        self.reported_newest: float | None = None

    def delivered(self, partition: int, offset: int, event_time: float, now: float) -> None:
        """Note one handled record of ``partition`` at ``offset`` with ``event_time`` (POSIX s) at ``now``."""
        newest = self.newest.get(partition)
        if newest is None or event_time > newest:
            self.newest[partition] = event_time
            self.advanced[partition] = now
        self.offset[partition] = offset
        self.wall[partition] = now

    def status(self, partition: int, committed: int | None, highwater: int | None, now: float) -> Status:
        """The status of an assigned partition: its newest event time, :data:`HOLD` or :data:`IDLE`.

        ``committed``: the group's committed offset (next to read; None if unknown), used until this
        worker has handled a record of the partition; ``highwater``: the partition's high watermark as
        the consumer last fetched it (None: not fetched since assigned).

        >>> w = Watermarks(1, started=0.0)
        >>> w.status(0, None, None, now=10.0)  # assigned, never fetched
        'hold'
        >>> w.delivered(0, 41, 1_463_690_739.0, now=10.0)
        >>> w.status(0, None, 42, now=11.0), w.status(0, None, 42, now=14.0), w.status(0, None, 50, now=14.0)
        (1463690739.0, 'idle', 1463690739.0)
        >>> w.delivered(0, 49, 1_463_690_000.0, now=14.0)  # delivering, no newer event time (a frozen feed)
        >>> w.status(0, None, 50, now=14.5), w.status(0, None, 60, now=14.5)  # caught up; records unread
        ('idle', 1463690739.0)
        """
        last = self.offset.get(partition)
        next_offset = last + 1 if last is not None else (committed or 0)
        backlog = highwater is None or highwater > next_offset
        wall = self.wall.get(partition)
        if wall is None:
            return HOLD if backlog or (now - self.started < self.idle_s and highwater) else IDLE
        stuck = now - self.advanced.get(partition, wall) >= self.idle_s
        if backlog or (now - wall < self.idle_s and not stuck):
            return self.newest[partition]
        return IDLE

    def clock(self, own: Mapping[int, Status]) -> float | None:
        """The group's clock (POSIX s), or None while any partition holds it entirely or none delivers.

        ``own``: the statuses of this worker's assigned partitions (:meth:`status`); every other
        partition counts by its latest report. Sets :attr:`group_idle`.

        >>> w = Watermarks(2, started=0.0)
        >>> w.clock({0: IDLE}) is None  # partition 1 never reported
        True
        >>> w.merge({"sent_at": 5.0, "partitions": {"1": 1_000.0}})
        >>> w.clock({0: IDLE}), w.clock({0: 900.0})
        (1000.0, 900.0)
        """
        times: list[float] = []
        for part in range(self.partitions):
            status = own[part] if part in own else self.reports.get(part, (0.0, HOLD))[1]
            if status == HOLD:
                self.group_idle = False
                return None
            if isinstance(status, float):
                times.append(status)
        self.group_idle = not times
        return min(times) if times else None

    def newest_read(self) -> float | None:
        """The newest event time (POSIX s) read by any worker of the group, on any partition, or None.

        Where processing time advances the clock from once every partition is idle: the group has read
        up to here. A worker's own newest alone stopped the clock short when its partitions carried only
        a frozen feed (fault d: its last windows were never valued).

        >>> w = Watermarks(2, started=0.0)
        >>> w.delivered(0, 1, 100.0, now=1.0)
        >>> w.merge({"sent_at": 1.0, "partitions": {"1": "idle"}, "newest": 500.0})
        >>> w.newest_read()
        500.0
        """
        times = [*self.newest.values(), *([self.reported_newest] if self.reported_newest is not None else [])]
        return max(times) if times else None

    def report(self, own: Mapping[int, Status], worker: str, sent_at: float) -> dict[str, Any]:
        """The report of this worker's partitions for the others: ``{"worker", "sent_at", "partitions"}``.

        ``sent_at`` is the sender's POSIX wall time, which orders reports of one partition; ``newest``
        (when this worker has read any record) the newest event time it read, on any partition.
        """
        partitions = {str(p): s for p, s in own.items()}
        report: dict[str, Any] = {"worker": worker, "sent_at": sent_at, "partitions": partitions}
        if self.newest:
            report["newest"] = max(self.newest.values())
        return report

    def merge(self, report: Any) -> None:
        """Take in a report; the newest report of a partition wins. Unreadable reports are ignored.

        Ordered by the sender's clock: a revoked owner's last report, read after the new owner's first
        one, does not replace it. A report without statuses (an older worker's ``{}``) changes nothing.
        """
        try:
            sent_at = float(report["sent_at"])
            items = list(report["partitions"].items())
        except (KeyError, TypeError, ValueError, AttributeError):
            return
        newest = report.get("newest")
        if isinstance(newest, int | float) and not isinstance(newest, bool) and math.isfinite(newest):
            self.reported_newest = float(newest) if self.reported_newest is None else max(self.reported_newest, newest)
        for key, status in items:
            try:
                part = int(key)
            except (TypeError, ValueError):
                continue
            if isinstance(status, bool) or not (status in (HOLD, IDLE) or isinstance(status, int | float)):
                continue
            value: Status = status if isinstance(status, str) else float(status)
            if part not in self.reports or self.reports[part][0] <= sent_at:
                self.reports[part] = (sent_at, value)
