"""The peer of issue 18: a Quix Streams windowing app over the same backlog, on the same broker and machine.

Started by ``benchmarks/e2e.py`` as ``python peer_quix.py TOPIC TOTAL MODE GROUP OUT`` (environment:
``KAFKA_BOOTSTRAP_SERVERS``), in its own temporary folder. It does far less than a pledgewatch worker,
which is the point of the comparison: what a bank's platform team would get from a well-kept stream
library with the windowing alone.

- **window**: JSON decode; the record's event time from ``observed_at``; a batch record expanded to
  one row per observation; per asset (the record key) a 15-min event-time tumbling window with count
  and sum of ``delay_s`` over the observations; closed windows
  to an output topic; RocksDB state with its changelog topic (Quix's defaults).
- **decode-only**: JSON decode and nothing else (Quix's own per-record cost).

A record carrying a batch (``observations``) counts as its observations, as the pledgewatch worker
is counted. After TOTAL observations it writes ``{"mode", "records", "observations", "seconds",
"events_per_s"}`` (first record to the one that reached TOTAL) to OUT and exits.

Needs the ``bench`` extra (``pip install -e '.[bench]'``: quixstreams 3.28).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import uuid
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum

#: The window of the comparison: pledgewatch's default window length (docs/valuation.md), in ms.
WINDOW_MS = 15 * 60 * 1000


def event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """The record's event time (ms): ``observed_at`` of the record or of its first observation."""
    first = value["observations"][0] if "observations" in value else value
    return int(dt.datetime.fromisoformat(first["observed_at"]).timestamp() * 1000)


def main() -> None:
    topic_name, total, mode, group, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    app = Application(
        broker_address=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        consumer_group=group,  # e2e.py deletes the changelog topics named after it
        auto_offset_reset="earliest",
        state_dir=os.path.join(os.getcwd(), "quix-state"),
        loglevel="WARNING",
    )
    topic = app.topic(topic_name, value_deserializer="json", timestamp_extractor=event_time_ms)
    seen = {"records": 0, "observations": 0, "t0": 0.0}

    def count(value: dict[str, Any]) -> dict[str, Any]:
        if seen["records"] == 0:
            seen["t0"] = time.monotonic()
        seen["records"] += 1
        seen["observations"] += len(value["observations"]) if "observations" in value else 1
        if seen["observations"] >= total:
            seconds = time.monotonic() - seen["t0"]
            result = {
                "mode": mode,
                "records": seen["records"],
                "observations": seen["observations"],
                "seconds": round(seconds, 2),
                "events_per_s": round(seen["observations"] / seconds),
            }
            with open(out, "w") as f:
                json.dump(result, f)
            os._exit(0)
        return value

    sdf = app.dataframe(topic).apply(count)
    if mode == "window":
        output = app.topic(f"{topic_name}-peer-windows-{uuid.uuid4().hex[:6]}", value_serializer="json")

        # one row per observation, as the pledgewatch worker takes them: the window counts and sums
        # observations, not records (a batch record keeps its own event time for all its rows)
        sdf = sdf.apply(lambda v: v["observations"] if "observations" in v else [v], expand=True)
        sdf = sdf.apply(lambda o: {"delay_s": float(o.get("metrics", {}).get("delay_s", 0.0))})
        sdf = sdf.tumbling_window(duration_ms=WINDOW_MS).agg(records=Count(), delay_s=Sum("delay_s")).final()
        sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
