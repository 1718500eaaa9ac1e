"""Publishing the core's outputs: every record awaited until the broker acknowledges it, nothing dropped.

An output counts as raised only once the broker has acknowledged it (C07): a margin call the
broker never took is not a margin call. :class:`Publisher` routes each output to its topic (a
valuation also to each of its loans on ``internal.loan-valuations``), sends them as one batch, and
waits for every acknowledgement however long a broker outage lasts, counting each delivery timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, get_args

from aiokafka.errors import KafkaError as AIOKafkaError
from faust.exceptions import ProducerSendError
from pydantic import BaseModel

from monitor.core import Output
from monitor.core.common import OutputTopic
from monitor.schemas import Alert, CollateralValuation, MarginCall
from monitor.settings import Settings

__all__ = ["ORIGIN_HEADER", "OUTPUT_TOPICS", "Publisher"]

log = logging.getLogger(__name__)

#: Header of every output record caused by a telemetry record: that record's produce time, POSIX milliseconds.
ORIGIN_HEADER = "pledgewatch-origin-ms"
#: Topics the worker publishes to (logical names): the core's output streams, the loan side's input the
#: asset side routes valuations to, and the loans' group listings (:mod:`streams.group_listing`)
OUTPUT_TOPICS = (*get_args(OutputTopic), "loan-valuations", "group-listing")


class Publisher:
    """Sends outputs through faust's producer and awaits the broker's acknowledgements.

    Parameters
    ----------
    app
        The faust app (its ``producer``: ``send`` returns a future of the broker's acknowledgement).
    settings
        Topic names and ``delivery_timeout_s``.
    metrics
        Optional ``streams.prometheus.Metrics``: publish failures per topic, provisional deadlines,
        event-to-alert latency.
    pusher
        Optional ``streams.alertmanager.AlertmanagerPusher``, handed every alert once published.
    """

    def __init__(self, app: Any, settings: Settings, metrics: Any = None, pusher: Any = None) -> None:
        self.app = app
        self.s = settings
        self.metrics = metrics
        self.pusher = pusher
        if metrics is not None:  # one series per output topic from the start, so alert rules see 0, not nothing
            for logical in OUTPUT_TOPICS:
                metrics.publish_failures.labels(settings.topic(logical))

    async def send(
        self, logical: str, key: str, message: BaseModel, timestamp: float | None = None, origin_ts: float | None = None
    ) -> None:
        """Publish one message and wait for the broker's acknowledgement, however long it takes (C07).

        Every ``delivery_timeout_s`` without an acknowledgement is counted in
        ``pledgewatch_publish_failures_total{topic}`` and logged, and the wait goes on for the same
        record, which the producer keeps retrying (a second send would write it twice). A send that
        fails outright (the producer gave the batch up after its own request timeout, faust's 20 min)
        is sent again after a back-off of 0.2 s doubling to 5 s. Nothing is ever dropped: giving up
        would lose a margin call for good, while waiting keeps the input record unacknowledged, so
        its offset is not committed and the input topic serves as the outbox: after a crash during
        the outage the record is processed again and re-emits the same deterministic ids.

        ``timestamp`` (POSIX seconds) sets the record's Kafka timestamp; ``None`` lets the producer stamp it.
        ``origin_ts`` (POSIX seconds), the produce time of the telemetry record behind this output, travels
        in the header :data:`ORIGIN_HEADER` (milliseconds, ASCII) so a consumer can measure event-to-alert latency.
        """
        await self._deliver(self._record(logical, key, message, timestamp, origin_ts))

    async def send_many(self, items: list[tuple[str, str, BaseModel, float | None, float | None]]) -> None:
        """Publish several messages, ``(logical, key, message, timestamp, origin_ts)`` each, as :meth:`send` does.

        All are handed to the producer first, then every acknowledgement is awaited: one broker round
        trip for the lot instead of one each (a window boundary closes hundreds of assets' windows at
        once). The producer keeps one request in flight per partition, so each topic partition still
        receives them in this order.
        """
        records = [self._record(*item) for item in items]
        futures: list[asyncio.Future[Any] | None] = []
        for topic, key, value, timestamp, headers in records:
            try:
                futures.append(
                    asyncio.ensure_future(await self.app.producer.send(topic, key, value, None, timestamp, headers))
                )
            except (AIOKafkaError, ProducerSendError, OSError):
                futures.append(None)  # sent again, with the back-off, by _deliver
        for record, fut in zip(records, futures, strict=True):
            await self._deliver(record, fut)

    def _record(
        self, logical: str, key: str, message: BaseModel, timestamp: float | None, origin_ts: float | None
    ) -> tuple[str, bytes, bytes, float | None, list[tuple[str, bytes]] | None]:
        headers = [(ORIGIN_HEADER, str(round(origin_ts * 1000)).encode())] if origin_ts else None
        return self.s.topic(logical), key.encode(), message.model_dump_json().encode(), timestamp, headers

    async def _deliver(
        self,
        record: tuple[str, bytes, bytes, float | None, list[tuple[str, bytes]] | None],
        fut: asyncio.Future[Any] | None = None,
    ) -> None:
        """Wait for ``fut`` (the record's send, or a new one), re-sending when the producer gave it up."""
        topic, key, value, timestamp, headers = record
        backoff = 0.2
        while True:
            try:
                if fut is None:
                    sent = await self.app.producer.send(topic, key, value, None, timestamp, headers)
                    fut = asyncio.ensure_future(sent)
                while True:
                    done, _ = await asyncio.wait({fut}, timeout=self.s.delivery_timeout_s)
                    if done:
                        fut.result()
                        return
                    self._publish_failed(topic, f"not acknowledged within {self.s.delivery_timeout_s:g} s, waiting on")
            except asyncio.CancelledError:
                raise
            except (AIOKafkaError, ProducerSendError, OSError) as exc:  # the batch was given up: send it again
                self._publish_failed(topic, f"{type(exc).__name__}: {exc}; sending again in {backoff:g} s")
                fut = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _publish_failed(self, topic: str, why: str) -> None:
        if self.metrics is not None:
            self.metrics.publish_failures.labels(topic).inc()
        log.warning("publish to %s: %s", topic, why)

    async def publish(self, outputs: list[Output], origin_ts: float | None = None) -> None:
        """Publish the core's outputs to their topics.

        ``origin_ts`` is the produce timestamp (POSIX s) of the input record that caused them. The
        valuations routed to loans carry it as their Kafka timestamp, so when the loan side raises an
        alert, ``pledgewatch_event_to_alert_seconds`` measures from the telemetry record that closed
        the window to the alert's acknowledged publication.
        """
        alerts: list[Alert] = []
        calls: list[MarginCall] = []
        items: list[tuple[str, str, BaseModel, float | None, float | None]] = []
        for o in outputs:
            message = o.message
            if isinstance(message, CollateralValuation):
                items.append(("valuations", o.key, message, None, origin_ts))
                items += [("loan-valuations", loan_id, message, origin_ts, origin_ts) for loan_id in message.loan_ids]
            else:
                items.append((o.topic, o.key, message, None, origin_ts))
                if isinstance(message, Alert):
                    alerts.append(message)
                elif isinstance(message, MarginCall):
                    calls.append(message)
        if items:
            await self.send_many(items)
        if self.metrics is not None:
            for mc in calls:
                if mc.status == "issued" and mc.deadline_provisional:
                    self.metrics.provisional_deadlines.inc()
        if not alerts:
            return
        if self.metrics is not None and origin_ts:
            now = time.time()
            for a in alerts:
                if a.status == "firing" and not a.shadow:
                    self.metrics.event_to_alert.observe(max(0.0, now - origin_ts))
        if self.pusher is not None:
            self.pusher.on_alerts(alerts, calls)
