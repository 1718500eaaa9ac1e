"""Read the output topics with kafka-python: every record (``read_all``, ``read_outputs``) or the latest per key."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import orjson
from kafka import KafkaConsumer, TopicPartition

from monitor.schemas import Alert, CollateralValuation, LoanRiskSnapshot, MarginCall
from monitor.settings import Settings

__all__ = ["Outputs", "latest_by_key", "mentions_of", "read_all", "read_outputs"]


def read_all(
    settings: Settings,
    logical: str,
    model: Any,
    timeout_s: float = 30.0,
    complete: bool = False,
    mentions: tuple[bytes, ...] | None = None,
) -> list[tuple[str, Any]]:
    """Every ``(key, message)`` of ``logical`` from the beginning to its current end.

    Messages are decoded with ``model.model_validate_json``; a compacted topic keeps at least the
    newest message per key. After ``timeout_s`` seconds of polling the records read so far are
    returned, or with ``complete`` :class:`TimeoutError` is raised (kafka-python's own errors, such as
    ``NoBrokersAvailable``, pass through). ``mentions``: only records whose value holds one of these
    byte strings are decoded (the others are read and skipped: decoding is most of a read's cost), see
    :func:`mentions_of`.
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
                    if r.key is None or r.value is None:
                        continue
                    if mentions is not None and not any(m in r.value for m in mentions):
                        continue
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


def mentions_of(loan_id: str) -> tuple[bytes, ...]:
    r"""The byte strings one of which every output record about ``loan_id`` holds: its id as a JSON string.

    A valuation names its loans in ``loan_ids``, a snapshot, an alert and a margin call in ``loan_id``,
    each a JSON string, which holds the id's characters as written here or, in JSON's other spelling
    of ``/`` (the one character of a loan id, ``monitor.schemas._ID``, that JSON may escape), with
    ``\/``. Every writer of these topics is a worker, through pydantic, which escapes none of the id's
    characters, so the test keeps every record about the loan (exact, not a guess; a foreign writer that
    spelled the id's characters as ``\u`` escapes would be missed); records of other loans that happen
    to quote the same string are decoded and dropped by the report's own filter.
    """
    quoted = orjson.dumps(loan_id)
    forms = {quoted, quoted.replace(b"/", b"\\/")}
    return tuple(sorted(forms))


def read_outputs(
    settings: Settings, timeout_s: float = 30.0, complete: bool = False, loan_id: str | None = None
) -> Outputs:
    """Every record of ``valuations``, ``loan-risk``, ``alerts`` and ``margin-calls`` (``pledgewatch report``'s input).

    Blocking (kafka-python): from an event loop, run it in an executor. ``timeout_s`` bounds the four
    reads together; ``complete`` as in :func:`read_all` (:class:`TimeoutError` when a topic is not read
    to its end in time). ``loan_id``: only the records that may be about this loan are decoded
    (:func:`mentions_of`); every record is still read.
    """
    deadline = time.monotonic() + timeout_s
    mentions = None if loan_id is None else mentions_of(loan_id)

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    return Outputs(
        [m for _, m in read_all(settings, "valuations", CollateralValuation, left(), complete, mentions)],
        [m for _, m in read_all(settings, "loan-risk", LoanRiskSnapshot, left(), complete, mentions)],
        [m for _, m in read_all(settings, "alerts", Alert, left(), complete, mentions)],
        [m for _, m in read_all(settings, "margin-calls", MarginCall, left(), complete, mentions)],
    )
