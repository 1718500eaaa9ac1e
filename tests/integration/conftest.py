"""Integration fixtures: the real Kafka broker, one uuid-named topic prefix per test, a real worker process.

Unlike faust's and Bytewax's suites these never skip: ``make test`` starts the broker, and an
unreachable broker is a failure. Every topic a test creates is deleted by the test; every worker it
starts is stopped by it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from monitor.errors import ConfigError
from monitor.settings import Settings
from streams.topics import admin_client, create_topics, delete_topics

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
BOOK = ROOT / "examples" / "loan_book.jsonl"


def start_two_and_replay_demo(env: Env, w1: Worker, w2: Worker, until: dt.datetime) -> list[bytes]:
    """Start ``w1`` and ``w2`` (one consumer group), replay the demo up to ``until``, wait until it is committed.

    Returns the loan book's records (the loans and assets the workers hold between them).
    """
    w1.start()
    w2.start(members=2)
    book, events = demo_input(until)
    replay(env.settings, book, events)
    wait_caught_up(env.settings, env.run)
    return book


def demo_input(until: dt.datetime | None = None) -> tuple[list[bytes], list[Any]]:
    """The demo's loan book and telemetry with its incidents (a 60 % trip cut on akl-routes-7xx: the margin
    call; the feed of akl-routes-9xx dark: feed-silent); only records received before ``until`` if given."""
    from monitor.backtest import load_loan_book, pledged_assets, read_telemetry
    from monitor.incidents import apply_incidents, parse_incident

    book = load_loan_book(BOOK)
    outage = [parse_incident("cut:akl-routes-7xx@3h:0.6"), parse_incident("outage:akl-routes-9xx@3h")]
    events = list(apply_incidents(read_telemetry(SAMPLE, pledged_assets(book)), outage))
    if until is not None:
        events = [e for e in events if e.received_at is not None and e.received_at < until]
    return book, events


def replay(settings: Settings, book: list[bytes], events: list[Any]) -> int:
    """Produce the loan book, then the telemetry, as fast as the broker takes them; returns telemetry records.

    The telemetry goes out as ``pledgewatch replay`` sends it: one batch record per asset and poll
    (:func:`monitor.core.decode.telemetry_records`), so records are fewer than observations.
    """
    from monitor.core.decode import telemetry_records
    from streams.replay import make_producer, produce_loan_book, produce_telemetry

    producer = make_producer(settings)
    produce_loan_book(producer, settings, book)
    produce_telemetry(producer, settings, events, rate=0, progress=False)
    producer.close()
    return sum(1 for _ in telemetry_records(events))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def bootstrap() -> str:
    addr = (
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS_LOCAL") or "127.0.0.1:9092"
    )
    try:
        admin_client(addr, timeout_s=30).close()
    except ConfigError as exc:
        pytest.fail(f"the integration suite needs a Kafka broker (make test starts one): {exc}")
    return addr


class Env:
    """Environment of one test: settings, env vars for child processes, log folder."""

    def __init__(self, bootstrap: str, tmp: Path, **security: Any) -> None:
        """``security``: Settings fields such as ``security_protocol`` or ``sasl_password`` (plain str)."""
        self.run = "it-" + uuid.uuid4().hex[:10]
        self.tmp = tmp
        self.vars = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PLEDGEWATCH_TOPIC_PREFIX": self.run + ".",
            "PLEDGEWATCH_APP_ID": self.run,
            "PLEDGEWATCH_DATA_DIR": str(tmp / "state"),
            "PLEDGEWATCH_METRICS_PORT": str(free_port()),
            "PLEDGEWATCH_WEB_PORT": str(free_port()),
            **{"PLEDGEWATCH_" + k.upper(): str(v) for k, v in security.items()},
        }
        self.settings = Settings(
            bootstrap_servers=bootstrap,
            topic_prefix=self.run + ".",
            app_id=self.run,
            data_dir=tmp / "state",
            **security,
        )
        self.metrics_url = f"http://127.0.0.1:{self.vars['PLEDGEWATCH_METRICS_PORT']}/metrics"

    def metric(self, name: str, url: str | None = None, **labels: str) -> float:
        body = urllib.request.urlopen(url or self.metrics_url, timeout=5).read().decode()
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
def env(bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    e = Env(bootstrap, tmp_path)
    create_topics(e.settings)
    yield e
    delete_topics(bootstrap, e.run)


class Worker:
    """A ``pledgewatch worker`` subprocess."""

    def __init__(self, env: Env, second: bool = False) -> None:
        self.env = env
        self.log = env.tmp / f"worker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # extra ``pledgewatch worker`` options, e.g. ["--loglevel", "debug"]; PLEDGEWATCH_TEST_WORKER_ARGS
        # gives every worker of a run some (to read what a flaky test's workers did: "--loglevel info")
        self.args: list[str] = os.environ.get("PLEDGEWATCH_TEST_WORKER_ARGS", "").split()
        self.vars = dict(env.vars)
        if second:  # a second worker of the same group on this machine needs its own ports and state
            self.vars.update(
                PLEDGEWATCH_METRICS_PORT=str(free_port()),
                PLEDGEWATCH_WEB_PORT=str(free_port()),
                PLEDGEWATCH_DATA_DIR=str(env.tmp / f"state-{time.monotonic_ns()}"),
            )
        self.metrics_url = f"http://127.0.0.1:{self.vars['PLEDGEWATCH_METRICS_PORT']}/metrics"
        #: TLS context for a metrics server on HTTPS (issue 22), else None
        self.metrics_ctx: ssl.SSLContext | None = None

    def metric(self, name: str, **labels: str) -> float:
        return self.env.metric(name, url=self.metrics_url, **labels)

    def metrics_up(self) -> bool:
        """Whether the metrics server answers; a 401 or 403 (it asks for a token) counts as up."""
        try:
            urllib.request.urlopen(self.metrics_url, timeout=2, context=self.metrics_ctx)
        except urllib.error.HTTPError as exc:
            return exc.code in (401, 403)
        return True

    def start(self, timeout: float = 90.0, members: int = 1) -> None:
        fh = self.log.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "pledgewatch"), "worker", *self.args],
            env=self.vars,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        admin = admin_client(self.env.settings)
        try:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"worker exited early:\n{self.log.read_text()[-3000:]}"
                try:
                    up = self.metrics_up()
                    group = admin.describe_groups([self.env.run]).get(self.env.run, {}) if up else {}
                    if group.get("group_state") == "Stable" and len(group.get("members") or []) >= members:
                        return
                except (OSError, KafkaError):
                    pass
                time.sleep(0.2)
        finally:
            admin.close()
        raise AssertionError(f"worker not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, settle: bool = False, timeout: float = 30.0) -> None:
        """SIGTERM the worker's process group; SIGKILL it if still running after ``timeout`` seconds.

        A worker stopped right after handling records does not exit on SIGTERM: faust's shutdown waits for
        every unacknowledged record, records are acknowledged once checkpointed by the 5 s clock records,
        and the timer that sends them stops with the worker. ``settle`` first waits (20 s at most) until
        the group has committed all its input, so the stop is graceful and quick.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        if settle:
            try:
                wait_caught_up(self.env.settings, self.env.run, timeout=20)
            except Exception:  # noqa: BLE001 - stop the worker whatever the broker says
                pass
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def worker(env: Env) -> Iterator[Worker]:
    w = Worker(env)
    yield w
    # after the test's assertions: a worker that has not exited 5 s after SIGTERM is waiting for records
    # it can no longer acknowledge (see Worker.stop), and nothing reads its shutdown: kill it then, not at 30 s
    w.stop(timeout=5.0)


def read_topic(settings: Settings, logical: str, until: Any = None, timeout: float = 120.0) -> list[Any]:
    """Read a topic from the beginning with kafka-python until ``until(records)``, or else to its end, or the timeout.

    "Its end" is the end offset of every partition as the read starts: an empty poll proves nothing
    (the first fetches may bring some partitions and not yet the others, more so on a busy machine).
    Stopping at the first empty poll once some records were read lost the tail of big topics: the
    frozen feed's last valuations, published last, read as "never valued" in faults (a) and (c).
    """
    topic = settings.topic(logical)
    consumer = KafkaConsumer(
        **settings.kafka_options(), group_id=None, enable_auto_commit=False, consumer_timeout_ms=1000
    )
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
            if until is not None and until(records):
                break
            # a topic empty when the read starts is waited on (up to the timeout) for its first records
            if until is None and records and all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
        return records
    finally:
        consumer.close()


def wait_caught_up(
    settings: Settings,
    group: str,
    logical: tuple[str, ...] = ("telemetry", "loan-book", "asset-pledges", "loan-valuations"),
    timeout: float = 180.0,
) -> None:
    """Wait until the worker group's committed offsets reach the end of its input topics (all processed)."""
    from kafka import KafkaAdminClient

    topics = [settings.topic(name) for name in logical]
    admin = KafkaAdminClient(**settings.kafka_options())
    consumer = KafkaConsumer(**settings.kafka_options(), group_id=None)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        deadline = time.monotonic() + timeout
        behind: dict[Any, int] = {}
        while time.monotonic() < deadline:
            ends = consumer.end_offsets(parts)
            try:
                committed = admin.list_group_offsets({group: None}).get(group, {})
            except KafkaError as exc:  # e.g. CoordinatorLoadInProgress just after a broker (re)start
                if not exc.retriable:
                    raise
                time.sleep(0.25)
                continue
            behind = {tp: end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()}
            if all(v <= 0 for v in behind.values()):
                return
            time.sleep(0.25)
        raise AssertionError(f"worker still behind after {timeout} s: { {str(k): v for k, v in behind.items() if v} }")
    finally:
        consumer.close()
        admin.close()


def committed(env: Env, logical: str = "telemetry") -> int:
    """Records of a topic the worker group has committed (processed), summed over partitions."""
    admin = admin_client(env.settings)
    try:
        offsets = admin.list_group_offsets({env.run: None}).get(env.run, {})
        return sum(o.offset for tp, o in offsets.items() if tp.topic == env.settings.topic(logical))
    finally:
        admin.close()


def run_cli(env: Env, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``pledgewatch ARGS`` as a user would, with the test's environment; asserts exit 0."""
    out = subprocess.run(
        [str(BIN / "pledgewatch"), *args], env=env.vars, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out


def send_loan_book(producer: Any, settings: Settings, events: tuple[Any, ...]) -> None:
    """Produce loan events keyed by loan id and wait for the broker."""
    for ev in events:
        producer.send(settings.topic("loan-book"), key=ev.loan_id.encode(), value=ev.model_dump_json().encode())
    producer.flush()


def send_telemetry(producer: Any, settings: Settings, events: Any, key: bytes = b"A1") -> None:
    """Produce telemetry events under one asset key and wait for the broker."""
    for ev in events:
        producer.send(settings.topic("telemetry"), key=key, value=ev.model_dump_json().encode())
    producer.flush()


def valuation_of(settings: Settings, window_start: Any, timeout: float = 90.0) -> Any:
    """The valuation of the window starting at ``window_start`` (waits for it on the valuations topic)."""
    from monitor.schemas import CollateralValuation

    def found(rs: list[Any]) -> bool:
        return any(CollateralValuation.model_validate_json(r.value).window_start == window_start for r in rs)

    vals = [
        CollateralValuation.model_validate_json(r.value)
        for r in read_topic(settings, "valuations", until=found, timeout=timeout)
    ]
    match = [v for v in vals if v.window_start == window_start]
    assert match, f"no valuation of the window starting {window_start}"
    return match[0]


class PrivateBroker:
    """A second single-node Kafka broker of this test alone (own ports, data and logs under ``tmp``).

    Tests that stop the broker, or need a listener the shared one lacks (SASL_SSL), start one with
    ``deploy/kafka/broker.sh`` itself; the jars come from ``KAFKA_HOME`` when set, else from the
    repository's ``.kafka/lib`` (fetched and verified by ``deploy/kafka/fetch.sh``).

    Parameters
    ----------
    tmp
        The test's temporary folder.
    extra_properties
        Lines appended to the generated ``server.properties`` (``KAFKA_EXTRA_PROPERTIES``); the
        placeholders ``{port}``, ``{controller_port}`` and ``{port2}`` (a second free loopback port,
        for an extra listener) are filled in.
    """

    def __init__(self, tmp: Path, extra_properties: str = "") -> None:
        self.home = tmp / "broker"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port, self.controller_port, self.port2 = free_port(), free_port(), free_port()
        self.vars = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        kafka_home = os.environ.get("KAFKA_HOME")
        if not kafka_home:
            subprocess.run(["bash", str(ROOT / "deploy/kafka/fetch.sh")], check=True, capture_output=True, timeout=600)
            kafka_home = str(self.home / "kafka-home")
            Path(kafka_home).mkdir(exist_ok=True)
            libs = Path(kafka_home) / "libs"
            if not libs.exists():
                libs.symlink_to(ROOT / ".kafka" / "lib")
        self.vars.update(
            PLEDGEWATCH_HOME=str(self.home),
            KAFKA_HOME=kafka_home,
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            KAFKA_HEAP_OPTS="-Xmx384m -Xms64m",
            KAFKA_STOP_TIMEOUT="20",
        )
        if extra_properties:
            props = self.home / "extra.properties"
            props.write_text(
                extra_properties.format(port=self.port, port2=self.port2, controller_port=self.controller_port)
            )
            self.vars["KAFKA_EXTRA_PROPERTIES"] = str(props)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        out = subprocess.run(
            ["bash", str(ROOT / "deploy/kafka/broker.sh"), *args],
            env=self.vars,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, f"broker.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"

    def start(self) -> None:
        """Start the broker and wait until it answers metadata (90 s at most)."""
        self._run("start")
        self._run("wait", "90")

    def stop(self) -> None:
        """Stop it (SIGTERM, SIGKILL after 20 s); a no-op when it is not running."""
        self._run("stop")

    def server_log(self) -> str:
        """The broker's own log (``server.log``), for tests that grep it."""
        path = self.home / ".kafka" / "logs" / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A started :class:`PrivateBroker` (plaintext), stopped after the test."""
    b = PrivateBroker(tmp_path)
    try:
        b.start()
        yield b
    finally:
        b.stop()


class ProduceCutProxy:
    """A loopback TCP proxy in front of a broker that can refuse writes to one topic and let all else by.

    Kafka clients connect to the address the broker advertises, so a :class:`PrivateBroker` that
    advertises this proxy's port sends every client connection through it. The proxy reads the
    request frames (4-byte size, then ``api_key``). While :meth:`cut` is in force, a Produce request
    (api key 0) naming the given topic closes its connection before it is forwarded, so the broker
    writes nothing of it; other writes, fetches and offset commits go on. With the margin-calls topic
    that is the broker unavailable exactly when a margin call is raised (case C07b).
    """

    PRODUCE_API = 0

    def __init__(self, upstream_port: int) -> None:
        import threading

        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.cutting = threading.Event()
        self.topic = b""
        self.closed = threading.Event()
        self.refused = 0  # produce requests refused while cut
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, topic: str) -> None:
        """From now on, refuse Produce requests that write to ``topic`` (close their connection)."""
        self.topic = topic.encode()
        self.cutting.set()

    def heal(self) -> None:
        """Forward every request again."""
        self.cutting.clear()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.closed.set()
        self.sock.close()
        with self.lock:
            for a, b in self.conns:
                _close(a, b)

    def _accept(self) -> None:
        import threading

        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                continue
            with self.lock:
                self.conns.append((client, server))
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client), daemon=True).start()

    @staticmethod
    def _recv_exact(s: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return buf

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:
                size = self._recv_exact(client, 4)
                body = self._recv_exact(client, int.from_bytes(size, "big", signed=True))
                api_key = int.from_bytes(body[:2], "big", signed=True)
                if api_key == self.PRODUCE_API and self.cutting.is_set() and self.topic in body:
                    self.refused += 1
                    raise OSError("cut")
                server.sendall(size + body)
        except OSError:
            pass
        finally:
            _close(client, server)

    @staticmethod
    def _responses(server: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := server.recv(65536):
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(client, server)


def _close(*socks: socket.socket) -> None:
    """Close sockets, ignoring those already closed."""
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
