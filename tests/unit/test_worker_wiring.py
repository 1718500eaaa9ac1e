"""The worker's wiring without a broker (issue 18): records through the real faust agent, the clock's tick.

faust's ``Agent.test_context`` feeds the telemetry agent that ``create_app`` builds, with its manual
acknowledgements, through an in-memory channel. Only what needs a broker is replaced: publishing
(recorded, in order), the state table's write (recorded) and the consumer's assignment (none). The
same paths on the real broker are ``tests/integration/test_stream.py`` and ``test_faults.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from faust.types import Message

from monitor.core import CoreParams, Output
from monitor.schemas import TelemetryBatch
from monitor.sensors import CountingSensor
from monitor.settings import Settings
from rules.rulebook import load_rulebook
from streams.app import create_app
from streams.worker import Node
from tests.conftest import ROOT, T0, healthy_window_events, make_pledge


class Harness:
    """The app's telemetry agent under ``test_context``, with what it published and saved."""

    def __init__(self, node: Node, agent: Any) -> None:
        self.node, self.agent = node, agent
        self.log: list[str] = []  # "publish <topic> <key>" / "save <asset>", in the order they happened
        self.offset = 0
        self.dead_letters: list[Any] = []

    async def put(self, topic: str, key: bytes, value: bytes, partition: int = 0) -> Any:
        """Put one record of ``topic`` on the agent's channel, as the consumer would; return its event."""
        message = Message(
            topic=topic,
            partition=partition,
            offset=self.offset,
            timestamp=time.time(),
            timestamp_type=0,
            headers=None,
            key=key,
            value=value,
            checksum=b"",
            serialized_key_size=len(key),
            serialized_value_size=len(value),
            generation_id=self.agent.app.consumer_generation_id,  # faust skips records of an older generation
        )
        self.offset += 1
        channel = self.agent.stream().channel
        event = await channel.decode(message)
        await channel.put(event)
        return event

    async def until(self, done: Callable[[], bool]) -> None:
        """Let the agent run until ``done()`` (a bound on a condition, not a timing: 30 s of no progress fails)."""
        for _ in range(3000):
            if done():
                return
            await asyncio.sleep(0.01)
        pytest.fail(f"the agent did not get there; it did: {self.log}, dead letters {self.dead_letters}")


@asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    rulebook = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    settings = Settings(app_id="pw-wiring", data_dir=tmp_path, store="memory", topic_prefix="wiring.")
    app, node = create_app(settings, rulebook, CoreParams(), CountingSensor())
    h = Harness(node, app.agents["telemetry"])

    async def publish(outputs: list[Output], origin_ts: float | None = None) -> None:
        h.log.extend(f"publish {o.topic} {o.key}" for o in outputs)
        h.dead_letters.extend(o.message for o in outputs if o.topic == "dead-letter")

    node.publish = publish  # type: ignore[method-assign]
    node.asset_state.save = lambda key: h.log.append(f"save {key}")  # type: ignore[method-assign]
    node.metadata_ready = True  # the changelog topics' metadata: a broker's
    node.clock.telemetry_partitions = lambda now: []  # type: ignore[method-assign]  # no group, no assignment
    async with h.agent.test_context() as agent:
        h.agent = agent
        yield h


def telemetry_record(asset: str, start: dt.datetime) -> bytes:
    """One poll's batch record of a healthy 15-min window of ``asset`` (the batch format of issue 18)."""
    batch = TelemetryBatch(asset_id=asset, observations=healthy_window_events(asset, start))
    return batch.model_dump_json().encode()


async def one_window_then_the_clock_two_hours_on(h: Harness) -> None:
    """Pledge A1, hand the agent one healthy window of it, then set the group's clock two hours later.

    The assignment is this worker's (``owns``), and ``load_assigned`` only notes that it ran.
    """
    node = h.node
    await h.put(node.pledges_topic, b"A1", make_pledge(asset_timezone="UTC").model_dump_json().encode())
    await h.put(node.telemetry_topic, b"A1", telemetry_record("A1", T0))
    await h.until(lambda: "A1" in node.assets.assets and node.assets.assets["A1"].max_ts is not None)
    past = (T0 + dt.timedelta(hours=2)).timestamp()
    node.clock.watermark = lambda: past  # type: ignore[method-assign]
    node.load_assigned = lambda now=None: h.log.append("load")  # type: ignore[method-assign]
    node.owns = lambda asset_id: True  # type: ignore[method-assign]


def test_a_bad_record_is_dead_lettered_by_the_agent_and_the_next_one_still_handled(tmp_path: Path) -> None:
    async def run() -> None:
        async with harness(tmp_path) as h:
            node = h.node
            await h.put(node.telemetry_topic, b"A1", b"not json")
            await h.until(lambda: "publish dead-letter A1" in h.log)
            await h.put(node.pledges_topic, b"A1", make_pledge(asset_timezone="UTC").model_dump_json().encode())
            await h.put(node.telemetry_topic, b"A1", telemetry_record("A1", T0))
            await h.until(lambda: "A1" in node.assets.assets and node.assets.assets["A1"].max_ts is not None)

    asyncio.run(run())


def test_a_record_is_acknowledged_only_once_its_partitions_checkpoint_is_written(tmp_path: Path) -> None:
    async def run() -> None:
        async with harness(tmp_path) as h:
            node = h.node
            await h.put(node.pledges_topic, b"A1", make_pledge(asset_timezone="UTC").model_dump_json().encode())
            await h.until(lambda: "save A1" in h.log)  # a pledge registration is checkpointed at once
            telemetry = await h.put(node.telemetry_topic, b"A1", telemetry_record("A1", T0))
            await h.until(lambda: telemetry in node.pending_acks.get(0, []))
            # the telemetry record waits: its partition was checkpointed under CHECKPOINT_INTERVAL_S ago
            saves = h.log.count("save A1")
            assert node.flush_pending(0.0) == [telemetry]
            assert h.log.count("save A1") == saves + 1 and node.pending_acks[0] == []

    asyncio.run(run())


def test_the_clock_tick_closes_a_silent_assets_window_with_no_record_in_hand(tmp_path: Path) -> None:
    """The 5-s timer's work: no record arrives, yet the group's clock passing the window closes it."""

    async def run() -> None:
        async with harness(tmp_path) as h:
            node = h.node
            await one_window_then_the_clock_two_hours_on(h)
            assert not any(line.startswith("publish valuations") for line in h.log)
            h.log.clear()
            outputs = await node.clock_tick()
            closed = [o for o in outputs if o.topic == "valuations"]
            assert closed and all(o.key == "A1" for o in closed)
            # effects first, then the state that records them (C01)
            assert h.log.index("save A1") > max(i for i, line in enumerate(h.log) if line.startswith("publish"))

    asyncio.run(run())


def test_the_slow_record_fault_is_off_unless_set_and_refuses_a_malformed_setting(monkeypatch: Any) -> None:
    """Case C05's injected slow handler: read from the environment by the reliability tests only."""
    from monitor.errors import ConfigError
    from streams.faults import SlowRecordFault

    monkeypatch.delenv("PLEDGEWATCH_FAULT_SLOW_RECORD", raising=False)
    assert SlowRecordFault.from_env() is None  # production: nothing is called per observation
    monkeypatch.setenv("PLEDGEWATCH_FAULT_SLOW_RECORD", "akl:trip:42:0.01")
    fault = SlowRecordFault.from_env()
    assert fault is not None and (fault.event_id, fault.seconds) == ("akl:trip:42", 0.01)
    for bad in ("akl-trip-42", "akl:-3", ":5", "akl:soon"):
        monkeypatch.setenv("PLEDGEWATCH_FAULT_SLOW_RECORD", bad)
        with pytest.raises(ConfigError, match="PLEDGEWATCH_FAULT_SLOW_RECORD"):
            SlowRecordFault.from_env()


def test_the_clock_tick_waits_while_faust_rebalances(tmp_path: Path) -> None:
    """During a rebalance the books are reloaded from tables still being restored: no tick then."""

    async def run() -> None:
        async with harness(tmp_path) as h:
            node = h.node
            await one_window_then_the_clock_two_hours_on(h)
            h.log.clear()
            node.app.rebalancing = True
            assert await node.clock_tick() == [] and h.log == []
            node.app.rebalancing = False  # recovery completed: the next tick closes the window
            assert any(o.topic == "valuations" for o in await node.clock_tick()) and h.log[0] == "load"

    asyncio.run(run())


def test_a_clock_record_on_the_pledge_channel_is_merged_by_the_agent_in_partition_order(tmp_path: Path) -> None:
    """Reports travel in band: read after every record produced to the partition before them (streams/clock.py)."""
    import orjson

    from streams.clock import CLOCK_KEY

    async def run() -> None:
        async with harness(tmp_path) as h:
            node = h.node
            report = {"worker": "other", "sent_at": 10.0, "partitions": {"3": 1_463_700_000.0}, "newest": 1.5e9}
            await h.put(node.pledges_topic, CLOCK_KEY, orjson.dumps(report))
            await h.until(lambda: 3 in node.clock.watermarks.reports)
            assert node.clock.watermarks.reports[3] == (10.0, 1_463_700_000.0) and h.log == []

    asyncio.run(run())


def test_the_tables_changelogs_are_created_as_faust_would_declare_them(tmp_path: Path) -> None:
    """create_topics makes the changelogs before faust subscribes (a topic created a moment before is skipped)."""
    from streams.app import changelog_topics
    from streams.store import STATE_MAX_BYTES

    rulebook = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    settings = Settings(app_id="pw-wiring", data_dir=tmp_path, store="memory", topic_prefix="wiring.", partitions=6)
    app, _node = create_app(settings, rulebook, CoreParams(), CountingSensor())
    topics = {t.name: t for t in changelog_topics(app)}
    assert sorted(topics) == [
        "pw-wiring-asset-state-changelog",
        "pw-wiring-loan-state-changelog",
        "pw-wiring-portfolio-state-changelog",
    ]
    assert sorted(topics) == sorted(table.changelog_topic.get_topic_name() for table in app.tables.values())
    # the portfolio has one owner: its table has one partition, as its input topic (streams.portfolio)
    portfolio = topics.pop("pw-wiring-portfolio-state-changelog")
    assert portfolio.num_partitions == 1 and portfolio.topic_configs["cleanup.policy"] == "compact"
    for topic in topics.values():
        assert topic.num_partitions == 6
        assert topic.topic_configs["cleanup.policy"] == "compact"
        # the table's extra config (a state of up to STATE_MAX_BYTES) travels with it
        assert int(topic.topic_configs["max.message.bytes"]) > STATE_MAX_BYTES
