"""Configuration: one frozen pydantic-settings object, read once at start-up (after Quix Streams).

Every field reads the environment variable ``PLEDGEWATCH_<FIELD>`` (upper case), or the
same name in a ``.env`` file in the working directory (the environment wins);
``KAFKA_BOOTSTRAP_SERVERS`` is honoured as well for the broker address. Nothing is read
at import time. pydantic-settings was chosen over hand-written parsing for typed,
validated fields whose errors name the variable and value.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["COMPACTED", "RETAINED", "SINGLE_PARTITION", "TOPICS", "Settings"]

ROOT = Path(__file__).resolve().parents[1]

#: Logical topic name -> suffix after the prefix (``docs/topics.md``).
TOPICS: dict[str, str] = {
    "telemetry": "telemetry",
    "loan-book": "loan-book",
    "rules-control": "rules-control",
    "rules-status": "rules-status",
    "valuations": "valuations",
    "loan-risk": "loan-risk",
    "alerts": "alerts",
    "margin-calls": "margin-calls",
    "watch-list": "watch-list",
    "classification": "classification",
    "dead-letter": "dead-letter",
    "asset-pledges": "internal.asset-pledges",
    "loan-valuations": "internal.loan-valuations",
    "portfolio-exposure": "internal.portfolio-exposure",
    "group-listing": "internal.group-listing",
    "access-log": "access-log",
}
#: Topics kept compacted (latest value per key).
COMPACTED = {
    "valuations",
    "loan-risk",
    "asset-pledges",
    "watch-list",
    "classification",
    "portfolio-exposure",
    "group-listing",
}
#: Topics of one partition: the portfolio's concentration spans every loan partition and has one owner
#: (docs/architecture.md, *The portfolio*); every worker reads the group listings whole, from one partition
#: (*The borrower group on the watch list*).
SINGLE_PARTITION = {"portfolio-exposure", "group-listing"}
#: Topics kept forever, one partition: every published rulebook stays readable (audit trail; restart
#: recovery), and every read of a customer's data stays on record (the access log, issue 22; a bank's
#: retention policy may shorten it on the topic).
RETAINED = {"rules-control", "rules-status", "access-log"}


class Settings(BaseSettings):
    """pledgewatch settings (env prefix ``PLEDGEWATCH_``).

    Attributes
    ----------
    bootstrap_servers
        Kafka bootstrap servers, ``host:port[,host:port]`` (env ``KAFKA_BOOTSTRAP_SERVERS`` or
        ``PLEDGEWATCH_BOOTSTRAP_SERVERS``); default the local broker of ``deploy/kafka``,
        ``127.0.0.1:$KAFKA_PORT`` (9092 when unset), so the CLI follows the port ``make`` used.
    topic_prefix
        Prefix of every topic name (``pledge.`` gives ``pledge.telemetry``...).
    app_id
        Kafka consumer group of the workers and prefix of faust's internal topics.
    partitions
        Partitions of the topics pledgewatch creates.
    window_s, allowed_lateness_s
        Tumbling window length and allowed lateness, seconds (86400 for ``daily_ridership`` assets).
    calibration_windows
        Windows after pledge that measure baseline and Q_0 when the appraisal lacks them (96 = one
        day of 15-min windows; 364 = one year of daily windows).
    shift_warning_every_s, shift_confirm_every_s
        Mean time in seconds between false level-shift signals on one asset in steady state: the
        early warning (default 1 year) and the confirmed shift a margin call can follow (default
        10 years). Shorter means faster calls on thin assets and more false ones
        (``docs/valuation.md``, level shifts); the confirmation must not be shorter than the warning.
    rulebook
        Rulebook file used until one arrives on the rules-control topic.
    store
        faust table store: ``rocksdb`` (rocksdict) or ``memory``; ``auto`` picks rocksdb when available.
    data_dir
        Where the worker keeps its local table state, one folder per app id
        (:attr:`state_dir`: ``<data_dir>/<app_id>``).
    metrics_port, metrics_host
        Port and bind address of the Prometheus ``/metrics`` endpoint (loopback by default; a
        container sets ``0.0.0.0`` so Prometheus can reach it).
    web_port, web_host, web_advertised_host
        Port and bind address of faust's web server and the query API (``docs/api.md``; loopback by
        default), and the host other workers reach it at (defaults to the bind address). A bind
        address other than loopback needs TLS and authentication (:meth:`check_web_exposure`).
    web_tls_certfile, web_tls_keyfile, web_tls_cafile
        PEM certificate and key of the web server (HTTPS; re-read when the files change), and the CA
        that signed the workers' certificates, checked when one worker forwards to another.
    auth_jwks, auth_jwks_cafile, auth_issuer, auth_audience, auth_roles_claim, auth_borrowers_claim, auth_rm_mapping
        OIDC/JWT bearer tokens of the bank's identity provider: its JWKS (file or ``https://`` URL, checked
        against ``auth_jwks_cafile`` or the system's CAs), the expected
        ``iss`` and ``aud``, the claims holding the role and a relationship manager's borrowers, and a
        YAML mapping ``subject: [borrower ids]`` for tokens without the latter (``streams.security``).
    api_tokens_file
        YAML file of static API tokens for machines, SHA-256 hashes only (``pledgewatch auth hash-token``).
    peer_token
        Secret the workers forward requests to each other with (a ``SecretStr``); the same on every worker.
    display_timezone
        Zone in which times are shown to people (stored times are UTC).
    max_clock_skew_s
        Records timed further in the future than this are dead-lettered, seconds.
    alertmanager_url
        Base URL of an Alertmanager (``http://127.0.0.1:9093``) to push alerts to; unset: no push.
    earliest_event_time
        Records and loan events timed before this are dead-lettered as ``implausible_time``
        (default 2015-01-01T00:00:00Z; set it earlier to replay older history).
    security_protocol
        Kafka security protocol of every client: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``
        or ``SASL_SSL``.
    sasl_mechanism, sasl_username, sasl_password
        SASL mechanism (``SCRAM-SHA-512`` default, ``SCRAM-SHA-256``, ``PLAIN``) and credentials; the
        password is a ``SecretStr``: shown as ``**********`` in reprs, logs and error messages.
    ssl_cafile, ssl_certfile, ssl_keyfile, ssl_check_hostname
        PEM files of the CA that signed the brokers' certificates (default: the system's CAs), and of
        a client certificate and key for mutual TLS; ``ssl_check_hostname`` checks the broker's name.
    max_message_bytes
        Largest input record accepted, bytes (default 1 MiB, Kafka's own default): larger records are
        dead-lettered as ``oversized`` without being parsed; also the producers' ``max_request_size``.
    holiday_calendar
        The bank's own holiday calendar for cure deadlines (CSV ``date,type[,name]``, ``type`` holiday or
        workday; ``monitor.holidays.load_calendar_file``): for the years it lists it overrides the
        ``chinese-calendar`` library; unset, a year without the State Council's notice is provisional
        (Monday–Friday without the fixed-date statutory holidays) and flagged on the margin call (C25).
    fetch_partition_bytes
        Most bytes one fetch returns of a partition (the consumer's ``max.partition.fetch.bytes``;
        default 8 MiB, at least ``max_message_bytes``). A fetch must hold more work than the worker
        does during the next fetch's round trip, or it waits for records with work waiting in the
        broker: with Kafka's default of 1 MiB and telemetry records that carry a poll (≈ 18 KB for
        59 observations) one fetch held ≈ 55 records, and a saturated worker sat idle 30–45 % of the
        time (17,000 observations/s at 0.6 of a core); 4 and 8 MiB kept it busy (25,000–31,000/s at
        1.0 core; docs/benchmarks.md). 8 MiB leaves room for polls of larger fleets; memory is
        bounded by this times the assigned partitions and by the fetch's total of 50 MiB
        (``fetch.max.bytes``, the client's default).
    hold_unknown
        Observations held, over all assets, for assets whose pledge has not reached the worker yet,
        before the partitions delivering more are paused (``streams.backpressure``); default 10,000:
        at ≈ 1.6 KB a decoded observation (a simulated bus poll's, measured with tracemalloc) about
        16 MB; 100 minutes of a 50-bus feed polled every 30 s, far more than a pledge routed in the
        ordinary course needs. A backtest refuses past it (``unknown_asset``).
    dedup_horizon_s
        How long (event time, seconds) a telemetry ``event_id`` is remembered: a repeat within it is
        counted as a duplicate and changes nothing (C02); default 6 h, or one window plus the
        allowed lateness when that is longer (daily windows). Beyond it a repeat is late
        (its window closed) and still changes nothing; hence at least ``window_s + allowed_lateness_s``.
        Loan events are remembered for the loan's life.
    session_timeout_s
        Consumer-group session timeout, seconds (default 15; faust's own is 60): how long the group
        waits for a worker that stopped heartbeating (killed, partitioned) before giving its
        partitions and state to the others. Within the broker's ``group.min.session.timeout.ms`` (6 s)
        and ``group.max.session.timeout.ms`` (30 min).
    delivery_timeout_s
        Seconds an output may wait for the broker's acknowledgement before the wait is counted as a
        publish failure (``pledgewatch_publish_failures_total``) and logged; the wait then goes on,
        without end: the input record stays unacknowledged meanwhile, so the input topic is the
        outbox and an outage longer than this still delivers every output once the broker is back.
        (The producer's own request timeout stays faust's 20 min: a shorter one crashed faust's
        changelog buffer in the C07b test and wedged the worker.)
    """

    model_config = SettingsConfigDict(
        env_prefix="PLEDGEWATCH_", env_file=".env", frozen=True, extra="ignore", populate_by_name=True
    )

    bootstrap_servers: str = Field(
        default_factory=lambda: f"127.0.0.1:{os.environ.get('KAFKA_PORT') or 9092}",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PLEDGEWATCH_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = Field(default="pledge.", pattern=r"^[A-Za-z0-9._\-]*$")
    app_id: str = Field(default="pledgewatch", pattern=r"^[A-Za-z0-9._\-]+$")
    partitions: int = Field(default=4, ge=1, le=1024)
    window_s: float = Field(default=900.0, gt=0)
    allowed_lateness_s: float = Field(default=600.0, ge=0)
    calibration_windows: int = Field(default=96, ge=1)
    shift_warning_every_s: float = Field(default=365 * 86_400.0, gt=0)
    shift_confirm_every_s: float = Field(default=3_650 * 86_400.0, gt=0)
    rulebook: Path = ROOT / "rules" / "rulebooks" / "default.yaml"
    store: Literal["auto", "rocksdb", "memory"] = "auto"
    data_dir: Path = ROOT / ".pledgewatch"
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    web_advertised_host: str | None = None
    web_tls_certfile: Path | None = None
    web_tls_keyfile: Path | None = None
    web_tls_cafile: Path | None = None
    auth_jwks: str | None = None
    auth_jwks_cafile: Path | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_roles_claim: str = "roles"
    auth_borrowers_claim: str = "borrowers"
    auth_rm_mapping: Path | None = None
    api_tokens_file: Path | None = None
    peer_token: SecretStr | None = None

    @property
    def web_tls(self) -> bool:
        """Whether the web server speaks HTTPS (certificate and key set)."""
        return self.web_tls_certfile is not None and self.web_tls_keyfile is not None

    @property
    def web_auth(self) -> bool:
        """Whether the query API asks for credentials (JWT keys or static API tokens set)."""
        return self.auth_jwks is not None or self.api_tokens_file is not None

    def check_web_exposure(self) -> None:
        """Refuse to serve loan data beyond this host without TLS and authentication (secure by default).

        Loopback (``127.0.0.0/8``, ``::1``, ``localhost``) reaches only this host's users; any other
        bind address of the web server (scale-out needs one: faust routes queries between workers) or
        of ``/metrics`` (per-loan series) reaches the network, where loan data must be encrypted and
        every reader known. Both servers use the same certificate and credentials.

        Raises
        ------
        ConfigError
            Naming the bind address and the settings missing.
        """
        import ipaddress

        from monitor.errors import ConfigError

        surfaces = [("web_host", self.web_host, "the query API would serve loan data")]
        if self.metrics_port:
            surfaces.append(("metrics_host", self.metrics_host, "/metrics would serve per-loan series"))
        for field, host, what in surfaces:
            bare = host.strip("[]")
            try:
                loopback = bare == "localhost" or ipaddress.ip_address(bare).is_loopback
            except ValueError:  # a host name: it may resolve to anything
                loopback = False
            if loopback:
                continue
            missing = []
            if not self.web_tls:
                missing.append("PLEDGEWATCH_WEB_TLS_CERTFILE and PLEDGEWATCH_WEB_TLS_KEYFILE")
            if not self.web_auth:
                missing.append(
                    "PLEDGEWATCH_AUTH_JWKS (with _AUTH_ISSUER, _AUTH_AUDIENCE) or PLEDGEWATCH_API_TOKENS_FILE"
                )
            if missing:
                msg = (
                    f"{field}: got {host!r}, not a loopback address, so {what} to the network; expected "
                    f"{' and '.join(missing)} set (docs/runbook.md, 'HTTP security'), or {field} 127.0.0.1"
                )
                raise ConfigError(msg)

    @property
    def state_dir(self) -> Path:
        """The worker's local table state: ``data_dir / app_id``.

        The table files are named by table and partition only, so two app ids sharing a folder
        would read each other's offsets; one folder per app id keeps a reused ``data_dir`` safe.
        """
        return self.data_dir / self.app_id

    @property
    def canonical_url(self) -> str:
        """URL other workers use to reach this one's web server (query API routing)."""
        host = self.web_advertised_host or ("127.0.0.1" if self.web_host in ("0.0.0.0", "::") else self.web_host)
        return f"{'https' if self.web_tls else 'http'}://{host}:{self.web_port}"

    display_timezone: str = "Asia/Shanghai"
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    alertmanager_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    earliest_event_time: AwareDatetime = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    max_message_bytes: int = Field(default=1_048_576, ge=1024, le=104_857_600)
    fetch_partition_bytes: int = Field(default=8_388_608, ge=65_536, le=52_428_800)
    holiday_calendar: Path | None = None
    session_timeout_s: float = Field(default=15.0, ge=6.0, le=1800.0)
    dedup_horizon_s: float | None = Field(default=None, ge=0)
    hold_unknown: int = Field(default=10_000, ge=1)
    delivery_timeout_s: float = Field(default=30.0, ge=1.0, le=1200.0)

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            msg = (
                f"security_protocol: {self.security_protocol} needs PLEDGEWATCH_SASL_USERNAME and "
                "PLEDGEWATCH_SASL_PASSWORD; expected both set, or security_protocol PLAINTEXT / SSL"
            )
            raise ValueError(msg)
        if self.dedup_horizon_s is not None and self.dedup_horizon_s < self.window_s + self.allowed_lateness_s:
            msg = (
                f"dedup_horizon_s: got {self.dedup_horizon_s:g}, expected at least window_s + allowed_lateness_s "
                f"= {self.window_s + self.allowed_lateness_s:g} (a repeat must be recognised while its window is open)"
            )
            raise ValueError(msg)
        if self.shift_confirm_every_s < self.shift_warning_every_s:
            msg = (
                f"shift_confirm_every_s: got {self.shift_confirm_every_s:g}, expected at least "
                f"shift_warning_every_s = {self.shift_warning_every_s:g} (a confirmed shift, which a margin call "
                "can follow, must be rarer by chance than the early warning before it)"
            )
            raise ValueError(msg)
        pem_files = (
            "auth_jwks_cafile",
            "ssl_cafile",
            "ssl_certfile",
            "ssl_keyfile",
            "web_tls_certfile",
            "web_tls_keyfile",
            "web_tls_cafile",
        )
        for name in pem_files:
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: got {str(path)!r}, expected a readable PEM file")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile / ssl_keyfile: got one of them, expected both (mutual TLS) or neither")
        if (self.web_tls_certfile is None) != (self.web_tls_keyfile is None):
            raise ValueError("web_tls_certfile / web_tls_keyfile: got one of them, expected both (HTTPS) or neither")
        if self.auth_jwks is not None and not (self.auth_issuer and self.auth_audience):
            msg = f"auth_jwks: set to {self.auth_jwks!r}, expected auth_issuer and auth_audience set as well"
            raise ValueError(msg)
        return self

    def ssl_context(self) -> Any:
        """An ``ssl.SSLContext`` for the ``SSL`` / ``SASL_SSL`` protocols, else ``None``."""
        if not self.security_protocol.endswith("SSL"):
            return None
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        ctx.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            ctx.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return ctx

    def kafka_options(self) -> dict[str, Any]:
        """Connection options shared by every kafka-python / aiokafka client (bootstrap, TLS, SASL).

        The keys are the ones both libraries take (``security_protocol``, ``sasl_mechanism``,
        ``sasl_plain_username``, ``sasl_plain_password``, ``ssl_context``). The password is revealed
        here only, into the client's own configuration.
        """
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        ctx = self.ssl_context()
        if ctx is not None:
            opts["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # checked by _check_security
            opts.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        return opts

    @property
    def effective_dedup_horizon_s(self) -> float:
        """``dedup_horizon_s``, or its default: 6 h or one window plus the lateness, whichever is longer."""
        if self.dedup_horizon_s is not None:
            return self.dedup_horizon_s
        return max(6 * 3600.0, self.window_s + self.allowed_lateness_s)

    def topic(self, logical: str) -> str:
        """Full topic name of a logical topic (``"alerts"`` -> ``"pledge.alerts"``)."""
        return self.topic_prefix + TOPICS[logical]
