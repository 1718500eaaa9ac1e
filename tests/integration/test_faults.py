"""Fault tests on the real broker (issue 7): kill the worker mid-stream and compare with an uninterrupted backtest."""

from __future__ import annotations

import collections
import os
import random
import signal
import time

from kafka.admin import KafkaAdminClient

from monitor.backtest import load_loan_book, pledged_assets, read_telemetry, run_backtest
from monitor.incidents import apply_incidents, parse_incident
from monitor.schemas import Alert, MarginCall
from rules.rulebook import load_rulebook
from streams.replay import make_producer, produce_loan_book, produce_telemetry
from tests.integration.conftest import ROOT, Worker, read_topic, wait_caught_up

SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
BOOK = ROOT / "examples" / "loan_book.jsonl"


def committed_telemetry(env) -> int:  # type: ignore[no-untyped-def]
    admin = KafkaAdminClient(bootstrap_servers=env.settings.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets({env.run: None}).get(env.run, {})
        return sum(o.offset for tp, o in offsets.items() if tp.topic == env.settings.topic("telemetry"))
    finally:
        admin.close()


def sample_events() -> tuple[list[bytes], list, object]:  # type: ignore[type-arg]
    """The loan book, the sample with the demo outage, and the uninterrupted backtest of both."""
    book = load_loan_book(BOOK)
    incidents = [parse_incident("outage:akl-routes-7xx@3h")]
    events = list(apply_incidents(read_telemetry(SAMPLE, pledged_assets(book)), incidents))
    return book, events, run_backtest(book, events, load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"))


def produce_and_kill(env, worker: Worker, book: list[bytes], events: list, at: float) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Produce everything, then SIGKILL ``worker`` once ``at`` of the telemetry is committed."""
    producer = make_producer(env.settings)
    produce_loan_book(producer, env.settings, book)
    produce_telemetry(producer, env.settings, events, rate=0, progress=False)
    producer.close()
    deadline = time.monotonic() + 300
    while committed_telemetry(env) < at * len(events) and time.monotonic() < deadline:
        time.sleep(0.2)
    done = committed_telemetry(env)
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=30)
    before = len(read_topic(env.settings, "alerts", timeout=5))
    print(f"SIGKILL after {done:,} of {len(events):,} telemetry records committed, {before} alerts out")


def compare(env, expected) -> None:  # type: ignore[no-untyped-def]
    """The output topics hold the backtest's alert and margin-call ids, each once."""
    alerts = [Alert.model_validate_json(r.value) for r in read_topic(env.settings, "alerts")]
    calls = [MarginCall.model_validate_json(r.value) for r in read_topic(env.settings, "margin-calls")]
    got = collections.Counter((a.alert_id, a.status) for a in alerts)
    want = collections.Counter((a.alert_id, a.status) for a in expected.alerts)
    dup = {k: n for k, n in got.items() if n > 1}
    missing = want - got
    extra = got - want
    print(
        f"alerts: expected {sum(want.values())}, got {sum(got.values())}, "
        f"duplicated {dup}, missing {dict(missing)}, extra {dict(extra)}"
    )
    assert not dup and not missing
    assert {(m.margin_call_id, m.status) for m in calls} == {
        (m.margin_call_id, m.status) for m in expected.margin_calls
    }
    assert len(calls) == len({(m.margin_call_id, m.status) for m in calls})


def test_fault_a__sigkill_mid_stream_then_restart_gives_the_backtests_alerts(env) -> None:  # type: ignore[no-untyped-def]
    book, events, expected = sample_events()
    kill_at = random.Random(os.environ.get("PLEDGEWATCH_FAULT_SEED", "11")).uniform(0.1, 0.25)  # before the alerts
    worker = Worker(env)
    try:
        worker.start()
        produce_and_kill(env, worker, book, events, kill_at)
        worker = Worker(env)
        t0 = time.monotonic()
        worker.start()
        wait_caught_up(env.settings, env.run, timeout=900)
        print(f"restarted and caught up in {time.monotonic() - t0:.1f} s")
        time.sleep(12)  # idle: the clock closes the windows the backtest closes at its end
        compare(env, expected)
    finally:
        worker.stop()


def test_fault_c__two_workers_one_killed_the_other_takes_over_its_partitions_and_state(env) -> None:  # type: ignore[no-untyped-def]
    book, events, expected = sample_events()
    w1, w2 = Worker(env), Worker(env, second=True)
    try:
        w1.start()
        w2.start(members=2)
        produce_and_kill(env, w2, book, events, 0.15)
        t0 = time.monotonic()
        wait_caught_up(env.settings, env.run, timeout=900)
        print(f"the survivor took over and caught up in {time.monotonic() - t0:.1f} s")
        time.sleep(12)
        assert w1.alive()
        compare(env, expected)
    finally:
        w2.stop()
        w1.stop()
