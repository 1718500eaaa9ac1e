"""Read the latest record per key of a compacted output topic (``loan-risk``, ``valuations``) with kafka-python."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from monitor.settings import Settings

__all__ = ["latest_by_key", "read_all"]


def read_all(settings: Settings, logical: str, model: Any, timeout_s: float = 30.0) -> list[tuple[str, Any]]:
    """Every ``(key, message)`` of ``logical`` from the beginning to its current end.

    Messages are decoded with ``model.model_validate_json``; a compacted topic keeps at least the
    newest message per key.
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
        return out
    finally:
        consumer.close()


def latest_by_key(settings: Settings, logical: str, model: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """Key -> the newest message of ``logical`` (decoded with ``model.model_validate_json``), read to the end."""
    return dict(read_all(settings, logical, model, timeout_s))
