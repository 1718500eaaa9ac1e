"""``pledgewatch watch``: print alerts, margin calls and loan coverage live from the output topics.

A kafka-python consumer (no consumer group, assigned to every partition) reads
``pledge.alerts``, ``pledge.margin-calls`` and ``pledge.loan-risk`` and prints a
readable timeline: what core banking and risk officers would receive.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from monitor.display import AlertPrinter, coverage_part, format_time, make_console
from monitor.schemas import Alert, LoanRiskSnapshot, MarginCall
from monitor.settings import Settings

__all__ = ["watch"]

_MODELS: dict[str, Any] = {"alert": Alert, "mc": MarginCall, "risk": LoanRiskSnapshot}


def _event_time(kind: str, msg: Any) -> Any:
    """When an output happened: an alert's ``at``, a margin call's ``updated_at``, a snapshot's ``as_of``."""
    return msg.at if kind == "alert" else msg.updated_at if kind == "mc" else msg.as_of


def watch(
    settings: Settings,
    lang: str = "en",
    timezone: str | None = None,
    from_beginning: bool = True,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Print the output topics until interrupted (or ``stop()`` returns True)."""
    console = make_console(min_width=160)  # plain text when redirected to a file (demo logs)
    tz_name = timezone or settings.display_timezone
    printer = AlertPrinter(console, tz_name, lang)
    tz = zoneinfo.ZoneInfo(tz_name)
    topics = {
        settings.topic("alerts"): "alert",
        settings.topic("margin-calls"): "mc",
        settings.topic("loan-risk"): "risk",
    }
    consumer = KafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        client_id="pledgewatch-watch",
    )
    parts = []
    for t in topics:
        for p in consumer.partitions_for_topic(t) or {0}:
            parts.append(TopicPartition(t, p))
    consumer.assign(parts)
    if from_beginning:
        consumer.seek_to_beginning()
    last_cov: dict[str, tuple[str, float | None, str, float, float]] = {}
    state = {"last_at": ""}

    def coverage_line() -> None:
        if last_cov and any(v[2] != "calibrating" for v in last_cov.values()):
            at = max(v[0] for v in last_cov.values())
            # the value with its 90 % lower bound: a dark feed's value is carried flat while the bound falls
            parts_s = " | ".join(
                coverage_part(loan, cov, status, value, lower, lang)
                for loan, (_, cov, status, value, lower) in sorted(last_cov.items())
            )
            if at != state["last_at"]:  # one line per window of event time
                console.print(f"[dim]{at} coverage: {parts_s}[/]", soft_wrap=True)  # one line per window
                state["last_at"] = at

    def show(kind: str, msg: Any) -> None:
        if kind == "alert":
            printer.alert(msg)
        elif kind == "mc":
            printer.margin_call(msg)
        else:
            # stamped like the alerts: at the start of the window the valuation closed (as_of is its end),
            # so a coverage and the alert it raised read the same time
            start = msg.as_of - dt.timedelta(seconds=settings.window_s)
            last_cov[msg.loan_id] = (
                format_time(start, tz),
                msg.coverage_ratio,
                msg.status,
                msg.collateral_value,
                msg.collateral_value_lower,
            )

    # what is already on the topics is shown in event-time order: read as it comes, partitions and topics
    # interleave, so a loan's coverage could show a state hours old and a margin call before its warning
    ends = consumer.end_offsets(parts) if from_beginning else {}
    backlog: list[tuple[Any, int, str, Any]] = []
    try:
        while not (stop and stop()):
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                kind = topics[tp.topic]
                for rec in records:
                    try:
                        msg = _MODELS[kind].model_validate_json(rec.value)
                    except ValidationError as exc:
                        console.print(f"[red]unreadable record on {tp.topic}@{rec.offset}: {exc.errors()[0]['msg']}")
                        continue
                    if ends:
                        backlog.append((_event_time(kind, msg), len(backlog), kind, msg))
                    else:
                        show(kind, msg)
            if ends and all(consumer.position(tp) >= end for tp, end in ends.items()):
                ends = {}
                ordered = sorted(backlog, key=lambda b: (b[0], b[1]))
                for i, (when, _, kind, msg) in enumerate(ordered):
                    show(kind, msg)
                    if i + 1 == len(ordered) or ordered[i + 1][0] != when:
                        coverage_line()  # once every output of this moment is applied
                backlog.clear()
            if not ends:
                coverage_line()
    finally:
        consumer.close()
