"""The Alertmanager push: the v2 alert shape, firing/resolved bookkeeping, failures counted never raised."""

from __future__ import annotations

import asyncio
import datetime as dt

from monitor.schemas import Alert
from streams.alertmanager import AlertmanagerPusher, to_alertmanager
from tests.integration.conftest import free_port

NOW = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


def alert(status: str = "firing", rule: str = "coverage-below-margin-call", shadow: bool = False) -> Alert:
    return Alert(
        alert_id="al-1" if rule.endswith("margin-call") else "al-2",
        status=status,  # type: ignore[arg-type]
        rule_id=rule,
        severity="critical",
        scope="loan",
        subject="L1",
        loan_id="L1",
        episode_start=NOW - dt.timedelta(minutes=15),
        at=NOW,
        summary="覆盖率 115.0% 跌破追加保证金线 120.0%",
        summary_en="Coverage 115.0% below margin-call line 120.0%",
        facts={"coverage_ratio": 1.15, "required_top_up_collateral": 651333.2},
        rulebook="default",
        rulebook_version=1,
        model_versions={},
        shadow=shadow,
    )


def test_to_alertmanager__labels_annotations_and_ends_at() -> None:
    deadline = NOW + dt.timedelta(days=7)
    firing = to_alertmanager(alert(), NOW, 120.0, deadline)
    assert firing["labels"] == {
        "alertname": "coverage-below-margin-call",
        "rule": "coverage-below-margin-call",
        "severity": "critical",
        "loan": "L1",
        "asset": "",
        "source": "pledgewatch",
    }
    ann = firing["annotations"]
    # a demand is shown rounded up to the yuan (¥651,333.20 -> ¥651,334): never asks for less (C26)
    assert ann["coverage"] == "115.0%" and ann["required_top_up"] == "¥651,334"
    assert ann["cure_deadline"] == "2026-01-12T08:00:00Z" and ann["summary_zh"].startswith("覆盖率")
    assert firing["startsAt"] == "2026-01-05T07:45:00Z" and firing["endsAt"] == "2026-01-05T08:02:00Z"
    resolved = to_alertmanager(alert("resolved"), NOW, 120.0, None)
    assert resolved["endsAt"] == "2026-01-05T08:00:00Z" and resolved["annotations"]["cure_deadline"] == ""


def test_pusher__keeps_firing_alerts_for_resend_skips_shadow_and_counts_failures() -> None:
    failures: list[int] = []

    async def scenario() -> AlertmanagerPusher:
        # nothing listens on this port: every push fails, is logged and counted, never raised
        p = AlertmanagerPusher(f"http://127.0.0.1:{free_port()}", on_failure=lambda: failures.append(1))
        p.on_alerts([alert(), alert(rule="coverage-below-warning"), alert(rule="shadow-rule", shadow=True)])
        assert set(p.firing) == {"al-1", "al-2"}
        p.on_alerts([alert("resolved", rule="coverage-below-warning")])
        assert set(p.firing) == {"al-1"}
        p.resend()
        await p.close()
        return p

    asyncio.run(scenario())
    assert len(failures) == 3  # two transitions pushed, one resend; the shadow alert was never pushed
