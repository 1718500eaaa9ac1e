"""Effects reach the broker before the state that records them is checkpointed (at-least-once, C01).

A state in the changelog that has closed a window whose valuation never reached the broker loses
that valuation for good after a crash: the record is read again, finds itself in the restored
state, and emits nothing; so does a checkpoint written while a clock tick's valuations are still in
flight. Two CI runs of fault (a) lost the frozen feed's ``feed-silent`` alert; this ordering is one
way that can happen (the loss did not reproduce locally, so it is not proven to be the cause). The
real worker runs in ``tests/integration/test_faults.py``; here the order is checked on the Node's
own methods with the Kafka parts replaced.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from monitor.core.common import Output
from monitor.schemas import Alert, CollateralValuation, DeadLetter
from streams.clock import CLOCK_KEY
from streams.worker import Node


#: an earlier record of partition 0 waiting for its checkpoint to be acknowledged
class _Event:
    message = SimpleNamespace(topic="it.telemetry", partition=0, offset=6)


EARLIER = _Event()


def node_with(order: list[str]) -> Node:
    """A Node without faust: the clock's tick closes one asset's window; publish and save are recorded."""
    node = Node.__new__(Node)
    node.asset_handling = False
    node.asset_lock = asyncio.Lock()
    node.app = SimpleNamespace(rebalancing=False)  # type: ignore[assignment]
    node.pledges_topic, node.telemetry_topic = "it.internal.asset-pledges", "it.telemetry"
    node.pending_acks, node.persisted_at, node.flushed, node.dirty, node.asset_partition = {}, {}, set(), {}, {}
    node.on_clock_record = lambda value: None  # type: ignore[method-assign]
    node.load_assigned = lambda: None  # type: ignore[method-assign]
    node.clock = SimpleNamespace(watermark=lambda: 1_463_700_000.0, check_rebalancing=lambda rebalancing, now: False)  # type: ignore[assignment]
    node.owns = lambda asset_id: True  # type: ignore[method-assign]
    node.backpressure = SimpleNamespace(  # type: ignore[assignment]
        on_pledges_record=lambda part, offset: None, relieve=lambda: None, after_telemetry=lambda part, held: None
    )
    closed = Output("valuations", "akl-routes-9xx", CollateralValuation.model_construct())
    node.assets = SimpleNamespace(tick=lambda wm, owns: [closed])  # type: ignore[assignment]
    node.persist = lambda part, changed: order.append(f"persist {sorted(changed)}")  # type: ignore[method-assign]
    node.asset_state = SimpleNamespace(save=lambda aid: order.append(f"save {aid}"))  # type: ignore[assignment]

    async def publish(outputs: list[Output], origin_ts: float | None = None) -> None:
        # while the broker has not acknowledged the outputs, the checkpoint timer writes nothing
        node.pending_acks[0] = [EARLIER]
        order.append(f"checkpoint during publish -> {node.flush_pending(0.0)}")
        order.append(f"publish {[o.key for o in outputs]}")

    node.publish = publish  # type: ignore[method-assign]
    return node


def test_a_clock_ticks_outputs_are_published_before_the_asset_state_is_persisted() -> None:
    order: list[str] = []
    node = node_with(order)
    outputs = asyncio.run(node.clock_tick())  # the timer's tick: no record in hand
    assert [o.key for o in outputs] == ["akl-routes-9xx"]
    assert order == [
        "checkpoint during publish -> []",
        "publish ['akl-routes-9xx']",
        "save akl-routes-9xx",
    ]
    assert node.asset_handling is False
    # once the record is handled, the timer's checkpoint runs as before
    node.persist = lambda part, changed: order.append(f"checkpoint {part}")  # type: ignore[method-assign]
    assert node.flush_pending(0.0) == [EARLIER] and order[-1] == "checkpoint 0"


def test_held_records_dead_lettered_by_the_backpressure_are_published_before_their_held_state_is_deleted() -> None:
    """Issue 18's hold verdict follows C01: the dead letters reach the broker, then the held state goes."""
    order: list[str] = []
    node = node_with(order)
    held = {"X9": ["a record"]}
    node.assets = SimpleNamespace(held=held)  # type: ignore[assignment]
    node.asset_state = SimpleNamespace(delete=lambda aid: order.append(f"delete {aid}"))  # type: ignore[assignment]

    async def check(now: float) -> list[Output]:
        held.clear()
        return [Output("dead-letter", "X9", DeadLetter.model_construct())]

    node.backpressure = SimpleNamespace(paused={2}, check=check)  # type: ignore[assignment]
    asyncio.run(node.check_hold())
    assert order == ["checkpoint during publish -> []", "publish ['X9']", "delete X9"]
    assert node.asset_handling is False


def test_a_handler_that_fails_midway_leaves_the_checkpoint_free() -> None:
    node = node_with([])

    async def failing(outputs: list[Any], origin_ts: float | None = None) -> None:
        raise RuntimeError("broker gone")

    node.publish = failing  # type: ignore[method-assign]
    try:
        asyncio.run(node.clock_tick())
    except RuntimeError:
        pass
    assert node.asset_handling is False and not node.asset_lock.locked()


def test_a_clock_record_is_a_report_merged_in_band_and_changes_no_asset() -> None:
    """A worker's report read on its own partition is merged there; the window closing is the timer's."""
    order: list[str] = []
    node = node_with(order)
    node.clock.on_report = lambda value: order.append(f"merge {value!r}")  # type: ignore[attr-defined]
    record = SimpleNamespace(
        message=SimpleNamespace(
            topic="it.internal.asset-pledges", partition=0, key=CLOCK_KEY, value=b"{}", offset=8, timestamp=None
        )
    )
    asyncio.run(node.on_asset_record(record))  # type: ignore[arg-type]
    assert order == ["merge b'{}'", "persist []"]  # no outputs: nothing is published (issue 18), then the checkpoint
    assert node.asset_handling is False


def _loan_node(monkeypatch: Any, order: list[str], loan_id: str, **loans: Any) -> Node:
    """A Node with only what ``on_loan_record`` uses: a loan record of ``loan_id`` yields one alert; the
    state's saves and the publishes are written to ``order`` (``loans``: more attributes of the loan book)."""
    import streams.worker as worker

    node = Node.__new__(Node)
    node.s = SimpleNamespace(topic=lambda logical: f"it.{logical}")  # type: ignore[assignment]
    node.ingress_limits = lambda: (0.0, 0.0, 0.0, 0)  # type: ignore[method-assign]
    monkeypatch.setattr(worker, "decode_loan_event", lambda value, *limits: SimpleNamespace(loan_id=loan_id))
    node.loan_state = SimpleNamespace(  # type: ignore[assignment]
        load=lambda key: None, save=lambda key: order.append(f"save {key}")
    )
    node.loans = SimpleNamespace(  # type: ignore[assignment]
        on_loan_event=lambda ev: [Output("alerts", ev.loan_id, Alert.model_construct())], **loans
    )

    async def publish(outputs: list[Output], origin_ts: float | None = None) -> None:
        order.append(f"publish {[o.topic for o in outputs]}")

    node.publish = publish  # type: ignore[method-assign]
    return node


def test_a_loan_records_alerts_are_published_before_the_loan_state_is_saved(monkeypatch: Any) -> None:
    """The loan side: an alert the loan state records as firing must be on the broker first (C01)."""
    order: list[str] = []
    node = _loan_node(monkeypatch, order, "L-AKL-003")
    record = SimpleNamespace(
        message=SimpleNamespace(
            topic="it.loan-book", partition=1, key=b"L-AKL-003", value=b"{}", offset=3, timestamp=None
        )
    )
    asyncio.run(node.on_loan_record(record))  # type: ignore[arg-type]
    assert order == ["publish ['alerts']", "save L-AKL-003"]


def test_a_loan_records_group_listing_is_published_after_its_outputs_and_before_the_loan_state_is_saved(
    monkeypatch: Any,
) -> None:
    """The loan's standing for its group (``internal.group-listing``) follows C01 too, and waits for the view."""
    from monitor.schemas import GroupListing
    from monitor.settings import Settings
    from streams.group_listing import GroupListingFeed

    order: list[str] = []
    loan = SimpleNamespace(loan_id="L1")
    node = _loan_node(monkeypatch, order, "L1", loans={"L1": loan})
    feed = GroupListingFeed(Settings())
    feed.ready.set()
    rec = GroupListing(loan_id="L1", borrower_group="G", listed=True)
    monkeypatch.setattr(feed, "due", lambda held: rec if held is loan and "L1" not in feed.sent else None)
    node.group_feed = feed

    async def send(logical: str, key: str, message: Any, *args: Any) -> None:
        order.append(f"send {logical} {key} {message.listed}")

    node.publisher = SimpleNamespace(send=send)  # type: ignore[assignment]
    record = SimpleNamespace(
        message=SimpleNamespace(topic="it.loan-book", partition=1, key=b"L1", value=b"{}", offset=3, timestamp=None)
    )
    asyncio.run(node.on_loan_record(record))  # type: ignore[arg-type]
    asyncio.run(node.on_loan_record(record))  # type: ignore[arg-type]  # nothing changed: not sent again
    assert order == [
        "publish ['alerts']",
        "send group-listing L1 True",
        "save L1",
        "publish ['alerts']",
        "save L1",
    ]
    assert feed.sent == {"L1": rec}
