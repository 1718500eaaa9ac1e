"""The whole core in one process (:class:`Monitor`): the routing ``streams/`` does through topics, in memory."""

from __future__ import annotations

from typing import Any

from monitor.core.assets import AssetBook, AssetMonitor
from monitor.core.common import CoreParams, Output
from monitor.core.decode import Provenance
from monitor.core.loans import LoanBook, LoanMonitor
from monitor.core.portfolio import PortfolioBook
from monitor.errors import InputRejected
from monitor.schemas import (
    CollateralPledged,
    CollateralReleased,
    CollateralValuation,
    LoanExposure,
    TelemetryEvent,
)
from monitor.sensors import NullSensor, Sensor
from rules.rulebook import Rulebook


class Monitor:
    """The whole core in one process: the routing ``streams/`` does through topics, done in memory.

    Parameters
    ----------
    rulebook
        The active rulebook.
    params
        :class:`CoreParams`.
    sensor
        Receives metrics hooks.
    """

    def __init__(self, rulebook: Rulebook, params: CoreParams | None = None, sensor: Sensor | None = None) -> None:
        self.params = params or CoreParams()
        self.sensor: Sensor = sensor or NullSensor()
        self.asset_book = AssetBook(self.params, self.sensor)
        self.loan_book = LoanBook(rulebook, self.sensor)
        self.portfolio = PortfolioBook(self.sensor)

    @property
    def assets(self) -> dict[str, AssetMonitor]:
        """Pledged assets by id."""
        return self.asset_book.assets

    @property
    def loans(self) -> dict[str, LoanMonitor]:
        """Loans by id."""
        return self.loan_book.loans

    def _route(self, outputs: list[Output]) -> list[Output]:
        result: list[Output] = []
        for o in outputs:
            if isinstance(o.message, CollateralPledged | CollateralReleased):  # to the asset side
                result.extend(self._route(self.asset_book.register(o.message)))
                continue
            result.append(o)
            if isinstance(o.message, LoanExposure):  # to the one portfolio (streams: pledge.portfolio-exposure)
                result.extend(self.portfolio.on_exposure(o.message, self.loan_book.rulebook))
            if isinstance(o.message, CollateralValuation):  # to each loan the asset is pledged to
                for loan_id in o.message.loan_ids:  # routed on: a loan's exposure goes to the portfolio
                    result.extend(self._route(self.loan_book.on_valuation(loan_id, o.message)))
        return result

    def on_loan_event(self, ev: Any) -> list[Output]:
        """Apply one decoded loan event (see :meth:`LoanBook.on_loan_event`)."""
        return self._route(self.loan_book.on_loan_event(ev))

    def on_telemetry(self, ev: TelemetryEvent, source: Provenance | None = None) -> list[Output]:
        """Apply one decoded telemetry event from ``source`` (see :meth:`AssetBook.on_telemetry`)."""
        return self._route(self.asset_book.on_telemetry(ev, source=source))

    def on_reject(self, exc: InputRejected) -> None:
        """Account a rejected telemetry record."""
        self.asset_book.on_reject(exc)

    def flush(self, until: float) -> list[Output]:
        """Close every window that ends by ``until``, then judge the portfolio as of its newest time."""
        out = self._route(self.asset_book.flush(until))
        return out + self.portfolio.flush(self.loan_book.rulebook)
