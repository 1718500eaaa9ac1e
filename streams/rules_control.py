"""Rulebook hot reload: publish to ``pledge.rules-control``; every worker validates and swaps atomically.

The control topic has one partition and keeps every record (no compaction, no
expiry), so it is the history of published rulebooks. Every worker reads it
whole, outside the consumer group (each worker must see every update, unlike
the partitioned inputs):

- at start, before consuming anything, the **last valid** rulebook on the topic
  becomes active (or the file rulebook when there is none), so the active
  rulebook survives restarts;
- while running, each new record is validated again; a valid one replaces the
  active rulebook between two events (the swap is one assignment on the event
  loop), an invalid one is rejected and the running rulebook stays.

Each decision is published to ``pledge.rules-status`` (key: worker id), logged,
and exported as ``pledgewatch_rulebook_info`` / ``pledgewatch_rulebook_rejected_total``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import ValidationError

from monitor.errors import RulebookError
from monitor.schemas import RulebookStatus, RulebookUpdate
from monitor.settings import Settings
from rules.rulebook import Rulebook, parse_rulebook
from streams.topics import follow_partition

__all__ = ["Decision", "decide", "publish_rulebook", "read_history", "worker_id"]

log = logging.getLogger(__name__)


def worker_id() -> str:
    """Id of the running worker in status records: host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Decision:
    """The outcome of one control record: the new rulebook, or why it was rejected."""

    rulebook: Rulebook | None
    name: str
    version: int | None
    reason: str


def decide(raw: bytes | None) -> Decision:
    """Validate one control record (a ``RulebookUpdate`` whose source must pass ``rules check``).

    Examples
    --------
    >>> decide(b"not json").reason.startswith("not a RulebookUpdate")
    True
    """
    try:
        upd = RulebookUpdate.model_validate_json(raw or b"")
    except ValidationError as exc:
        return Decision(None, "?", None, f"not a RulebookUpdate: {exc.errors()[0]['msg']}")
    try:
        rb = parse_rulebook(upd.source, f"{upd.rulebook}@v{upd.version}")
    except RulebookError as exc:
        return Decision(None, upd.rulebook, upd.version, "; ".join(exc.problems))
    if (rb.name, rb.version) != (upd.rulebook, upd.version):
        reason = f"envelope says {upd.rulebook} v{upd.version} but the YAML says {rb.name} v{rb.version}"
        return Decision(None, upd.rulebook, upd.version, reason)
    return Decision(rb, rb.name, rb.version, "valid")


def read_history(settings: Settings) -> tuple[list[Decision], int]:
    """Read the whole control topic now (kafka-python, no consumer group).

    Returns
    -------
    tuple
        The decisions in topic order and the offset to continue from.
    """
    tp = TopicPartition(settings.topic("rules-control"), 0)
    consumer = KafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        client_id="pledgewatch-rules",
    )
    try:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        decisions: list[Decision] = []
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                decisions.extend(decide(r.value) for r in records if r.offset < end)
        return decisions, end
    finally:
        consumer.close()


def status(decision: Decision, accepted: bool, origin: str, worker: str) -> RulebookStatus:
    """The status record of a decision."""
    return RulebookStatus(
        worker=worker,
        rulebook=decision.name,
        version=decision.version,
        status="active" if accepted else "rejected",
        reason=decision.reason[:2000],
        origin="topic" if origin == "topic" else "file",
        at=dt.datetime.now(dt.UTC),
    )


async def follow(settings: Settings, start: int, apply: Callable[[Decision], Any]) -> None:
    """Consume new control records from ``start`` for ever, handing each decision to ``apply``."""
    async for record in follow_partition(settings, "rules-control", "pledgewatch-rules-follow", offset=start):
        await apply(decide(record.value))


def publish_rulebook(settings: Settings, rb: Rulebook) -> int:
    """Publish a validated rulebook to the control topic and wait for the broker's ack; returns the offset."""
    upd = RulebookUpdate(rulebook=rb.name, version=rb.version, source=rb.source, published_at=dt.datetime.now(dt.UTC))
    producer = KafkaProducer(**settings.kafka_options(), acks="all", client_id="pledgewatch-rules-publish")
    try:
        meta = producer.send(
            settings.topic("rules-control"), key=rb.name.encode(), value=upd.model_dump_json().encode()
        ).get(timeout=60)
        producer.flush()
        return int(meta.offset)
    finally:
        producer.close()
