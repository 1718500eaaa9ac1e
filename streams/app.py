"""The worker process: the faust app, its agents and timers around one :class:`streams.worker.Node`.

``create_app`` declares the agents (telemetry and pledges by asset; loan events and valuations by
loan; the portfolio), the reader of the loans' group listings, the state tables, the query API and
the timers (stream clock, checkpoint, offset-hole repair, Alertmanager re-sends); ``run_worker``
creates the topics, serves ``/metrics`` and runs it. The agents hand every record to the Node,
which orders what matters: the core's step, publishing, the checkpoint and the acknowledgement
(``streams/worker.py``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import logging
import logging.config
import os
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

import faust
from kafka.admin import NewTopic
from mode.utils.times import want_seconds

from monitor.core import AssetBook, CoreParams, LoanBook
from monitor.errors import ConfigError
from monitor.schemas import AccessLogEntry
from monitor.sensors import Sensor
from monitor.settings import Settings
from rules.rulebook import Rulebook
from streams.api import ApiSecurity, register_api
from streams.group_listing import GroupListingFeed
from streams.latest import read_outputs
from streams.rules_control import Decision, follow, read_history
from streams.security import Authenticator, ReloadingCertificate
from streams.store import ROCKSDB_URL, STATE_MAX_BYTES
from streams.worker import CHECKPOINT_INTERVAL_S, Node

__all__ = [
    "api_security",
    "authenticator",
    "changelog_topics",
    "count_commit_failures",
    "create_app",
    "run_worker",
    "web_certificate",
]

log = logging.getLogger(__name__)

#: Room for the record batch's own headers above :data:`STATE_MAX_BYTES`.
_BATCH_OVERHEAD_BYTES = 64 * 1024


def _store_url(settings: Settings) -> str:
    if settings.store == "memory":
        return "memory://"
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        if settings.store == "rocksdb":
            raise
        return "memory://"
    return ROCKSDB_URL


class _App(faust.App):
    """faust's app, with a shutdown that acknowledges what it checkpoints.

    A record is acknowledged only once its state is in the changelog, which the checkpoint timer
    does every few seconds (C01). On SIGTERM faust's consumer waits for every unacknowledged
    record before it stops, but the timers have stopped by then: a worker that had just handled
    records hung for its shutdown timeout and was killed. While the consumer stops, this drains
    the pending records (checkpoint, then acknowledge), so the stop is graceful and quick.
    """

    node: Any = None

    async def on_stop(self) -> None:
        node = self.node
        if node is None or node.manual is None:
            await super().on_stop()
            return

        async def drain() -> None:
            while True:
                for event in node.flush_pending(0.0):
                    await node.manual.ack(event)
                await asyncio.sleep(0.2)

        task = asyncio.ensure_future(drain())
        try:
            await super().on_stop()
        finally:
            task.cancel()


def count_commit_failures(app: faust.App, counter: Any) -> None:
    """Count offset commits that fail in ``counter`` (``pledgewatch_commit_failures_total``, case C05).

    faust's consumer logs a refused commit and returns ``False`` from ``Consumer._commit`` (its
    transport hook; aiokafka's ``CommitFailedError`` during a rebalance among them); nothing counts
    it. The hook is wrapped, not replaced: the commit itself is faust's.
    """
    consumer: Any = app.consumer
    original = consumer._commit

    async def commit(offsets: Any) -> bool:
        ok = bool(await original(offsets))
        if not ok and offsets:
            counter.inc()
        return ok

    consumer._commit = commit


def create_app(
    settings: Settings,
    rulebook: Rulebook,
    params: CoreParams,
    sensor: Sensor,
    metrics: Any = None,
    rules_from: int | None = None,
    origin: str = "file",
    pusher: Any = None,
    server_tls: ReloadingCertificate | None = None,
) -> tuple[faust.App, Node]:
    """Build the faust app and its agents; nothing connects until the worker starts.

    Parameters
    ----------
    settings
        Resolved settings.
    rulebook
        The rulebook to apply.
    params
        Core parameters.
    sensor
        Metrics sensor (Prometheus in production).
    metrics
        Optional ``streams.prometheus.Metrics`` (retried publishes, active rulebook).
    rules_from
        Offset of ``rules-control`` to follow new rulebooks from (``None``: no hot reload).
    origin
        Where the starting rulebook came from (``file`` or ``topic``), for the status record.
    pusher
        Optional ``streams.alertmanager.AlertmanagerPusher``.
    """
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(","))
    credentials: Any = None
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # Settings checks SASL_* has both username and password
        credentials = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=settings.ssl_context(),
        )
    elif settings.security_protocol == "SSL":
        credentials = faust.SSLCredentials(settings.ssl_context())
    # faust writes its lock and table files under datadir but does not create its parents
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if server_tls is None:
        server_tls = web_certificate(settings)
    app = _App(
        settings.app_id,
        broker=brokers,
        broker_credentials=credentials,
        producer_max_request_size=max(settings.max_message_bytes, STATE_MAX_BYTES) + _BATCH_OVERHEAD_BYTES,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        # a fetch must hold more work than the next fetch's round trip takes (Settings.fetch_partition_bytes)
        consumer_max_fetch_size=max(settings.max_message_bytes, settings.fetch_partition_bytes),
        store=_store_url(settings),
        # one folder per app id: the table files (asset-state-0.db ...) are named by table only, so a
        # folder reused by a worker of another app id would restore its offsets against our changelog
        # and crash recovery (ConsistencyError: persisted offset higher than highwater)
        datadir=str(settings.state_dir),
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.canonical_url,
        web_ssl_context=server_tls.context if server_tls is not None else None,
        autodiscover=False,
        table_cleanup_interval=3600.0,
        # the query API takes no request bodies: aiohttp refuses any over 64 KiB (its default is 1 MiB)
        web_application_options={"client_max_size": 65536},
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    telemetry_in = app.topic(settings.topic("telemetry"), settings.topic("asset-pledges"), **raw)
    loans_in = app.topic(settings.topic("loan-book"), settings.topic("loan-valuations"), **raw)

    def state_table(name: str) -> Any:
        # key_type / value_type bytes make faust use the raw codec for the store and the changelog
        return app.Table(
            name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            use_partitioner=True,
            extra_topic_configs={"max.message.bytes": str(STATE_MAX_BYTES + _BATCH_OVERHEAD_BYTES)},
        )

    asset_table, loan_table = state_table("asset-state"), state_table("loan-state")
    # one partition, as its input topic: the worker assigned it owns the portfolio (streams.portfolio)
    portfolio_in = app.topic(settings.topic("portfolio-exposure"), partitions=1, **raw)
    portfolio_table = app.Table(
        "portfolio-state", default=None, key_type=bytes, value_type=bytes, partitions=1, use_partitioner=True
    )
    # every worker reads the loans' group listings whole, outside the group (streams.group_listing)
    group_feed = GroupListingFeed(settings)
    node = Node(
        app,
        settings,
        AssetBook(params, sensor),
        LoanBook(rulebook, sensor),
        asset_table,
        loan_table,
        sensor,
        metrics,
        pusher,
        portfolio_table,
        group_feed,
    )
    app.node = node  # its shutdown drains the records waiting for a checkpoint

    register_api(
        app,
        node,
        loan_table,
        asset_table,
        api_security(app, settings, metrics),
        settings.display_timezone,
        portfolio_table,
        functools.partial(read_outputs, settings, complete=True),  # a report of the whole period or none
        params.valuation,
    )

    @app.agent(telemetry_in, name="telemetry")
    async def telemetry_agent(stream: faust.StreamT) -> None:
        # manual acks: a record is acked (its offset becomes committable) only once the state it
        # changed is in the changelog, so a SIGKILL never loses an event behind a committed offset (C01)
        manual = stream.noack()  # type: ignore[attr-defined]  # noack() exists on faust streams but is missing from StreamT
        node.manual = manual
        async for event in manual.events():
            await node.guarded(node.on_asset_record, event, "pledge.telemetry")
            for done in node.acks_after(event):
                await manual.ack(done)

    @app.on_partitions_revoked.connect
    def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        node.on_partitions_revoked(args[0] if args else ())  # the signal's one argument: the revoked TPs

    @app.agent(loans_in, name="loans")
    async def loan_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await node.guarded(node.on_loan_record, event, "pledge.loan-book")

    @app.agent(portfolio_in, name="portfolio")
    async def portfolio_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await node.guarded(node.on_portfolio_record, event, "internal.portfolio-exposure")

    @app.task
    async def group_listings() -> None:
        await group_feed.follow()

    @app.task
    async def rules() -> None:
        await node.apply_rulebook(Decision(rulebook, rulebook.name, rulebook.version, "at start"), origin)
        if rules_from is not None:
            await follow(settings, rules_from, node.apply_rulebook)

    @app.timer(interval=5.0)
    async def clock() -> None:
        await node.on_timer()
        await node.portfolio_idle()
        await node.offset_holes.run(node.in_flight)

    @app.timer(interval=CHECKPOINT_INTERVAL_S / 2)
    async def checkpoint() -> None:
        if node.manual is not None:
            for event in node.flush_pending(CHECKPOINT_INTERVAL_S):
                await node.manual.ack(event)

    if server_tls is not None:
        tls = server_tls  # the web server's and the metrics server's: one context, reloaded here

        @app.timer(interval=TLS_RELOAD_CHECK_S)
        async def reload_certificate() -> None:
            tls.maybe_reload()

    if pusher is not None:

        @app.timer(interval=pusher.resend_s)
        async def alertmanager_resend() -> None:
            pusher.resend()

    return app, node


def changelog_topics(app: faust.App, replication: int = 1) -> list[NewTopic]:
    """The changelog topic of each of the app's tables, configured as faust would declare it.

    Returns one ``kafka.admin.NewTopic`` a table: faust's name for it (``<app id>-<table>-changelog``),
    the table's partitions, ``cleanup.policy`` from its compacting/deleting flags, its retention and its
    extra topic configs. Created by :func:`streams.topics.create_topics` before the worker starts, so
    faust finds them existing instead of creating them a moment before it subscribes (see there why).
    """
    topics = []
    for table in app.tables.values():
        topic = table.changelog_topic
        configs = {str(k): str(v) for k, v in (topic.config or {}).items()}
        policy = [name for name, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
        if policy:
            configs["cleanup.policy"] = ",".join(policy)
        if topic.retention is not None:
            configs["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        partitions = topic.partitions or app.conf.topic_partitions
        topics.append(NewTopic(topic.get_topic_name(), partitions, replication, topic_configs=configs))
    return topics


#: Seconds between two looks at the web server's certificate files (a rotated certificate is in use
#: within this time; certificates are renewed days before they expire, so a minute is plenty).
TLS_RELOAD_CHECK_S = 60.0


def web_certificate(settings: Settings) -> ReloadingCertificate | None:
    """The HTTPS certificate of the web and metrics servers from the settings, or None for plain HTTP.

    Raises
    ------
    ConfigError
        When the certificate and key cannot be loaded.
    """
    if settings.web_tls_certfile is None or settings.web_tls_keyfile is None:
        return None
    return ReloadingCertificate(settings.web_tls_certfile, settings.web_tls_keyfile)


def _peer_secret(settings: Settings) -> str | None:
    """The workers' forwarding credential, revealed only to the authenticator and the forwarding client."""
    return settings.peer_token.get_secret_value() if settings.peer_token is not None else None


def authenticator(settings: Settings) -> Authenticator | None:
    """The credential check of the HTTP surfaces from the settings, or None when none is configured.

    Raises
    ------
    ConfigError
        A JWKS, tokens or mapping file that cannot be read or holds what is not expected.
    """
    if not settings.web_auth:
        return None
    peer = _peer_secret(settings)
    return Authenticator(
        settings.auth_jwks,
        settings.auth_issuer,
        settings.auth_audience,
        settings.auth_roles_claim,
        settings.auth_borrowers_claim,
        settings.auth_rm_mapping,
        settings.api_tokens_file,
        peer,
        settings.auth_jwks_cafile,
    )


def api_security(app: faust.App, settings: Settings, metrics: Any = None) -> ApiSecurity:
    """The query API's :class:`ApiSecurity` from the settings: who may read, forwarding, the access log.

    The access log goes to ``pledge.access-log`` through the worker's producer, each entry awaited
    until the broker has it; ``metrics`` (when given) counts every request.
    """
    import ssl

    auth = authenticator(settings)
    peer = _peer_secret(settings)
    client_ssl = None
    if settings.web_tls:
        cafile = str(settings.web_tls_cafile) if settings.web_tls_cafile is not None else None
        client_ssl = ssl.create_default_context(cafile=cafile)
    topic = settings.topic("access-log")

    async def access_log(entry: AccessLogEntry) -> None:
        value = entry.model_dump_json().encode()
        await app.producer.send_and_wait(topic, entry.subject.encode(), value, None, None, None)

    def count(action: str, decision: str) -> None:
        if metrics is not None:
            metrics.api_requests.labels(action, decision).inc()

    return ApiSecurity(auth, peer, client_ssl, access_log, count, settings.canonical_url)


#: The logger of the worker's routine lifecycle lines (start, clean stop, a rulebook activated, a
#: certificate reloaded): INFO, and shown at the default level, unlike the rest of INFO (a line per
#: clock tick, per dead letter), which ``--loglevel info`` adds.
LIFECYCLE_LOGGER = "pledgewatch.lifecycle"
lifecycle = logging.getLogger(LIFECYCLE_LOGGER)


class RedactSecrets(logging.Filter):
    """Replaces every given secret in a log record's message with ``**********`` (a handler's filter).

    Defence in depth for the settings' secrets (the SASL password, the peer token): pledgewatch never logs
    them (they are ``SecretStr``), but a library may log its own configuration: kafka-python's admin client
    logs every option it was given, the SASL password included, at DEBUG (the SASL test found it in a
    worker's ``--loglevel debug`` log).

    >>> f = RedactSecrets(["pw-123"])
    >>> rec = logging.LogRecord("kafka", logging.DEBUG, "", 0, "config %s", ({"sasl_plain_password": "pw-123"},), None)
    >>> f.filter(rec), rec.getMessage()
    (True, "config {'sasl_plain_password': '**********'}")
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message in place; every record passes."""
        if self.secrets:
            msg = record.getMessage()
            if any(s in msg for s in self.secrets):
                for s in self.secrets:
                    msg = msg.replace(s, "**********")
                record.msg, record.args = msg, None
        return True


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values of ``settings`` that no log line may show (for :class:`RedactSecrets`)."""
    return [s.get_secret_value() for s in (settings.sasl_password, settings.peer_token) if s is not None]


def worker_logging_config(
    loglevel: str = "warning",
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """The worker's logging set-up (``logging.config.dictConfig``), handed to faust in place of its own.

    Colour (ANSI escape codes) only when ``stream`` (stderr) is a terminal and ``NO_COLOR`` is unset
    (https://no-color.org): faust's default colours by whether *stdout* is a terminal while it writes
    to stderr, so ``pledgewatch worker 2> worker.log`` run from a terminal wrote escape codes into
    the file. ``FORCE_COLOR`` is not honoured: a log is read as text. faust, aiokafka and the rest
    log at ``loglevel``, pledgewatch's own loggers too; its lifecycle lines (:data:`LIFECYCLE_LOGGER`:
    the worker's start and clean stop, a rulebook activated, a certificate reloaded) at INFO or
    ``loglevel`` if lower, so they are INFO, routine, and still shown, and WARNING is kept for what
    an operator must act on. ``secrets`` are redacted from every line (:class:`RedactSecrets`).

    >>> import io
    >>> cfg = worker_logging_config("warning", io.StringIO(), {})
    >>> cfg["handlers"]["default"]["formatter"], cfg["root"]["level"], cfg["loggers"][LIFECYCLE_LOGGER]["level"]
    ('plain', 'WARNING', 'INFO')
    """
    stream = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: plain
        tty = False
    colour = tty and not env.get("NO_COLOR")
    level = logging.getLevelName(loglevel.upper())
    root_level = level if isinstance(level, int) else logging.WARNING
    own = min(root_level, logging.INFO)
    fmt = "[%(asctime)s] [%(process)s] [%(levelname)s] %(name)s: %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": fmt},
            "colour": {
                "()": "colorlog.ColoredFormatter",
                "format": "[%(asctime)s] [%(process)s] [%(levelname)s] %(log_color)s%(name)s: %(message)s%(reset)s",
                "stream": stream,
            },
        },
        "filters": {"redact": {"()": RedactSecrets, "secrets": list(secrets)}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "colour" if colour else "plain",
                "filters": ["redact"],
            }
        },
        "root": {"level": logging.getLevelName(root_level), "handlers": ["default"]},
        "loggers": {LIFECYCLE_LOGGER: {"level": logging.getLevelName(own)}},
    }


def run_worker(settings: Settings, rulebook: Rulebook, params: CoreParams, loglevel: str = "warning") -> None:
    """Create the topics, serve ``/metrics`` on loopback and run the faust worker until stopped.

    Raises
    ------
    ConfigError
        When the metrics port cannot be bound or no broker answers.
    """
    from faust.sensors.prometheus import FaustMetrics
    from prometheus_client import REGISTRY

    from streams.faust_sensor import FaustPrometheusMonitor
    from streams.prometheus import Metrics, PrometheusSensor, serve_metrics
    from streams.topics import create_topics

    # the worker's own log set-up from its first line (faust applies the same one when it starts)
    logging.config.dictConfig(worker_logging_config(loglevel, sys.stderr, secrets=settings_secrets(settings)))
    settings.check_web_exposure()  # before anything starts: a worker that would expose loan data does not
    server_tls = web_certificate(settings)
    create_topics(settings)
    metrics = Metrics.create(REGISTRY)
    if settings.metrics_port:
        try:
            tls_context = server_tls.context if server_tls is not None else None
            auth = authenticator(settings)
            serve_metrics(metrics, settings.metrics_port, settings.metrics_host, auth, tls_context)
        except OSError as exc:
            msg = (
                f"metrics_port: {settings.metrics_host}:{settings.metrics_port} cannot be bound ({exc.strerror}); "
                "set PLEDGEWATCH_METRICS_PORT to a free port"
            )
            raise ConfigError(msg) from None
    history, end = read_history(settings)
    origin = "file"
    for decision in history:
        if decision.rulebook is not None:
            rulebook, origin = decision.rulebook, "topic"
        else:
            log.warning(
                "ignoring invalid rulebook %s v%s on the control topic: %s",
                decision.name,
                decision.version,
                decision.reason,
            )
    pusher = None
    if settings.alertmanager_url:
        from streams.alertmanager import AlertmanagerPusher

        pusher = AlertmanagerPusher(settings.alertmanager_url, on_failure=metrics.alertmanager_push_failures.inc)
    app, _node = create_app(
        settings, rulebook, params, PrometheusSensor(metrics), metrics, end, origin, pusher, server_tls
    )
    # the tables' changelogs exist, and are in the metadata, before faust subscribes (create_topics)
    create_topics(settings, extra=changelog_topics(app))
    # faust's own sensor (consumer offsets and lag, commit latency, rebalances) on the same registry and
    # endpoint, under a fixed prefix so dashboards do not depend on the consumer group name; faust's
    # PrometheusMonitor with its per-record label lookups cached (streams.faust_sensor: the same series)
    app.monitor = FaustPrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, "faust"))
    count_commit_failures(app, metrics.commit_failures)
    lifecycle.info(
        "worker %s: broker %s, topics %s*, metrics %s://%s:%s/metrics, query API %s/api (%s), rulebook %s v%s",
        settings.app_id,
        settings.bootstrap_servers,
        settings.topic_prefix,
        "https" if settings.web_tls else "http",
        settings.metrics_host,
        settings.metrics_port,
        settings.canonical_url,
        "bearer tokens required" if settings.web_auth else "no credentials: loopback only",
        rulebook.name,
        rulebook.version,
    )
    # a native crash (SIGSEGV in a C extension such as RocksDB's) kills the process without a Python log
    # line; faulthandler writes every thread's stack to stderr first (a fault test saw a worker vanish)
    faulthandler.enable()
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        logging_config=worker_logging_config(loglevel, sys.stderr, secrets=settings_secrets(settings)),
    )
    if not sys.stdout.isatty():
        # faust's start-up spinner hides and shows the cursor with escape codes whether or not its output is a
        # terminal (faust.utils.terminal.Spinner.begin): in a log file they are noise ("[?25l" on line one)
        worker.spinner = None
    try:
        worker.execute_from_commandline()
    finally:  # a worker must never stop without saying why (a fault test saw one exit with nothing logged)
        crashed = getattr(app, "_crash_reason", None) is not None or getattr(worker, "_exitcode", 0) not in (0, None)
        (log.warning if crashed else lifecycle.info)(
            "worker %s: stopped (crash reason %r, exit code %s)",
            settings.app_id,
            getattr(app, "_crash_reason", None),
            getattr(worker, "_exitcode", None),
        )
