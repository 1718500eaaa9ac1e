"""Prometheus adapter of the core's sensor interface (``monitor.sensors.Sensor``).

All metrics live in one typed container built on an injected registry
(``Metrics.create(registry)``), so tests use a fresh ``CollectorRegistry``.
Label values come from bounded sets only: topic, outcome, reason code, rule id,
severity, loan id and asset id; never event, vehicle or trip ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.schemas import DIMENSIONS, CollateralValuation, LoanRiskSnapshot

__all__ = ["Metrics", "PrometheusSensor"]

_STATUS = ("ok", "warning", "margin_call", "close_out", "calibrating", "closed")


@dataclass(frozen=True)
class Metrics:
    """Every pledgewatch metric (names and PromQL in ``docs/metrics.md``)."""

    events: Counter
    dead_letters: Counter
    alerts: Counter
    alerts_firing: Gauge
    event_to_alert: Histogram
    alertmanager_push_failures: Counter
    rule_errors: Counter
    publish_failures: Counter
    rulebook_info: Gauge
    rulebook_rejected: Counter
    processing: Histogram
    asset_value: Gauge
    asset_value_lower: Gauge
    asset_activity_index: Gauge
    asset_quality: Gauge
    asset_quality_dimension: Gauge
    asset_anomaly: Gauge
    asset_last_event: Gauge
    asset_last_valuation: Gauge
    loan_collateral: Gauge
    loan_collateral_lower: Gauge
    loan_line: Gauge
    asset_pledge: Gauge
    loan_outstanding: Gauge
    loan_coverage: Gauge
    loan_status: Gauge

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
            alerts_firing=Gauge(
                p + "alerts_firing",
                "Alerts firing now (shadow rules excluded) by rule, severity and loan",
                ["rule", "severity", "loan"],
                registry=registry,
            ),
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
            rulebook_info=Gauge(
                p + "rulebook_info", "1 for the rulebook this worker runs", ["rulebook", "version"], registry=registry
            ),
            rulebook_rejected=Counter(
                p + "rulebook_rejected", "Published rulebooks this worker rejected", ["rulebook"], registry=registry
            ),
            publish_failures=Counter(
                p + "publish_failures", "Publish attempts that failed and were retried", ["topic"], registry=registry
            ),
            processing=Histogram(
                p + "processing_seconds",
                "Processing time of one input record",
                ["topic"],
                registry=registry,
                buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            ),
            asset_value=Gauge(
                p + "asset_value_yuan", "Indexed collateral value of an asset", ["asset"], registry=registry
            ),
            asset_value_lower=Gauge(
                p + "asset_value_lower_yuan", "Lower bound of the asset value", ["asset"], registry=registry
            ),
            asset_activity_index=Gauge(
                p + "asset_activity_index_ratio", "Activity index I_t", ["asset"], registry=registry
            ),
            asset_quality=Gauge(p + "asset_quality_ratio", "Quality score Q_t (0..1)", ["asset"], registry=registry),
            asset_quality_dimension=Gauge(
                p + "asset_quality_dimension_ratio",
                "Quality dimension level (0..1)",
                ["asset", "dimension"],
                registry=registry,
            ),
            asset_anomaly=Gauge(
                p + "asset_anomaly_score", "HalfSpaceTrees score of the last window", ["asset"], registry=registry
            ),
            asset_last_event=Gauge(
                p + "asset_last_event_timestamp_seconds",
                "Event time of the asset's last record",
                ["asset"],
                registry=registry,
            ),
            asset_last_valuation=Gauge(
                p + "asset_last_valuation_timestamp_seconds",
                "Wall-clock time this worker last revalued the asset",
                ["asset"],
                registry=registry,
            ),
            loan_collateral=Gauge(
                p + "loan_collateral_value_yuan", "Collateral value of a loan", ["loan"], registry=registry
            ),
            loan_collateral_lower=Gauge(
                p + "loan_collateral_value_lower_yuan",
                "Lower bound of the loan's collateral value (sum of its assets' lower bounds)",
                ["loan"],
                registry=registry,
            ),
            loan_line=Gauge(
                p + "loan_line_ratio",
                "The loan contract's coverage lines (warning, margin_call, close_out)",
                ["loan", "line"],
                registry=registry,
            ),
            asset_pledge=Gauge(
                p + "asset_pledge_info",
                "1 while the asset is pledged to the loan (joins asset series to a loan)",
                ["asset", "loan"],
                registry=registry,
            ),
            loan_outstanding=Gauge(
                p + "loan_outstanding_yuan", "Outstanding incl. accrued interest", ["loan"], registry=registry
            ),
            loan_coverage=Gauge(
                p + "loan_coverage_ratio", "Collateral value / outstanding", ["loan"], registry=registry
            ),
            loan_status=Gauge(
                p + "loan_status", "1 for the loan's current status", ["loan", "status"], registry=registry
            ),
        )


class PrometheusSensor:
    """Implements ``monitor.sensors.Sensor`` on :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self._pledged: dict[str, set[str]] = {}

    def on_event(self, topic: str, outcome: str) -> None:
        """Count one input record."""
        self.m.events.labels(topic, outcome).inc()

    def on_dead_letter(self, reason: str) -> None:
        """Count one dead letter."""
        self.m.dead_letters.labels(reason).inc()

    def on_valuation(self, v: CollateralValuation) -> None:
        """Export an asset's latest valuation."""
        a = v.asset_id
        self.m.asset_value.labels(a).set(v.value)
        self.m.asset_value_lower.labels(a).set(v.value_lower)
        self.m.asset_activity_index.labels(a).set(v.activity_index)
        self.m.asset_quality.labels(a).set(v.quality_score)
        for d in DIMENSIONS:
            q = v.quality.get(d)
            if q is not None:
                self.m.asset_quality_dimension.labels(a, d).set(q)
        self.m.asset_anomaly.labels(a).set(v.anomaly_score)
        if v.last_event_at is not None:
            self.m.asset_last_event.labels(a).set(v.last_event_at.timestamp())
        self.m.asset_last_valuation.labels(a).set_to_current_time()

    def on_loan_risk(self, s: LoanRiskSnapshot) -> None:
        """Export a loan's risk position."""
        loan = s.loan_id
        self.m.loan_collateral.labels(loan).set(s.collateral_value)
        self.m.loan_collateral_lower.labels(loan).set(s.collateral_value_lower)
        t = s.thresholds
        for line, value in (("warning", t.warning), ("margin_call", t.margin_call), ("close_out", t.close_out)):
            self.m.loan_line.labels(loan, line).set(value)
        pledged = {a.asset_id for a in s.assets}
        for asset in pledged - self._pledged.get(loan, set()):
            self.m.asset_pledge.labels(asset, loan).set(1.0)
        for asset in self._pledged.get(loan, set()) - pledged:
            self.m.asset_pledge.remove(asset, loan)
        self._pledged[loan] = pledged
        self.m.loan_outstanding.labels(loan).set(s.outstanding)
        if s.coverage_ratio is not None:
            self.m.loan_coverage.labels(loan).set(s.coverage_ratio)
        for st in _STATUS:
            self.m.loan_status.labels(loan, st).set(1.0 if st == s.status else 0.0)

    def on_alert(self, rule_id: str, severity: str, status: str, shadow: bool, loan_id: str = "") -> None:
        """Count an alert transition; keep the firing gauge per rule, severity and loan."""
        self.m.alerts.labels(rule_id, severity, status, "true" if shadow else "false").inc()
        if not shadow:
            firing = self.m.alerts_firing.labels(rule_id, severity, loan_id)
            if status == "firing":
                firing.inc()
            elif status == "resolved":
                firing.dec()

    def on_rule_error(self, rule_id: str) -> None:
        """Count a rule fault."""
        self.m.rule_errors.labels(rule_id).inc()

    def on_processed(self, topic: str, seconds: float) -> None:
        """Observe processing time of one record."""
        self.m.processing.labels(topic).observe(seconds)
