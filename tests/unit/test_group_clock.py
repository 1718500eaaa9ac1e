"""The stream clock is the consumer group's (case C05): partition statuses travel in the clock records.

A worker whose own partitions are all idle (the frozen feed's partition, drained; an empty one) used
to have no clock at all and left its assets' windows open for good after a rebalance. It now follows
the other workers' partitions through their reports. The clock is
:class:`monitor.core.watermarks.Watermarks`; the worker feeds it from a fake consumer here (committed
offsets, high watermarks, the assignment). The real case is
``tests/integration/test_faults.py::test_case_c05_fault_d__...`` on the broker.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from faust.types import TP as FaustTP

from monitor.core.watermarks import HOLD, IDLE, IDLE_PARTITION_S, Watermarks
from monitor.settings import Settings
from streams.clock import GroupClock

TOPIC = "it.telemetry"


def tp(part: int) -> FaustTP:
    return FaustTP(TOPIC, part)


class FakeConsumer:
    def __init__(self, assigned: list[int], highwater: dict[int, int | None]) -> None:
        self.assigned = {tp(p) for p in assigned}
        self.hw = highwater
        self._committed_offset: dict[Any, int | None] = {}

    def assignment(self) -> set[Any]:
        return self.assigned

    def highwater(self, t: Any) -> int | None:
        assert t in self.assigned, "Partition is not assigned"
        return self.hw.get(t.partition)


class ClockNode:
    """A worker's :class:`GroupClock` over a fake consumer (no app, tables or books)."""

    def __init__(self, consumer: FakeConsumer, partitions: int = 4) -> None:
        self.app = type("App", (), {"consumer": consumer})()
        settings = Settings(topic_prefix="it.", partitions=partitions)
        self.clock = GroupClock(self.app, settings, "w-test", started=time.monotonic() - 60.0)  # a minute ago
        self.watermark = self.clock.watermark
        self.on_clock_record = self.clock.on_report
        self.clock_report = self.clock.report

    def delivered(self, part: int, offset: int, event_time: float, ago_s: float = 0.0) -> None:
        self.clock.watermarks.delivered(part, offset, event_time, time.monotonic() - ago_s)

    def partition_status(self, t: Any, now: float) -> float | str:
        return self.clock.own_statuses(now)[t.partition]

    @property
    def partition_reports(self) -> dict[int, tuple[float, float | str]]:
        return self.clock.watermarks.reports

    @property
    def group_idle(self) -> bool:
        return self.clock.watermarks.group_idle


def report(sent_at: float, **statuses: float | str) -> bytes:
    return json.dumps({"worker": "other", "sent_at": sent_at, "partitions": statuses}).encode()


def test_a_worker_whose_own_partitions_are_idle_follows_the_other_workers_partitions() -> None:
    # this worker holds the frozen feed's partition (drained, quiet) and an empty one
    node = ClockNode(FakeConsumer([0, 1], {0: 500, 1: 0}))
    node.delivered(0, 499, 1_000.0, ago_s=IDLE_PARTITION_S + 1)
    assert node.watermark() is None  # partitions 2 and 3 never reported: they hold the clock
    node.on_clock_record(report(10.0, **{"2": 5_000.0, "3": 4_000.0}))
    assert node.watermark() == 4_000.0  # before C05: None for good, its windows never closed
    assert node.group_idle is False


def test_a_partition_reported_in_hold_or_never_reported_holds_the_whole_clock() -> None:
    node = ClockNode(FakeConsumer([0], {0: 10}))
    node.delivered(0, 9, 7_000.0)  # delivering now: holds at its time
    node.on_clock_record(report(10.0, **{"1": IDLE, "2": HOLD, "3": 8_000.0}))
    assert node.watermark() is None
    node.on_clock_record(report(11.0, **{"2": 6_500.0}))
    assert node.watermark() == 6_500.0  # the lowest of the delivering partitions, own or reported


def test_the_newest_report_of_a_partition_wins_a_revoked_owners_late_report_does_not() -> None:
    node = ClockNode(FakeConsumer([0], {0: 10}))
    node.delivered(0, 9, 9_000.0)
    node.on_clock_record(report(20.0, **{"1": IDLE, "2": IDLE, "3": IDLE}))  # the new owner's
    node.on_clock_record(report(19.0, **{"1": 100.0}))  # the old owner's, sent before, read after
    assert node.partition_reports[1] == (20.0, IDLE)
    assert node.watermark() == 9_000.0


def test_own_partitions_are_judged_locally_not_by_reports() -> None:
    node = ClockNode(FakeConsumer([0, 1, 2, 3], {0: 10, 1: 10, 2: 10, 3: 10}))
    for p in range(4):
        node.delivered(p, 9, 1_000.0 * (p + 1))
    node.on_clock_record(report(99.0, **{"0": HOLD, "1": 1.0}))  # stale claims about our partitions
    assert node.watermark() == 1_000.0


def test_a_backlog_or_an_unknown_high_watermark_holds_an_idle_partition_does_not() -> None:
    node = ClockNode(FakeConsumer([0, 1, 2, 3], {0: 10, 1: None, 2: 0, 3: 20}))
    node.delivered(0, 9, 1_000.0, ago_s=IDLE_PARTITION_S + 1)  # caught up and quiet: idle
    node.delivered(3, 9, 3_000.0, ago_s=IDLE_PARTITION_S + 1)  # quiet but 10 records unread: holds at its time
    assert node.partition_status(tp(0), time.monotonic()) == IDLE
    assert node.partition_status(tp(1), time.monotonic()) == HOLD  # assigned, never fetched (C05)
    assert node.partition_status(tp(2), time.monotonic()) == IDLE  # empty
    assert node.partition_status(tp(3), time.monotonic()) == 3_000.0
    assert node.watermark() is None
    node.app.consumer.hw[1] = 0
    assert node.watermark() == 3_000.0


def test_only_a_wholly_idle_group_lets_processing_time_advance_the_clock() -> None:
    node = ClockNode(FakeConsumer([0, 1], {0: 10, 1: 0}))
    node.delivered(0, 9, 1_000.0, ago_s=IDLE_PARTITION_S + 1)
    node.on_clock_record(report(1.0, **{"2": 2_000.0, "3": IDLE}))
    node.watermark()
    assert node.group_idle is False  # another worker's partition still delivers: its time is the clock
    node.on_clock_record(report(2.0, **{"2": IDLE}))
    assert node.watermark() is None and node.group_idle is True


def test_clock_reports_round_trip_and_unreadable_ones_are_ignored() -> None:
    sender = ClockNode(FakeConsumer([0, 1], {0: 10, 1: 0}))
    sender.delivered(0, 9, 1_234.5)
    body = json.loads(sender.clock_report())
    assert body["partitions"] == {"0": 1_234.5, "1": IDLE} and body["worker"] == "w-test"
    receiver = ClockNode(FakeConsumer([2, 3], {2: 0, 3: 0}))
    receiver.on_clock_record(sender.clock_report())
    assert receiver.partition_reports[0][1] == 1_234.5 and receiver.partition_reports[1][1] == IDLE
    for junk in (
        b"{}",
        b"",
        None,
        b"not json",
        b'{"sent_at": "x", "partitions": {}}',
        b'{"sent_at": 5, "partitions": {"0": [1]}}',
    ):
        receiver.on_clock_record(junk)
    assert receiver.partition_reports[0][1] == 1_234.5


def test_a_clock_standing_still_for_a_minute_names_the_partition_that_holds_it(caplog: Any) -> None:
    """Fault (a) in CI: a frozen feed's windows stopped closing after a restart, and nothing said why."""
    import logging
    from types import SimpleNamespace

    from streams.clock import CLOCK_HELD_WARN_S

    statuses: dict[int, Any] = {0: 1_463_688_025.0, 1: "idle"}
    clock: Any = SimpleNamespace(
        watermarks=Watermarks(2, started=0.0),
        own_statuses=lambda now: dict(statuses),
        seen=(None, 0.0),
        warned=0.0,
    )
    clock.others = lambda own: GroupClock.others(clock, own)
    check = lambda at: GroupClock.check_held(clock, at)  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="streams.clock"):
        assert not check(1.0)  # first sight of this clock value
        assert not check(1.0 + CLOCK_HELD_WARN_S - 1)
        assert check(1.0 + CLOCK_HELD_WARN_S)
        assert "stream clock held at 1463688025.0" in caplog.text and "{0: 1463688025.0, 1: 'idle'}" in caplog.text
        assert not check(1.0 + CLOCK_HELD_WARN_S + 5)  # once a minute, not every tick
        statuses[0] = 1_463_688_900.0  # the clock moves: no warning, the count starts again
        assert not check(200.0) and not check(200.0 + CLOCK_HELD_WARN_S - 1)
        statuses[0] = "idle"  # every partition idle (a quiet group): standing still is expected
        assert not check(400.0) and not check(400.0 + 10 * CLOCK_HELD_WARN_S)


def test_case_c20_a_frozen_feeds_partition_caught_up_does_not_hold_the_group_clock() -> None:
    """A caught-up partition delivering a frozen feed's re-sent poll (its old event time) brings no new
    event time and does not hold the clock; one with records unread holds, however old its times."""
    from monitor.core.watermarks import IDLE, Watermarks

    w = Watermarks(2, started=0.0, idle_s=3.0)
    frozen, live = 1_463_688_000.0, 1_463_688_000.0
    for step in range(20):  # one record a second on each partition, each read up to its end
        now = 10.0 + step
        w.delivered(0, step, frozen, now)  # the same poll again and again
        live += 60.0
        w.delivered(1, step, live, now)
        own = {p: w.status(p, None, step + 1, now) for p in (0, 1)}
    assert own[0] == IDLE and own[1] == live
    assert w.clock(own) == live  # not the frozen time
    assert w.status(0, None, 1000, now=30.0) == frozen  # records unread: it holds


def test_case_c20_when_the_group_is_idle_the_clock_advances_from_the_newest_time_the_group_read() -> None:
    """Fault d lost the frozen feed's last windows: its worker held only the frozen feed's partition,
    so when every partition went idle it advanced processing time from the freeze, its own newest."""
    import time as _time

    from monitor.core.watermarks import Watermarks

    frozen, end = 1_463_688_000.0, 1_463_713_000.0
    clocks = Watermarks(2, started=0.0)
    clocks.delivered(0, 5, frozen, now=1.0)
    clocks.merge({"sent_at": 1.0, "partitions": {"1": "idle"}, "newest": end})  # the other worker read to the end
    clocks.group_idle = True
    ticks: list[float] = []
    node: Any = SimpleNamespace(
        clock=SimpleNamespace(watermarks=clocks),
        assets=SimpleNamespace(clock=frozen, tick=lambda t, owns: ticks.append(t) or []),
        last_telemetry_wall=_time.time() - 60.0,
        started_wall=_time.time() - 120.0,
        owns=lambda a: True,
    )
    from streams.worker import Node

    Node.idle_advance(node)
    assert ticks and ticks[0] >= end + 60.0
    # a report without "newest" (an older worker) is read as before
    clocks.merge({"sent_at": 2.0, "partitions": {"1": "idle"}})
    assert clocks.newest_read() == end


def test_a_rebalance_that_never_ends_is_named_once_a_minute(caplog: Any) -> None:
    """The tick waits while faust rebalances; a recovery stuck on a changelog left every window open, unsaid."""
    import logging

    from streams.clock import CLOCK_HELD_WARN_S

    clock = GroupClock(SimpleNamespace(), Settings(topic_prefix="it."), "w1", started=0.0)
    with caplog.at_level(logging.WARNING, logger="streams.clock"):
        assert not clock.check_rebalancing(True, 10.0)
        assert not clock.check_rebalancing(True, 10.0 + CLOCK_HELD_WARN_S - 1)
        assert clock.check_rebalancing(True, 10.0 + CLOCK_HELD_WARN_S)
        assert "still rebalancing" in caplog.text and f"for {CLOCK_HELD_WARN_S:.0f} s" in caplog.text
        assert not clock.check_rebalancing(True, 10.0 + CLOCK_HELD_WARN_S + 5)  # once a minute
        assert not clock.check_rebalancing(False, 200.0)  # it ended: the count starts again
        assert not clock.check_rebalancing(True, 201.0) and not clock.check_rebalancing(True, 200.0 + CLOCK_HELD_WARN_S)
        assert clock.check_rebalancing(True, 201.0 + CLOCK_HELD_WARN_S)


def test_below__true_only_when_the_records_partition_alone_keeps_the_clock_under_the_bound() -> None:
    """The per-record shortcut never says "below" when the whole clock could reach the bound (issue 18).

    For every case where :meth:`GroupClock.below` is True, the group's clock is None or under the
    bound, so the worker's skipped read of the whole clock could not have found a tick due.
    """
    consumer = FakeConsumer([0, 1], {0: 100, 1: 100})
    node = ClockNode(consumer, partitions=2)
    node.on_clock_record(json.dumps({"worker": "w2", "sent_at": time.time(), "partitions": {}}).encode())
    node.delivered(0, 10, 1_000.0)  # backlog (high watermark 100): partition 0 holds at 1,000
    node.delivered(1, 10, 5_000.0)
    now = time.monotonic()
    assert node.clock.below(0, 2_000.0, now) and node.watermark() == 1_000.0
    assert not node.clock.below(0, 1_000.0, now)  # at the bound: the clock may reach it (tick due at >=)
    assert not node.clock.below(1, 2_000.0, now)  # partition 1 is past the bound: the others decide
    assert not node.clock.below(0, None, now)  # no boundary yet: a tick is due at any clock
    assert not node.clock.below(3, 2_000.0, now)  # not assigned here
    consumer.hw[0] = 11  # caught up and quiet for longer than the idle time: idle, does not hold
    node.delivered(0, 10, 1_000.0, ago_s=IDLE_PARTITION_S + 1)
    assert not node.clock.below(0, 2_000.0, time.monotonic())
    assert node.watermark() == 5_000.0


def test_below__a_partition_revoked_since_the_cached_assignment_reads_it_again() -> None:
    consumer = FakeConsumer([0], {0: 100})
    node = ClockNode(consumer, partitions=1)
    node.delivered(0, 10, 1_000.0)
    now = time.monotonic()
    assert node.clock.below(0, 2_000.0, now)
    consumer.assigned = set()  # revoked; the cached assignment still names it
    assert not node.clock.below(0, 2_000.0, now)
    assert node.clock._assigned == (-1.0, [])
