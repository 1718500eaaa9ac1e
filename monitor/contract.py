"""The integration contract as documents: a JSON Schema per message type and an AsyncAPI 3.0 document.

``pledgewatch schemas`` writes them into ``deploy/schemas/`` (committed; a test fails when they are
stale). The JSON Schemas come from the pydantic models themselves (``model_json_schema``, draft
2020-12), so the documents cannot drift from the code; the AsyncAPI document names every topic, its
key, its message and its retention, and carries one real example per message, taken from a backtest
of the shipped Auckland sample (so examples are what the system really emits). Every example
validates against its schema and round-trips through its model (``tests/unit/test_contract.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter

from monitor.schemas import (
    AccessLogEntry,
    Alert,
    BalanceChanged,
    ClassificationSuggestion,
    CollateralPledged,
    CollateralReleased,
    CollateralValuation,
    DeadLetter,
    GroupListing,
    InterestAccrued,
    LinesChanged,
    LoanClosed,
    LoanEvent,
    LoanExposure,
    LoanOpened,
    LoanRestructured,
    LoanRiskSnapshot,
    MarginCall,
    PaymentOverdue,
    Repayment,
    RulebookStatus,
    RulebookUpdate,
    TelemetryBatch,
    TelemetryEvent,
    Thresholds,
    WatchListEvent,
    WatchReason,
)
from monitor.settings import COMPACTED, RETAINED, TOPICS

__all__ = ["CHANNELS", "MESSAGES", "Channel", "asyncapi", "examples", "json_schemas", "write_documents"]

ROOT = Path(__file__).resolve().parents[1]

#: message name -> (model or adapter, title)
MESSAGES: dict[str, tuple[Any, str]] = {
    "TelemetryEvent": (TelemetryEvent, "Operational record of a pledged data asset"),
    "TelemetryBatch": (TelemetryBatch, "Several observations of one asset in one record (e.g. one poll)"),
    "LoanEvent": (TypeAdapter(LoanEvent), "Loan lifecycle event from core banking (tagged union on `type`)"),
    "CollateralValuation": (CollateralValuation, "Revalued collateral of one asset at a window close"),
    "LoanRiskSnapshot": (LoanRiskSnapshot, "Risk position of one loan"),
    "Alert": (Alert, "Alert transition (firing / resolved)"),
    "MarginCall": (MarginCall, "Margin call and its status transitions, on one id"),
    "DeadLetter": (DeadLetter, "A record that could not be used, with the reason"),
    "RulebookUpdate": (RulebookUpdate, "A rulebook published for hot reload"),
    "RulebookStatus": (RulebookStatus, "What one worker did with a published rulebook"),
    "AccessLogEntry": (AccessLogEntry, "One read of loan or asset data on the query API, allowed or refused"),
    "WatchListEvent": (WatchListEvent, "A loan put on the watch list, its reasons changed, or taken off"),
    "LoanExposure": (LoanExposure, "One loan's exposure and collateral by asset, for the portfolio's concentration"),
    "GroupListing": (
        GroupListing,
        "One loan's standing for its borrower group's watch-list criterion, read by every worker",
    ),
    "ClassificationSuggestion": (
        ClassificationSuggestion,
        "A change of a loan's suggested risk category (five categories), with the criteria that give it",
    ),
}


@dataclass(frozen=True)
class Channel:
    """One topic of the contract, seen from pledgewatch: it ``receive``s inputs and ``send``s outputs."""

    logical: str
    message: str
    key: str
    action: str
    description: str
    #: further message kinds the topic carries besides ``message``
    also: tuple[str, ...] = ()

    @property
    def messages(self) -> tuple[str, ...]:
        """Every message kind of the topic."""
        return (self.message, *self.also)


CHANNELS: list[Channel] = [
    Channel(
        "telemetry",
        "TelemetryEvent",
        "asset id",
        "receive",
        "Telemetry of pledged data assets (producers: data platforms): one observation a record, or one "
        "asset's poll as a `TelemetryBatch` (each observation decoded and dead-lettered on its own).",
        also=("TelemetryBatch",),
    ),
    Channel(
        "loan-book", "LoanEvent", "loan id", "receive", "Loan lifecycle from core banking; ordered per loan by the key."
    ),
    Channel(
        "rules-control",
        "RulebookUpdate",
        "rulebook name",
        "receive",
        "Rulebooks published with `pledgewatch rules publish`; kept forever.",
    ),
    Channel("valuations", "CollateralValuation", "asset id", "send", "Latest valuation per asset (compacted)."),
    Channel(
        "loan-risk",
        "LoanRiskSnapshot",
        "loan id",
        "send",
        "Latest risk position per loan (compacted): coverage, LTV, status.",
    ),
    Channel(
        "alerts",
        "Alert",
        "loan id (asset id for asset-scope rules)",
        "send",
        "Alert transitions; `alert_id` is deterministic, so a replay re-emits nothing new.",
    ),
    Channel(
        "margin-calls",
        "MarginCall",
        "loan id",
        "send",
        "Margin calls: `issued`, then `cured`, `expired` or `withdrawn` on the same `margin_call_id`.",
    ),
    Channel(
        "watch-list",
        "WatchListEvent",
        "loan id",
        "send",
        "The watch list (关注名单), compacted: each loan's latest record is its place on the list now, with every "
        "reason (rule, since when, why) that holds; `entered`, `updated` or `exited`.",
    ),
    Channel(
        "classification",
        "ClassificationSuggestion",
        "loan id",
        "send",
        "The suggested risk category of each loan (五级分类: normal, special_mention, substandard, doubtful, "
        "loss), compacted: one record per change, with every criterion (regulation or the bank's policy) that "
        "gives it. A suggestion for the credit committee, never applied by pledgewatch.",
    ),
    Channel(
        "dead-letter",
        "DeadLetter",
        "the original key",
        "send",
        "Records that could not be used, with a reason code and the original bytes.",
    ),
    Channel(
        "rules-status",
        "RulebookStatus",
        "worker id",
        "send",
        "Each worker's answer to a published rulebook; kept forever.",
    ),
    Channel(
        "access-log",
        "AccessLogEntry",
        "the reader's subject",
        "send",
        "Who read which loan or asset on the query API, when, from where, allowed or refused; append-only, "
        "kept forever (never compacted: every read is its own record). Never holds a token.",
    ),
]


def json_schemas() -> dict[str, dict[str, Any]]:
    """Message name -> JSON Schema (draft 2020-12) generated from the pydantic model."""
    out: dict[str, dict[str, Any]] = {}
    for name, (model, title) in MESSAGES.items():
        schema = model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://pledgewatch.example/schemas/{name}.schema.json",
            **schema,
        }
        schema.setdefault("title", name)
        schema["description"] = (schema.get("description") or title).strip()
        out[name] = schema
    return out


def _loan_event_examples(opened: LoanOpened, pledged: CollateralPledged) -> list[BaseModel]:
    at = opened.effective_at + dt.timedelta(days=20)
    loan = opened.loan_id
    return [
        opened,
        pledged,
        BalanceChanged(event_id=f"{loan}:drawdown-2", effective_at=at, outstanding=4_800_000.0, loan_id=loan),
        Repayment(event_id=f"{loan}:repay-1", effective_at=at, amount=250_000.0, loan_id=loan),
        InterestAccrued(event_id=f"{loan}:interest-2016-05", effective_at=at, amount=17_500.0, loan_id=loan),
        LinesChanged(
            event_id=f"{loan}:lines-2",
            effective_at=at,
            thresholds=Thresholds(warning=1.35, margin_call=1.25, close_out=1.15),
            loan_id=loan,
        ),
        CollateralReleased(event_id=f"{loan}:released", effective_at=at, asset_id=pledged.asset_id, loan_id=loan),
        PaymentOverdue(
            event_id=f"{loan}:dpd-2016-06-10",
            effective_at=at,
            days_past_due=12,
            as_of=at - dt.timedelta(hours=2),
            loan_id=loan,
        ),
        LoanRestructured(
            event_id=f"{loan}:restructured-1",
            effective_at=at,
            restructured_on=at.date(),
            observation_end=at.date().replace(year=at.year + 1) + dt.timedelta(days=30),
            loan_id=loan,
        ),
        LoanClosed(event_id=f"{loan}:closed", effective_at=at, loan_id=loan),
    ]


def _batch_example(telemetry: Iterable[TelemetryEvent]) -> TelemetryBatch:
    """The first poll of the sample with at least two observations of one asset, as a batch (at most 3 of them)."""
    group: list[TelemetryEvent] = []
    for ev in telemetry:
        if group and (ev.asset_id, ev.received_at) != (group[0].asset_id, group[0].received_at):
            if len(group) >= 2:
                break
            group = []
        group.append(ev)
    return TelemetryBatch(asset_id=group[0].asset_id, observations=group[:3])


def examples() -> dict[str, list[BaseModel]]:
    """Message name -> real examples: a backtest of the shipped sample with the demo outage, plus the loan book.

    Deterministic: the sample, the loan book and the models' seeds fix every value.
    """
    from monitor.backtest import load_loan_book, pledged_assets, read_telemetry, run_backtest
    from monitor.core import decode_loan_event, decode_telemetry
    from monitor.errors import InputRejected
    from monitor.incidents import parse_incident
    from rules.rulebook import load_rulebook

    sample = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    rules_file = ROOT / "rules" / "rulebooks" / "default.yaml"
    rulebook = load_rulebook(rules_file)
    telemetry = read_telemetry(sample, pledged_assets(book))
    first_events: list[TelemetryEvent] = []
    for ev in telemetry:
        if ev.kind not in {e.kind for e in first_events}:
            first_events.append(ev)
        if len(first_events) == 3:
            break
    res = run_backtest(
        book,
        read_telemetry(sample, pledged_assets(book)),
        rulebook,
        incidents=[parse_incident("cut:akl-routes-7xx@3h:0.6")],
    )
    loans = [decode_loan_event(raw) for raw in book]
    opened = next(e for e in loans if isinstance(e, LoanOpened))
    pledged = next(e for e in loans if isinstance(e, CollateralPledged) and e.loan_id == opened.loan_id)
    calls = res.margin_calls
    bad = (
        b'{"event_id": "e-1", "asset_id": "akl-routes-2xx", "observed_at": "2016-05-20T08:00:00", "kind": "feed_poll"}'
    )
    when = dt.datetime(2016, 5, 20, 8, 0, 5, tzinfo=dt.UTC)
    try:
        decode_telemetry(bad, when.timestamp())
        raise AssertionError("the dead-letter example must be rejected")
    except InputRejected as exc:
        from monitor.core import dead_letter

        dl = dead_letter(
            bad, exc, topic="pledge.telemetry", partition=2, offset=48_113, key="akl-routes-2xx", now=when.timestamp()
        )
    published = dt.datetime(2016, 5, 19, 9, 0, tzinfo=dt.UTC)
    snapshots = res.of("loan-risk")
    return {
        "TelemetryEvent": list(first_events),
        "TelemetryBatch": [_batch_example(read_telemetry(sample, pledged_assets(book)))],
        "LoanEvent": _loan_event_examples(opened, pledged),
        "CollateralValuation": [next(v for v in res.valuations if v.status == "active")],
        "LoanRiskSnapshot": [next(s for s in snapshots if s.status in ("margin_call", "close_out"))],
        "Alert": [next(a for a in res.alerts if a.rule_id == "coverage-below-margin-call")],
        "MarginCall": [m for m in calls if m.margin_call_id == calls[0].margin_call_id][:3],  # type: ignore[dict-item]
        "DeadLetter": [dl],
        "RulebookUpdate": [
            RulebookUpdate(
                rulebook=rulebook.name, version=rulebook.version, source=rules_file.read_text(), published_at=published
            )
        ],
        "RulebookStatus": [
            RulebookStatus(
                worker="worker-host-1:4711",
                rulebook=rulebook.name,
                version=rulebook.version,
                status="active",
                reason=f"validated: {len(rulebook.rules)} rules",
                origin="topic",
                at=published + dt.timedelta(seconds=2),
            )
        ],
        "WatchListEvent": [
            WatchListEvent(
                loan_id=calls[0].loan_id,
                borrower_id=opened.borrower_id,
                status="entered",
                on_list=True,
                rule_id="watch-recent-margin-call",
                at=calls[0].issued_at + dt.timedelta(minutes=15),
                reasons=[
                    WatchReason(
                        rule_id="watch-recent-margin-call",
                        subject=calls[0].loan_id,
                        since=calls[0].issued_at + dt.timedelta(minutes=15),
                        alert_id=calls[0].alert_id,
                        summary="30 天内发出追加保证金通知",
                        summary_en="a margin call issued within 30 days",
                    )
                ],
                facts={"coverage_ratio": calls[0].coverage_ratio, "outstanding": calls[0].outstanding},
                rulebook=rulebook.name,
                rulebook_version=rulebook.version,
            )
        ],
        "ClassificationSuggestion": res.of("classification")[:1],
        "LoanExposure": res.of("portfolio-exposure")[:1],
        "GroupListing": [
            GroupListing(
                loan_id=calls[0].loan_id,
                borrower_group="GRP-AKL",
                listed=True,
                changed_at=calls[0].issued_at + dt.timedelta(minutes=15),
            )
        ],
        "AccessLogEntry": [
            AccessLogEntry(
                at=published + dt.timedelta(hours=3),
                worker="https://worker-host-1:6066",
                subject="rm-zhang.wei",
                role="relationship_manager",
                via="jwt",
                action="read_loan",
                resource_id=calls[0].loan_id,
                remote="10.20.30.40",
                decision="refused",
                status=403,
                reason=f"loan {calls[0].loan_id!r} is not of a borrower assigned to 'rm-zhang.wei'",
            )
        ],
    }


def asyncapi(prefix: str = "pledge.") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic (payloads reference the JSON Schema files)."""
    ex = examples()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for ch in CHANNELS:
        cid = ch.logical.replace("-", "_")
        policy = "compact" if ch.logical in COMPACTED else "delete"
        kafka: dict[str, Any] = {
            "topic": prefix + TOPICS[ch.logical],
            "topicConfiguration": {"cleanup.policy": [policy]},
        }
        if ch.logical in RETAINED:
            kafka["partitions"] = 1
            kafka["topicConfiguration"]["retention.ms"] = -1
        channels[cid] = {
            "address": prefix + TOPICS[ch.logical],
            "description": ch.description,
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in ch.messages},
            "bindings": {"kafka": kafka},
        }
        verb = "consume" if ch.action == "receive" else "publish"
        operations[f"{verb}_{cid}"] = {
            "action": ch.action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in ch.messages],
        }
        for name in ch.messages:
            messages[name] = {
                "name": name,
                "title": MESSAGES[name][1],
                "contentType": "application/json",
                "payload": {
                    "schemaFormat": "application/schema+json;version=draft-2020-12",
                    "schema": {"$ref": f"./{name}.schema.json"},
                },
                "bindings": {"kafka": {"key": {"type": "string", "description": ch.key}}},
                "examples": [
                    {"name": f"{name}-{i + 1}", "payload": m.model_dump(mode="json")} for i, m in enumerate(ex[name])
                ],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "pledgewatch",
            "version": "1.0.0",
            "description": (
                "Streaming post-loan risk monitor for loans secured by pledged data assets. Every message is "
                "UTF-8 JSON with `schema_version`; times are RFC 3339 with an offset, amounts in yuan, ratios "
                "0..1 or coverage ratios. Topic names carry the deployment's prefix (`PLEDGEWATCH_TOPIC_PREFIX`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make broker-start"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render_documents() -> dict[str, str]:
    """File name -> text of every contract document."""
    files = {
        f"{name}.schema.json": json.dumps(s, indent=2, ensure_ascii=False) + "\n" for name, s in json_schemas().items()
    }
    files["asyncapi.yaml"] = (
        "# Generated by `pledgewatch schemas` from monitor/contract.py: do not edit by hand.\n"
        + yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=120)
    )
    return files


def write_documents(out: Path) -> list[Path]:
    """Write every document into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in render_documents().items():
        path = out / fname
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
