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

import logging
import time
from collections.abc import Callable

from monitor.settings import Settings

__all__ = ["REPORT_LOOKBACK_S", "follow_reports", "report_key"]

log = logging.getLogger(__name__)

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
        Called with each report's bytes (JSON of :meth:`Watermarks.report`; ``Node.on_clock_record``
        ignores what it cannot read).
    lookback_s
        Seconds back from now to start reading; the end of the topic when nothing is that recent.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    tp = TopicPartition(settings.topic("stream-clock"), 0)
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        client_id="pledgewatch-clock-reports",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        found = await consumer.offsets_for_times({tp: int((time.time() - lookback_s) * 1000)})
        start = found.get(tp)
        if start is not None:
            consumer.seek(tp, start.offset)
        else:
            await consumer.seek_to_end(tp)
        async for record in consumer:
            merge(record.value)
    finally:
        await consumer.stop()
