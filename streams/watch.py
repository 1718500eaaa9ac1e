"""``pledgewatch watch``: print alerts, margin calls and loan coverage live from the output topics.

A kafka-python consumer (no consumer group, assigned to every partition) reads
``pledge.alerts``, ``pledge.margin-calls`` and ``pledge.loan-risk`` and prints a
readable timeline: what core banking and risk officers would receive.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError
from rich.console import Console

from monitor.display import AlertPrinter
from monitor.schemas import Alert, LoanRiskSnapshot, MarginCall
from monitor.settings import Settings

__all__ = ["watch"]


def watch(
    settings: Settings,
    lang: str = "en",
    timezone: str | None = None,
    from_beginning: bool = True,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Print the output topics until interrupted (or ``stop()`` returns True)."""
    console = Console(width=max(160, Console().width))
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
    last_cov: dict[str, tuple[str, float | None, str]] = {}
    last_at = ""
    try:
        while not (stop and stop()):
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                kind = topics[tp.topic]
                for rec in records:
                    try:
                        if kind == "alert":
                            printer.alert(Alert.model_validate_json(rec.value))
                        elif kind == "mc":
                            printer.margin_call(MarginCall.model_validate_json(rec.value))
                        else:
                            s = LoanRiskSnapshot.model_validate_json(rec.value)
                            last_cov[s.loan_id] = (
                                s.as_of.astimezone(tz).strftime("%m-%d %H:%M"),
                                s.coverage_ratio,
                                s.status,
                            )
                    except ValidationError as exc:
                        console.print(f"[red]unreadable record on {tp.topic}@{rec.offset}: {exc.errors()[0]['msg']}")
            if last_cov and any(v[2] != "calibrating" for v in last_cov.values()):
                at = max(v[0] for v in last_cov.values())
                parts_s = " | ".join(
                    f"{loan} awaiting valuation"
                    if status == "calibrating" or cov is None
                    else f"{loan} {cov:.1%} {status}"
                    for loan, (_, cov, status) in sorted(last_cov.items())
                )
                if at != last_at:  # one line per window of event time
                    console.print(f"[dim]{at} coverage: {parts_s}[/]")
                    last_at = at
    finally:
        consumer.close()
