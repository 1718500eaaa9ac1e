"""The worker's glue between faust records and the core: :class:`Node` (the app is ``streams/app.py``).

Data flow (``docs/topics.md``)::

    pledge.telemetry ─┐                       ┌─> pledge.valuations (key asset)
    internal.asset-pledges ─> telemetry agent ─┤
                       (AssetBook, by asset)   └─> internal.loan-valuations (key loan)
    pledge.loan-book ─┐
    internal.loan-valuations ─> loan agent ──> pledge.loan-risk, pledge.alerts,
                       (LoanBook, by loan)     pledge.margin-calls, internal.asset-pledges,
                                               internal.portfolio-exposure (key loan, 1 partition)
    internal.portfolio-exposure ─> portfolio agent (PortfolioBook, one owner) ─> pledge.alerts (scope portfolio)
    loan side ─> internal.group-listing (key loan, 1 partition) ─> every worker's reader ─> LoanBook.remote
    bad input ────────────────────────────────> pledge.dead-letter

Per record the Node makes one call into the core (:func:`monitor.core.apply_telemetry_record`, or the
loan book's), publishes the outputs and awaits the broker's acknowledgements
(:class:`streams.publish.Publisher`: nothing is dropped, however long an outage), then checkpoints
the states that record them (:mod:`streams.store`) and only then acknowledges the input record. A
5-s timer moves the stream clock itself (:meth:`Node.clock_tick`): it closes the windows the group's
clock has passed, silent assets' too, and advances the clock by processing time while no telemetry
arrives, so a feed that goes dark still closes windows; the workers tell each other their
partitions' progress in band, as records on the telemetry's own partitions (:mod:`streams.clock`).

Why :class:`Node` stays one class of ≈ 520 lines: its methods share one invariant, in one lock,
that no other module can check: a record's outputs reach the broker before the state that records
them is checkpointed, and the record is acknowledged only after that checkpoint (C01). Everything
else (the clock, publishing, the offset-hole repair, the hold's backpressure, the state store, the app) has a
module of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import faust
from pydantic import ValidationError

from monitor.core import (
    AssetBook,
    LoanBook,
    Output,
    Provenance,
    apply_telemetry_record,
    dead_letter,
    decode_loan_event,
)
from monitor.errors import InputRejected
from monitor.schemas import (
    Alert,
    CollateralPledged,
    CollateralReleased,
    CollateralValuation,
)
from monitor.sensors import Sensor
from monitor.settings import Settings
from streams.backpressure import HoldBackpressure, LoanSideProbe
from streams.clock import CLOCK_KEY, GroupClock
from streams.faults import SlowRecordFault
from streams.group_listing import GroupListingFeed
from streams.heap import FrozenState
from streams.offsets import OffsetHoleRepair
from streams.portfolio import PortfolioOwner
from streams.publish import Publisher
from streams.rules_control import Decision, status, worker_id
from streams.store import StateTable, key_partition

__all__ = ["CHECKPOINT_INTERVAL_S", "Node"]

log = logging.getLogger(__name__)

#: Processing-time seconds between two checkpoints of a partition's changed asset states (pickled into the
#: changelog). Each checkpoint pickles every asset changed since the last, de-duplication memory included:
#: checkpointing at every window close took ≈ 47 % of a loaded worker's time, every second still ≈ 22 %
#: (py-spy, benchmarks/e2e.py). Input records are acknowledged only once checkpointed, so this bounds how far
#: the committed offset trails and how much a crashed worker's successor re-reads (Kafka Streams commits
#: every 30 s by default).
CHECKPOINT_INTERVAL_S = 5.0
#: Wall-clock seconds without telemetry before processing time advances the stream clock.
IDLE_ADVANCE_S = 10.0
#: Seconds between two scans of the tables for states the books miss (:meth:`Node.load_assigned`): the
#: clock timer's period, so a silent asset a path forgot to load closes its next window in time
LOAD_RESCAN_S = 5.0


class Node:
    """Glue between faust events and the core for one worker process.

    Parameters
    ----------
    app
        The faust app (for the producer).
    settings
        Resolved settings (topic names).
    assets, loans
        The core's books.
    asset_table, loan_table
        faust tables holding pickled per-asset / per-loan state.
    sensor
        Metrics sensor.
    group_feed
        The loans' group listings (:mod:`streams.group_listing`): published by the loan side, read into
        ``loans.remote``; None without them (tests of the other parts).
    """

    group_feed: GroupListingFeed | None = None

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        assets: AssetBook,
        loans: LoanBook,
        asset_table: Any,
        loan_table: Any,
        sensor: Sensor,
        metrics: Any = None,
        pusher: Any = None,
        portfolio_table: Any = None,
        group_feed: GroupListingFeed | None = None,
    ) -> None:
        self.app = app
        self.s = settings
        self.assets = assets
        self.loans = loans
        self.asset_state = StateTable(asset_table, assets.assets, assets.held, restore=assets.restore)
        self.loan_state = StateTable(loan_table, loans.loans, restore=loans.restore)
        self.sensor = sensor
        self.metrics = metrics
        #: every output is awaited until the broker acknowledges it (:mod:`streams.publish`)
        self.publisher = Publisher(app, settings, metrics, pusher)
        self.publish = self.publisher.publish
        if metrics is not None:  # the firing gauge reads the loans' alert states at each scrape (C14)
            metrics.alerts_firing.source = self.firing_alerts
            metrics.concentration.source = self.concentration_rows
        self.worker = worker_id()
        #: (max_skew_s, earliest event time in POSIX s, max_bytes): fixed, so not recomputed per record
        self.bounds = (settings.max_clock_skew_s, settings.earliest_event_time.timestamp(), settings.max_message_bytes)
        #: the input topics' names, checked per record: formatted once
        self.telemetry_topic = settings.topic("telemetry")
        self.pledges_topic = settings.topic("asset-pledges")
        self.loan_topic = settings.topic("loan-book")
        #: the portfolio's concentration, owned by the worker assigned ``internal.portfolio-exposure``
        #: (:mod:`streams.portfolio`); None without its table (tests of the other agents)
        self.portfolio = (
            PortfolioOwner(portfolio_table, lambda: self.loans.rulebook, sensor)
            if portfolio_table is not None
            else None
        )
        #: the other workers' loans for the group count (:mod:`streams.group_listing`); None in tests of other parts
        self.group_feed = group_feed
        if group_feed is not None:
            loans.remote = group_feed.view
        #: the agents' input topics: the only ones whose offsets the group commits (the tables' changelog
        #: partitions are assigned too, for recovery and standbys, and are never committed)
        self.input_topics = frozenset(
            {
                self.telemetry_topic,
                self.pledges_topic,
                self.loan_topic,
                settings.topic("loan-valuations"),
                settings.topic("portfolio-exposure"),
            }
        )
        self.asset_partition: dict[str, int] = {}
        #: the group's stream clock: this worker's partitions and the others' reports (:mod:`streams.clock`)
        self.clock = GroupClock(app, settings, self.worker)
        self.dirty: dict[int, set[str]] = {}
        self.last_telemetry_wall: float | None = None
        self.started_wall = time.time()
        self.loaded_for: frozenset[Any] = frozenset()
        self.loaded_at = 0.0
        self.metadata_ready = False
        self.pending_acks: dict[int, list[Any]] = {}
        #: True while a record or a clock tick changes asset states and publishes (the checkpoint waits)
        self.asset_handling = False
        #: the telemetry agent's records and the clock's tick change asset states one at a time
        self.asset_lock = asyncio.Lock()
        #: agent source label -> (tp, offset) of the record it is handling (in flight for the hole repair)
        self.in_hand: dict[str, tuple[Any, int]] = {}
        self.flushed: set[int] = set()
        self.persisted_at: dict[int, float] = {}
        #: the telemetry agent's stream (manual acks), once it runs
        self.manual: Any = None
        #: re-reads records faust read and will never commit (:mod:`streams.offsets`)
        self.offset_holes = OffsetHoleRepair(app, self.input_topics)
        #: telemetry before its pledge: pause, then resume or dead-letter on the loan side's evidence
        self.backpressure = HoldBackpressure(
            app,
            assets,
            assets.params.hold_unknown,
            self.telemetry_topic,
            LoanSideProbe(settings, settings.app_id, self.loan_topic, self.pledges_topic),
            metrics,
        )
        #: the loaded states frozen out of the garbage collector's full passes (:mod:`streams.heap`)
        self.heap = FrozenState()
        #: fault injection for the reliability tests only (case C05), None in production (:mod:`streams.faults`)
        self.fault_slow_record = SlowRecordFault.from_env()

    # --- state -------------------------------------------------------------------------------
    def acks_after(self, event: faust.EventT) -> list[faust.EventT]:
        """The telemetry-agent events whose effects are now durable (to ack), given the one just handled.

        An event waits in its partition's pending list until that partition's dirty asset states
        have been written to the changelog (:meth:`persist` with ``flushed=True``); faust flushes
        the producer before it commits, so a committed offset never passes an unpersisted event.
        """
        part = event.message.partition
        waiting = self.pending_acks.setdefault(part, [])
        waiting.append(event)
        if part not in self.flushed:
            return []
        self.flushed.discard(part)
        self.pending_acks[part] = []
        return waiting

    def flush_pending(self, min_age_s: float) -> list[faust.EventT]:
        """Checkpoint every partition whose records have waited ``min_age_s`` for it; return them, to ack.

        Run by a timer, not only by records: a partition that stops delivering (the end of a backlog,
        or a rebalance, which pauses the stream and then waits for every record in flight to be acked)
        must not keep its records unacknowledged. Without this, adding a worker under load hung the
        rebalance (faust's ``wait_empty``) for good. The table writes need no record in hand
        (:mod:`streams.store`).

        Nothing is written while a record is half handled (:attr:`asset_handling`): the state in memory
        then holds changes whose outputs the broker has not acknowledged; the timer's next run writes it.
        """
        if self.asset_handling:  # a record is half handled: its outputs are not acknowledged yet
            return []
        now = time.monotonic()
        done: list[faust.EventT] = []
        for part, waiting in list(self.pending_acks.items()):
            if not waiting or now - self.persisted_at.get(part, 0.0) < min_age_s:
                continue
            self.persist(part, set())
            self.persisted_at[part] = now
            self.flushed.discard(part)
            self.pending_acks[part] = []
            done += waiting
        return done

    def persist(self, partition: int, changed: set[str]) -> None:
        """Checkpoint ``partition``: save the assets ``changed`` now and those its records left dirty.

        Its records waiting for a checkpoint may then be acknowledged (:meth:`acks_after`). An asset
        of ``changed`` may belong to another partition (a pledge routed by loan, a clock tick); it is
        saved too, the store places it by its key (:mod:`streams.store`).
        """
        for aid in changed | self.dirty.pop(partition, set()):
            self.asset_state.save(aid)
        self.flushed.add(partition)

    # --- publishing --------------------------------------------------------------------------
    async def reject(self, event: faust.EventT, exc: InputRejected) -> None:
        """Dead-letter one whole input record with its reason (telemetry's are dead-lettered by the core step)."""
        msg = event.message
        key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else None
        dl = dead_letter(
            msg.value, exc, topic=msg.topic, partition=msg.partition, offset=msg.offset, key=key, now=time.time()
        )
        log.info("dead-letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
        await self.publisher.send("dead-letter", key or "", dl)

    # --- handlers ----------------------------------------------------------------------------
    async def guarded(self, handler: Any, event: faust.EventT, source: str) -> None:
        """Run a handler so that no record can end the agent: an unexpected error dead-letters it (C03).

        ``source`` is the metric label of the agent's input (``pledge.telemetry`` / ``pledge.loan-book``).
        """
        started = time.perf_counter()
        self.in_hand[source] = (event.message.tp, event.message.offset)
        try:
            if not self.metadata_ready:
                await self.ensure_changelog_metadata()
            await handler(event)
            self.sensor.on_processed(event.message.topic, time.perf_counter() - started)
        except Exception as exc:
            log.exception(
                "processing %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset
            )
            self.sensor.on_dead_letter("processing_error")
            self.sensor.on_event(source, "invalid")
            await self.reject(event, InputRejected("processing_error", f"{type(exc).__name__}: {exc}"))
        finally:
            self.in_hand.pop(source, None)

    async def ensure_changelog_metadata(self) -> None:
        """Wait until the producer knows the partitions of the state tables' changelog topics.

        faust's tables pick a changelog partition with the producer's partitioner, which needs the
        topic's metadata; on a fresh broker the first state write could come before it arrived
        (aiokafka raised ``TypeError: 'NoneType' object is not iterable`` and the record was lost
        to the dead-letter topic). Done once, before the first record is handled.

        The topics are also added to the set the producer's client refreshes: ``_wait_on_metadata``
        alone returns at once when a first full-cluster fetch already holds the topic, and the next
        refresh, narrowed to the topics sent to so far, then dropped it for good (a fresh-clone
        ``make demo`` lost 197 records that way).
        """
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]  # private: the aiokafka producer behind faust (docs/kafka.md)
        tables = [self.asset_state.table, self.loan_state.table]
        if self.portfolio is not None:  # the portfolio's table alike (its first write failed so on a fresh broker)
            tables.append(self.portfolio.table)
        for table in tables:
            topic = table.changelog_topic.get_topic_name()
            await producer.client.add_topic(topic)
            await producer.client._wait_on_metadata(topic)
        self.metadata_ready = True

    def ingress_limits(self) -> tuple[float, float, float, int]:
        """``(now, max_skew_s, earliest, max_bytes)`` for the strict decoders: the wall clock and the bounds."""
        return (time.time(), *self.bounds)

    async def on_asset_record(self, event: faust.EventT) -> None:
        """Handle one record of the telemetry agent: telemetry or a pledge registration.

        One at a time with the clock's tick (:attr:`asset_lock`): both change the asset states and
        publish. While it runs (:attr:`asset_handling`) the checkpoint timer writes no asset state:
        between the record's first change to the state in memory and the broker's acknowledgement of
        its outputs, a checkpoint would make durable a state whose effects are not (see
        :meth:`flush_pending`).
        """
        async with self.asset_lock:
            self.asset_handling = True
            try:
                await self._on_asset_record(event)
            finally:
                self.asset_handling = False

    async def _on_asset_record(self, event: faust.EventT) -> None:
        msg = event.message
        part = msg.partition
        changed: set[str] = set()
        outputs: list[Output] = []
        if msg.topic == self.pledges_topic:
            self.backpressure.on_pledges_record(part, msg.offset)
            if msg.key == CLOCK_KEY:  # a worker's stream-clock report, read in band (streams.clock)
                # no outputs; checkpointed below like any record of this channel, so the partition's
                # committed offset keeps up with reports that come every 5 s (C05's fault d)
                self.clock.on_report(msg.value)
            else:
                try:
                    ev = decode_loan_event(msg.value)
                except InputRejected as exc:
                    log.error("unreadable internal pledge registration at offset %s: %s", msg.offset, exc)
                    return
                if isinstance(ev, CollateralPledged | CollateralReleased):
                    self.asset_partition[ev.asset_id] = part
                    self.asset_state.load(ev.asset_id)
                    outputs = self.assets.register(ev, tick=False)  # the group's clock closes windows
                    changed.add(ev.asset_id)
                    self.backpressure.relieve()  # the pledge may have drained a full hold
        else:
            self.last_telemetry_wall = time.time()
            key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else None
            fx = apply_telemetry_record(
                self.assets,
                msg.value,
                Provenance(msg.topic, part, msg.offset),
                key,
                self.ingress_limits(),
                load=self.asset_state.load,
                on_observation=self.fault_slow_record,
            )
            outputs = fx.outputs
            # a full hold pauses the partitions that feed it
            self.backpressure.after_telemetry(part, fx.asset_id is not None and fx.asset_id in self.assets.held)
            if fx.asset_id is not None:
                self.asset_partition[fx.asset_id] = part
            if fx.newest is not None and fx.asset_id is not None:
                self.dirty.setdefault(part, set()).add(fx.asset_id)
                now = time.monotonic()
                self.clock.watermarks.delivered(part, msg.offset, fx.newest, now)
                # the group's clock is read whole only when this record's partition does not alone hold it
                # below the next window boundary (then no tick can be due: GroupClock.below)
                below = self.clock.below(part, self.assets.next_tick, now)
                wm = None if below else self.clock.watermark()
                if wm is not None and self.assets.tick_due(wm):
                    # every asset of the assigned partitions takes part, silent ones too, even before
                    # the first clock tick after a restart has loaded them
                    self.load_assigned()
                    outputs += self.assets.tick(wm, self.owns)
        changed |= {o.key for o in outputs if o.topic == "valuations"}
        # effects first, then the state that records them: a state in the changelog that has closed a
        # window whose valuation never reached the broker would, after a crash, lose that valuation
        # for good (the re-read record is a duplicate of the restored state and emits nothing)
        if outputs:  # most records close no window: nothing to publish (Publisher.publish of none does nothing)
            await self.publish(outputs, msg.timestamp)
        now = time.monotonic()
        if msg.topic != self.telemetry_topic or now - self.persisted_at.get(part, 0.0) >= CHECKPOINT_INTERVAL_S:
            self.persist(part, changed)
            self.persisted_at[part] = now
        else:
            for aid in changed:
                self.dirty.setdefault(self.asset_partition.get(aid, part), set()).add(aid)

    def owns(self, asset_id: str) -> bool:
        """Whether the asset's telemetry partition is assigned to this worker now (C05).

        The partition its records came on, else the one Kafka's default partitioner gives its key (the
        records' and the changelog's): an asset loaded by a path that does not note its partition (the
        query API, a table scan) must still close its windows, or a silent one never would again.
        """
        part = _asset_partition(self.asset_partition, asset_id, self.s.partitions)
        return any(tp.partition == part for tp in self.clock.telemetry_partitions(time.monotonic()))

    def firing_alerts(self) -> Iterator[Alert]:
        """The alerts firing now on the loans this worker holds, and the portfolio's breaches if it owns it.

        Read by the metrics thread.
        """
        for loan in list(self.loans.loans.values()):
            yield from list(loan.active_alerts.values())
        if self.portfolio is not None:
            yield from list(self.portfolio.book.breaches.values())

    def concentration_rows(self) -> list[Any]:
        """The portfolio's rows now (``pledgewatch_concentration_*``), none unless this worker owns a loaded book."""
        if self.portfolio is None or not self.portfolio.loaded or not self.portfolio.book.loans:
            return []
        return self.portfolio.book.rows(self.loans.rulebook)

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> list[str]:
        """Forget the assets and loans of revoked partitions; the next :meth:`load_assigned` reloads.

        Called by faust's ``on_partitions_revoked`` signal, which comes after every record in flight was
        acknowledged (so checkpointed) and the producer flushed. A partition revoked may be handled by
        another worker, then come back: the state this worker held would then be stale, and a record
        of the asset finding it in memory would never read the newer one from the table. faust's
        rebalances revoke every partition (eager protocol), so each rebalance reloads from the tables.
        Forgetting on the next assignment only the partitions not kept (tried) is not enough: a worker
        blocked past the session timeout leaves the group and rejoins with no revocation in between,
        so a partition another worker handled meanwhile looks kept (faults c and d then lost the frozen
        feed's last windows). Returns the ids forgotten (assets and loans).
        """
        self.heap.thaw()  # the states forgotten below must be collectable (the reload freezes again)
        n = self.s.partitions
        telemetry = {tp.partition for tp in revoked if tp.topic == self.telemetry_topic}
        loans = {tp.partition for tp in revoked if tp.topic == self.loan_topic}
        gone: list[str] = []
        for book in (self.assets.assets, self.assets.held):
            for aid in [a for a in book if _asset_partition(self.asset_partition, a, n) in telemetry]:
                del book[aid]
                if book is self.assets.assets:
                    self.sensor.on_asset_forgotten(aid)  # reported again by AssetBook.restore where it goes
                gone.append(aid)
        for lid in [k for k in self.loans.loans if _partition(k, n) in loans]:
            del self.loans.loans[lid]
            self.sensor.on_loan_forgotten(lid)  # reported again by LoanBook.restore if the partition comes back
            gone.append(lid)
            if self.group_feed is not None:
                self.group_feed.forget([lid])  # counted from the view now, as the worker holding it publishes it
        for part in telemetry:
            self.dirty.pop(part, None)
        self.backpressure.forget(telemetry)
        self.loaded_for = frozenset()
        log.info(
            "partitions revoked (telemetry %s, loans %s): forgot %d states", sorted(telemetry), sorted(loans), len(gone)
        )
        return gone

    def load_assigned(self, now: float | None = None) -> None:
        """Load every asset and loan state of this worker's partitions that the books do not hold.

        Silent assets too (their silence must keep closing windows), and loans: a loan restored with
        an alert firing shows in ``pledgewatch_alerts_firing`` before its next event (C14). Done at
        each new assignment and, as a safety net, every :data:`LOAD_RESCAN_S`: a state the books miss
        outside an assignment change means a path that forgot to load one (a silent asset missed this
        way would never close a window again), so that is logged as a warning with the ids.
        """
        now = time.monotonic() if now is None else now
        assignment = frozenset(self.app.consumer.assignment())
        rescan = assignment == self.loaded_for
        if rescan and now - self.loaded_at < LOAD_RESCAN_S:
            return
        self.loaded_for, self.loaded_at = assignment, now
        if not rescan:  # the assets this worker ticks changed: check each at the next tick (AssetBook.recheck)
            self.assets.recheck()
            if self.portfolio is not None:  # the owner may have changed: rebuild from the table (empty if not ours)
                self.portfolio.load()
        loans = self.loan_state.load_all()
        assets = self.asset_state.load_all()
        n = self.s.partitions
        for aid in assets:
            # the partition its records and its changelog entries use (Kafka's default partitioner)
            self.asset_partition.setdefault(aid, _partition(aid, n))
        if rescan and (assets or loans):
            log.warning(
                "loaded %d asset and %d loan states the books did not hold at the last scan: %s",
                len(assets),
                len(loans),
                sorted([*assets, *loans])[:20],
            )
        elif self.assets.clock is None and self.assets.assets:
            log.info("loaded %d asset states of the assigned partitions", len(self.assets.assets))
        if not rescan:  # the states of a new assignment are in: out of the collector's full passes (streams.heap)
            self.heap.freeze("partitions assigned")

    def idle_advance(self) -> list[Output]:
        """Advance the stream clock by the processing time telemetry has been idle (dark feeds close windows).

        Only while every partition of the group is idle (:attr:`Watermarks.group_idle`): while another worker's
        partition still delivers, its event time is the clock, not this worker's processing time. From
        the newest event time the group has read (:meth:`Watermarks.newest_read`, this worker's own
        included): every partition is read up to its end, so nothing unread can fall in a window closed
        here. From this worker's newest alone, a worker whose partitions carried only a frozen feed
        stopped short at the freeze (fault d). Idle time counts from this worker's last telemetry
        record, or from its start if it has read none.
        """
        if not self.clock.watermarks.group_idle:
            return []
        times = [t for t in (self.assets.clock, self.clock.watermarks.newest_read()) if t is not None]
        if not times:
            return []
        idle = time.time() - (self.last_telemetry_wall if self.last_telemetry_wall is not None else self.started_wall)
        if idle < IDLE_ADVANCE_S:
            return []
        return self.assets.tick(max(times) + idle, self.owns)

    async def on_loan_record(self, event: faust.EventT) -> None:
        """Handle one record of the loan agent (a loan event or a valuation routed to a loan).

        Its outputs, then the loan's group listing if it changed (:mod:`streams.group_listing`), are
        published before its state is checkpointed (C01).
        """
        if self.group_feed is not None:
            await self.group_feed.wait_ready()  # the first record waits until the other workers' listings are in
        msg = event.message
        loan_key = msg.key.decode() if isinstance(msg.key, bytes) else str(msg.key)
        if msg.topic == self.s.topic("loan-valuations"):
            try:
                val = CollateralValuation.model_validate_json(msg.value or b"")
            except ValidationError as exc:
                log.error("unreadable internal valuation at offset %s: %s", msg.offset, exc)
                return
            self.loan_state.load(loan_key)
            outputs = self.loans.on_valuation(loan_key, val)
        else:
            try:
                ev = decode_loan_event(msg.value, *self.ingress_limits())
                self.loan_state.load(ev.loan_id)
                outputs = self.loans.on_loan_event(ev)
            except InputRejected as exc:
                self.sensor.on_event("pledge.loan-book", "invalid")
                self.sensor.on_dead_letter(exc.reason)
                await self.reject(event, exc)
                return
            loan_key = ev.loan_id
        await self.publish(outputs, msg.timestamp)  # effects before the state that records them (as above)
        if self.group_feed is not None and (rec := self.group_feed.due(self.loans.loans.get(loan_key))) is not None:
            await self.publisher.send("group-listing", loan_key, rec)
            self.group_feed.published(rec)
        self.loan_state.save(loan_key)

    async def on_portfolio_record(self, event: faust.EventT) -> None:
        """One loan's exposure record (``internal.portfolio-exposure``): judge the portfolio, publish, checkpoint."""
        if self.portfolio is None:
            return
        msg = event.message
        outputs = self.portfolio.on_record(msg.value)
        await self.publish(outputs, msg.timestamp)  # effects before the state that records them (C01)
        key = msg.key.decode() if isinstance(msg.key, bytes) else str(msg.key)
        self.portfolio.save(key)

    async def portfolio_idle(self) -> None:
        """Judge the portfolio's newest instant once its topic is idle (the 5-s timer)."""
        if self.portfolio is None:
            return
        outputs = self.portfolio.idle_flush()
        if outputs:
            await self.publish(outputs)
            self.portfolio.save_breaches()

    async def apply_rulebook(self, decision: Decision, origin: str = "topic") -> None:
        """Swap in a valid rulebook between two events, or reject an invalid one; report either way."""
        old = self.loans.rulebook
        if decision.rulebook is not None:
            self.loans.rulebook = decision.rulebook  # one assignment on the event loop: atomic between events
            # routine: every start and every publish; a rejected one is logged at WARNING where it is refused
            logging.getLogger("pledgewatch.lifecycle").info(
                "rulebook %s v%s active (%s)", decision.name, decision.version, origin
            )
            if self.metrics is not None:
                self.metrics.rulebook_info.labels(old.name, str(old.version)).set(0)
                self.metrics.rulebook_info.labels(decision.name, str(decision.version)).set(1)
        else:
            log.error(
                "rulebook %s v%s rejected, %s v%s stays active: %s",
                decision.name,
                decision.version,
                old.name,
                old.version,
                decision.reason,
            )
            if self.metrics is not None:
                self.metrics.rulebook_rejected.labels(decision.name).inc()
        await self.publisher.send(
            "rules-status", self.worker, status(decision, decision.rulebook is not None, origin, self.worker)
        )

    def in_flight(self) -> list[tuple[Any, int]] | None:
        """``(tp, offset)`` of the records this worker holds unacknowledged, for the offset-hole repair.

        Those waiting for their partition's checkpoint and those in an agent's hands; None while a
        telemetry record is half handled (it is then in none of these lists, so nothing may be judged).
        """
        if self.asset_handling:
            return None
        held = [(e.message.tp, e.message.offset) for waiting in self.pending_acks.values() for e in waiting]
        return held + list(self.in_hand.values())

    async def on_timer(self) -> None:
        """Every 5 s: report this worker's partition statuses to the others, then move the stream clock.

        The report goes to every partition of ``internal.asset-pledges``, read in band by whichever
        worker holds it (:mod:`streams.clock`): each worker learns there the statuses of the partitions
        it does not hold. Then :meth:`clock_tick` closes what the clock has passed.
        """
        now = time.monotonic()
        statuses = self.clock.own_statuses(now)  # read once: for the report and for the held-clock check
        await self.clock.send_report(statuses)
        await self.clock_tick()
        await self.check_hold()
        self.clock.check_held(now, statuses)
        self.heap.maybe_refreeze()
        log.info(
            "clock: %s, core clock %s, %d assets, %d held",
            self.clock.describe(statuses, now),
            self.assets.clock,
            len(self.assets.assets),
            len(self.assets.held),
        )

    async def check_hold(self) -> None:
        """While a full hold pauses telemetry partitions: resume, or dead-letter what no pledge will claim.

        :meth:`streams.backpressure.HoldBackpressure.check` decides; held records it dead-letters are
        published first, then their held state is deleted from the table (C01's order: the effects, then the
        state that records them), under the lock the records and the clock's tick take.
        """
        if not self.backpressure.paused or self.app.rebalancing:
            return
        async with self.asset_lock:
            self.asset_handling = True
            try:
                expired = set(self.assets.held)
                outputs = await self.backpressure.check(time.time())
                if outputs:
                    await self.publish(outputs)
                    for aid in expired - set(self.assets.held):
                        self.asset_state.delete(aid)
            finally:
                self.asset_handling = False

    async def clock_tick(self) -> list[Output]:
        """Close every window the group's stream clock has passed, silent assets' included; returns the outputs.

        Run by the 5-s timer, not by a record: an asset whose feed went silent sends nothing that would
        close its windows, and its ``feed-silent`` alert depends on them closing. While the group's clock
        holds (a partition behind), processing time advances it once every partition is idle
        (:meth:`idle_advance`). One at a time with the records (:attr:`asset_lock`); the outputs are
        published first and the states that record them saved after (C01), as a record's are.

        Nothing happens while faust rebalances (``app.rebalancing``, true from the revocation until the
        tables' recovery has completed): the books are being forgotten and reloaded then, and a tick
        would value windows from a state the changelog has not finished restoring, and save it over the
        restored one. The agents handle no record then either; the next tick after it closes the windows.
        """
        rebalancing = bool(self.app.rebalancing)
        self.clock.check_rebalancing(rebalancing, time.monotonic())  # warns when it lasts (a recovery stuck)
        if rebalancing:
            return []
        async with self.asset_lock:
            self.asset_handling = True
            try:
                self.load_assigned()
                wm = self.clock.watermark()
                outputs = self.assets.tick(wm, self.owns) if wm is not None else self.idle_advance()
                await self.publish(outputs)
                for aid in {o.key for o in outputs if o.topic == "valuations"}:
                    self.asset_state.save(aid)
                return outputs
            finally:
                self.asset_handling = False


def _asset_partition(seen: Mapping[str, int], asset_id: str, partitions: int) -> int:
    """The telemetry partition of an asset: the one its records came on, else its key's (:func:`_partition`).

    One rule for ownership (:meth:`Node.owns`) and for forgetting revoked partitions, so an asset loaded
    by a path that did not note its partition is placed the same way by both.
    """
    part = seen.get(asset_id)
    return _partition(asset_id, partitions) if part is None else part


def _partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (:func:`streams.store.key_partition`)."""
    return key_partition(key.encode(), partitions)
