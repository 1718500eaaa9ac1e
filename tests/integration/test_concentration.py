"""The portfolio's concentration on the real broker: the stream raises the backtest's breaches, and shows them.

Loan events only (exposure moves with the balance, no telemetry needed): two loans of one borrower
group draw down far past their collateral; the portfolio's one owner (the worker holding
``internal.portfolio-exposure``) must raise the same breach alerts as the in-process router, answer
``GET /api/portfolio/concentration`` with the breached rows and export the share gauge.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request

from kafka import KafkaProducer

from monitor.core import Monitor
from monitor.schemas import Alert, BalanceChanged
from rules.rulebook import load_rulebook
from tests.conftest import T0, make_loan, make_pledge
from tests.integration.conftest import ROOT, read_topic, send_loan_book


def _loan_book() -> tuple:  # type: ignore[type-arg]
    events = []
    for i, group in enumerate(["GRP-A", "GRP-A", "GRP-B"]):
        loan = f"L{i}"
        events.append(make_loan(event_id=f"{loan}:o", loan_id=loan, borrower_id=f"B{i}", borrower_group=group))
        events.append(
            make_pledge(
                event_id=f"{loan}:p", loan_id=loan, asset_id=f"A{i}", region="NZ-AUK", pledge_registration_no="R"
            )
        )
    at = T0 + dt.timedelta(hours=1)
    for loan in ("L0", "L1"):  # 40 M each against 10 M of collateral: 60 M of 87 M uncovered
        events.append(BalanceChanged(event_id=f"{loan}:b", loan_id=loan, effective_at=at, outstanding=4e7))
    return tuple(events)


def test_stream__raises_the_backtests_concentration_breaches_and_serves_them(env, worker) -> None:  # type: ignore[no-untyped-def]
    events = _loan_book()
    rulebook = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    mon = Monitor(rulebook)
    expected = [o.message for ev in events for o in mon.on_loan_event(ev) if o.topic == "alerts"]
    expected += [o.message for o in mon.portfolio.flush(rulebook)]
    want = sorted((a.alert_id, a.rule_id, a.subject, a.status) for a in expected if a.scope == "portfolio")
    assert [w[2] for w in want] == ["asset_profile:bus_dispatch", "borrower_group:GRP-A", "region:NZ-AUK"]

    worker.start()
    producer = KafkaProducer(**env.settings.kafka_options())
    try:
        send_loan_book(producer, env.settings, events)
    finally:
        producer.close()

    def portfolio_alerts(records: list) -> list[Alert]:  # type: ignore[type-arg]
        alerts = [Alert.model_validate_json(r.value) for r in records]
        return [a for a in alerts if a.scope == "portfolio"]

    # judged once the portfolio topic is idle (10 s) after the drawdowns' instant
    records = read_topic(env.settings, "alerts", until=lambda rs: len(portfolio_alerts(rs)) >= len(want), timeout=90)
    got = sorted((a.alert_id, a.rule_id, a.subject, a.status) for a in portfolio_alerts(records))
    assert got == want
    assert all(r.key == b"portfolio" for r in records if Alert.model_validate_json(r.value).scope == "portfolio")

    url = f"http://127.0.0.1:{worker.vars['PLEDGEWATCH_WEB_PORT']}/api/portfolio/concentration"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["as_of"] == (T0 + dt.timedelta(hours=1)).isoformat()
    rows = {(r["dimension"], r["key"]): r for r in body["rows"]}
    group = rows[("borrower_group", "GRP-A")]
    assert group["breached"] and group["limit"] == 0.015 and abs(group["share"] - 60 / 87) < 1e-9
    assert group["exposure_yuan"] == 8e7 and group["collateral_yuan"] == 2e7
    assert not rows[("borrower_group", "GRP-B")]["breached"]
    deadline = time.monotonic() + 30
    while (
        abs(worker.metric("pledgewatch_concentration_share", dimension="borrower_group", key="GRP-A") - 60 / 87) > 1e-9
    ):
        assert time.monotonic() < deadline, "pledgewatch_concentration_share did not show the breach"
        time.sleep(1)
    assert worker.alive()
