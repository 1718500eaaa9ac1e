"""Configuration: one frozen pydantic-settings object, read once at start-up (after Quix Streams).

Every field reads the environment variable ``PLEDGEWATCH_<FIELD>`` (upper case), or the
same name in a ``.env`` file in the working directory (the environment wins);
``KAFKA_BOOTSTRAP_SERVERS`` is honoured as well for the broker address. Nothing is read
at import time. pydantic-settings was chosen over hand-written parsing for typed,
validated fields whose errors name the variable and value.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, AwareDatetime, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["TOPICS", "Settings"]

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
    "dead-letter": "dead-letter",
    "asset-pledges": "internal.asset-pledges",
    "loan-valuations": "internal.loan-valuations",
}
#: Topics kept compacted (latest value per key).
COMPACTED = {"valuations", "loan-risk", "asset-pledges"}
#: Topics kept forever: every published rulebook stays readable (audit trail; restart recovery).
RETAINED = {"rules-control", "rules-status"}


class Settings(BaseSettings):
    """pledgewatch settings (env prefix ``PLEDGEWATCH_``).

    Attributes
    ----------
    bootstrap_servers
        Kafka bootstrap servers, ``host:port[,host:port]`` (env ``KAFKA_BOOTSTRAP_SERVERS`` or
        ``PLEDGEWATCH_BOOTSTRAP_SERVERS``); default the local broker of ``deploy/kafka``.
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
    rulebook
        Rulebook file used until one arrives on the rules-control topic.
    store
        faust table store: ``rocksdb`` (rocksdict) or ``memory``; ``auto`` picks rocksdb when available.
    data_dir
        Where the worker keeps its local table state.
    metrics_port, metrics_host
        Port and bind address of the Prometheus ``/metrics`` endpoint (loopback by default; a
        container sets ``0.0.0.0`` so Prometheus can reach it).
    web_port, web_host, web_advertised_host
        Port and bind address of faust's web server and the query API (``docs/api.md``; loopback by
        default), and the host other workers reach it at (defaults to the bind address).
    display_timezone
        Zone in which times are shown to people (stored times are UTC).
    max_clock_skew_s
        Records timed further in the future than this are dead-lettered, seconds.
    alertmanager_url
        Base URL of an Alertmanager (``http://127.0.0.1:9093``) to push alerts to; unset: no push.
    earliest_event_time
        Records and loan events timed before this are dead-lettered as ``implausible_time``
        (default 2015-01-01T00:00:00Z; set it earlier to replay older history).
    """

    model_config = SettingsConfigDict(
        env_prefix="PLEDGEWATCH_", env_file=".env", frozen=True, extra="ignore", populate_by_name=True
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PLEDGEWATCH_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = Field(default="pledge.", pattern=r"^[A-Za-z0-9._\-]*$")
    app_id: str = Field(default="pledgewatch", pattern=r"^[A-Za-z0-9._\-]+$")
    partitions: int = Field(default=4, ge=1, le=1024)
    window_s: float = Field(default=900.0, gt=0)
    allowed_lateness_s: float = Field(default=600.0, ge=0)
    calibration_windows: int = Field(default=96, ge=1)
    rulebook: Path = ROOT / "rules" / "rulebooks" / "default.yaml"
    store: Literal["auto", "rocksdb", "memory"] = "auto"
    data_dir: Path = ROOT / ".pledgewatch"
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    web_advertised_host: str | None = None

    @property
    def canonical_url(self) -> str:
        """URL other workers use to reach this one's web server (query API routing)."""
        host = self.web_advertised_host or ("127.0.0.1" if self.web_host in ("0.0.0.0", "::") else self.web_host)
        return f"http://{host}:{self.web_port}"

    display_timezone: str = "Asia/Shanghai"
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    alertmanager_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    earliest_event_time: AwareDatetime = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)

    def topic(self, logical: str) -> str:
        """Full topic name of a logical topic (``"alerts"`` -> ``"pledge.alerts"``)."""
        return self.topic_prefix + TOPICS[logical]
