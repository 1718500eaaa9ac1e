"""The margin-call workflow on the real broker, as core banking sees it through the topics.

Loan L1: opened → pledged → 70 % of its trips stop while its feed keeps reporting, the value falls →
margin call issued → repayment → cured (a feed that goes dark instead is uncertainty first: no margin
call within its silence grace, see docs/valuation.md). Loan L2: issued → the worker is restarted →
the cure deadline passes → expired and a critical close-out alert; the margin call is issued once
across the restart. The example core-banking consumer (``examples/core_banking_consumer.py``)
prints each notice once, even when it reads again.
"""

from __future__ import annotations

import datetime as dt
import math
import subprocess
from typing import Any

from kafka import KafkaProducer

from monitor.schemas import Alert, MarginCall, Repayment
from tests.conftest import T0, healthy_window_events, make_loan, make_pledge
from tests.integration.conftest import BIN, ROOT, Worker, read_topic, send_loan_book, wait_caught_up

W = dt.timedelta(minutes=15)
# the cut runs from window 8 (02:00) to window 23 (06:00): past the margin call (03:30 in a backtest of the
# same input) yet before L2's deadline (its cure period, 6 h after the call), which only the windows
# produced after the restart pass, whenever between 02:15 and 05:30 the call comes
CUT_END = 24
L2_CURE = "6h"
AFTER_RESTART = 28  # windows of A3 after the restart: to 13:00, past any such deadline


def produce_windows(producer: KafkaProducer, env: Any, assets: list[str], windows: range, trips: int = 10) -> None:
    """Windows of polls every 120 s and ``trips`` completed trips each (the appraisal expects 10)."""
    topic = env.settings.topic("telemetry")
    for i in windows:
        for asset in assets:
            for ev in healthy_window_events(asset, T0 + i * W, trips=trips, prefix=f"{asset}-{i}"):
                producer.send(topic, key=asset.encode(), value=ev.model_dump_json().encode())
    producer.flush()


def calls_of(env: Any, until: Any, timeout: float = 120.0) -> list[MarginCall]:
    recs = read_topic(
        env.settings,
        "margin-calls",
        until=lambda rs: until([MarginCall.model_validate_json(r.value) for r in rs]),
        timeout=timeout,
    )
    return [MarginCall.model_validate_json(r.value) for r in recs]


def consumer(env: Any, state: Any, *extra: str) -> list[str]:
    out = subprocess.run(
        [
            str(BIN / "python"),
            str(ROOT / "examples" / "core_banking_consumer.py"),
            "--bootstrap",
            env.settings.bootstrap_servers,
            "--topic",
            env.settings.topic("margin-calls"),
            "--state",
            str(state),
            "--idle-s",
            "5",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [ln for ln in out.stdout.splitlines() if ln.strip()]


def test_margin_call_workflow__cured_by_repayment_expired_after_restart_and_noticed_once(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    worker = Worker(env)
    try:
        worker.start()
        producer = KafkaProducer(bootstrap_servers=env.settings.bootstrap_servers, acks="all")
        send_loan_book(
            producer,
            env.settings,
            (
                make_loan(),  # L1: cure period 5 days
                make_pledge(),
                make_loan(event_id="L2:opened", loan_id="L2", cure_period=L2_CURE),
                make_pledge(event_id="L2:pledged:A2", loan_id="L2", asset_id="A2", pledge_registration_no="REG-2"),
                make_loan(event_id="L3:opened", loan_id="L3"),
                make_pledge(event_id="L3:pledged:A3", loan_id="L3", asset_id="A3", pledge_registration_no="REG-3"),
            ),
        )
        produce_windows(producer, env, ["A1", "A2", "A3"], range(8))  # two healthy hours for everyone
        wait_caught_up(env.settings, env.run)
        # 70 % of the trips stop; the margin call follows once the level shift is confirmed (docs/valuation.md,
        # level shifts: 03:30 in a backtest of the same input), and its window closes once later windows move
        # the clock past it
        produce_windows(producer, env, ["A1", "A2"], range(8, CUT_END), trips=3)
        produce_windows(producer, env, ["A3"], range(8, CUT_END))
        issued = calls_of(env, lambda cs: {c.loan_id for c in cs if c.status == "issued"} >= {"L1", "L2"})
        mc1 = next(c for c in issued if c.loan_id == "L1")
        assert mc1.status == "issued" and mc1.required_repayment > 0 and mc1.cure_deadline > mc1.issued_at

        # L1 pays the demand (rounded up to the yuan), which restores its warning line: the same margin call
        # becomes cured
        repay = Repayment(
            event_id="L1:repay-1",
            loan_id="L1",
            effective_at=T0 + CUT_END * W,
            amount=float(math.ceil(mc1.required_repayment)),
        )
        send_loan_book(producer, env.settings, (repay,))
        calls = calls_of(env, lambda cs: any(c.status == "cured" for c in cs))
        assert [c.status for c in calls if c.margin_call_id == mc1.margin_call_id] == ["issued", "cured"]

        state = tmp_path / "core-banking.json"
        first = consumer(env, state)
        assert len(first) == 3 and any("MARGIN CALL" in ln and "L1" in ln for ln in first)
        assert any("cured" in ln for ln in first)

        # the worker restarts while L2's margin call is open; then L2's cure deadline passes
        worker.stop()
        worker = Worker(env)
        worker.start()
        produce_windows(producer, env, ["A3"], range(CUT_END, CUT_END + AFTER_RESTART))
        producer.close()
        calls = calls_of(env, lambda cs: any(c.status == "expired" for c in cs))
        wait_caught_up(env.settings, env.run)
        calls = calls_of(env, lambda cs: False, timeout=5)
        l2 = [c for c in calls if c.loan_id == "L2"]
        assert [c.status for c in l2] == ["issued", "expired"], "issued once across the restart, then expired"
        assert len({c.margin_call_id for c in l2}) == 1
        assert l2[1].updated_at >= l2[0].cure_deadline
        alerts = [Alert.model_validate_json(r.value) for r in read_topic(env.settings, "alerts")]
        expired = [a for a in alerts if a.rule_id == "margin-call-expired"]
        assert [(a.loan_id, a.status, a.severity) for a in expired] == [("L2", "firing", "critical")]
        assert len({a.alert_id for a in alerts if a.status == "firing"}) == len(
            [a for a in alerts if a.status == "firing"]
        )

        # the consumer prints the new notice once, and nothing again when it re-reads everything
        second = consumer(env, state)
        assert len(second) == 1 and "expired" in second[0] and "L2" in second[0]
        assert consumer(env, state, "--from-beginning", "--group", "core-banking-reread") == []
    finally:
        worker.stop()
