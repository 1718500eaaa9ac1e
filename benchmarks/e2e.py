"""End to end through the real local broker: worker throughput, scale-out, latency, and the client's ceiling.

Run: ``.venv/bin/python benchmarks/e2e.py`` with a broker up (``make bench`` starts the local one;
``KAFKA_BOOTSTRAP_SERVERS`` names another). Writes ``benchmarks/results/e2e.json`` and its rows of
``docs/benchmarks.md``. Each part uses topics of its own (a fresh prefix), deleted afterwards.

(b) **saturation**: one ``pledgewatch worker`` (subprocess, RocksDB store, as deployed) is given a
    backlog of simulated telemetry (:mod:`monitor.simulate`, seeded from the Auckland sample) far
    larger than it can work off; its rate is the growth of ``pledgewatch_events_total`` over a
    window that starts once the producer has finished (so the producer takes no CPU from it).
(b) **latency**: a fresh worker under a steady 5,000 records/s with outages injected; every
    valuation, loan risk snapshot and alert carries the produce time of the telemetry record behind
    it (header ``pledgewatch-origin-ms``), and latency = the output's own Kafka timestamp − that.
(c) **scale-out**: the saturation run with two workers in one consumer group on 4 partitions.
(f) **ceiling**: a bare aiokafka consume-and-decode loop (``getmany`` + ``orjson.loads``, nothing
    else) over the same backlog, in the same run; pledgewatch is reported as a ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from report import header, publish  # benchmarks/report.py (the scripts run from benchmarks/)

from monitor.incidents import parse_incident
from monitor.settings import Settings
from monitor.simulate import Fleet
from streams.publish import ORIGIN_HEADER
from streams.replay import make_producer, produce_loan_book
from streams.simulate import produce_records
from streams.topics import create_topics, delete_topics

ROOT = Path(__file__).resolve().parents[1]
PLEDGEWATCH = ROOT / ".venv" / "bin" / "pledgewatch"


#: buses per asset of the poll-fed run: at the sample's median gap of ≈ 126 s between two reports of
#: one bus, 70 buses give ≈ 60 observations per 120-s poll (issue 18 asks for polls of ≥ 50)
POLL_FLEET_VEHICLES = 70


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bootstrap() -> str:
    """The broker to use: ``KAFKA_BOOTSTRAP_SERVERS``, else the local one on ``KAFKA_PORT`` (9092)."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{os.environ.get('KAFKA_PORT') or 9092}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """Topics of one benchmark part: a fresh prefix and app id, deleted on exit."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.tag = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        self.tmp = tmp / self.tag
        self.tmp.mkdir(parents=True)
        self.env = {
            **os.environ,
            "PLEDGEWATCH_BOOTSTRAP_SERVERS": bootstrap(),
            "PLEDGEWATCH_TOPIC_PREFIX": f"{self.tag}.",
            "PLEDGEWATCH_APP_ID": self.tag,
            "PLEDGEWATCH_PARTITIONS": "4",
        }
        self.settings = Settings(
            bootstrap_servers=bootstrap(), topic_prefix=f"{self.tag}.", app_id=self.tag, partitions=4
        )
        self.workers: list[BenchWorker] = []
        create_topics(self.settings)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            w.stop()
        delete_topics(self.settings, f"{self.tag}.")
        delete_topics(self.settings, f"{self.tag}-")
        delete_topics(self.settings, f"changelog__{self.tag}-")  # the Quix peer's state (peer_quix)


class BenchWorker:
    """One ``pledgewatch worker`` subprocess with its own metrics and web ports and data dir."""

    def __init__(self, run: Run, n: int) -> None:
        self.metrics_port = free_port()
        env = {
            **run.env,
            "PLEDGEWATCH_METRICS_PORT": str(self.metrics_port),
            "PLEDGEWATCH_WEB_PORT": str(free_port()),
            "PLEDGEWATCH_DATA_DIR": str(run.tmp / f"worker{n}"),
        }
        self.log = (run.tmp / f"worker{n}.log").open("w")
        self.proc = subprocess.Popen([str(PLEDGEWATCH), "worker"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        run.workers.append(self)

    def scrape(self) -> dict[str, float]:
        """``{name{labels}: value}`` of the worker's ``/metrics`` (empty while it is not up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        return out

    def count(self, topic_part: str, outcome: str | None = None) -> float:
        """Records of ``pledgewatch_events_total`` whose topic label contains ``topic_part``."""
        return sum(
            v
            for k, v in self.scrape().items()
            if k.startswith("pledgewatch_events_total{")
            and topic_part in k
            and (outcome is None or f'"outcome": "{outcome}"' in k)
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; always reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_for(cond: Any, timeout: float, what: str) -> None:
    """Poll ``cond()`` every second until true; raise naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(1.0)
    raise TimeoutError(f"benchmark: {what} not reached within {timeout:.0f} s")


def start_workers(run: Run, n: int, fleet: Fleet) -> list[BenchWorker]:
    """Start ``n`` workers, wait until the group is up, produce the loan book and wait until it is applied."""
    workers = [BenchWorker(run, i) for i in range(n)]
    wait_for(lambda: all(w.scrape() for w in workers), 120, "worker metrics endpoints")
    book = fleet.loan_book()
    producer = make_producer(run.settings)
    try:
        produce_loan_book(producer, run.settings, book)
    finally:
        producer.close()
    wait_for(lambda: sum(w.count("loan-book", "ok") for w in workers) >= len(book), 180, "loan book applied")
    time.sleep(3.0)  # the pledges travel on through the internal topic to the asset side
    return workers


def saturation(
    tmp: Path,
    n_workers: int,
    backlog: list[tuple[bytes, bytes, float]],
    fleet: Fleet,
    window_s: float,
    observations: int | None = None,
    ceilings: bool = True,
    peer: bool = True,
):
    """(b)/(c)/(g): observations/s of ``n_workers`` working off ``backlog``; returns a result dict.

    ``observations``: how many the backlog holds when its records are batches (default: one a record).
    ``ceilings``: also measure the bare aiokafka loop and the decode-only faust agent (one worker only).
    ``peer``: also run the Quix Streams peer over the backlog (one worker only).
    """
    observations = observations or len(backlog)
    with Run(f"sat{n_workers}{'b' if observations > len(backlog) else ''}", tmp) as run:
        workers = start_workers(run, n_workers, fleet)
        stats = asyncio.run(produce_records(run.settings, backlog))
        time.sleep(2.0)
        c0, t0 = sum(w.count("telemetry") for w in workers), time.monotonic()
        cpu0 = [cpu_seconds(w.proc.pid) for w in workers]
        spy = profile(workers[0].proc.pid, window_s, run.tmp / "py-spy.txt") if n_workers == 1 else None
        time.sleep(window_s)
        c1, t1 = sum(w.count("telemetry") for w in workers), time.monotonic()
        cpu1 = [cpu_seconds(w.proc.pid) for w in workers]
        if c1 >= observations:
            print(f"warning: the backlog ran out during the window ({n_workers} workers)", file=sys.stderr)
        rate = (c1 - c0) / (t1 - t0)
        top = summarize(spy, run.tmp / "py-spy.txt") if spy is not None else None
        for w in workers:  # the ceilings below run alone on the machine
            w.stop()
        bare = bare_loop(run.settings, len(backlog)) if n_workers == 1 and ceilings else None
        floor = faust_floor(run, len(backlog)) if n_workers == 1 and ceilings else None
        quix = (
            {mode: peer_quix(run, observations, mode) for mode in ("window", "decode-only")}
            if n_workers == 1 and peer
            else None
        )
        return {
            "workers": n_workers,
            "backlog_records": len(backlog),
            "backlog_observations": observations,
            "produced_per_s": round(stats.rate),
            "window_s": round(t1 - t0, 1),
            "records_in_window": int(c1 - c0),
            "events_per_s": round(rate),
            "worker_cpu_share": [round((b - a) / (t1 - t0), 2) for a, b in zip(cpu0, cpu1, strict=True)],
            "bare_loop": bare,
            "faust_floor": floor,
            "peer_quix": quix,
            "profile": top,
        }


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the worker with py-spy (``pip install -e '.[bench]'``) for ``seconds``; None without py-spy."""
    spy = ROOT / ".venv" / "bin" / "py-spy"
    if not spy.exists():
        print("py-spy not installed: no profile of the saturated worker", file=sys.stderr)
        return None
    cmd = [str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw", "-o", str(out)]
    return subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(spy: subprocess.Popen[bytes], raw: Path, top: int = 12) -> dict[str, Any] | None:
    """Share of samples per function of the worker's main thread: inclusive (``under``) and own (``self``).

    Grouped the way the profile answers "where does a record's time go": faust and aiokafka
    framework code, the handler (``streams/``), the core (``monitor/``, ``rules/``), pickling for
    checkpoints, and waiting in the event loop's ``select``.
    """
    spy.wait(120)
    if not raw.exists():
        return None
    own: dict[str, int] = {}
    under: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("run_worker" in f for f in frames):  # the event-loop thread only
            continue
        n = int(count)
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            under[f] = under.get(f, 0) + n

    def share(d: dict[str, int]) -> list[list[Any]]:
        return [[f, round(n / total, 3)] for f, n in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    keys = ("Node.guarded", "StateTable.save", "AssetBook.on_telemetry", "decode_telemetry", "Publisher.send_many")
    groups = {k: round(sum(n for f, n in under.items() if f.startswith(k)) / total, 3) for k in keys}
    ours = {f: n for f, n in under.items() if any(d in f for d in ("streams/", "monitor/core/", "monitor/valuation"))}
    ours = {f: n for f, n in ours.items() if "cli.py" not in f and "run_worker" not in f}
    return {"samples": total, "groups": groups, "self": share(own), "inclusive_pledgewatch": share(ours)}


def run_script(run: Run, script: str, name: str, args: list[str], timeout: float = 300.0) -> dict[str, Any] | None:
    """Run ``benchmarks/<script>`` over the run's telemetry topic; its JSON result, or None.

    The script is called as ``script TOPIC *args OUT`` in the run's folder, its output in
    ``<name>.log`` there; ``None`` when it wrote no result within ``timeout`` seconds.
    """
    out = run.tmp / f"{name}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), run.settings.topic("telemetry"), *args, str(out)]
    env = {**run.env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap()}
    with (run.tmp / f"{name}.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=run.tmp)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return json.loads(out.read_text()) if out.exists() else None


def faust_floor(run: Run, total: int) -> dict[str, Any] | None:
    """A faust agent that only decodes and acks (``benchmarks/faust_floor.py``) over the same backlog."""
    return run_script(run, "faust_floor.py", "faust-floor", [str(total)])


def peer_quix(run: Run, total: int, mode: str) -> dict[str, Any] | None:
    """The Quix Streams peer (``benchmarks/peer_quix.py``) over the same backlog: ``window`` or ``decode-only``.

    ``total`` in observations. ``None`` when quixstreams (the ``bench`` extra) is not installed or the
    app did not finish within 300 s (its log is kept in the run's folder).
    """
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        print("peer: quixstreams not installed (pip install -e '.[bench]'); skipped", file=sys.stderr)
        return None
    return run_script(run, "peer_quix.py", f"peer-quix-{mode}", [str(total), mode, f"{run.tag}-peer-{mode}"])


def bare_loop(settings: Settings, total: int) -> dict[str, Any]:
    """(f): a bare aiokafka consume-and-decode loop over the telemetry topic (no group, all partitions)."""

    async def go() -> dict[str, Any]:
        topic = settings.topic("telemetry")
        consumer = AIOKafkaConsumer(**settings.kafka_options(), enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(4))]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            n = 0
            t0 = time.monotonic()
            while n < total:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                if not batches and time.monotonic() - t0 > 120:
                    break
                for records in batches.values():
                    for rec in records:
                        orjson.loads(rec.value)
                        n += 1
            seconds = time.monotonic() - t0
            return {"records": n, "seconds": round(seconds, 2), "events_per_s": round(n / seconds)}
        finally:
            await consumer.stop()

    return asyncio.run(go())


def observations_in(value: bytes) -> int:
    """Observations one telemetry record carries (a batch's count, else 1)."""
    return len(orjson.loads(value).get("observations", [None]))


def latency(tmp: Path, rate: float, seconds: float, polls: bool = False) -> dict[str, Any]:
    """(b): p50/p99 event-to-output latency of one worker under a steady ``rate`` observations/s.

    ``polls``: the observations come as one batch record per asset and 120-s poll (``rate`` is then
    observations/s, the records/s being that over the mean observations a record), else one a record.
    """
    assets = 40  # × 25 vehicles: 1,000 buses, as the saturation fleet; every fifth asset goes dark after 2 h
    dark = [parse_incident(f"outage:sim-{i:04d}@2h") for i in range(0, assets, 5)]
    vehicles = POLL_FLEET_VEHICLES if polls else 25
    fleet = Fleet(assets, vehicles, seed=7, incidents=dark)
    n = int(rate * seconds)
    records = list(fleet.polls(n) if polls else fleet.records(n))
    per_record = n / len(records)
    with Run("latp" if polls else "lat", tmp) as run:
        workers = start_workers(run, 1, fleet)
        stats = asyncio.run(produce_records(run.settings, records, rate=rate / per_record))
        wait_for(lambda: workers[0].count("telemetry") >= n, 300, "the worker caught up")
        time.sleep(5.0)
        lat = asyncio.run(read_latencies(run.settings))
    out: dict[str, Any] = {
        "target_per_s": rate,
        "produced_per_s": round(stats.rate * per_record),
        "records": len(records),
        "observations": n,
        "observations_per_record_mean": round(per_record, 1),
    }
    for name, xs in lat.items():
        xs.sort()
        q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else xs * 99
        out[name] = {"n": len(xs), "p50_ms": round(q[49]), "p99_ms": round(q[98]), "max_ms": round(xs[-1])}
    return out


def group_lag(settings: Settings, group: str) -> int:
    """Records of the telemetry topic consumer group ``group`` has not committed yet (all partitions)."""

    async def go() -> int:
        topic = settings.topic("telemetry")
        # group_id only to read the group's committed offsets: this consumer never joins the group
        consumer = AIOKafkaConsumer(**settings.kafka_options(), enable_auto_commit=False, group_id=group)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(4))]
            end = await consumer.end_offsets(parts)
            lag = 0
            for tp in parts:
                lag += max(0, end[tp] - ((await consumer.committed(tp)) or 0))
            return lag
        finally:
            await consumer.stop()

    return asyncio.run(go())


class SteadyProducer:
    """``produce_records`` at a steady rate in a thread of its own until :meth:`stop` (or the records end)."""

    def __init__(self, settings: Settings, records: Any, rate: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[Any] | None = None
        self.done = threading.Event()

        def run() -> None:
            self.task = self.loop.create_task(produce_records(settings, records, rate=rate))
            try:
                self.loop.run_until_complete(self.task)
            except asyncio.CancelledError:
                pass
            finally:
                self.loop.close()
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Cancel the producing task and wait for its thread (the producer is closed by its ``finally``)."""
        if not self.done.is_set() and self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(60)


def catch_up(tmp: Path, rate: float, outage_s: float, warm_s: float = 30.0, limit_s: float = 900.0) -> dict[str, Any]:
    """(h): one worker stopped for ``outage_s`` while telemetry keeps coming at ``rate`` observations/s.

    The load is poll records (20 assets × 70 buses, as (g)) produced at a steady rate from start to
    end. After ``warm_s`` the worker is stopped (SIGTERM, as a deployment or a crash with a clean
    restart would); ``outage_s`` later a new worker process starts on the same data directory and
    the time until its consumer group has committed all but the last few seconds of input is the
    catch-up time (lag at most what ``rate`` brings in 5 s: faust commits about every 3 s, so
    "caught up" is only known to that resolution). The drain rate follows (backlog + what came in
    meanwhile, over the catch-up time) and from it the catch-up time of a one-hour outage at the same
    rate: ``3600 × rate ÷ (drain − rate)``, an extrapolation the result names as such.
    """
    fleet = Fleet(20, POLL_FLEET_VEHICLES, seed=11)
    head = [v for _, v, _ in fleet.polls(20_000)]
    per_record = sum(observations_in(v) for v in head) / len(head)
    total = int(rate * (warm_s + outage_s + limit_s))
    with Run("catchup", tmp) as run:
        workers = start_workers(run, 1, fleet)
        producer = SteadyProducer(run.settings, fleet.polls(total), rate / per_record)
        try:
            time.sleep(warm_s)
            workers[0].stop()
            run.workers.remove(workers[0])
            stopped = time.monotonic()
            time.sleep(outage_s)
            lag_at_restart = group_lag(run.settings, run.tag)
            restarted = time.monotonic()
            BenchWorker(run, 0)  # the same data directory: a restart, not a new machine
            slack = rate / per_record * 5.0
            caught: float | None = None
            while time.monotonic() - restarted < limit_s and not producer.done.is_set():
                time.sleep(1.0)
                if group_lag(run.settings, run.tag) <= slack:
                    caught = time.monotonic()
                    break
        finally:
            producer.stop()
    seconds = None if caught is None else caught - restarted
    backlog = round(lag_at_restart * per_record)
    result: dict[str, Any] = {
        "rate_obs_per_s": rate,
        "observations_per_record_mean": round(per_record, 1),
        "warm_s": warm_s,
        "outage_s": round(restarted - stopped, 1),
        "backlog_observations_at_restart": backlog,
        "catch_up_s": None if seconds is None else round(seconds, 1),
    }
    if seconds is not None:
        drain = (backlog + rate * seconds) / seconds
        result["drain_obs_per_s"] = round(drain)
        result["one_hour_outage_catch_up_s_extrapolated"] = (
            round(3600.0 * rate / (drain - rate)) if drain > rate else None
        )
    return result


async def read_latencies(settings: Settings) -> dict[str, list[float]]:
    """Latency samples (ms) of the output topics: output timestamp − origin header."""
    names = {"valuations": "event_to_valuation", "loan-risk": "event_to_loan_risk", "alerts": "event_to_alert"}
    consumer = AIOKafkaConsumer(**settings.kafka_options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: dict[str, list[float]] = {v: [] for v in names.values()}
    try:
        parts = []
        for logical in names:
            topic = settings.topic(logical)
            parts += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or range(4)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)

        async def behind() -> bool:
            for tp in parts:
                if await consumer.position(tp) < end[tp]:
                    return True
            return False

        while await behind():
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                logical = tp.topic.removeprefix(settings.topic_prefix)
                for rec in records:
                    origin = dict(rec.headers or ()).get(ORIGIN_HEADER)
                    if origin is not None:
                        out[names[logical]].append(rec.timestamp - int(origin))
    finally:
        await consumer.stop()
    return out


def polls_only(backlog: int, window: float) -> None:
    """(g) alone: one worker fed polls and the Quix peer on the same backlog (a quick check between full runs)."""
    poll_fleet = Fleet(20, POLL_FLEET_VEHICLES, seed=3)
    polls = list(poll_fleet.polls(backlog))
    per_poll = sorted(observations_in(v) for _, v, _ in polls)
    with tempfile.TemporaryDirectory(prefix="pledgewatch-bench-") as t:
        result = saturation(Path(t), 1, polls, poll_fleet, window, observations=backlog, ceilings=False)
    result["observations_per_record_median"] = per_poll[len(per_poll) // 2]
    print(json.dumps(result, indent=2))


def single_only(backlog: int, window: float) -> None:
    """(b) alone: one worker on single-observation records with its ceilings (bare loop, decode-only faust agent).

    The same fleet and backlog as the full run's (b); prints JSON with the worker's ratio to the
    decode-only faust agent and the worker's CPU µs a record, and writes no result file.
    """
    fleet = Fleet(20, 50, seed=3)
    records = list(fleet.records(backlog))
    with tempfile.TemporaryDirectory(prefix="pledgewatch-bench-") as t:
        result = saturation(Path(t), 1, records, fleet, window, peer=False)
    floor = result["faust_floor"]
    if floor:
        result["ratio_to_faust_floor"] = round(result["events_per_s"] / floor["events_per_s"], 3)
    if result["events_per_s"]:
        result["worker_cpu_us_per_record"] = round(result["worker_cpu_share"][0] / result["events_per_s"] * 1e6, 1)
        if floor and floor.get("cpu_us_per_record"):  # the same ratio in CPU time, less exposed to the shared cores
            result["cpu_ratio_faust_floor_to_worker"] = round(
                floor["cpu_us_per_record"] / result["worker_cpu_us_per_record"], 3
            )
    print(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backlog", type=int, default=600_000, help="records given to the saturated workers")
    ap.add_argument("--window", type=float, default=20.0, help="seconds the saturated rate is measured over")
    ap.add_argument("--rate", type=float, default=5_000.0, help="steady rate of the latency run, records/s")
    ap.add_argument("--low-rate", type=float, default=2_000.0, help="the same at a rate with headroom, records/s")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each latency run, seconds")
    ap.add_argument(
        "--polls-only",
        action="store_true",
        help="only (g), one worker fed polls, with the Quix peer over the same backlog; prints JSON, writes no result",
    )
    ap.add_argument(
        "--single-only",
        action="store_true",
        help="only (b), one worker on single-observation records, with the bare loop and the decode-only faust "
        "agent over the same backlog; prints JSON, writes no result",
    )
    ap.add_argument("--outage", type=float, default=180.0, help="seconds the worker is down in (h), the catch-up")
    ap.add_argument(
        "--catch-up-only",
        action="store_true",
        help="only (h) and the latency of polls at --rate; prints JSON, writes no result unless --save",
    )
    ap.add_argument(
        "--save",
        metavar="NAME",
        help="with --catch-up-only: also write benchmarks/results/NAME.json (e.g. catch_up_1h for --outage 3600, "
        "which docs/benchmarks.md's targets table shows beside make bench's extrapolation)",
    )
    args = ap.parse_args()
    if args.single_only:
        single_only(args.backlog, args.window)
        return
    if args.polls_only:
        polls_only(args.backlog, args.window)
        return
    if args.catch_up_only:
        with tempfile.TemporaryDirectory(prefix="pledgewatch-bench-") as t:
            quick = {
                "catch_up": catch_up(Path(t), args.low_rate, args.outage),
                "latency_polls": latency(Path(t), args.rate, args.seconds, polls=True),
            }
        print(json.dumps(quick, indent=2))
        if args.save:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
            saved = {**header(args.save), "commit": commit.strip(), "broker": bootstrap(), **quick}
            (Path(__file__).parent / "results" / f"{args.save}.json").write_text(json.dumps(saved, indent=2) + "\n")
        return
    fleet = Fleet(20, 50, seed=3)
    backlog = list(fleet.records(args.backlog))
    # (g) the same kind of load as polls: 70 buses an asset report ≈ 60 observations per 120-s poll
    poll_fleet = Fleet(20, POLL_FLEET_VEHICLES, seed=3)
    polls = list(poll_fleet.polls(args.backlog))
    per_poll = sorted(observations_in(v) for _, v, _ in polls)
    with tempfile.TemporaryDirectory(prefix="pledgewatch-bench-") as t:
        tmp = Path(t)
        one = saturation(tmp, 1, backlog, fleet, args.window)
        print("one worker:", json.dumps(one), file=sys.stderr)
        two = saturation(tmp, 2, backlog, fleet, args.window)
        print("two workers:", json.dumps(two), file=sys.stderr)
        batched = saturation(tmp, 1, polls, poll_fleet, args.window, observations=args.backlog, ceilings=False)
        batched["observations_per_record_median"] = per_poll[len(per_poll) // 2]
        print("one worker, polls:", json.dumps(batched), file=sys.stderr)
        lat = latency(tmp, args.rate, args.seconds)
        low = latency(tmp, args.low_rate, args.seconds)
        lat_polls = latency(tmp, args.rate, args.seconds, polls=True)
        print("latency, polls:", json.dumps(lat_polls), file=sys.stderr)
        recovery = catch_up(tmp, args.low_rate, args.outage)
        print("catch-up:", json.dumps(recovery), file=sys.stderr)
    bare = one["bare_loop"]
    result = {
        **header("e2e"),
        "broker": bootstrap(),
        "fleet": {"assets": 20, "vehicles": 50, "seed": 3},
        "one_worker": one,
        "two_workers": two,
        "one_worker_polls": batched,
        "scale_out": round(two["events_per_s"] / one["events_per_s"], 2),
        "ratio_to_bare_loop": round(one["events_per_s"] / bare["events_per_s"], 3),
        "latency": lat,
        "latency_low_rate": low,
        "latency_polls": lat_polls,
        "catch_up": recovery,
    }
    a, r = lat["event_to_alert"], lat["event_to_loan_risk"]
    la, lr = low["event_to_alert"], low["event_to_loan_risk"]
    publish(
        "e2e",
        result,
        [
            (
                "one worker at saturation (real broker, 4 partitions, backlog of simulated telemetry)",
                f"{one['events_per_s']:,} records/s; {result['ratio_to_bare_loop']:.1%} of the bare aiokafka "
                f"loop's {bare['events_per_s']:,} records/s in the same run",
            ),
            (
                f"one worker fed polls (one record per asset and 120-s poll, median "
                f"{batched['observations_per_record_median']} observations; 20 assets × {POLL_FLEET_VEHICLES} buses)",
                f"{batched['events_per_s']:,} observations/s = {batched['events_per_s'] / one['events_per_s']:.1f}× "
                f"one observation a record",
            ),
            *(
                [
                    (
                        "Quix Streams 3.28 peer on the same poll backlog (benchmarks/peer_quix.py: decode, one row "
                        "per observation, 15-min tumbling window count + sum, RocksDB state)",
                        f"{peer['window']['events_per_s']:,} observations/s (decode only "
                        f"{peer['decode-only']['events_per_s']:,}); the worker fed polls is "
                        f"{batched['events_per_s'] / peer['window']['events_per_s']:.2f}× it",
                    )
                ]
                if (peer := batched.get("peer_quix")) and peer.get("window") and peer.get("decode-only")
                else []
            ),
            (
                "two workers vs one (one consumer group, 4 partitions, 2 cores shared with the broker)",
                f"{two['events_per_s']:,} records/s = {result['scale_out']:.2f}× one worker",
            ),
            (
                f"event-to-alert latency at a steady {args.rate:,.0f} records/s (produce stamp → output stamp)",
                f"alerts p50 {a['p50_ms']:,} ms / p99 {a['p99_ms']:,} ms (n={a['n']}); loan risk snapshots "
                f"p50 {r['p50_ms']:,} ms / p99 {r['p99_ms']:,} ms (n={r['n']})",
            ),
            (
                f"event-to-alert latency at a steady {args.rate:,.0f} observations/s fed polls "
                f"(mean {lat_polls['observations_per_record_mean']} observations a record)",
                f"alerts p50 {lat_polls['event_to_alert']['p50_ms']:,} ms / p99 "
                f"{lat_polls['event_to_alert']['p99_ms']:,} ms (n={lat_polls['event_to_alert']['n']})",
            ),
            (
                f"catch-up of one worker down {recovery['outage_s']:.0f} s while polls keep coming at "
                f"{args.low_rate:,.0f} observations/s (restart on its own data directory)",
                (
                    f"{recovery['catch_up_s']:,} s to work off {recovery['backlog_observations_at_restart']:,} "
                    f"observations (drain {recovery.get('drain_obs_per_s', 0):,}/s); a 1-hour outage, "
                    f"extrapolated: {recovery.get('one_hour_outage_catch_up_s_extrapolated')} s"
                    if recovery["catch_up_s"] is not None
                    else "not caught up within the run's limit"
                ),
            ),
            (
                f"event-to-alert latency at a steady {args.low_rate:,.0f} records/s (headroom)",
                f"alerts p50 {la['p50_ms']:,} ms / p99 {la['p99_ms']:,} ms (n={la['n']}); loan risk snapshots "
                f"p50 {lr['p50_ms']:,} ms / p99 {lr['p99_ms']:,} ms (n={lr['n']})",
            ),
        ],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
