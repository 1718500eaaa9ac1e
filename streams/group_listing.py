"""Every worker's view of the borrower groups' listings: ``internal.group-listing`` ↔ :class:`GroupListings`.

``loan.group_others_on_watch_list`` counts the other open loans of a loan's borrower group listed for
a reason other than a group criterion. The loans are spread over the loan partitions and so over
the workers; a worker holds only its own. So the loan side publishes, after handling a record, the
standing of the loan (:func:`monitor.core.group_listing.standing`) when it differs from what was last
published, to ``internal.group-listing``: compacted, keyed by loan, one partition. Every worker reads
that topic whole, outside the consumer group (as the rules-control topic: each worker must see every
record, which a group would share out), into the loan book's :attr:`~monitor.core.LoanBook.remote`.

Why a reader of our own and not a faust ``GlobalTable``: a global table is written from a stream of
the app and its changelog is its own topic; pointing it at a topic the loan side writes itself (or
at ``pledge.watch-list``) would make faust treat that topic as a changelog, and its recovery blocks
the worker's start. The view is rebuilt from the beginning of the topic at each start (one small
record per listed loan of a group) and is not a table: nothing of it is checkpointed.

Why not ``pledge.watch-list`` itself: its records carry neither the borrower group nor a loan's
closing (a closed loan's last record stays on the list), and which reasons are group criteria would
be judged with the reader's rulebook, not the one that listed the loan.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import ValidationError

from monitor.core.group_listing import GroupListings, counts_for_no_one, standing
from monitor.core.loans import LoanMonitor
from monitor.schemas import GroupListing
from monitor.settings import Settings

__all__ = ["READY_WAIT_S", "RESTART_S", "GroupListingFeed"]

log = logging.getLogger(__name__)

#: Seconds the loan side waits at start for the view to have read the topic to its end (so a restarted
#: worker does not judge its loans' groups before it knows the other workers' listings). The topic is one
#: small record per listed loan of a group, read in well under a second; a reader that has not reached
#: its end in this time meets a broker that does not serve the partition, and the loans go on rather
#: than stall (counting what has arrived; a warning is logged).
READY_WAIT_S = 30.0
#: Seconds before a failed reader starts again: long enough not to spin on a broker that refuses it, short
#: beside the lag a partner's listing may take anyway (its next evaluation, a window of 15 min by default).
RESTART_S = 5.0


class GroupListingFeed:
    """The worker's side of ``internal.group-listing``: what to publish, and the reader that fills the view.

    Parameters
    ----------
    settings
        Broker address, security options and topic names.
    view
        The view the loan book reads (``LoanBook.remote``); a new one when not given.
    """

    def __init__(self, settings: Settings, view: GroupListings | None = None) -> None:
        self.s = settings
        self.view = GroupListings() if view is None else view
        #: loan id -> the record this worker last published for it (not read back yet, perhaps)
        self.sent: dict[str, GroupListing] = {}
        #: loan id -> (group, own listing, closed) when :meth:`due` last looked: the record is built only
        #: when these moved (a loan's records are mostly valuations that move none of them)
        self.checked: dict[str, tuple[Any, ...]] = {}
        #: set once the reader has read the topic up to its end offset at start
        self.ready = asyncio.Event()
        self.waited = False

    def due(self, loan: LoanMonitor | None) -> GroupListing | None:
        """The loan's record to publish now, or ``None`` when it has no group or nothing changed.

        Compared with what this worker last published, else with the view's record (published by
        this worker before a restart, or by another before a rebalance); a loan without a record
        yet needs none while it counts for no one (:func:`counts_for_no_one`: never listed apart
        from the group criterion, or closed).
        """
        if loan is None or (group := getattr(loan.opened, "borrower_group", None)) is None:
            return None
        moved = (group, loan.own_listing, loan.closed)
        if self.checked.get(loan.loan_id) == moved:
            return None
        self.checked[loan.loan_id] = moved
        rec = standing(loan)
        known = self.sent.get(loan.loan_id) or self.view.records.get(loan.loan_id)
        if rec is None or (known is None and counts_for_no_one(rec)) or known == rec:
            return None
        return rec

    def published(self, rec: GroupListing) -> None:
        """Note a record the broker has acknowledged."""
        self.sent[rec.loan_id] = rec

    def forget(self, loan_ids: list[str]) -> None:
        """Drop what was published for loans this worker no longer holds (a revoked partition)."""
        for lid in loan_ids:
            self.sent.pop(lid, None)
            self.checked.pop(lid, None)

    def on_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic to the view (a tombstone forgets the loan; an unreadable one is logged)."""
        if value is None:
            if key is not None:
                self.view.delete(key.decode("utf-8", "replace"))
            return
        try:
            self.view.apply(GroupListing.model_validate_json(value))
        except ValidationError as exc:
            log.error("unreadable group listing record: %s", exc.errors()[0]["msg"])

    async def wait_ready(self, timeout: float = READY_WAIT_S) -> None:
        """Wait, once, until the reader has caught up with the topic as it stood at start (at most ``timeout`` s)."""
        if self.waited:
            return
        self.waited = True
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            log.warning(
                "%s not read to its end within %g s: the loans' group counts include what has arrived",
                self.s.topic("group-listing"),
                timeout,
            )

    async def follow(self) -> None:
        """:meth:`run` for ever: a reader that fails (the broker refuses the topic, a bug) is logged and restarted.

        It reads again from the beginning (the view takes each loan's latest record again, so nothing
        is counted twice) after :data:`RESTART_S`; meanwhile the loans count the records read so far.
        """
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading %s failed; reading it again in %g s", self.s.topic("group-listing"), RESTART_S)
                await asyncio.sleep(RESTART_S)

    async def run(self, consumer: Any = None) -> None:
        """Read the topic from its beginning for ever (aiokafka, no consumer group); set :attr:`ready` at its end.

        ``consumer`` is an unstarted ``AIOKafkaConsumer`` (tests); by default one of the settings'.
        """
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        tp = TopicPartition(self.s.topic("group-listing"), 0)
        if consumer is None:
            consumer = AIOKafkaConsumer(
                **self.s.kafka_options(), group_id=None, enable_auto_commit=False, client_id="pledgewatch-group-listing"
            )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                self.ready.set()
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    self.on_record(record.key, record.value)
                if not self.ready.is_set() and await consumer.position(tp) >= end:
                    self.ready.set()
        finally:
            await consumer.stop()
