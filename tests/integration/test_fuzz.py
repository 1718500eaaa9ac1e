"""Fuzz the worker's ingress on the real broker (issue 7, point 1): generated records, bounded in number.

Hypothesis generates 1,500 telemetry and loan-book records (raw bytes, tombstones, arbitrary JSON,
real records mutated; ``tests/fuzz.py``), the test produces them all, and then checks that the
worker is still running, has committed every input offset, and counted every record as processed
or dead-lettered: the records on ``pledge.dead-letter`` are exactly the rejected ones.
"""

from __future__ import annotations

import collections
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.schemas import DeadLetter
from streams.replay import make_producer, produce_loan_book
from tests.fuzz import loan_records, telemetry_records
from tests.integration.conftest import BOOK, Env, Worker, read_topic, wait_caught_up

EXAMPLES = 1500


def test_fuzz__generated_records_never_stop_the_worker_each_is_processed_or_dead_lettered(
    env: Env, worker: Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    worker.start()
    producer = make_producer(env.settings)
    produce_loan_book(producer, env.settings, BOOK.read_bytes().splitlines())
    sent: collections.Counter[str] = collections.Counter()

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(
        st.sampled_from(["telemetry", "loan-book"]).flatmap(
            lambda t: st.tuples(st.just(t), telemetry_records if t == "telemetry" else loan_records)
        )
    )
    def throw(record: tuple[str, bytes | None]) -> None:
        topic, raw = record
        producer.send(env.settings.topic(topic), key=b"fuzz-" + str(sent.total()).encode(), value=raw)
        sent[topic] += 1

    throw()
    producer.flush()
    producer.close()
    wait_caught_up(env.settings, env.run, timeout=600)
    assert worker.alive(), "the worker stopped on a generated record"

    book_lines = len(BOOK.read_bytes().splitlines())
    counted = {
        "telemetry": worker.metric("pledgewatch_events_total", topic="pledge.telemetry"),
        "loan-book": worker.metric("pledgewatch_events_total", topic="pledge.loan-book"),
    }
    invalid = worker.metric("pledgewatch_events_total", outcome="invalid")
    letters = [DeadLetter.model_validate_json(r.value) for r in read_topic(env.settings, "dead-letter", timeout=30)]
    reasons = collections.Counter(d.reason for d in letters)
    body = urllib.request.urlopen(worker.metrics_url, timeout=5).read().decode()
    breakdown = [ln for ln in body.splitlines() if ln.startswith(("pledgewatch_events_total", "pledgewatch_dead"))]
    detail = f"sent {dict(sent)}, dead letters {dict(reasons)}, counters {breakdown}"
    # every record counted once: processed or rejected
    assert counted["telemetry"] == sent["telemetry"], detail
    assert counted["loan-book"] == sent["loan-book"] + book_lines
    assert len(letters) == invalid > 0  # each rejected record is on the dead-letter topic, with a reason
    assert invalid < sent.total()  # and some got through to the core
    with capsys.disabled():
        print(
            f"\n[fuzz] {sent.total():,} generated records ({dict(sent)}): worker alive, all committed; "
            f"{len(letters):,} dead-lettered by reason {dict(reasons.most_common())}"
        )
