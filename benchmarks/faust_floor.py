"""A faust worker that does nothing per record but decode it: faust's own per-record cost on this machine.

Started by ``benchmarks/e2e.py`` as ``python faust_floor.py TOPIC TOTAL OUT`` (environment:
``KAFKA_BOOTSTRAP_SERVERS``). One agent reads TOPIC (raw bytes) from the earliest offset,
``orjson.loads`` each value and acks it, like pledgewatch's telemetry agent minus the work; after
TOTAL records it writes ``{"records", "seconds", "events_per_s", "cpu_us_per_record"}`` (first record to last;
CPU time of the process, ``time.process_time``, over the same span) to OUT and exits.
Between the bare aiokafka loop and pledgewatch's worker, it separates what faust costs from what
pledgewatch costs.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import faust
import orjson


def main() -> None:
    topic_name, total, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = faust.App(
        f"faust-floor-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092')}",
        store="memory://",
        datadir=os.path.join(os.getcwd(), "faust-floor-data"),  # e2e.py runs it in its own temporary folder
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        topic_disable_leader=True,
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "t0": 0.0, "cpu0": 0.0}

    @app.agent(topic)
    async def floor(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if seen["n"] == 0:
                seen["t0"], seen["cpu0"] = time.monotonic(), time.process_time()
            orjson.loads(event.value)
            seen["n"] += 1
            if seen["n"] >= total:
                seconds = time.monotonic() - seen["t0"]
                cpu_us = (time.process_time() - seen["cpu0"]) / total * 1e6
                result = {
                    "records": seen["n"],
                    "seconds": round(seconds, 2),
                    "events_per_s": round(total / seconds),
                    "cpu_us_per_record": round(cpu_us, 1),
                }
                with open(out, "w") as f:
                    json.dump(result, f)
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
