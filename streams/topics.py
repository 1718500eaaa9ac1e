"""Create the topics of ``docs/topics.md`` with kafka-python's admin client (compacted where DESIGN says).

Idempotent: topics that exist are left as they are. The admin connection is retried
(tenacity) while a freshly started broker comes up.
"""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from monitor.errors import ConfigError
from monitor.settings import COMPACTED, RETAINED, TOPICS, Settings

__all__ = ["admin_client", "create_topics", "delete_topics"]

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
        msg = f"bootstrap_servers: no Kafka broker answered at {bootstrap!r} within {timeout_s:.0f} s ({exc})"
        raise ConfigError(msg) from None
    raise AssertionError("unreachable: Retrying either returns or re-raises")


def create_topics(settings: Settings, replication: int = 1) -> list[str]:
    """Create every pledgewatch topic that does not exist yet; returns the names created."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        new = []
        for logical in TOPICS:
            name = settings.topic(logical)
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if logical in COMPACTED else {}
            if logical in RETAINED:
                configs = {"retention.ms": "-1"}
            parts = 1 if logical in RETAINED else settings.partitions
            new.append(NewTopic(name, num_partitions=parts, replication_factor=replication, topic_configs=configs))
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in new]
    finally:
        admin.close()


def delete_topics(bootstrap: Settings | str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (tests clean up with this)."""
    admin = admin_client(bootstrap)
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names)
        return names
    finally:
        admin.close()
