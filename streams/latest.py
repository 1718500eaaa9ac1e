"""Read the output topics with kafka-python: every record (``read_all``, ``read_outputs``) or the latest per key."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from kafka import KafkaConsumer, TopicPartition

from monitor.schemas import Alert, CollateralValuation, LoanRiskSnapshot, MarginCall
from monitor.settings import Settings

__all__ = ["Outputs", "latest_by_key", "read_all", "read_outputs"]


def read_all(
    settings: Settings, logical: str, model: Any, timeout_s: float = 30.0, complete: bool = False
) -> list[tuple[str, Any]]:
    """Every ``(key, message)`` of ``logical`` from the beginning to its current end.

    Messages are decoded with ``model.model_validate_json``; a compacted topic keeps at least the
    newest message per key. After ``timeout_s`` seconds of polling the records read so far are
    returned, or with ``complete`` :class:`TimeoutError` is raised (kafka-python's own errors, such as
    ``NoBrokersAvailable``, pass through).
    """
    topic = settings.topic(logical)
    consumer = KafkaConsumer(**settings.kafka_options(), group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(parts)
        out: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if r.key is not None and r.value is not None:
                        out.append((r.key.decode(), model.model_validate_json(r.value)))
        if complete and any(consumer.position(tp) < ends[tp] for tp in parts):
            raise TimeoutError(f"{topic}: not read to its end within {timeout_s:.0f} s")
        return out
    finally:
        consumer.close()


def latest_by_key(settings: Settings, logical: str, model: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """Key -> the newest message of ``logical`` (decoded with ``model.model_validate_json``), read to the end."""
    return dict(read_all(settings, logical, model, timeout_s))


class Outputs(NamedTuple):
    """The records of the output topics a post-loan review reads (``monitor.report.histories``' inputs)."""

    valuations: list[CollateralValuation]
    snapshots: list[LoanRiskSnapshot]
    alerts: list[Alert]
    margin_calls: list[MarginCall]


def read_outputs(settings: Settings, timeout_s: float = 30.0, complete: bool = False) -> Outputs:
    """Every record of ``valuations``, ``loan-risk``, ``alerts`` and ``margin-calls`` (``pledgewatch report``'s input).

    Blocking (kafka-python): from an event loop, run it in an executor. ``timeout_s`` bounds the four
    reads together; ``complete`` as in :func:`read_all` (:class:`TimeoutError` when a topic is not read
    to its end in time).
    """
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    return Outputs(
        [m for _, m in read_all(settings, "valuations", CollateralValuation, left(), complete)],
        [m for _, m in read_all(settings, "loan-risk", LoanRiskSnapshot, left(), complete)],
        [m for _, m in read_all(settings, "alerts", Alert, left(), complete)],
        [m for _, m in read_all(settings, "margin-calls", MarginCall, left(), complete)],
    )
