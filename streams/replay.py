"""``pledgewatch replay``: produce a loan book and recorded telemetry onto the topics (kafka-python).

kafka-python is used here (not aiokafka) because replay is a plain blocking
producer: ``acks="all"``, and ``flush()`` + ``close()`` before exit so a CLI that
publishes and exits still leaves every record on the topic (case C07a).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from monitor.core.decode import telemetry_records
from monitor.schemas import TelemetryEvent
from monitor.settings import Settings

__all__ = ["make_producer", "produce_loan_book", "produce_telemetry"]


def make_producer(settings: Settings) -> KafkaProducer:
    """A producer that waits for all in-sync replicas."""
    return KafkaProducer(
        **settings.kafka_options(),
        acks="all",
        max_request_size=settings.max_message_bytes,
        linger_ms=5,
        retries=10,
        client_id="pledgewatch-replay",
    )


def produce_loan_book(producer: KafkaProducer, settings: Settings, lines: Iterable[bytes]) -> int:
    """Produce raw loan events keyed by their loan id; returns the count."""
    import orjson

    n = 0
    for raw in lines:
        try:
            key = str(orjson.loads(raw).get("loan_id", "")).encode()
        except (orjson.JSONDecodeError, AttributeError):
            key = b""
        producer.send(settings.topic("loan-book"), key=key, value=raw)
        n += 1
    producer.flush()
    return n


def produce_telemetry(
    producer: KafkaProducer,
    settings: Settings,
    events: Iterable[TelemetryEvent],
    rate: float = 0.0,
    total: int | None = None,
    progress: bool = True,
    max_observations: int = 500,
) -> int:
    """Produce telemetry keyed by asset id at ``rate`` observations/s (0 = as fast as possible).

    Consecutive observations of one asset's poll go out as one batch record of at most
    ``max_observations`` (:func:`monitor.core.decode.telemetry_records`; 1 sends every observation
    as a record of its own): the worker's per-record cost is paid once per poll, not per observation.

    Returns
    -------
    int
        Observations produced (all flushed and acknowledged).
    """
    topic = settings.topic("telemetry")
    n = 0
    start = time.monotonic()
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("replay", total=total, rate="")
        for key, value, count in telemetry_records(events, max_observations):
            producer.send(topic, key=key.encode(), value=value)
            n += count
            if rate > 0:
                ahead = n / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            if n % 500 < count:
                elapsed = max(time.monotonic() - start, 1e-9)
                bar.update(task, completed=n, rate=f"{n / elapsed:,.0f} ev/s")
        producer.flush()
        bar.update(task, completed=n)
    return n
