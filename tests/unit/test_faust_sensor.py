"""faust's Prometheus sensor with cached children exports what faust's own does (issue 18).

The same sequence of hook calls, a rebalance (faust removes the topic and partition series) in the
middle, goes to faust's :class:`PrometheusMonitor` and to :class:`FaustPrometheusMonitor`, each on a
registry of its own; their expositions must be equal (the ``_created`` timestamps aside).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP, Message
from prometheus_client import CollectorRegistry, generate_latest

from streams.faust_sensor import FaustPrometheusMonitor


def exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if "_created" not in line and not line.startswith("#")
    ]


class Owner:
    """An agent's task: faust's monitor names events by it (weakly referenced)."""


def drive(monitor: Monitor) -> None:
    app = faust.App("sensor-test", broker="kafka://127.0.0.1:1")
    topics = ("pw.telemetry", "pw.asset-pledges")
    streams = []
    for name in topics:
        stream = app.stream(app.topic(name, value_type=bytes, value_serializer="raw"))
        stream.task_owner = Owner()
        streams.append(stream)
    table: Any = type("Table", (), {"name": "asset-state"})()
    for rebalance in (False, True, False):
        if rebalance:
            state = monitor.on_rebalance_start(app)
            monitor.on_rebalance_return(app, state)
            monitor.on_rebalance_end(app, state)
        for i in range(30):
            t = TP(topics[i % 2], i % 3)
            msg = Message(t.topic, t.partition, i, 0.0, 0, None, b"k", b"v", None)
            monitor.track_tp_end_offset(t, 100 + i)
            monitor.on_message_in(t, i, msg)
            state = monitor.on_stream_event_in(t, i, streams[i % 2], None)  # type: ignore[arg-type]
            monitor.on_stream_event_out(t, i, streams[i % 2], None, state if i % 4 else None)  # type: ignore[arg-type]
            monitor.on_message_out(t, i, msg)
            monitor.on_table_get(table, b"a")
            monitor.on_table_set(table, b"a", b"s")
            if i % 7 == 0:
                monitor.on_table_del(table, b"a")
            sent = monitor.on_send_initiated(None, f"pw.out-{i % 2}", None, 1, 1)  # type: ignore[arg-type]
            monitor.on_send_completed(None, sent, None)  # type: ignore[arg-type]


def test_the_cached_sensor_exports_the_same_series_and_values_as_fausts() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    faust_monitor = PrometheusMonitor(metrics=FaustMetrics.create(theirs, "faust"))
    cached = FaustPrometheusMonitor(metrics=FaustMetrics.create(ours, "faust"))
    faust_monitor.time = cached.time = lambda: 1.0  # latencies equal, so the histograms are too
    drive(faust_monitor)
    drive(cached)
    expected = exposition(theirs)
    assert any(line.startswith("faust_messages_received_per_topic") for line in expected)
    assert any(line.startswith("faust_topic_partition_end_offset") for line in expected)
    assert exposition(ours) == expected
    # faust's in-memory bookkeeping (its web views, its consumer's stream_inbound_time) is kept as well
    assert cached.messages_received_total == faust_monitor.messages_received_total == 90
    assert cached.events_total == faust_monitor.events_total == 90
    assert dict(cached.tp_end_offsets) == dict(faust_monitor.tp_end_offsets)


def test_a_rebalance_empties_the_cache_as_faust_removes_the_series() -> None:
    cached = FaustPrometheusMonitor(metrics=FaustMetrics.create(CollectorRegistry(), "faust"))
    t = TP("pw.telemetry", 0)
    cached.on_message_in(t, 1, Message(t.topic, 0, 1, 0.0, 0, None, b"k", b"v", None))
    cached.track_tp_end_offset(t, 5)
    assert cached._received and cached._read_offset and cached._end_offset
    cached._clear_partition_related_metrics()
    assert not (cached._received or cached._read_offset or cached._end_offset or cached._sent)
