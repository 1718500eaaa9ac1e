"""Operator procedures of docs/runbook.md on the real broker: replay from an offset with ``topics rewind``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from monitor.display import format_yuan
from streams.topics import create_topics
from tests.integration.conftest import (
    BIN,
    ROOT,
    Env,
    PrivateBroker,
    Worker,
    committed,
    demo_input,
    read_topic,
    replay,
    run_cli,
    wait_caught_up,
)


def test_runbook__rewind_refuses_a_running_group_then_replays_from_offset_0_without_new_effects(
    env: Env, worker: Worker
) -> None:
    book, events = demo_input()
    events = events[:3000]
    worker.start()
    records = replay(env.settings, book, events)  # batch records, one per asset and poll
    wait_caught_up(env.settings, env.run)
    assert 0 < records < len(events) and committed(env) == records
    # taken at first sight: "ok", or "held" when a record came before its asset's pledge had reached the
    # asset side (it is applied once the pledge arrives, and counted once, on arrival: docs/metrics.md);
    # which of the two depends on how the loan side's pledge races the telemetry, never on the code
    taken_before = sum(
        worker.metric("pledgewatch_events_total", topic="pledge.telemetry", outcome=o) for o in ("ok", "held")
    )

    refused = subprocess.run(
        [str(BIN / "pledgewatch"), "topics", "rewind", "--to-offset", "0"],
        env=env.vars,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1 and "running worker" in refused.stderr and "stop every worker" in refused.stderr

    worker.stop()
    out = run_cli(env, "topics", "rewind", "--topic", "telemetry", "--to-offset", "0")
    assert out.stdout.count("-> 0") == env.settings.partitions
    assert committed(env) == 0

    again = Worker(env)
    try:
        again.start()
        wait_caught_up(env.settings, env.run)
        # every replayed record was already in the restored state: counted, never applied twice
        assert again.metric("pledgewatch_events_total", topic="pledge.telemetry", outcome="ok") == 0
        replayed = again.metric("pledgewatch_events_total", topic="pledge.telemetry")
        assert replayed == len(events) and taken_before > 0
    finally:
        again.stop()


def test_fresh_broker__first_records_reach_the_state_changelog_none_is_dead_lettered(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    """A worker on a broker started moments ago: every record is processed, none lost to ``processing_error``.

    A fresh-clone ``make demo`` once dead-lettered 197 records with ``TypeError: 'NoneType' object is
    not iterable``: the producer's metadata lost the changelog topics (``Node.ensure_changelog_metadata``).
    """
    env = Env(private_broker.bootstrap, tmp_path)
    create_topics(env.settings)
    book, events = demo_input()
    worker = Worker(env)
    try:
        worker.start()
        replay(env.settings, book, events[:5000])
        wait_caught_up(env.settings, env.run)
        assert worker.metric("pledgewatch_dead_letters_total") == 0
        assert worker.metric("pledgewatch_events_total", topic="pledge.telemetry") == 5000  # ok, held, duplicate
        assert worker.metric("pledgewatch_events_total", outcome="invalid") == 0
        assert read_topic(env.settings, "valuations", until=lambda rs: len(rs) >= 4, timeout=60)
    finally:
        worker.stop()


def test_simulate__the_worker_takes_the_whole_simulated_fleet_and_only_the_dark_asset_alerts(
    env: Env, worker: Worker
) -> None:
    """``pledgewatch simulate`` as a user runs it, against a worker: every record processed, none
    dead-lettered, and the asset put in an outage is the one whose loan alerts (its records stop; the
    others keep valuing near their appraisal)."""
    worker.start()
    run_cli(
        env,
        "simulate",
        "--assets",
        "3",
        "--vehicles",
        "20",
        "--events",
        "30000",
        "--seed",
        "4",
        "--inject",
        "outage:sim-0001@2h",
        "--no-progress",
    )
    wait_caught_up(env.settings, env.run)
    assert committed(env) == 30_000
    assert worker.metric("pledgewatch_dead_letters_total") == 0
    assert worker.metric("pledgewatch_events_total", topic="pledge.telemetry") == 30_000
    firing = lambda rs: [orjson.loads(r.value) for r in rs if orjson.loads(r.value)["status"] == "firing"]  # noqa: E731
    alerts = firing(read_topic(env.settings, "alerts", until=lambda rs: len(firing(rs)) >= 2, timeout=60))
    assert alerts, "the dark asset's loan raised no alert"
    assert {a["loan_id"] for a in alerts} == {"SIM-L0001"}
    # the risk officer's report read back from the output topics of the running deployment
    out = env.tmp / "report"
    run_cli(env, "report", "--source", "topics", "--loan", "SIM-L0001", "--out", str(out), "--no-png")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "SIM-L0001" in page
    for a in alerts:
        assert f"id='{a['alert_id']}-firing'" in page


def test_watch_started_after_the_fact__shows_the_backlog_in_event_time_order(
    env: Env, worker: Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pledgewatch watch`` started once the outputs are on the topics (a fresh-clone review found it
    showing a loan's coverage hours stale, and a margin call before its warning): the backlog is shown in
    event-time order and ends at each loan's latest state."""
    from monitor.schemas import LoanRiskSnapshot
    from streams.latest import latest_by_key
    from streams.watch import watch

    worker.start()
    # enough outputs that reading them takes many polls across 12 partitions (the review's run: 200,000)
    run_cli(
        env,
        "simulate",
        "--assets",
        "4",
        "--vehicles",
        "20",
        "--events",
        "200000",
        "--seed",
        "4",
        "--inject",
        "outage:sim-0003@2h",
        "--no-progress",
        timeout=300,
    )
    wait_caught_up(env.settings, env.run, timeout=400)
    latest = latest_by_key(env.settings, "loan-risk", LoanRiskSnapshot)
    polls = iter(range(60))
    capsys.readouterr()
    watch(env.settings, timezone="UTC", stop=lambda: next(polls, None) is None)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " coverage: " in ln]
    assert lines, "watch printed no coverage line"
    stamps = [ln.split(" coverage: ")[0].strip() for ln in lines]
    # "YYYY-MM-DD HH:MM +00:00", the alerts' format: in event-time order
    assert stamps == sorted(stamps) and all(st.endswith("+00:00") for st in stamps)
    final = lines[-1]
    for loan, snap in latest.items():
        calibrating = snap.status == "calibrating" or snap.coverage_ratio is None
        shown = (
            f"{loan} awaiting valuation"
            if calibrating
            else f"{loan} {snap.coverage_ratio:.1%} {snap.status} {format_yuan(snap.collateral_value)}"
        )
        assert shown in final, (loan, final)


def test_create_topics__returns_only_once_every_topic_and_changelog_has_a_leader(env: Env) -> None:
    """faust skips a topic missing from the metadata when it subscribes ("Ignoring missing topic")."""
    from kafka.admin import NewTopic

    from streams.topics import admin_client

    changelog = NewTopic(f"{env.run}-probe-changelog", 5, 1, topic_configs={"cleanup.policy": "compact"})
    created = create_topics(env.settings, extra=[changelog])
    assert created == [changelog.name]  # the pledgewatch topics exist already (the env fixture)
    admin = admin_client(env.settings)
    try:
        (described,) = admin.describe_topics([changelog.name])
    finally:
        admin.close()
    assert described["error_code"] == 0
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3, 4]
    assert all(p["leader_id"] >= 0 for p in described["partitions"])
