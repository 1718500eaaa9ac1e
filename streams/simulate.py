"""``pledgewatch simulate``: produce a simulated fleet's telemetry onto the telemetry topic, fast.

The producer is aiokafka's, fed whole record batches (``create_batch`` / ``send_batch``): its
record-batch builder is a C extension, so one process produces a few hundred thousand small
records per second here, well past what a worker consumes, while kafka-python builds each record
in Python (≈ 20–30 µs a record, below the worker's own rate). Each batch goes to the partition
Kafka's default partitioner (murmur2 of the key) gives the asset, as a keyed ``send`` would.

Every record's Kafka timestamp is the wall time it was appended at (CreateTime), which is what the
latency benchmark measures from: the worker carries it to the valuations and alerts it causes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from monitor.settings import Settings
from monitor.simulate import SimRecord

__all__ = ["ProduceStats", "produce_records"]


@dataclass
class ProduceStats:
    """What one run produced: ``records`` acknowledged in ``seconds`` of wall time (records/s = ratio)."""

    records: int
    seconds: float

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def produce_records(
    settings: Settings,
    records: Iterable[SimRecord],
    rate: float = 0.0,
    topic: str | None = None,
    tick_s: float = 0.01,
    on_progress: object = None,
) -> ProduceStats:
    """Produce ``records`` to the telemetry topic at ``rate`` records/s (0 = as fast as the broker takes them).

    With a rate, the records of each ``tick_s`` slot are sent together at its start, so the load
    is steady at the 10 ms scale. Returns once every batch is acknowledged (``acks=all``).

    Raises
    ------
    aiokafka.errors.KafkaError
        When the broker cannot be reached or refuses a batch.
    """
    name = topic or settings.topic("telemetry")
    producer = AIOKafkaProducer(
        **settings.kafka_options(),
        acks="all",
        linger_ms=5,
        max_batch_size=1_048_576,
        max_request_size=max(settings.max_message_bytes, 1_048_576),
        client_id="pledgewatch-simulate",
    )
    await producer.start()
    try:
        parts = sorted(await producer.partitions_for(name))
        pick = DefaultPartitioner()
        batches: dict[int, object] = {}
        pending: list[asyncio.Future[object]] = []
        n = 0
        start = time.monotonic()

        async def ship(p: int) -> None:
            batch = batches.pop(p, None)
            if batch is not None and batch.record_count():  # type: ignore[attr-defined]
                pending.append(await producer.send_batch(batch, name, partition=p))  # type: ignore[arg-type]

        async def ship_all() -> None:
            for p in list(batches):
                await ship(p)
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()

        per_tick = max(1, round(rate * tick_s)) if rate > 0 else 0
        for key, value, _ in records:
            p = pick(key, parts, parts)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # type: ignore[attr-defined]
                await ship(p)
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # type: ignore[attr-defined]
            n += 1
            if per_tick and n % per_tick == 0:
                await ship_all()
                ahead = n / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif not per_tick and n % 50_000 == 0:
                await ship_all()
            if on_progress is not None and n % 10_000 == 0:
                on_progress(n, time.monotonic() - start)  # type: ignore[operator]
        await ship_all()
        await asyncio.gather(*pending)
        return ProduceStats(n, time.monotonic() - start)
    finally:
        await producer.stop()
