"""The other workers' loans in ``loan.group_others_on_watch_list`` (``internal.group-listing``, issue 19).

A stream worker holds the loans of its loan partitions; the standing of every loan of a borrower
group (listed for a reason other than a group criterion, as before and since its last change,
closed) reaches every worker through ``internal.group-listing`` into a :class:`GroupListings`, which
``LoanBook.group_listed`` counts beside the loans it holds. Loans are listed by core banking's
days-past-due reports (``t-watch-dpd``, the test rule of ``test_watch_criteria``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import pickle
from typing import Any

import pytest

from monitor.core import LoanBook, Monitor
from monitor.core.group_listing import GroupListings, counts_for_no_one, standing
from monitor.schemas import GroupListing, LoanClosed, PaymentOverdue
from monitor.sensors import NullSensor
from monitor.settings import Settings
from rules.rulebook import parse_rulebook
from streams.group_listing import GroupListingFeed
from tests.conftest import make_loan, make_pledge
from tests.unit.test_watch_criteria import DAY, DEFAULT, START, TEST_RULES, dpd, fresh, watch
from tests.unit.test_watch_defaults import feed as feed_windows


@pytest.fixture(scope="module")
def valued() -> bytes:
    """Pickled loans as ``test_watch_criteria``'s: L1, L2 of group G1 on A1, A2; L3, L4 of no group; valued."""
    mon = Monitor(parse_rulebook(DEFAULT.read_text().rstrip("\n") + "\n" + TEST_RULES, "t.yaml"))
    for lid, asset, group in (("L1", "A1", "G1"), ("L2", "A2", "G1"), ("L3", "A1", None), ("L4", "A2", None)):
        borrower = "B9" if group is None else f"B-{lid}"
        mon.on_loan_event(make_loan(event_id=f"{lid}:opened", loan_id=lid, borrower_id=borrower, borrower_group=group))
        mon.on_loan_event(make_pledge(event_id=f"{lid}:pledged:{asset}", loan_id=lid, asset_id=asset))
    feed_windows(mon, range(8), ("A1", "A2"))
    return pickle.dumps(mon.loans)


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def split(mon: Monitor, here: tuple[str, ...]) -> LoanBook:
    """A worker's book holding copies of the loans ``here`` of ``mon``, with an empty view of the others."""
    book = LoanBook(mon.loan_book.rulebook, NullSensor())
    for lid in here:
        book.restore(pickle.loads(pickle.dumps(mon.loans[lid], protocol=5)))
    book.remote = GroupListings()
    return book


def publish(book: LoanBook, lid: str) -> GroupListing:
    """What the worker holding ``lid`` publishes for it; read into ``book``'s view."""
    rec = standing(book.loans[lid]) if lid in book.loans else None
    assert rec is not None
    return rec


def test_standing__of_a_loan_without_a_group_is_none_and_of_a_new_loan_says_nothing(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    assert standing(mon.loans["L3"]) is None  # no borrower_group: never counted, never published
    rec = standing(mon.loans["L1"])
    assert rec == GroupListing(loan_id="L1", borrower_group="G1", listed=False)
    assert counts_for_no_one(rec)


def test_view__a_remote_listing_counts_from_just_after_its_event_time_and_its_exit_likewise(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    dpd(mon, "L1", 0, 60)  # L1 listed at START by t-watch-dpd
    entered = standing(mon.loans["L1"])
    assert entered is not None and entered.listed and not entered.listed_before
    view = GroupListings()
    view.apply(entered)
    nobody = lambda lid: False  # noqa: E731
    assert view.count("G1", START, nobody) == 0  # at its own event time: as it stood before
    assert view.count("G1", START + 1, nobody) == 1
    assert view.count("G2", START + 1, nobody) == 0
    dpd(mon, "L1", 2, 0)  # L1's reason ends at START + 2 days
    exited = standing(mon.loans["L1"])
    assert exited is not None and not exited.listed and exited.listed_before
    view.apply(exited)  # the newer record replaces the older one
    assert view.count("G1", START + 2 * DAY, nobody) == 1  # still listed just before its exit
    assert view.count("G1", START + 2 * DAY + 1, nobody) == 0
    view.delete("L1")  # a tombstone
    assert view.count("G1", START + DAY, nobody) == 0 and not view.groups["G1"]


def test_group_listed__a_remote_loan_entering_and_leaving_lists_and_unlists_the_partner(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    one, two = split(mon, ("L1", "L3")), split(mon, ("L2", "L4"))
    at = _dt(START)
    out = one.on_loan_event(PaymentOverdue(event_id="x1", loan_id="L1", effective_at=at, days_past_due=60, as_of=at))
    assert watch(out, "L1") == [("entered", "t-watch-dpd")]
    assert two.remote is not None
    two.remote.apply(publish(one, "L1"))
    out = dpd_on(two, "L2", 1, 0)
    assert watch(out, "L2") == [("entered", "watch-group-listed")]
    (ev,) = [o.message for o in out if o.topic == "watch-list"]
    assert ev.facts["group_others_on_watch_list"] == 1.0
    # L1's reason ends on worker one; worker two reads it; L2 leaves at its next evaluation
    assert watch(dpd_on(one, "L1", 2, 0), "L1") == [("exited", "t-watch-dpd")]
    two.remote.apply(publish(one, "L1"))
    assert watch(dpd_on(two, "L2", 3, 0), "L2") == [("exited", "watch-group-listed")]


def dpd_on(book: LoanBook, loan: str, day: float, days: int) -> list[Any]:
    at = _dt(START + day * DAY)
    ev = PaymentOverdue(event_id=f"{loan}:{day}:{days}", loan_id=loan, effective_at=at, days_past_due=days, as_of=at)
    return book.on_loan_event(ev)


def test_group_listed__a_remote_loan_listed_only_by_the_group_criterion_does_not_count(valued) -> None:  # type: ignore[no-untyped-def]
    """No feedback loop across workers: L2, listed by the group alone, never holds L1 on the list."""
    mon = fresh(valued)
    one, two = split(mon, ("L1",)), split(mon, ("L2",))
    assert one.remote is not None and two.remote is not None
    dpd_on(one, "L1", 0, 60)
    two.remote.apply(publish(one, "L1"))
    assert watch(dpd_on(two, "L2", 1, 0), "L2") == [("entered", "watch-group-listed")]
    rec = publish(two, "L2")
    assert counts_for_no_one(rec)  # on the list, but by the group criterion only: nothing to tell the others
    one.remote.apply(rec)
    assert watch(dpd_on(one, "L1", 2, 0), "L1") == [("exited", "t-watch-dpd")]
    assert one.group_listed(one.loans["L1"], START + 3 * DAY) == 0
    two.remote.apply(publish(one, "L1"))
    assert watch(dpd_on(two, "L2", 3, 0), "L2") == [("exited", "watch-group-listed")]
    assert watch(dpd_on(one, "L1", 4, 0), "L1") == []


def test_group_listed__a_closed_remote_loan_counts_for_no_one(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    one, two = split(mon, ("L1",)), split(mon, ("L2",))
    assert two.remote is not None
    dpd_on(one, "L1", 0, 60)
    two.remote.apply(publish(one, "L1"))
    assert two.group_listed(two.loans["L2"], START + DAY) == 1
    at = _dt(START + DAY)
    one.on_loan_event(LoanClosed(event_id="L1:closed", loan_id="L1", effective_at=at))
    closed = publish(one, "L1")
    assert closed.closed and closed.listed  # still listed (a closed loan is not evaluated), but closed
    two.remote.apply(closed)
    assert two.group_listed(two.loans["L2"], START + 2 * DAY) == 0
    assert one.group_listed(one.loans["L1"], START + 2 * DAY) == 0


def test_group_listed__a_loan_held_here_and_in_the_view_counts_once_from_its_own_state(valued) -> None:  # type: ignore[no-untyped-def]
    """After a rebalance the loan's old record is in the view and its state in the book: one count, the state's."""
    mon = fresh(valued)
    one, two = split(mon, ("L1",)), split(mon, ("L2",))
    assert two.remote is not None
    dpd_on(one, "L1", 0, 60)
    two.remote.apply(publish(one, "L1"))
    two.restore(pickle.loads(pickle.dumps(one.loans["L1"], protocol=5)))  # L1's partition moves to worker two
    assert two.group_listed(two.loans["L2"], START + DAY) == 1
    dpd_on(two, "L1", 2, 0)  # its reason ends here, before worker two has read its own new record
    assert two.group_listed(two.loans["L2"], START + 3 * DAY) == 0  # the book's state, not the stale record
    # and the loan evaluated is never its own partner, held or not
    assert two.group_listed(two.loans["L1"], START + DAY) == 0
    three = split(mon, ("L2",))
    assert three.remote is not None
    three.remote.apply(publish(one, "L1"))
    three.remote.apply(GroupListing(loan_id="L2", borrower_group="G1", listed=True))
    assert three.group_listed(three.loans["L2"], START + DAY) == 1  # L1; L2's own record is skipped


def test_the_backtest_has_no_view_and_counts_as_before(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    assert mon.loan_book.remote is None
    dpd(mon, "L1", 0, 60)
    assert mon.loan_book.group_listed(mon.loans["L2"], START + DAY) == 1


# --- the worker's feed ---------------------------------------------------------------------------


def test_feed__publishes_a_loan_when_its_standing_changes_only(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    feed = GroupListingFeed(Settings())
    assert feed.due(None) is None and feed.due(mon.loans["L3"]) is None  # no loan; no group
    assert feed.due(mon.loans["L1"]) is None  # a loan never listed tells no one anything
    dpd(mon, "L1", 0, 60)
    rec = feed.due(mon.loans["L1"])
    assert rec is not None and rec.listed
    feed.published(rec)
    assert feed.due(mon.loans["L1"]) is None  # published already
    dpd(mon, "L1", 1, 70)  # another report, the listing unchanged
    assert feed.due(mon.loans["L1"]) is None
    feed.forget(["L1"])
    feed.view.apply(rec)  # after a restart: the view holds what was published before
    assert feed.due(mon.loans["L1"]) is None
    dpd(mon, "L1", 2, 0)
    assert feed.due(mon.loans["L1"]) == standing(mon.loans["L1"])


def test_feed__applies_records_and_tombstones_and_logs_an_unreadable_one(caplog) -> None:  # type: ignore[no-untyped-def]
    feed = GroupListingFeed(Settings())
    rec = GroupListing(loan_id="L9", borrower_group="G", listed=True)
    feed.on_record(b"L9", rec.model_dump_json().encode())
    assert feed.view.records["L9"] == rec and feed.view.groups["G"] == {"L9"}
    feed.on_record(b"L9", b"{}")
    assert "unreadable group listing record" in caplog.text and feed.view.records["L9"] == rec
    feed.on_record(b"L9", None)
    assert "L9" not in feed.view.records


class _Record:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.key, self.value = offset, b"L", value


class _Consumer:
    """An aiokafka consumer's few calls the reader makes, over a fixed partition of records."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = [_Record(i, v) for i, v in enumerate(records)]
        self.pos = 0
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, tps: list[Any]) -> None:
        self.tp = tps[0]

    async def seek_to_beginning(self, tp: Any) -> None:
        self.pos = 0

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tps[0]: len(self.records)}

    async def getmany(self, tp: Any, timeout_ms: int) -> dict[Any, list[_Record]]:
        batch, self.pos = self.records[self.pos : self.pos + 1], self.pos + 1
        if not batch:
            await asyncio.sleep(timeout_ms / 1000)
        return {tp: batch}

    async def position(self, tp: Any) -> int:
        return min(self.pos, len(self.records))


@pytest.mark.parametrize("n", [0, 3])
def test_feed__the_reader_is_ready_once_it_has_read_to_the_end_offset_at_start(n: int) -> None:
    recs = [
        GroupListing(loan_id="L", borrower_group="G", listed=i % 2 == 0).model_dump_json().encode() for i in range(n)
    ]

    async def go() -> tuple[bool, bool, GroupListing | None]:
        feed = GroupListingFeed(Settings())
        consumer = _Consumer(recs)
        task = asyncio.ensure_future(feed.run(consumer))
        await feed.wait_ready(timeout=5)
        ready = feed.ready.is_set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return ready, consumer.stopped, feed.view.records.get("L")

    ready, stopped, last = asyncio.run(go())
    assert ready and stopped
    assert (last is None) if n == 0 else (last is not None and last.listed)  # the last of 3: listed (i = 2)


def test_feed__a_reader_that_never_catches_up_delays_the_loans_once_then_lets_them_go(caplog) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        feed = GroupListingFeed(Settings())
        await feed.wait_ready(timeout=0.01)
        await feed.wait_ready(timeout=60)  # waited once: returns at once

    asyncio.run(go())
    assert "not read to its end within 0.01 s" in caplog.text


def test_feed__a_loan_closing_is_published_once_it_has_a_record_and_never_before(valued) -> None:  # type: ignore[no-untyped-def]
    mon = fresh(valued)
    feed = GroupListingFeed(Settings())
    at = dt.datetime.fromtimestamp(START, dt.UTC)
    mon.on_loan_event(LoanClosed(event_id="L2:closed", loan_id="L2", effective_at=at))
    assert feed.due(mon.loans["L2"]) is None  # never listed: a reader counts it for no one without a record
    dpd(mon, "L1", 0, 60)
    rec = feed.due(mon.loans["L1"])
    assert rec is not None
    feed.published(rec)
    mon.on_loan_event(LoanClosed(event_id="L1:closed", loan_id="L1", effective_at=_dt(START + DAY)))
    closed = feed.due(mon.loans["L1"])
    assert closed is not None and closed.closed  # the readers must stop counting it


def test_feed__a_failed_reader_is_logged_and_started_again(monkeypatch: Any, caplog: Any) -> None:
    import streams.group_listing as gl

    monkeypatch.setattr(gl, "RESTART_S", 0.0)
    feed = GroupListingFeed(Settings())
    runs: list[int] = []

    async def run(consumer: Any = None) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("topic refused")
        feed.ready.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(feed, "run", run)

    async def go() -> None:
        task = asyncio.ensure_future(feed.follow())
        await feed.wait_ready(timeout=5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert len(runs) == 2 and "reading" in caplog.text and "topic refused" in caplog.text
