"""Fuzz the core's ingress in process (issue 7): no generated record crashes it; each is taken or rejected.

The same path as the worker's agents: ``decode_telemetry`` / ``decode_loan_event`` then the core,
an :class:`InputRejected` meaning "dead-lettered with a reason code". Any other exception is a
crash (the worker would dead-letter it as ``processing_error``; here it fails the test).
"""

from __future__ import annotations

import math

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.backtest import load_loan_book
from monitor.core import Monitor, decode_loan_event, decode_telemetry
from monitor.errors import InputRejected
from monitor.schemas import REASON_CODES
from rules.rulebook import load_rulebook
from tests.conftest import ROOT
from tests.fuzz import loan_records, telemetry_records

NOW = 1463700000.0  # 2016-05-19T23:20Z: the sample's day, so real-looking records pass the time checks


def fresh_monitor() -> Monitor:
    mon = Monitor(load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"))
    for raw in load_loan_book(ROOT / "examples" / "loan_book.jsonl"):
        mon.on_loan_event(decode_loan_event(raw))
    return mon


MONITOR = fresh_monitor()
SEEN: dict[str, int] = {"processed": 0, "rejected": 0}


def ingest(mon: Monitor, topic: str, raw: bytes | None) -> str:
    """Feed one record as the worker does; returns ``processed`` or the rejection's reason code."""
    try:
        if topic == "telemetry":
            outputs = mon.on_telemetry(decode_telemetry(raw, NOW))
        else:
            outputs = mon.on_loan_event(decode_loan_event(raw, NOW))
    except InputRejected as exc:
        assert exc.reason in REASON_CODES, exc.reason
        assert str(exc)  # one message a person can act on
        return exc.reason
    for o in outputs:  # whatever came out can be published and read back
        orjson.loads(o.message.model_dump_json())
    return "processed"


@settings(max_examples=1500, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["telemetry", "loan-book"]), telemetry_records | loan_records), max_size=8))
def test_fuzz__generated_bytes_and_json_never_crash_the_core_each_record_is_processed_or_rejected(
    records: list[tuple[str, bytes | None]],
) -> None:
    for topic, raw in records:
        outcome = ingest(MONITOR, topic, raw)
        SEEN["processed" if outcome == "processed" else "rejected"] += 1
    for v in MONITOR.flush(NOW - 3600):  # closing windows after the fuzz stays finite
        if v.topic == "valuations":
            assert math.isfinite(v.message.value)  # type: ignore[attr-defined]


def test_fuzz__the_generator_reaches_past_the_parser() -> None:
    """The fuzz is only worth something if some records pass every check and reach the core."""
    mon = fresh_monitor()
    outcomes: dict[str, int] = {}

    @settings(max_examples=400, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(telemetry_records)
    def run(raw: bytes | None) -> None:
        outcome = ingest(mon, "telemetry", raw)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    assert outcomes.get("processed", 0) > 0
    assert {"undecodable", "schema_violation"} <= set(outcomes)
