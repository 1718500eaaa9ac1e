"""``streams.topics.wait_visible``: create_topics returns only once its topics are in the metadata, led.

A scripted admin client answers ``describe_topics`` as a broker does while a creation propagates:
first unknown (error 3), then partitions without a leader (-1), then led. The same on the real
broker: ``tests/integration/test_ops.py::test_create_topics__...``.
"""

from __future__ import annotations

from typing import Any

import pytest

from monitor.errors import ConfigError
from streams.topics import wait_visible


class ScriptedAdmin:
    """Answers ``describe_topics`` from a list of per-call states (the last one repeats)."""

    def __init__(self, states: list[dict[str, tuple[int, list[int]]]]) -> None:
        self.states, self.calls = states, 0

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        out = []
        for name in topics:
            error, leaders = state.get(name, (3, []))  # 3: UNKNOWN_TOPIC_OR_PARTITION
            parts = [{"partition_index": i, "leader_id": leader} for i, leader in enumerate(leaders)]
            out.append({"name": name, "error_code": error, "partitions": parts})
        return out


def test_waits_through_unknown_and_leaderless_until_every_partition_is_led() -> None:
    admin = ScriptedAdmin([{}, {"t": (0, [-1, -1])}, {"t": (0, [1, -1])}, {"t": (0, [1, 1]), "u": (0, [1])}])
    wait_visible(admin, {"t": 2, "u": None})
    assert admin.calls == 4


def test_a_topic_never_led_is_named_in_one_clear_error() -> None:
    admin = ScriptedAdmin([{"t": (0, [1, 1]), "u": (0, [-1])}])
    with pytest.raises(ConfigError) as err:
        wait_visible(admin, {"t": 2, "u": 1}, timeout_s=0.5)
    assert "['u']" in str(err.value) and "'t'" not in str(err.value) and "leader" in str(err.value)


def test_a_created_topic_with_fewer_partitions_than_asked_is_not_yet_visible() -> None:
    admin = ScriptedAdmin([{"t": (0, [1])}, {"t": (0, [1, 1, 1])}])
    wait_visible(admin, {"t": 3})
    assert admin.calls == 2
