"""Create the topics of ``docs/topics.md`` with kafka-python's admin client (compacted where DESIGN says).

Idempotent: topics that exist are left as they are. The admin connection is retried
(tenacity) while a freshly started broker comes up.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, NoError, TopicAlreadyExistsError
from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from monitor.errors import ConfigError
from monitor.settings import COMPACTED, RETAINED, SINGLE_PARTITION, TOPICS, Settings

__all__ = ["admin_client", "create_topics", "delete_topics", "follow_partition", "rewind_group", "wait_visible"]

log = logging.getLogger(__name__)


def admin_client(target: Settings | str, timeout_s: float = 60.0) -> KafkaAdminClient:
    """Connect an admin client, retrying until ``timeout_s`` while the broker starts.

    ``target`` is the :class:`Settings` (bootstrap, TLS and SASL options) or a bare
    ``host:port`` bootstrap string of a plaintext listener.

    Raises
    ------
    ConfigError
        When no broker answered in time (the message names the address).
    """
    opts = target.kafka_options() if isinstance(target, Settings) else {"bootstrap_servers": target}
    bootstrap = opts["bootstrap_servers"]
    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeout_s),
            wait=wait_fixed(1.0),
            retry=retry_if_exception_type(KafkaError),
            reraise=True,
        ):
            with attempt:
                return KafkaAdminClient(**opts, client_id="pledgewatch-admin")
    except KafkaError as exc:
        msg = (
            f"bootstrap_servers: no Kafka broker answered at {bootstrap!r} within {timeout_s:.0f} s ({exc}); "
            "start the local one with `make broker-start`, or set KAFKA_BOOTSTRAP_SERVERS to your cluster"
        )
        raise ConfigError(msg) from None
    raise AssertionError("unreachable: Retrying either returns or re-raises")


def create_topics(settings: Settings, replication: int = 1, extra: Sequence[NewTopic] = ()) -> list[str]:
    """Create every pledgewatch topic (and ``extra``) that does not exist yet; returns the names created.

    Returns only once every one of them is in the cluster metadata with a leader for each partition
    (:func:`wait_visible`): a consumer that subscribes to a topic created a moment earlier may be
    answered without it, and faust's partition assignor then skips it ("Ignoring missing topic")
    until aiokafka next refreshes its metadata (``metadata_max_age_ms``, 5 min by default). A table
    whose changelog was skipped that way never finished its recovery, and its worker never ticked
    the stream clock again (fault c, 2 runs in 34 under load).

    Parameters
    ----------
    extra
        Further topics, such as the tables' changelogs (:func:`streams.app.changelog_topics`), so
        that they exist before faust subscribes rather than being declared by faust as it starts.

    Raises
    ------
    ConfigError
        When no broker answers, or a topic is not visible within 60 s of its creation.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        wanted: list[NewTopic] = []
        for logical in TOPICS:
            name = settings.topic(logical)
            configs = {"cleanup.policy": "compact"} if logical in COMPACTED else {}
            if logical in RETAINED:
                configs = {"retention.ms": "-1"}
            parts = 1 if logical in RETAINED or logical in SINGLE_PARTITION else settings.partitions
            wanted.append(NewTopic(name, num_partitions=parts, replication_factor=replication, topic_configs=configs))
        wanted.extend(extra)
        new = [t for t in wanted if t.name not in existing]
        created = {t.name for t in new}
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        # topics that existed are checked for a leader only: their partition count is theirs
        wait_visible(admin, {t.name: (t.num_partitions if t.name in created else None) for t in wanted})
        return [t.name for t in new]
    finally:
        admin.close()


def wait_visible(admin: KafkaAdminClient, partitions: Mapping[str, int | None], timeout_s: float = 60.0) -> None:
    """Wait until each topic is in the broker's metadata with ``partitions[topic]`` partitions (any if None), each led.

    Topic creation returns once the controller has accepted it; the broker's metadata follows a moment
    later (KRaft propagates it asynchronously, in milliseconds). Polled every 0.2 s; ``timeout_s``
    defaults to the 60 s :func:`admin_client` allows a starting broker: past it the broker is not
    slow but failing to elect leaders, and waiting longer would only hide that. With more than one broker, only the
    one answering the admin client is asked.

    Raises
    ------
    ConfigError
        Naming the topics still missing or leaderless after ``timeout_s`` seconds.
    """

    def pending() -> list[str]:
        described = {t["name"]: t for t in admin.describe_topics(list(partitions))}
        out = []
        for name, parts in partitions.items():
            t = described.get(name)
            ok = (
                t is not None
                and t["error_code"] == 0
                and len(t["partitions"]) == (parts or len(t["partitions"]) or 1)
                and all(p["leader_id"] >= 0 for p in t["partitions"])
            )
            if not ok:
                out.append(name)
        return out

    # the last answer once the time is up, rather than tenacity's RetryError
    poll = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.2),
        retry=retry_if_result(bool),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else list(partitions),
    )
    missing: list[str] = poll(pending)
    if missing:
        msg = (
            f"topics: {sorted(missing)} not in the cluster metadata with a leader for every partition "
            f"{timeout_s:.0f} s after their creation; check the broker's log (controller and partition leadership)"
        )
        raise ConfigError(msg)


def delete_topics(target: Settings | str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; ``target`` as in :func:`admin_client`."""
    admin = admin_client(target)
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names)
        return names
    finally:
        admin.close()


def rewind_group(
    settings: Settings,
    logical: str,
    to_datetime: dt.datetime | None = None,
    to_offset: int | None = None,
    partitions: list[int] | None = None,
) -> dict[int, tuple[int, int]]:
    """Move the workers' committed offsets of one input topic (replay from an offset or a time).

    Exactly one of ``to_datetime`` (aware: the first record stamped at or after it) or ``to_offset``
    (clamped to the partition's range; 0 = the earliest kept) is given. Every worker of the group
    must be stopped: Kafka refuses to move the offsets of a group with members.

    Returns
    -------
    dict
        partition -> (committed offset before, after).

    Raises
    ------
    ConfigError
        A worker of the group still runs, the topic is unknown, or no target / two targets given.
    """
    from kafka import TopicPartition
    from kafka.admin import OffsetTimestamp

    if (to_datetime is None) == (to_offset is None):
        raise ConfigError("rewind: got both or neither of --to-datetime and --to-offset, expected exactly one")
    if logical not in TOPICS:
        raise ConfigError(f"topic: got {logical!r}, expected one of {sorted(TOPICS)}")
    topic = settings.topic(logical)
    admin = admin_client(settings)
    try:
        group = admin.describe_groups([settings.app_id]).get(settings.app_id, {})
        members = group.get("members") or []
        if members:
            msg = (
                f"app_id: consumer group {settings.app_id!r} has {len(members)} running worker(s); "
                "expected none: stop every worker first (Kafka moves offsets only of an idle group)"
            )
            raise ConfigError(msg)
        known = admin.describe_topics([topic])
        parts = sorted(p.get("partition_index", p.get("partition")) for t in known for p in t.get("partitions") or [])
        if not parts:
            raise ConfigError(f"topic: {topic!r} has no partitions on {settings.bootstrap_servers!r}")
        chosen = [p for p in parts if partitions is None or p in partitions]
        before = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
        spec: dict[Any, Any] = {}
        for p in chosen:
            tp = TopicPartition(topic, p)
            if to_datetime is not None:
                spec[tp] = OffsetTimestamp(int(to_datetime.timestamp() * 1000))
            else:
                spec[tp] = int(to_offset or 0)
        result = admin.reset_group_offsets(settings.app_id, spec)
        out: dict[int, tuple[int, int]] = {}
        for tp, res in result.items():
            if res.get("error") not in (None, NoError):
                raise ConfigError(f"rewind of {tp.topic}[{tp.partition}] failed: {res['error']}")
            old = before.get(tp)
            out[tp.partition] = (old.offset if old is not None else -1, int(res["offset"]))
        return dict(sorted(out.items()))
    finally:
        admin.close()


async def follow_partition(settings: Settings, logical: str, client_id: str, offset: int) -> AsyncIterator[Any]:
    """Yield the records of partition 0 of a one-partition topic for ever, read outside the consumer group.

    Every worker reads such a topic whole (the rules-control topic), so no group shares it out and
    nothing is committed.

    Parameters
    ----------
    settings
        Broker address, security options and topic names.
    logical
        The topic's logical name (``rules-control``).
    client_id
        The consumer's client id (names it in the broker's logs).
    offset
        Offset to start from.

    Yields
    ------
    aiokafka ``ConsumerRecord`` (``.value`` bytes, ``.offset``).
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    tp = TopicPartition(settings.topic(logical), 0)
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(), group_id=None, enable_auto_commit=False, client_id=client_id
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        async for record in consumer:
            yield record
    finally:
        await consumer.stop()
