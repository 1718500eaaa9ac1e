"""The portfolio's one owner in the stream: ``internal.portfolio-exposure`` → :class:`PortfolioBook` → alerts.

Concentration spans every loan, and the loans are spread over the loan-book's partitions and so over
the workers. The loan side therefore publishes each loan's :class:`~monitor.schemas.LoanExposure`
(when it changes) to ``internal.portfolio-exposure``: compacted, keyed by loan, **one partition**, so
exactly one worker of the group (the one assigned partition 0) reads it and owns the book. The
book's state is the latest record of each loan, kept in the ``portfolio-state`` table (one partition,
its changelog the durable copy: one small entry per loan, not the whole book per record) and the
firing breaches under :data:`BREACHES_KEY`. On a new assignment the owner rebuilds the book from the
table, so a restarted or rebalanced worker resumes with the same breaches (no second firing).

Judged as in a backtest (:meth:`PortfolioBook.on_exposure`): when a record of a later event time
arrives; and when the topic has been idle for :data:`IDLE_FLUSH_S` (the end of a backlog), so the
last instant is judged too. The interleaving of the loan partitions on the topic is the broker's, so
a breach may start at another record than in a backtest of the same history; the keys, shares and
limits that breach are the same (docs/architecture.md, *The portfolio*).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any

from pydantic import ValidationError

from monitor.core.portfolio import PortfolioBook
from monitor.schemas import LoanExposure
from monitor.sensors import Sensor

__all__ = ["BREACHES_KEY", "IDLE_FLUSH_S", "PortfolioOwner"]

log = logging.getLogger(__name__)

#: Key of the firing breaches and the book's time in the ``portfolio-state`` table (no loan id can be it).
BREACHES_KEY = b"__breaches__"
#: Seconds without a portfolio record after which the book is judged as of its newest time.
IDLE_FLUSH_S = 10.0


class PortfolioOwner:
    """The worker's portfolio: the book, its table, and the handling of one exposure record.

    Parameters
    ----------
    table
        faust table (bytes keys and values, one partition) of each loan's latest exposure record (JSON).
    rulebook
        Callable returning the active rulebook (the loan side's, swapped on reload).
    sensor
        Receives the breach alerts' hooks.
    """

    def __init__(self, table: Any, rulebook: Any, sensor: Sensor) -> None:
        self.table = table
        self.rulebook = rulebook
        self.book = PortfolioBook(sensor)
        self.sensor = sensor
        self.loaded = False
        #: monotonic time of the last record, and whether the book changed since it was last judged
        self.last_record = 0.0
        self.unjudged = False

    def load(self) -> int:
        """Rebuild the book from the table (after a start or a new assignment); returns the loans loaded."""
        book = PortfolioBook(self.sensor)
        n = 0
        for raw_key in list(self.table.keys()):
            key = raw_key if isinstance(raw_key, bytes) else str(raw_key).encode()
            raw = self.table.get(key)
            if not raw or key == BREACHES_KEY:
                continue
            try:
                book.apply(LoanExposure.model_validate_json(raw))
                n += 1
            except ValidationError as exc:
                log.error("unreadable portfolio state of %s: %s", key, exc)
        state = self.table.get(BREACHES_KEY)
        if state:
            book.breaches, book.as_of = pickle.loads(state)  # only our own changelog is read here
        self.book, self.loaded = book, True
        return n

    def on_record(self, value: bytes | None) -> list[Any]:
        """Apply one record of ``internal.portfolio-exposure``; returns the outputs (breach alerts) to publish."""
        if not self.loaded:
            self.load()
        try:
            rec = LoanExposure.model_validate_json(value or b"")
        except ValidationError as exc:
            log.error("unreadable internal exposure record: %s", exc)
            return []
        self.last_record = time.monotonic()
        self.unjudged = True
        outputs = self.book.on_exposure(rec, self.rulebook())
        return outputs

    def save(self, loan_id: str) -> None:
        """Checkpoint one loan's record and the breaches, after the outputs are acknowledged."""
        held = self.book.loans.get(loan_id)
        key = loan_id.encode()
        if held is None:
            if key in self.table:
                del self.table[key]
        else:
            self.table[key] = held[1].model_dump_json().encode()
        self.table[BREACHES_KEY] = pickle.dumps((self.book.breaches, self.book.as_of), protocol=5)

    def idle_flush(self, now: float | None = None) -> list[Any]:
        """Judge the book as of its newest time once the topic has been idle :data:`IDLE_FLUSH_S`."""
        now = time.monotonic() if now is None else now
        if not self.loaded or not self.unjudged or now - self.last_record < IDLE_FLUSH_S:
            return []
        self.unjudged = False
        return self.book.flush(self.rulebook())

    def save_breaches(self) -> None:
        """Checkpoint the breaches alone (after an idle judgement)."""
        self.table[BREACHES_KEY] = pickle.dumps((self.book.breaches, self.book.as_of), protocol=5)
