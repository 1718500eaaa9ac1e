"""Hot reload on the real broker: two workers switch rulebooks together and keep it when a bad one comes."""

from __future__ import annotations

import datetime as dt

from kafka import KafkaProducer

from monitor.schemas import Alert, RulebookStatus, RulebookUpdate
from tests.integration.conftest import (
    ROOT,
    Worker,
    demo_input,
    read_topic,
    replay,
    run_cli,
    wait_caught_up,
)


def publish_default_as(env, tmp_path, version: int):  # type: ignore[no-untyped-def]
    """Publish the default rulebook renumbered to ``version`` with the CLI; returns the file."""
    path = tmp_path / f"default-v{version}.yaml"
    path.write_text(
        (ROOT / "rules" / "rulebooks" / "default.yaml").read_text().replace("version: 1", f"version: {version}")
    )
    run_cli(env, "rules", "publish", str(path), timeout=60)
    return path


def statuses(env, want) -> list[RulebookStatus]:  # type: ignore[no-untyped-def]
    def done(rs: list) -> bool:  # type: ignore[type-arg]
        return want([RulebookStatus.model_validate_json(r.value) for r in rs])

    return [
        RulebookStatus.model_validate_json(r.value)
        for r in read_topic(env.settings, "rules-status", until=done, timeout=90)
    ]


def test_hot_reload__both_workers_switch_then_reject_an_invalid_rulebook_and_keep_the_last_good_one(
    env, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    w1, w2 = Worker(env), Worker(env, second=True)
    try:
        w1.start()
        w2.start(members=2)
        v2 = publish_default_as(env, tmp_path, 2)

        def active(version: int):  # type: ignore[no-untyped-def]
            return lambda ss: len({s.worker for s in ss if s.status == "active" and s.version == version}) >= 2

        got = statuses(env, active(2))
        assert len({s.worker for s in got if s.status == "active" and s.version == 2 and s.origin == "topic"}) == 2

        bad = RulebookUpdate(
            rulebook="default",
            version=3,
            published_at=dt.datetime.now(dt.UTC),
            source=v2.read_text()
            .replace("version: 2", "version: 3")
            .replace(
                "loan.coverage_ratio < loan.thresholds.warning\n", "loan.coverage_ration < loan.thresholds.warning\n"
            ),
        )
        producer = KafkaProducer(bootstrap_servers=env.settings.bootstrap_servers, acks="all")
        producer.send(env.settings.topic("rules-control"), key=b"default", value=bad.model_dump_json().encode())
        producer.flush()
        producer.close()

        def rejected(ss: list[RulebookStatus]) -> bool:
            return len({s.worker for s in ss if s.status == "rejected" and s.version == 3}) >= 2

        got = statuses(env, rejected)
        reasons = [s.reason for s in got if s.status == "rejected"]
        assert all("coverage_ration" in r for r in reasons)

        book, events = demo_input(dt.datetime(2016, 5, 19, 23, 30, tzinfo=dt.UTC))  # past the first alerts (10:45 NZST)
        replay(env.settings, book, events)
        wait_caught_up(env.settings, env.run)
        alerts = [Alert.model_validate_json(r.value) for r in read_topic(env.settings, "alerts")]
        assert alerts and {(a.rulebook, a.rulebook_version) for a in alerts} == {("default", 2)}
        for w in (w1, w2):
            assert w.alive()
            assert w.metric("pledgewatch_rulebook_info", rulebook="default", version="2") == 1.0
            assert w.metric("pledgewatch_rulebook_rejected_total", rulebook="default") == 1.0
    finally:
        w1.stop()
        w2.stop()


def test_hot_reload__a_restarted_worker_starts_with_the_last_good_published_rulebook(env, worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    publish_default_as(env, tmp_path, 5)
    worker.start()
    got = statuses(env, lambda ss: any(s.status == "active" for s in ss))
    assert [(s.version, s.origin) for s in got if s.status == "active"] == [(5, "topic")]
    assert worker.metric("pledgewatch_rulebook_info", rulebook="default", version="5") == 1.0
