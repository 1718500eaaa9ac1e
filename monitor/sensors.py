"""The sensor interface through which the core reports metrics (after faust's sensor hooks).

The core never imports ``prometheus_client``; ``streams.prometheus`` implements
:class:`Sensor` for Prometheus, and :class:`NullSensor` / :class:`CountingSensor`
serve backtests and unit tests. Label values come only from bounded sets:
topic names, outcome and reason codes, rule ids, loan and asset ids.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from monitor.schemas import CollateralValuation, LoanRiskSnapshot

__all__ = ["CountingSensor", "NullSensor", "Sensor"]


class Sensor(Protocol):
    """Hooks the core calls; every method must be cheap and must not raise."""

    def on_event(self, topic: str, outcome: str) -> None:
        """One input record with outcome ``ok``, ``invalid``, ``duplicate`` or ``late``."""

    def on_events(self, topic: str, outcome: str, n: int) -> None:
        """``n`` observations of one record with the same outcome (a poll record's, counted once)."""

    def on_dead_letter(self, reason: str) -> None:
        """One record sent to the dead-letter topic with a reason code."""

    def on_valuation(self, valuation: CollateralValuation, fresh: bool = True) -> None:
        """An asset was revalued (``fresh``), or its last valuation was restored from the changelog.

        A restored valuation is not fresh: its wall-clock time is not in the state, so a sensor may
        report the time the worker took the asset over instead, never a later one.
        """

    def on_asset_forgotten(self, asset_id: str) -> None:
        """The worker no longer holds the asset (its partition was revoked): drop its per-asset report."""

    def on_loan_risk(self, snapshot: LoanRiskSnapshot) -> None:
        """A loan's risk position changed."""

    def on_loan_watch(self, loan_id: str, on_watch_list: bool, category: str) -> None:
        """A loan's watch-list membership and suggested category now (after each evaluation and on restore)."""

    def on_loan_forgotten(self, loan_id: str) -> None:
        """The worker no longer holds the loan (its partition was revoked): drop its per-loan report."""

    def on_alert(self, rule_id: str, severity: str, status: str, shadow: bool, loan_id: str = "") -> None:
        """An alert transition (``firing`` / ``resolved``)."""

    def on_rule_error(self, rule_id: str) -> None:
        """A rule's condition raised at run time."""

    def on_processed(self, topic: str, seconds: float) -> None:
        """One input record of ``topic`` took ``seconds`` to process (outputs published)."""


class NullSensor:
    """A sensor that records nothing."""

    def on_event(self, topic: str, outcome: str) -> None:
        """Ignore."""

    def on_events(self, topic: str, outcome: str, n: int) -> None:
        """Ignore."""

    def on_dead_letter(self, reason: str) -> None:
        """Ignore."""

    def on_valuation(self, valuation: CollateralValuation, fresh: bool = True) -> None:
        """Ignore."""

    def on_asset_forgotten(self, asset_id: str) -> None:
        """Ignore."""

    def on_loan_risk(self, snapshot: LoanRiskSnapshot) -> None:
        """Ignore."""

    def on_loan_watch(self, loan_id: str, on_watch_list: bool, category: str) -> None:
        """Ignore."""

    def on_loan_forgotten(self, loan_id: str) -> None:
        """Ignore."""

    def on_alert(self, rule_id: str, severity: str, status: str, shadow: bool, loan_id: str = "") -> None:
        """Ignore."""

    def on_rule_error(self, rule_id: str) -> None:
        """Ignore."""

    def on_processed(self, topic: str, seconds: float) -> None:
        """Ignore."""


class CountingSensor(NullSensor):
    """A sensor that counts calls, for tests and the backtest summary.

    Examples
    --------
    >>> s = CountingSensor(); s.on_event("pledge.telemetry", "ok"); s.events[("pledge.telemetry", "ok")]
    1
    """

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.rule_errors: Counter[str] = Counter()
        self.alerts: Counter[tuple[str, str]] = Counter()

    def on_event(self, topic: str, outcome: str) -> None:
        """Count by (topic, outcome)."""
        self.events[(topic, outcome)] += 1

    def on_events(self, topic: str, outcome: str, n: int) -> None:
        """Count ``n`` by (topic, outcome)."""
        self.events[(topic, outcome)] += n

    def on_dead_letter(self, reason: str) -> None:
        """Count by reason."""
        self.dead_letters[reason] += 1

    def on_alert(self, rule_id: str, severity: str, status: str, shadow: bool, loan_id: str = "") -> None:
        """Count by (rule, status)."""
        self.alerts[(rule_id, status)] += 1

    def on_rule_error(self, rule_id: str) -> None:
        """Count by rule."""
        self.rule_errors[rule_id] += 1
