#!/usr/bin/env python3
"""End-to-end smoke test of a running Kafka broker with kafka-python and aiokafka.

    .venv/bin/python deploy/kafka/smoke.py [bootstrap]   # default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092

Creates a plain and a compacted topic, then with each client library produces
10 records and reads them back through a consumer group (with offset commits).
No api_version is pinned: the clients negotiate it with the broker.
Exits non-zero on any failure.
"""

import asyncio
import os
import sys
import time
import uuid

N = 10


def log(msg):
    print(msg, flush=True)


def create_topics(bootstrap, plain, compacted):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pledgewatch-smoke")
    try:
        new = [NewTopic(t, num_partitions=4, replication_factor=1) for t in plain]
        new += [
            NewTopic(t, num_partitions=1, replication_factor=1, topic_configs={"cleanup.policy": "compact"})
            for t in compacted
        ]
        admin.create_topics(new)
        missing = set(plain + compacted) - set(admin.list_topics())
        if missing:
            raise SystemExit(f"admin: topics not listed after create: {sorted(missing)}")
        for topic in compacted:
            res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=["cleanup.policy"])])
            # kafka-python 3.x: {'topic': {name: {config: {'value': ...}}}}
            policy = res["topic"][topic]["cleanup.policy"]["value"]
            if policy != "compact":
                raise SystemExit(f"admin: {topic} has cleanup.policy={policy}, expected compact")
        log(
            f"admin: created {', '.join(plain + compacted)} "
            f"(compacted: {', '.join(compacted)}, cleanup.policy=compact verified)"
        )
    finally:
        admin.close()


def kafka_python_roundtrip(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(N):
        producer.send(topic, key=f"k{i}".encode(), value=f"kafka-python {i}".encode())
    producer.flush()
    producer.close()

    group = f"smoke-kp-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    got = []
    try:
        for msg in consumer:
            got.append(msg.value.decode())
            if len(got) >= N:
                break
        consumer.commit()
        total = sum(consumer.committed(tp) or 0 for tp in consumer.assignment())
    finally:
        consumer.close()
    if len(got) != N:
        raise SystemExit(f"kafka-python: read {len(got)} of {N} records from {topic}")
    if total != N:
        raise SystemExit(f"kafka-python: committed offsets sum to {total}, expected {N}")
    log(
        f"kafka-python: produced and read {len(got)} records from {topic} (group {group} committed offsets sum={total})"
    )


async def aiokafka_roundtrip(bootstrap, topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(N):
            await producer.send(topic, key=f"k{i}".encode(), value=f"aiokafka {i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    group = f"smoke-aio-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < N and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                got.extend(r.value.decode() for r in records)
        await consumer.commit()
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    if len(got) != N:
        raise SystemExit(f"aiokafka: read {len(got)} of {N} records from {topic}")
    total = sum(v or 0 for v in committed.values())
    if total != N:
        raise SystemExit(f"aiokafka: committed offsets sum to {total}, expected {N}")
    log(f"aiokafka: produced and read {len(got)} records from {topic} (group {group} committed offsets sum={total})")


def main():
    bootstrap = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    s = uuid.uuid4().hex[:8]
    kp_plain, kp_compact = f"smoke-kp-{s}", f"smoke-kp-compact-{s}"
    aio_plain, aio_compact = f"smoke-aio-{s}", f"smoke-aio-compact-{s}"
    create_topics(bootstrap, [kp_plain, aio_plain], [kp_compact, aio_compact])
    kafka_python_roundtrip(bootstrap, kp_plain)
    kafka_python_roundtrip(bootstrap, kp_compact)
    asyncio.run(aiokafka_roundtrip(bootstrap, aio_plain))
    asyncio.run(aiokafka_roundtrip(bootstrap, aio_compact))
    # Not created by the admin client: relies on auto.create.topics.enable.
    asyncio.run(aiokafka_roundtrip(bootstrap, f"smoke-auto-{s}"))
    log("smoke: OK")


if __name__ == "__main__":
    main()
