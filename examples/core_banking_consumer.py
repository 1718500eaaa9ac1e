"""Example core-banking integration: consume pledgewatch's margin calls idempotently and print notices.

Run (against the demo's broker)::

    .venv/bin/python examples/core_banking_consumer.py --state .core-banking-state.json

It reads ``pledge.margin-calls`` (kafka-python, consumer group ``core-banking-example``) and prints
one notice per *new* ``(margin_call_id, status)``: ``issued`` (amount, options, deadline), ``cured``,
``expired`` (start close-out) or ``withdrawn``. Delivery is at-least-once (a restart re-reads
from the last committed offset, and pledgewatch may re-publish after a crash), so the consumer keeps
the pairs it has acted on in ``--state`` and skips repeats: the same notice is never sent twice, even
when it reads the topic again from the beginning (``--from-beginning``). Offsets are committed only
after the state file is written. The message shape is ``deploy/schemas/MarginCall.schema.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer


def notice(mc: dict[str, Any]) -> str:
    """One line a loan officer can act on (Chinese, then English)."""
    mid, loan = mc["margin_call_id"], mc["loan_id"]
    if mc["status"] == "issued":
        cov, line, due = f"{mc['coverage_ratio']:.1%}", f"{mc['warning_line']:.0%}", mc["cure_deadline"]
        # amounts are JSON numbers with at most two decimals, read as decimals: shown exact to the fen
        top_up, repay = (
            f"¥{Decimal(mc['required_top_up_collateral']):,.2f}",
            f"¥{Decimal(mc['required_repayment']):,.2f}",
        )
        # a deadline counted on a year whose holiday notice is not out yet may still move (docs/core-banking.md)
        due_zh, due_en = (f"{due}（暂定）", f"{due} (provisional)") if mc.get("deadline_provisional") else (due, due)
        return (
            f"[追加保证金通知] 贷款 {loan}（{mid}）覆盖率 {cov} 低于预警线 {line}："
            f"请于 {due_zh} 前追加押品 {top_up} 或还款 {repay} | MARGIN CALL {mid} on {loan}: coverage {cov}; "
            f"pledge {top_up} more collateral or repay {repay} by {due_en}"
        )
    words = {
        "cured": ("已补足，通知解除", "cured"),
        "expired": ("到期未补足，启动平仓处置", "expired unmet: start close-out"),
        "withdrawn": ("贷款已结清，通知撤回", "withdrawn: loan closed"),
    }[mc["status"]]
    return f"[追加保证金通知] {mid}（贷款 {loan}）{words[0]} | margin call {mid} on {loan} {words[1]}"


def load_state(path: Path) -> set[tuple[str, str]]:
    """The (margin_call_id, status) pairs already acted on."""
    if not path.exists():
        return set()
    return {tuple(x) for x in json.loads(path.read_text())}  # type: ignore[misc]


def save_state(path: Path, seen: set[tuple[str, str]]) -> None:
    """Write the state atomically (rename), so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(sorted(seen)))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Consume until the topic has been idle for ``--idle-s`` seconds; returns the process exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--topic", default=os.environ.get("PLEDGEWATCH_TOPIC_PREFIX", "pledge.") + "margin-calls")
    ap.add_argument("--group", default="core-banking-example")
    ap.add_argument("--state", type=Path, default=Path(".core-banking-state.json"))
    ap.add_argument("--idle-s", type=float, default=10.0, help="stop after this long without a message")
    ap.add_argument("--from-beginning", action="store_true", help="read the topic again from its start")
    args = ap.parse_args(argv)

    seen = load_state(args.state)
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(args.idle_s * 1000),
        allow_auto_create_topics=False,  # a wrong --topic must not create an empty topic on the broker
        value_deserializer=lambda b: json.loads(b.decode("utf-8"), parse_float=Decimal),  # exact amounts
    )
    if args.from_beginning:
        consumer.poll(timeout_ms=5000)  # join the group and get partitions before seeking
        consumer.seek_to_beginning()
    printed = 0
    try:
        for record in consumer:
            mc = record.value
            key = (mc["margin_call_id"], mc["status"])
            if key in seen:
                continue  # a repeat (re-delivery or re-read): already acted on
            print(notice(mc), flush=True)
            seen.add(key)
            printed += 1
            save_state(args.state, seen)
            consumer.commit()
    finally:
        consumer.close()
    print(f"core-banking example: {printed} new notice(s), {len(seen)} acted on in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
