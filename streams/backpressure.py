"""Backpressure for telemetry that comes before its pledge: pause, wait for the loan side, then decide.

Telemetry of an asset whose ``collateral_pledged`` has not reached the asset side yet is held by the core
(:class:`monitor.core.AssetBook`). A backtest refuses it ``unknown_asset`` past ``hold_unknown`` held
observations: every loan event is in hand there, so no pledge can still come. In the stream a pledge can
be on its way: the loan side routes it through ``internal.asset-pledges`` and may be behind (a rebalance
during a backlog: one fault-(c) run of issue 18 dead-lettered 11,348 observations of two pledged assets
so). Past the bound the worker therefore keeps holding, *pauses the telemetry partitions that deliver
records to hold* (faust's public ``Consumer.pause_partitions``: it fetches nothing more from them, the
pledges channel and every other partition keep flowing), and decides on evidence:

- a pledge arrives and the hold drains below the bound: the partitions resume (:meth:`HoldBackpressure.relieve`);
- the loan side shows no pledge is on its way: the consumer group's committed offsets of
  ``pledge.loan-book`` have reached the end offsets noted when the hold filled (the loan agent publishes a
  record's routed pledges before its offset is committed, C01), and this worker has read its
  ``internal.asset-pledges`` partitions up to the end offsets taken after that (:class:`LoanSideProbe`):
  the held observations are dead-lettered ``unknown_asset``, each with its origin
  (:meth:`monitor.core.AssetBook.expire_held`), and the partitions resume.

The hold then grows past ``hold_unknown`` by at most what the paused partitions had already fetched
(``fetch_partition_bytes`` a partition and faust's stream buffer): a bound in memory, not a refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from monitor.core import AssetBook, Output
from monitor.settings import Settings
from streams.topics import admin_client

__all__ = ["HoldBackpressure", "LoanSideProbe"]

log = logging.getLogger(__name__)


class LoanSideProbe:
    """Whether the loan side has read every loan event that existed when the hold filled (blocking).

    The first call after :meth:`reset` notes the end offsets of ``pledge.loan-book`` (the loan events that
    exist now); every call then asks whether the consumer group's committed offsets have reached them. Not
    "lag zero": a busy loan book (balances, interest accruals) may never be read to its very end at the
    moment of a check, while every loan event sent before the telemetry was held will be. Once reached,
    the call returns the end offsets of the worker's ``internal.asset-pledges`` partitions, taken then:
    every pledge routed from those loan events is below them (the loan agent publishes a record's routed
    pledges before its offset is committed, C01). Kafka calls through kafka-python: run it off the event
    loop.

    Parameters
    ----------
    settings
        Bootstrap, TLS and SASL options.
    group
        The workers' consumer group (faust's app id).
    loan_topic, pledges_topic
        Full names of ``pledge.loan-book`` and ``internal.asset-pledges``.
    """

    def __init__(self, settings: Settings, group: str, loan_topic: str, pledges_topic: str) -> None:
        self.settings, self.group = settings, group
        self.loan_topic, self.pledges_topic = loan_topic, pledges_topic
        #: the loan book's end offsets when the hold filled: the loan events to wait for
        self.loan_ends: dict[Any, int] | None = None

    def reset(self) -> None:
        """Forget the noted end offsets: the next call notes them anew (a new episode of a full hold)."""
        self.loan_ends = None

    def __call__(self, partitions: Iterable[int]) -> dict[int, int] | None:
        """``None`` while loan events noted are unread; else partition -> end offset of the pledges channel.

        Raises
        ------
        kafka.errors.KafkaError
            When the broker does not answer (the caller tries again at its next check).
        """
        admin = admin_client(self.settings, timeout_s=10.0)
        consumer = KafkaConsumer(**self.settings.kafka_options(), group_id=None, enable_auto_commit=False)
        try:
            if self.loan_ends is None:
                parts = sorted(consumer.partitions_for_topic(self.loan_topic) or ())
                self.loan_ends = dict(consumer.end_offsets([TopicPartition(self.loan_topic, p) for p in parts]))
            committed = admin.list_group_offsets({self.group: list(self.loan_ends)}).get(self.group, {})
            for tp, end in self.loan_ends.items():
                meta = committed.get(tp)
                if (meta.offset if meta is not None and meta.offset >= 0 else 0) < end:
                    return None
            pledge_tps = [TopicPartition(self.pledges_topic, p) for p in sorted(set(partitions))]
            return {tp.partition: end for tp, end in consumer.end_offsets(pledge_tps).items()}
        finally:
            consumer.close()
            admin.close()


class HoldBackpressure:
    """Pauses the telemetry partitions that feed a full hold, and resumes or dead-letters on evidence.

    Parameters
    ----------
    app
        The faust app; its consumer's public ``pause_partitions``, ``resume_partitions`` and ``assignment``.
    assets
        The worker's asset book; its ``hold_refuses`` is set False (the stream decides here instead).
    limit
        ``hold_unknown``: held observations over all assets at which partitions delivering more are paused.
    telemetry_topic
        Full name of ``pledge.telemetry`` (the topic paused).
    probe
        Called with the ``internal.asset-pledges`` partitions concerned, off the event loop:
        a :class:`LoanSideProbe`, or a fake in unit tests (its ``reset``, if it has one, is called when an
        episode of a full hold ends).
    metrics
        The worker's :class:`streams.prometheus.Metrics` (the held and paused gauges), or None.
    """

    def __init__(
        self,
        app: Any,
        assets: AssetBook,
        limit: int,
        telemetry_topic: str,
        probe: Callable[[Iterable[int]], Mapping[int, int] | None],
        metrics: Any = None,
    ) -> None:
        self.app = app
        self.assets = assets
        assets.hold_refuses = False
        self.limit = limit
        self.telemetry_topic = telemetry_topic
        self.probe = probe
        self.metrics = metrics
        if metrics is not None:  # read at each scrape: true after a rebalance reloads held records as well
            metrics.held_observations.set_function(lambda: sum(len(h) for h in list(assets.held.values())))
        #: telemetry partitions this worker paused
        self.paused: set[int] = set()
        #: partition -> next offset of ``internal.asset-pledges`` this worker has handled
        self.pledges_read: dict[int, int] = {}
        #: the pledges channel's end offsets once the loan side was seen caught up (the read to wait for)
        self.target: Mapping[int, int] | None = None

    def _tps(self, partitions: Iterable[int]) -> set[Any]:
        wanted = set(partitions)
        assigned = self.app.consumer.assignment()
        return {tp for tp in assigned if tp.topic == self.telemetry_topic and tp.partition in wanted}

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.paused_partitions.set(len(self.paused))

    def on_pledges_record(self, partition: int, offset: int) -> None:
        """Note that the record at ``offset`` of ``internal.asset-pledges`` ``partition`` was handled."""
        self.pledges_read[partition] = offset + 1

    def after_telemetry(self, partition: int, held: bool) -> None:
        """After a telemetry record of ``partition``: while the hold is full, pause the partitions that feed it.

        ``held``: the record's asset is one held for its pledge (its partition is paused even when the
        held records carry no origin, as those of checkpoints from before origins were kept).
        """
        if self.assets.held_count() < self.limit:
            if self.paused:
                self.relieve()
            return
        new = (self.assets.held_partitions() | ({partition} if held else set())) - self.paused
        tps = self._tps(new)
        if tps:
            self.app.consumer.pause_partitions(tps)
            self.paused |= {tp.partition for tp in tps}
            log.warning(
                "%d observations held for assets not pledged yet (hold_unknown %d): telemetry partitions %s "
                "paused until their pledges arrive or the loan side shows none is coming",
                self.assets.held_count(),
                self.limit,
                sorted(self.paused),
            )
        self._gauges()

    def relieve(self) -> None:
        """Resume every paused partition once the hold is below the bound (a pledge came and drained it)."""
        if self.paused and self.assets.held_count() < self.limit:
            self._resume("the hold drained below hold_unknown")
        self._gauges()

    def _resume(self, why: str) -> None:
        tps = self._tps(self.paused)
        if tps:
            self.app.consumer.resume_partitions(tps)
        log.info("telemetry partitions %s resumed: %s", sorted(self.paused), why)
        self.paused.clear()
        self._new_episode()

    def _new_episode(self) -> None:
        self.target = None
        reset = getattr(self.probe, "reset", None)
        if reset is not None:
            reset()

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: faust forgets their pause; so does this object."""
        self.paused -= set(partitions)
        for p in partitions:
            self.pledges_read.pop(p, None)
        self._new_episode()
        self._gauges()

    async def check(self, now: float) -> list[Output]:
        """The 5-s timer's check while partitions are paused; returns dead letters to publish, if any.

        Resumes when the hold drained; else asks the loan side (:attr:`probe`) whether a pledge can
        still come, and once it cannot and this worker has read the pledges channel up to the end
        offsets taken then, dead-letters the held observations and resumes. ``now`` is the wall clock
        (POSIX s) for the dead letters.
        """
        if not self.paused:
            return []
        if self.assets.held_count() < self.limit:
            self.relieve()
            return []
        if self.target is None:
            try:
                self.target = await asyncio.to_thread(self.probe, set(self.paused))
            except Exception as exc:  # asked again at the next check: a crash would stop every agent
                log.warning(
                    "could not read the loan side's progress (%s: %s); the paused partitions stay paused",
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, KafkaError | OSError),
                )
                return []
            if self.target is None:
                log.info("hold full, the loan side is still reading loan events: partitions %s stay paused",
                         sorted(self.paused))  # fmt: skip
                return []
        behind = {p: end for p, end in self.target.items() if self.pledges_read.get(p, 0) < end}
        if behind:
            return []  # the pledges already routed are not all read yet: one may release the hold
        out = self.assets.expire_held(now)
        log.warning(
            "%d held observations dead-lettered unknown_asset: the loan side had read every loan event and "
            "no pledge of their assets came",
            len(out),
        )
        self._resume("no pledge of the held assets was on its way")
        self._gauges()
        return out
