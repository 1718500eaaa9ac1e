"""The watch-list standing of loans a stream worker does not hold, for ``loan.group_others_on_watch_list``.

In the backtest one :class:`~monitor.core.loans.LoanBook` holds every loan, and a loan's group count
reads its partners' own state. In the stream the loans are spread over the loan partitions and so
over the workers: each worker publishes, for each loan of a borrower group it holds, the loan's
standing (:func:`standing`: listed for a reason other than a group criterion, as it stood before its
last change and since, closed) to ``internal.group-listing``, and reads that topic whole into a
:class:`GroupListings`, which its loan book consults for the loans it does not hold
(:meth:`~monitor.core.loans.LoanBook.group_listed`). A remote loan is then read exactly as a loan held
on another partition of the same worker is: as it stood just before the event time, from its last
recorded change, once its record has arrived (docs/architecture.md, *The borrower group on the watch
list*, for the bounded lag).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Protocol

from monitor.schemas import GroupListing

__all__ = ["GroupListings", "Listable", "counts_for_no_one", "standing"]


class Listable(Protocol):
    """What :func:`standing` reads of a loan (:class:`~monitor.core.loans.LoanMonitor` has it).

    A protocol rather than the class: :mod:`monitor.core.loans` imports this module, not the reverse.
    """

    loan_id: str
    opened: Any
    closed: bool
    own_listing: tuple[bool, float, bool]


def standing(loan: Listable) -> GroupListing | None:
    """The loan's record for ``internal.group-listing``, or ``None`` for a loan without ``borrower_group``.

    Built from :attr:`LoanMonitor.own_listing` ``(before, changed_at POSIX s, now)`` and ``closed``;
    ``changed_at`` is ``None`` while the listing never changed (``-inf`` in the loan's state).
    """
    group = getattr(loan.opened, "borrower_group", None)
    if group is None:
        return None
    before, changed_at, now = loan.own_listing
    at = None if changed_at == float("-inf") else dt.datetime.fromtimestamp(changed_at, dt.UTC)
    return GroupListing(
        loan_id=loan.loan_id,
        borrower_group=group,
        listed=now,
        listed_before=before,
        changed_at=at,
        closed=loan.closed,
    )


def counts_for_no_one(rec: GroupListing) -> bool:
    """Whether the record counts for no partner at any event time: never listed apart from the group, or closed.

    A loan whose first record would say so needs none (a reader without its record counts it for no one
    alike); once a record of it was published, every change is published (a closing included).
    """
    return rec.closed or not (rec.listed or rec.listed_before)


class GroupListings:
    """Every loan's latest :class:`GroupListing` as read from ``internal.group-listing``, by borrower group.

    Holds one record per loan of a group that has ever been listed or closed (a few hundred bytes
    each); a newer record of a loan replaces its older one, as on the compacted topic.
    """

    def __init__(self) -> None:
        #: loan id -> its latest record
        self.records: dict[str, GroupListing] = {}
        #: borrower group -> ids of the loans of it in :attr:`records`
        self.groups: dict[str, set[str]] = {}
        #: loan id -> (before, changed_at POSIX s or -inf, now, closed) of its record, as :meth:`count` reads it
        self._read: dict[str, tuple[bool, float, bool, bool]] = {}

    def apply(self, rec: GroupListing) -> None:
        """Take one loan's newer record (its group index moves with it, should the group differ)."""
        old = self.records.get(rec.loan_id)
        if old is not None and old.borrower_group != rec.borrower_group:
            self.groups.get(old.borrower_group, set()).discard(rec.loan_id)
        self.records[rec.loan_id] = rec
        self.groups.setdefault(rec.borrower_group, set()).add(rec.loan_id)
        changed = rec.changed_at.timestamp() if rec.changed_at is not None else float("-inf")
        self._read[rec.loan_id] = (rec.listed_before, changed, rec.listed, rec.closed)

    def delete(self, loan_id: str) -> None:
        """Forget a loan (a tombstone on the topic)."""
        old = self.records.pop(loan_id, None)
        self._read.pop(loan_id, None)
        if old is not None:
            self.groups.get(old.borrower_group, set()).discard(loan_id)

    def count(self, group: str, at: float, skip: Callable[[str], bool]) -> int:
        """Open loans of ``group`` listed for a reason other than a group criterion just before ``at``.

        ``at`` is an event time, POSIX s; a loan changed at ``at`` itself or later reads as it stood
        before that change (as :meth:`LoanMonitor.listed_apart_from_group`); ``skip(loan_id)`` leaves
        a loan out (the one evaluated, and those the caller holds and counts from their own state).
        A closed loan counts for no one.
        """
        n = 0
        for lid in self.groups.get(group, ()):
            if skip(lid):
                continue
            before, changed, now, closed = self._read[lid]
            if not closed and (now if changed < at else before):
                n += 1
        return n
