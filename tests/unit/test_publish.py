"""Publishing without a broker: routing to topics, awaiting every acknowledgement, nothing dropped (C07).

The producer is replaced by one whose acknowledgements the test gives (or refuses) itself; the real
broker's outage is ``tests/integration/test_faults.py``'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from monitor.core import Output
from monitor.schemas import Alert, CollateralValuation
from monitor.settings import Settings
from streams.prometheus import Metrics
from streams.publish import ORIGIN_HEADER, Publisher


class FakeProducer:
    """faust's producer as the publisher uses it: ``send`` returns a future of the broker's acknowledgement."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.sent: list[tuple[str, bytes, float | None, dict[str, bytes]]] = []
        self.pending: list[asyncio.Future[Any]] = []
        self.refuse_first = refuse_first

    async def send(self, topic: str, key: bytes, value: bytes, partition: Any, timestamp: Any, headers: Any) -> Any:
        if self.refuse_first:
            self.refuse_first -= 1
            raise KafkaTimeoutError("batch expired")
        self.sent.append((topic, key, timestamp, dict(headers or ())))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut


def publisher(producer: FakeProducer, delivery_timeout_s: float = 30.0) -> tuple[Publisher, Metrics]:
    metrics = Metrics.create(CollectorRegistry())
    # model_copy skips the ≥ 1 s bound of the setting: the test waits for a timeout, not for seconds
    settings = Settings(topic_prefix="t.").model_copy(update={"delivery_timeout_s": delivery_timeout_s})
    app = type("App", (), {"producer": producer})()
    return Publisher(app, settings, metrics), metrics


def failures(metrics: Metrics, topic: str) -> float:
    return metrics.publish_failures.labels(topic)._value.get()  # type: ignore[no-any-return]


def test_a_valuation_goes_to_its_asset_and_to_each_of_its_loans_with_the_origin_time() -> None:
    async def run() -> None:
        producer = FakeProducer()
        pub, _ = publisher(producer)
        val = CollateralValuation.model_construct(loan_ids=["L-AKL-001", "L-AKL-002"])
        task = asyncio.ensure_future(pub.publish([Output("valuations", "akl-routes-7xx", val)], 1_463_700_000.5))
        while len(producer.pending) < 3:
            await asyncio.sleep(0)
        assert not task.done()  # not published until the broker acknowledged every record
        for fut in producer.pending:
            fut.set_result(None)
        await task
        assert [(t, k, ts) for t, k, ts, _ in producer.sent] == [
            ("t.valuations", b"akl-routes-7xx", None),
            ("t.internal.loan-valuations", b"L-AKL-001", 1_463_700_000.5),
            ("t.internal.loan-valuations", b"L-AKL-002", 1_463_700_000.5),
        ]
        assert all(h == {ORIGIN_HEADER: b"1463700000500"} for *_, h in producer.sent)

    asyncio.run(run())


def test_an_unacknowledged_record_is_counted_and_waited_for_never_dropped() -> None:
    async def run() -> None:
        producer = FakeProducer()
        pub, metrics = publisher(producer, delivery_timeout_s=0.01)
        task = asyncio.ensure_future(pub.publish([Output("alerts", "L-AKL-002", Alert.model_construct())]))
        while failures(metrics, "t.alerts") < 2:  # two delivery timeouts counted, the wait goes on
            await asyncio.sleep(0.005)
        assert not task.done() and len(producer.sent) == 1  # the same record waited for, not sent twice
        producer.pending[0].set_result(None)
        await task

    asyncio.run(run())


def test_a_batch_the_producer_gave_up_is_sent_again() -> None:
    async def run() -> None:
        producer = FakeProducer(refuse_first=2)
        pub, metrics = publisher(producer)
        task = asyncio.ensure_future(pub.send("margin-calls", "L-AKL-002", Alert.model_construct()))
        while not producer.pending:
            await asyncio.sleep(0.01)
        producer.pending[0].set_result(None)
        await task
        assert failures(metrics, "t.margin-calls") == 2 and len(producer.sent) == 1

    asyncio.run(run())
