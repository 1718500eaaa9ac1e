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


def test_fault_a__sigkill_mid_stream_then_restart_gives_the_backtests_alerts(env) -> None:  # type: ignore[no-untyped-def]
    book = load_loan_book(BOOK)
    incidents = [parse_incident("outage:akl-routes-7xx@3h")]
    events = list(apply_incidents(read_telemetry(SAMPLE, pledged_assets(book)), incidents))
    expected = run_backtest(book, events, load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"))
    kill_at = random.Random(os.environ.get("PLEDGEWATCH_FAULT_SEED", "11")).uniform(0.1, 0.25)  # before the alerts

    worker = Worker(env)
    try:
        worker.start()
        producer = make_producer(env.settings)
        produce_loan_book(producer, env.settings, book)
        produce_telemetry(producer, env.settings, events, rate=0, progress=False)
        producer.close()
        deadline = time.monotonic() + 300
        while committed_telemetry(env) < kill_at * len(events) and time.monotonic() < deadline:
            time.sleep(0.2)
        done = committed_telemetry(env)
        assert worker.proc is not None
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=30)
        before = len(read_topic(env.settings, "alerts", timeout=5))
        print(f"SIGKILL after {done:,} of {len(events):,} telemetry records committed, {before} alerts out")
        worker = Worker(env)
        t0 = time.monotonic()
        worker.start()
        wait_caught_up(env.settings, env.run, timeout=900)
        print(f"restarted and caught up in {time.monotonic() - t0:.1f} s")
        time.sleep(12)  # idle: the clock closes the windows the backtest closes at its end
        alerts = [Alert.model_validate_json(r.value) for r in read_topic(env.settings, "alerts")]
        calls = [MarginCall.model_validate_json(r.value) for r in read_topic(env.settings, "margin-calls")]
    finally:
        worker.stop()
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
