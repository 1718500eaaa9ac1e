"""Prometheus adapter of the core's sensor interface (``monitor.sensors.Sensor``).

All metrics live in one typed container built on an injected registry
(``Metrics.create(registry)``), so tests use a fresh ``CollectorRegistry``.
Label values come from bounded sets only: topic, outcome, reason code, rule id,
severity, loan id and asset id; never event, vehicle or trip ids.

The per-loan and per-asset gauges (about 20 series per loan with two assets) live
in :class:`Portfolio`, plain dicts with each series' exposition line prefix made
once, rendered by string joins: prometheus_client's generic path costs about
7 µs a series on this machine, so a scrape of 1,000 loans took 420 ms, and with
the GIL that time is taken from event processing (``benchmarks/scrape.py``).
:meth:`Metrics.exposition` is the ``/metrics`` body: the registry (pipeline
metrics, faust's sensor) followed by the portfolio.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from monitor.schemas import CATEGORIES, DIMENSIONS, Alert, CollateralValuation, LoanRiskSnapshot

log = logging.getLogger(__name__)

__all__ = ["ConcentrationGauges", "Metrics", "Portfolio", "PrometheusSensor", "serve_metrics"]

#: name -> (help, label names) of every portfolio family, in exposition order
PORTFOLIO_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pledgewatch_asset_value_yuan": ("Indexed collateral value of an asset", ("asset",)),
    "pledgewatch_asset_value_lower_yuan": ("Lower bound of the asset value", ("asset",)),
    "pledgewatch_asset_activity_index_ratio": ("Activity index I_t", ("asset",)),
    "pledgewatch_asset_quality_ratio": ("Quality score Q_t (0..1)", ("asset",)),
    "pledgewatch_asset_quality_dimension_ratio": ("Quality dimension level (0..1)", ("asset", "dimension")),
    "pledgewatch_asset_anomaly_score": ("HalfSpaceTrees score of the last window", ("asset",)),
    "pledgewatch_asset_last_event_timestamp_seconds": ("Event time of the asset's last record", ("asset",)),
    "pledgewatch_asset_last_valuation_timestamp_seconds": (
        "Wall-clock time this worker last revalued the asset",
        ("asset",),
    ),
    "pledgewatch_asset_pledge_info": (
        "1 while the asset is pledged to the loan (joins asset series to a loan)",
        ("asset", "loan"),
    ),
    "pledgewatch_loan_collateral_value_yuan": ("Collateral value of a loan", ("loan",)),
    "pledgewatch_loan_collateral_value_lower_yuan": (
        "Lower bound of the loan's collateral value (sum of its assets' lower bounds)",
        ("loan",),
    ),
    "pledgewatch_loan_outstanding_yuan": ("Outstanding incl. accrued interest", ("loan",)),
    "pledgewatch_loan_coverage_ratio": ("Collateral value / outstanding", ("loan",)),
    "pledgewatch_loan_line_ratio": (
        "The loan contract's coverage lines (warning, margin_call, close_out)",
        ("loan", "line"),
    ),
    "pledgewatch_loan_status": ("1 for the loan's current status", ("loan", "status")),
    "pledgewatch_loan_on_watch_list": ("1 while the loan is on the watch list, else 0", ("loan",)),
    "pledgewatch_loan_suggested_category": (
        "1 for the loan's suggested risk category (five-category classification), 0 for the others",
        ("loan", "category"),
    ),
}


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


@dataclass
class Portfolio:
    """The per-loan and per-asset gauges, rendered fast (text exposition format 0.0.4).

    ``series[name]`` maps a label-value tuple to ``[line prefix, value]``; the prefix
    (``name{asset="A1"} ``) is built once per series.
    """

    series: dict[str, dict[tuple[str, ...], list[object]]] = field(
        default_factory=lambda: {name: {} for name in PORTFOLIO_FAMILIES}
    )

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Set one series (created on first use)."""
        fam = self.series[name]
        cell = fam.get(labels)
        if cell is None:
            names = PORTFOLIO_FAMILIES[name][1]
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(names, labels, strict=True))
            fam[labels] = [f"{name}{{{inner}}} ", value]
        else:
            cell[1] = value

    def remove(self, name: str, labels: tuple[str, ...]) -> None:
        """Drop one series."""
        self.series[name].pop(labels, None)

    def remove_where(self, name: str, position: int, value: str) -> None:
        """Drop every series of ``name`` whose label at ``position`` is ``value`` (one family scanned once)."""
        fam = self.series[name]
        for key in [k for k in fam if k[position] == value]:
            del fam[key]

    def get(self, name: str, labels: tuple[str, ...]) -> float | None:
        """One series' value, or ``None``."""
        cell = self.series[name].get(labels)
        return None if cell is None else float(cell[1])  # type: ignore[arg-type]

    def count(self) -> int:
        """Number of series."""
        return sum(len(f) for f in self.series.values())

    def render(self) -> bytes:
        """Text exposition of every portfolio series."""
        parts: list[str] = []
        for name, (help_text, _labels) in PORTFOLIO_FAMILIES.items():
            fam = self.series[name]
            if not fam:
                continue
            parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            parts.extend(f"{prefix}{_fmt(value)}\n" for prefix, value in fam.values())  # type: ignore[arg-type]
        return "".join(parts).encode()


_STATUS = ("ok", "warning", "margin_call", "close_out", "calibrating", "closed")
_CATEGORY = CATEGORIES


class FiringAlerts(Collector):
    """``pledgewatch_alerts_firing``: computed at each scrape from the loans' alert states (case C14).

    A gauge kept by ``inc()`` on firing and ``dec()`` on resolve forgets what it counted when the
    worker restarts with an alert firing (it then reads nothing, and −1 once the alert resolves);
    this one counts the firing, non-shadow alerts of the loans the worker holds now, restored from
    the changelog like the rest of their state. A (rule, severity, loan) once reported reads 0 after
    its alerts resolve, not nothing. ``source`` is set by the worker once its loan book exists.
    """

    NAME = "pledgewatch_alerts_firing"
    HELP = "Alerts firing now (shadow rules excluded) by rule, severity and loan"

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Alert]] | None = None
        self._reported: set[tuple[str, str, str]] = set()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The metric's name and labels, without reading state."""
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["rule", "severity", "loan"])]

    def _firing(self) -> Tally[tuple[str, str, str]]:
        if self.source is None:
            return Tally()
        for _ in range(3):  # the event loop may change the loans while the scrape thread reads them
            try:
                return Tally(
                    (a.rule_id, a.severity, a.loan_id)
                    for a in list(self.source())
                    if a.status == "firing" and not a.shadow
                )
            except RuntimeError:
                continue
        return Tally()

    def forget(self, loan_id: str) -> None:
        """Stop reporting the loan's zeros (its partition was revoked: the worker now holding it reports it).

        Without this the set of (rule, severity, loan) reported before grew with every loan the worker
        ever held, and a sum over workers showed the loan at 0 here beside its real value there.
        """
        self._reported = {k for k in self._reported if k[2] != loan_id}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per (rule, severity, loan) firing now or reported before (then 0)."""
        firing = self._firing()
        self._reported |= firing.keys()
        g = GaugeMetricFamily(self.NAME, self.HELP, labels=["rule", "severity", "loan"])
        for key in sorted(self._reported):
            g.add_metric(list(key), float(firing.get(key, 0)))
        yield g


class ConcentrationGauges(Collector):
    """``pledgewatch_concentration_share`` and ``_limit`` by ``dimension`` and ``key``, read at each scrape.

    From the portfolio's rows (``monitor.core.portfolio``; ``source`` is set on the worker that owns the
    portfolio, the others report none). The label set is bounded: per dimension the :data:`MAX_KEYS`
    largest shares and every breached key; a key that falls out is no longer reported (Prometheus marks
    it stale). A limit of none (the rulebook sets no limit for the key) has no ``_limit`` sample.
    """

    SHARE = "pledgewatch_concentration_share"
    LIMIT = "pledgewatch_concentration_limit"
    #: keys reported per dimension, beyond the breached ones
    MAX_KEYS = 20

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Any]] | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The metrics' names and labels, without reading state."""
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["dimension", "key"]
        return (
            GaugeMetricFamily(
                self.SHARE, "Exposure a key leaves uncovered over the portfolio's exposure (0..1)", labels=labels
            ),
            GaugeMetricFamily(self.LIMIT, "The rulebook's concentration limit of the key (0..1)", labels=labels),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One share (and limit) sample per reported key."""
        share, limit = self._families()
        rows: list[Any] = []
        if self.source is not None:
            for _ in range(3):  # the event loop may change the book while the scrape thread reads it
                try:
                    rows = list(self.source())
                    break
                except RuntimeError:
                    continue
        shown: dict[str, int] = {}
        for r in rows:  # by dimension, then share, largest first
            n = shown.get(r.dimension, 0)
            if n >= self.MAX_KEYS and not r.breached:
                continue
            shown[r.dimension] = n + 1
            share.add_metric([r.dimension, r.key], r.share)
            if r.limit is not None:
                limit.add_metric([r.dimension, r.key], r.limit)
        yield share
        yield limit


@dataclass(frozen=True)
class Metrics:
    """Every pledgewatch metric (names and PromQL in ``docs/metrics.md``)."""

    events: Counter
    dead_letters: Counter
    alerts: Counter
    alerts_firing: FiringAlerts
    concentration: ConcentrationGauges
    event_to_alert: Histogram
    alertmanager_push_failures: Counter
    rule_errors: Counter
    provisional_deadlines: Counter
    publish_failures: Counter
    commit_failures: Counter
    api_requests: Counter
    rulebook_info: Gauge
    rulebook_rejected: Counter
    held_observations: Gauge
    paused_partitions: Gauge
    processing: Histogram
    registry: CollectorRegistry
    portfolio: Portfolio

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        """Register every metric on ``registry``."""
        p = "pledgewatch_"
        return cls(
            events=Counter(
                p + "events",
                "Input records by topic and outcome (ok, invalid, duplicate, late)",
                ["topic", "outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                p + "dead_letters",
                "Records sent to the dead-letter topic by reason code",
                ["reason"],
                registry=registry,
            ),
            alerts=Counter(
                p + "alerts",
                "Alert transitions by rule, severity and status",
                ["rule", "severity", "status", "shadow"],
                registry=registry,
            ),
            alerts_firing=_registered(FiringAlerts(), registry),
            concentration=_registered(ConcentrationGauges(), registry),
            event_to_alert=Histogram(
                p + "event_to_alert_seconds",
                "Wall time from the produce timestamp of the record that closed a window (or moved a loan) "
                "to the firing alert's acknowledged publication",
                registry=registry,
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            ),
            alertmanager_push_failures=Counter(
                p + "alertmanager_push_failures",
                "Pushes of alerts to Alertmanager's API that failed (the alert stays on the Kafka topic)",
                registry=registry,
            ),
            rule_errors=Counter(
                p + "rule_errors", "Rule conditions that raised at run time", ["rule"], registry=registry
            ),
            provisional_deadlines=Counter(
                p + "provisional_deadlines",
                "Margin calls issued with a cure deadline that counted a day of a year without the official "
                "holiday notice (deadline_provisional)",
                registry=registry,
            ),
            commit_failures=Counter(
                p + "commit_failures",
                "Offset commits the broker refused or that failed (a rebalance in progress, a fenced member)",
                registry=registry,
            ),
            api_requests=Counter(
                p + "api_requests",
                "Query API requests by action (list_loans, read_loan, read_asset, read_openapi, read_portfolio, "
                "read_concentration, read_report) and decision (allowed, refused, not_found, unavailable); each is "
                "also an entry on the access-log topic",
                ["action", "decision"],
                registry=registry,
            ),
            rulebook_info=Gauge(
                p + "rulebook_info", "1 for the rulebook this worker runs", ["rulebook", "version"], registry=registry
            ),
            rulebook_rejected=Counter(
                p + "rulebook_rejected", "Published rulebooks this worker rejected", ["rulebook"], registry=registry
            ),
            held_observations=Gauge(
                p + "held_observations",
                "Telemetry observations held for assets whose pledge has not reached this worker yet",
                registry=registry,
            ),
            paused_partitions=Gauge(
                p + "paused_partitions",
                "Telemetry partitions paused because the hold of not yet pledged assets is full (hold_unknown)",
                registry=registry,
            ),
            publish_failures=Counter(
                p + "publish_failures",
                "Publishes unacknowledged past the delivery timeout, or failed and sent again",
                ["topic"],
                registry=registry,
            ),
            processing=Histogram(
                p + "processing_seconds",
                "Processing time of one input record",
                ["topic"],
                registry=registry,
                buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            ),
            registry=registry,
            portfolio=Portfolio(),
        )

    def exposition(self, per_loan: bool = True) -> bytes:
        """The ``/metrics`` body: the registry's metrics, then the portfolio's.

        ``per_loan=False`` leaves out every series labelled by a loan or an asset (the portfolio's
        gauges and ``pledgewatch_alerts_firing``): pipeline health only, for a reader without the
        scraper's credential (issue 22).
        """
        if per_loan:
            return generate_latest(self.registry) + self.portfolio.render()
        return generate_latest(_Without(self.registry, PER_LOAN_REGISTRY_FAMILIES))  # type: ignore[arg-type]


#: Families of the registry labelled by loan, or by borrower group (the portfolio's are all per loan or asset).
PER_LOAN_REGISTRY_FAMILIES = frozenset({FiringAlerts.NAME, ConcentrationGauges.SHARE, ConcentrationGauges.LIMIT})


class _Without:
    """A registry's families but ``names`` (``generate_latest`` takes anything with ``collect``)."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self.registry, self.names = registry, names

    def collect(self) -> Iterator[Any]:
        return (family for family in self.registry.collect() if family.name not in self.names)


def serve_metrics(
    metrics: Metrics,
    port: int,
    host: str = "127.0.0.1",
    auth: Any = None,
    tls_context: Any = None,
) -> ThreadingWSGIServer:
    """Serve :meth:`Metrics.exposition` on ``http(s)://host:port/metrics`` from a daemon thread.

    ``auth`` (a :class:`streams.security.Authenticator`): every scrape needs a bearer token; the
    ``scraper``, ``risk_officer`` and ``auditor`` roles get every series, ``operations`` the pipeline's
    only (no loan or asset label); no or a bad token is 401, another role 403. ``tls_context``: an
    ``ssl.SSLContext`` for HTTPS (the handshake runs in the request's thread, so a slow client does
    not hold the others back).

    Raises
    ------
    OSError
        When the port cannot be bound.
    """
    from streams.security import FULL_METRICS_READERS, OPERATIONS, Forbidden, Unauthorized

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        per_loan = True
        if auth is not None:
            try:
                principal = auth.authenticate(environ.get("HTTP_AUTHORIZATION"))
                auth.require(principal, (*FULL_METRICS_READERS, OPERATIONS))
            except Unauthorized as exc:
                return _refuse(start_response, "401 Unauthorized", f"unauthorized: {exc.reason}")
            except Forbidden as exc:
                return _refuse(start_response, "403 Forbidden", f"forbidden: {exc.reason}")
            per_loan = principal.role in FULL_METRICS_READERS
        body = metrics.exposition(per_loan=per_loan)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = make_server(host, port, app, _MetricsServer, handler_class=_Quiet)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


class _MetricsServer(ThreadingWSGIServer):
    """The metrics server: a client's TLS failure (plain HTTP to the HTTPS port) is one log line, not a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import ssl
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError):
            log.info("metrics: connection from %s failed (%s): plain HTTP to the HTTPS port?", client_address, exc)
            return
        super().handle_error(request, client_address)


def _refuse(start_response: Any, status: str, message: str) -> list[bytes]:
    body = (message + "\n").encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", 'Bearer realm="pledgewatch-metrics"'))
    start_response(status, headers)
    return [body]


_C = TypeVar("_C", bound=Collector)


def _registered(collector: _C, registry: CollectorRegistry) -> _C:
    registry.register(collector)
    return collector


class PrometheusSensor:
    """Implements ``monitor.sensors.Sensor`` on :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self._pledged: dict[str, set[str]] = {}
        # children of the per-record metrics, cached: ``labels()`` takes a lock and builds a key each call
        self._events: dict[tuple[str, str], Any] = {}
        self._processing: dict[str, Any] = {}

    def on_event(self, topic: str, outcome: str) -> None:
        """Count one input record."""
        child = self._events.get((topic, outcome))
        if child is None:
            child = self._events[(topic, outcome)] = self.m.events.labels(topic, outcome)
        child.inc()

    def on_events(self, topic: str, outcome: str, n: int) -> None:
        """Count ``n`` input records of one outcome (one record's observations, counted once)."""
        child = self._events.get((topic, outcome))
        if child is None:
            child = self._events[(topic, outcome)] = self.m.events.labels(topic, outcome)
        child.inc(n)

    def on_dead_letter(self, reason: str) -> None:
        """Count one dead letter."""
        self.m.dead_letters.labels(reason).inc()

    def on_valuation(self, v: CollateralValuation, fresh: bool = True) -> None:
        """Export an asset's latest valuation (``fresh=False``: restored; its time is the takeover's, once)."""
        p, a = self.m.portfolio, (v.asset_id,)
        p.set("pledgewatch_asset_value_yuan", a, v.value)
        p.set("pledgewatch_asset_value_lower_yuan", a, v.value_lower)
        p.set("pledgewatch_asset_activity_index_ratio", a, v.activity_index)
        p.set("pledgewatch_asset_quality_ratio", a, v.quality_score)
        for d in DIMENSIONS:
            q = v.quality.get(d)
            if q is not None:
                p.set("pledgewatch_asset_quality_dimension_ratio", (v.asset_id, d), q)
        p.set("pledgewatch_asset_anomaly_score", a, v.anomaly_score)
        if v.last_event_at is not None:
            p.set("pledgewatch_asset_last_event_timestamp_seconds", a, v.last_event_at.timestamp())
        if fresh or p.get("pledgewatch_asset_last_valuation_timestamp_seconds", a) is None:
            # restored: the time this worker took the asset over (the valuation's own wall-clock time is not
            # in the state), so PledgewatchNoValuation fires if no valuation follows within its hour
            p.set("pledgewatch_asset_last_valuation_timestamp_seconds", a, time.time())

    def on_asset_forgotten(self, asset_id: str) -> None:
        """Drop the asset's series (its telemetry partition was revoked): the worker now holding it reports them.

        A stale copy here would count its value twice in a sum over workers, and its last-valuation time
        would age until ``PledgewatchNoValuation`` fired for an asset another worker values.
        """
        p = self.m.portfolio
        for name, (_help, labels) in PORTFOLIO_FAMILIES.items():
            if labels[0] == "asset" and name != "pledgewatch_asset_pledge_info":  # pledge info is the loan side's
                p.remove_where(name, 0, asset_id)

    def on_loan_risk(self, s: LoanRiskSnapshot) -> None:
        """Export a loan's risk position."""
        p, loan = self.m.portfolio, s.loan_id
        p.set("pledgewatch_loan_collateral_value_yuan", (loan,), s.collateral_value)
        p.set("pledgewatch_loan_collateral_value_lower_yuan", (loan,), s.collateral_value_lower)
        p.set("pledgewatch_loan_outstanding_yuan", (loan,), s.outstanding)
        if s.coverage_ratio is not None:
            p.set("pledgewatch_loan_coverage_ratio", (loan,), s.coverage_ratio)
        t = s.thresholds
        for line, value in (("warning", t.warning), ("margin_call", t.margin_call), ("close_out", t.close_out)):
            p.set("pledgewatch_loan_line_ratio", (loan, line), value)
        for st in _STATUS:
            p.set("pledgewatch_loan_status", (loan, st), 1.0 if st == s.status else 0.0)
        pledged = {a.asset_id for a in s.assets}
        for asset in pledged - self._pledged.get(loan, set()):
            p.set("pledgewatch_asset_pledge_info", (asset, loan), 1.0)
        for asset in self._pledged.get(loan, set()) - pledged:
            p.remove("pledgewatch_asset_pledge_info", (asset, loan))
        self._pledged[loan] = pledged

    def on_loan_watch(self, loan_id: str, on_watch_list: bool, category: str) -> None:
        """Export a loan's watch-list membership (1/0) and suggested category (1 for the current one)."""
        p = self.m.portfolio
        p.set("pledgewatch_loan_on_watch_list", (loan_id,), 1.0 if on_watch_list else 0.0)
        for c in _CATEGORY:
            p.set("pledgewatch_loan_suggested_category", (loan_id, c), 1.0 if c == category else 0.0)

    def on_loan_forgotten(self, loan_id: str) -> None:
        """Drop every series of the loan (its partition was revoked): the worker now holding it reports them.

        A stale copy here would count the loan twice in a sum over workers (``sum(pledgewatch_loan_on_watch_list)``,
        the portfolio's outstanding, the loans per status).
        """
        p = self.m.portfolio
        for name, (_help, labels) in PORTFOLIO_FAMILIES.items():
            if "loan" in labels:
                p.remove_where(name, labels.index("loan"), loan_id)
        self._pledged.pop(loan_id, None)
        self.m.alerts_firing.forget(loan_id)

    def on_alert(self, rule_id: str, severity: str, status: str, shadow: bool, loan_id: str = "") -> None:
        """Count an alert transition (the firing gauge is derived from state: :class:`FiringAlerts`)."""
        self.m.alerts.labels(rule_id, severity, status, "true" if shadow else "false").inc()

    def on_rule_error(self, rule_id: str) -> None:
        """Count a rule fault."""
        self.m.rule_errors.labels(rule_id).inc()

    def on_processed(self, topic: str, seconds: float) -> None:
        """Observe processing time of one record."""
        child = self._processing.get(topic)
        if child is None:
            child = self._processing[topic] = self.m.processing.labels(topic)
        child.observe(seconds)
