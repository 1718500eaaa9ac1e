"""The loan side of the core: one loan's risk, and a worker's book of loans.

:class:`LoanMonitor` holds one loan's contract, balances, asset values, rule lifecycle and margin
calls, watch list and suggested risk category; :class:`LoanBook` the loans of one worker.

Why one module of about 1,100 lines: :class:`LoanMonitor` is one state machine (balances, the loan
watermark, rule episodes, margin calls, the watch list with its warning-episode count and group
listing, and the suggested category move together on each event); its alert, margin-call, watch-list
and classification records are its outputs. Cut
apart, a reader would follow one transition across files. The classification criteria themselves
are pure functions in :mod:`monitor.core.classification`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from typing import Any, Literal

from monitor.core.classification import Signals, criteria, line_held, suggest
from monitor.core.common import Output, _event_digest, _ts
from monitor.core.group_listing import GroupListings
from monitor.core.margin import line_status, required_top_up
from monitor.core.money import fen, ratio, yuan
from monitor.errors import InputRejected
from monitor.holidays import cure_deadline
from monitor.schemas import (
    DIMENSIONS,
    Alert,
    AlertStatus,
    Appraisal,
    AssetValue,
    BalanceChanged,
    Category,
    ClassificationReason,
    ClassificationSuggestion,
    CollateralPledged,
    CollateralReleased,
    CollateralValuation,
    ExposureSlice,
    InterestAccrued,
    LinesChanged,
    LoanClosed,
    LoanExposure,
    LoanOpened,
    LoanRestructured,
    LoanRiskSnapshot,
    LoanStatus,
    MarginCall,
    PaymentOverdue,
    Repayment,
    WatchListEvent,
    WatchReason,
)
from monitor.sensors import Sensor
from monitor.valuation import MODEL_VERSIONS
from rules.classification import ClassificationPolicy
from rules.lifecycle import RULE_ERROR, RuleState, Transition, alert_id, evaluate_subject
from rules.rulebook import Rulebook, render_summary

#: The zone of core banking's business dates (a restructuring's observation ends at that day's midnight).
_BANK_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
_DAY_S = 86_400.0
#: Event-time span of ``loan.warnings_30d``, seconds (30 days; EBA/GL/2020/06 8.2 early-warning
#: indicators: repeated warnings within a month). The threshold on the count is the rulebook's.
WARNINGS_WINDOW_S = 30 * _DAY_S
#: The fact a watch-list rule reads when it lists a loan because of its borrower group (docs/rules.md):
#: a reason of such a rule is a *group* reason, and never counts for the group's other loans.
GROUP_FACT = "group_others_on_watch_list"

#: How a loan book tells one loan how many other loans of its borrower group are listed (for a reason
#: other than the group criterion) as of an event time: ``(loan, POSIX s) -> count``.
GroupView = Callable[["LoanMonitor", float], int]


def counts_as_warning(rule: Any) -> bool:
    """Whether a firing of ``rule`` counts towards ``loan.warnings_30d``.

    Counted: live (not shadow) rules of severity ``warning`` or ``critical`` of either scope, except
    the watch-list rules themselves (``action: watch_list``: a listing is not a warning about the loan,
    and counting it would let the list feed itself). Not counted: ``info`` rules, shadow rules (a rule
    on trial must not move the live list) and ``rule-evaluation-error`` alerts (a blind spot of the
    rulebook, not a signal about the borrower). Whether a counted firing opens an episode, and the
    collector's outages left out, is :meth:`LoanMonitor._note_warning`'s.
    """
    return rule.severity in ("warning", "critical") and not rule.shadow and rule.action != "watch_list"


def group_rule_ids(rulebook: Rulebook) -> frozenset[str]:
    """Ids of the rulebook's watch-list rules that read :data:`GROUP_FACT` (in ``when`` or ``resolve_when``)."""
    return frozenset(
        r.id
        for r in rulebook.rules
        if r.action == "watch_list" and (GROUP_FACT in r.when or GROUP_FACT in (r.resolve_when or ""))
    )


@dataclass(frozen=True, slots=True)
class _Restructuring:
    """A restructuring in force: its observation period's last day (bank's date), and the category before it."""

    restructured_on: dt.date
    observation_end: dt.date
    prior: Category

    @property
    def end_ts(self) -> float:
        """POSIX seconds at which the observation period is over: midnight after its last day, China time."""
        end = self.observation_end + dt.timedelta(days=1)
        return dt.datetime(end.year, end.month, end.day, tzinfo=_BANK_ZONE).timestamp()


@dataclass(slots=True)
class _AssetSlot:
    asset_id: str
    appraisal: Appraisal
    valuation: CollateralValuation | None = None

    @property
    def appraisal_value(self) -> float:
        return self.appraisal.value


class LoanMonitor:
    """One loan: contract, balances, latest asset valuations, rule lifecycle and margin calls.

    Parameters
    ----------
    opened
        The :class:`LoanOpened` event.
    """

    def __init__(self, opened: LoanOpened) -> None:
        self.loan_id = opened.loan_id
        self.opened = opened
        self.thresholds = opened.thresholds
        self.principal_outstanding = opened.outstanding
        self.accrued_interest = 0.0
        self.assets: dict[str, _AssetSlot] = {}
        self.rule_states: dict[str, RuleState] = {}
        self.margin_calls: dict[str, MarginCall] = {}
        self.closed = False
        self.as_of = opened.effective_at.timestamp()
        self.seen_events: dict[str, int] = {opened.event_id: _event_digest(opened)}
        #: alert id -> the alert, while it fires (the query API lists them)
        self.active_alerts: dict[str, Alert] = {}
        #: valuations received but not yet applied: held until every pledged asset is valued
        #: for their window (the loan's watermark), so the result does not depend on read order
        self.pending: dict[tuple[str, dt.datetime], CollateralValuation] = {}
        #: the watch list's reasons that hold now, by "rule id|subject" (rules with ``action: watch_list``)
        self.watch: dict[str, WatchReason] = {}
        #: event time (POSIX s) since which coverage has stayed below the warning line, or None
        self.below_warning_since: float | None = None
        #: core banking's newest days-past-due report: (days, as_of POSIX s), or None before any
        self.past_due: tuple[int, float] | None = None
        #: the latest restructuring (its observation period may be over), or None
        self.restructuring: _Restructuring | None = None
        #: the suggested risk category now and the criteria that give it (docs/rules.md, issue 19)
        self.category: Category = "normal"
        self.category_reasons: list[ClassificationReason] = []
        #: (below the warning line, below the close-out line) as the classification last judged them
        self.lines_held: tuple[bool, bool] = (False, False)
        #: asset id -> (asset profile, region) from its pledge, for the portfolio's concentration
        self.asset_meta: dict[str, tuple[str, str]] = {}
        #: the last exposure record sent to the portfolio (its content without the time), or None
        self.exposure_sent: tuple[Any, ...] | None = None
        #: alert id -> event time (POSIX s) it started firing, of the first alert of each warning episode
        #: of the last 30 days (:meth:`_note_warning`); ``loan.warnings_30d`` counts them
        self.warning_firings: dict[str, float] = {}
        #: ids of firing alerts left out of the count as a collector's outage: not an open warning episode
        self.outage_alerts: set[str] = set()
        #: whether the loan is listed for a reason other than the group criterion: (before the last
        #: change, event time of that change, now), so that the group's other loans read it as of an
        #: event time whatever order the loans are evaluated in (:meth:`listed_apart_from_group`)
        self.own_listing: tuple[bool, float, bool] = (False, float("-inf"), False)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("pending", {})  # loan states pickled before the loan watermark existed
        state.setdefault("watch", {})  # ... before the watch list existed (issue 19)
        state.setdefault("below_warning_since", None)
        state.setdefault("past_due", None)  # ... before the classification suggestion existed (issue 19)
        state.setdefault("restructuring", None)
        state.setdefault("category", "normal")
        state.setdefault("category_reasons", [])
        state.setdefault("lines_held", (False, False))
        state.setdefault("asset_meta", {})  # ... before the portfolio's concentration existed (issue 19)
        state.setdefault("exposure_sent", None)
        state.setdefault("warning_firings", {})  # ... before the repeated-warnings criterion (issue 19)
        state.setdefault("outage_alerts", set())
        state.setdefault("own_listing", (False, float("-inf"), bool(state.get("watch"))))
        self.__dict__.update(state)

    def days_past_due(self) -> int:
        """Whole days past due at the loan's event time: the newest report aged by the days since its ``as_of``.

        0 before any report and after a report of 0 (arrears cleared); a report above 0 grows by one
        each full day (86,400 s of event time) until core banking reports again: 5 days reported
        2.5 days ago reads 7.
        """
        if self.past_due is None or self.past_due[0] == 0:
            return 0
        days, as_of = self.past_due
        return days + max(0, int((self.as_of - as_of) // _DAY_S))

    def warnings_30d(self) -> int:
        """Warning episodes of the loan and its assets started in the last 30 days of event time.

        A warning episode starts when a warning-or-critical alert (:func:`counts_as_warning`) starts
        firing while no other such alert of the loan or its assets fires (:meth:`_note_warning`), and
        counts once, from that event time, whether it still fires or has resolved, until
        :data:`WARNINGS_WINDOW_S` (30 days, inclusive) after it started.
        """
        return sum(1 for t in self.warning_firings.values() if self.as_of - t <= WARNINGS_WINDOW_S)

    def listed_apart_from_group(self, at: float) -> bool:
        """Whether the loan was on the watch list for a reason other than the group criterion just before ``at``.

        ``at`` is an event time, POSIX s. A change of the loan's listing at ``at`` itself is not seen
        (its group's other loans see it at their next evaluation), so the answer does not depend on
        which loan of a group is evaluated first at one event time.
        """
        before, changed_at, now = self.own_listing
        return now if changed_at < at else before

    def observation_end(self) -> dt.date | None:
        """Last day of the restructuring observation period holding at the loan's event time, else ``None``."""
        r = self.restructuring
        return r.observation_end if r is not None and self.as_of < r.end_ts else None

    @property
    def outstanding(self) -> float:
        """Principal outstanding plus accrued interest, yuan (summed in decimal, exact to the fen)."""
        return yuan(fen(self.principal_outstanding) + fen(self.accrued_interest))

    def collateral(self) -> tuple[float, float]:
        """``(value, lower bound)`` of the pledged collateral in yuan (appraisal until first valuation).

        Each asset's value rounded half-up to the fen, summed in decimal (:mod:`monitor.core.money`).
        """
        v = lo = Decimal(0)
        for slot in self.assets.values():
            if slot.valuation is None:
                v += fen(slot.appraisal_value)
                lo += fen(slot.appraisal_value)
            else:
                v += fen(slot.valuation.value)
                lo += fen(slot.valuation.value_lower)
        return yuan(v), yuan(lo)

    def calibrating(self) -> bool:
        """True while no asset is pledged yet or any pledged asset has no active valuation yet."""
        return not self.assets or any(
            s.valuation is None or s.valuation.status == "calibrating" for s in self.assets.values()
        )

    def snapshot(self) -> LoanRiskSnapshot:
        """The loan's risk position now (coverage, LTV, required top-up)."""
        value, lower = self.collateral()
        out = self.outstanding
        cov = ratio(value, out)  # the exact quotient rounded once: an amount at a line is at the line
        t = self.thresholds
        status: LoanStatus
        if self.closed:
            status = "closed"
        elif self.calibrating():
            status = "calibrating"
        else:
            status = line_status(cov, t)
        # against the 90 % lower bound: the margin call is cured when the lower bound is back above
        # the warning line (rules/rulebooks/default.yaml), so that is what the top-up must restore
        top_c, top_r = required_top_up(t.warning, out, lower)
        return LoanRiskSnapshot(
            loan_id=self.loan_id,
            as_of=_ts(self.as_of),
            status=status,
            outstanding=out,
            collateral_value=value,
            collateral_value_lower=lower,
            coverage_ratio=cov,
            ltv=(1.0 / cov) if cov else None,
            thresholds=t,
            required_top_up_collateral=top_c,
            required_repayment=top_r,
            assets=[
                AssetValue(
                    asset_id=s.asset_id,
                    value=s.valuation.value if s.valuation else s.appraisal_value,
                    value_lower=s.valuation.value_lower if s.valuation else s.appraisal_value,
                    status=s.valuation.status if s.valuation else "pending",
                )
                for s in self.assets.values()
            ],
        )

    def _loan_facts(self, snap: LoanRiskSnapshot, group_others: int = 0) -> dict[str, Any]:
        t = snap.thresholds
        cov = snap.coverage_ratio if snap.coverage_ratio is not None else float("inf")
        out = snap.outstanding
        return {
            "id": self.loan_id,
            "outstanding": out,
            "currency": "CNY",
            "thresholds": {"warning": t.warning, "margin_call": t.margin_call, "close_out": t.close_out},
            "collateral_value": snap.collateral_value,
            "collateral_value_lower": snap.collateral_value_lower,
            "coverage_ratio": cov,
            "coverage_ratio_lower": ratio(snap.collateral_value_lower, out) if out > 0 else float("inf"),
            "ltv": snap.ltv if snap.ltv is not None else 0.0,
            "days_past_due": float(self.days_past_due()),
            # the suggestion of the previous evaluation (like on_watch_list), and the restructuring floor
            "suggested_category": self.category,
            "in_restructuring_observation": self.observation_end() is not None,
            # event-time durations for watch-list criteria (docs/rules.md): how long coverage has stayed
            # below the warning line, and since the newest margin call was issued (inf: never)
            "below_warning_seconds": (
                self.as_of - self.below_warning_since if self.below_warning_since is not None else 0.0
            ),
            "seconds_since_margin_call": (
                self.as_of - max(m.issued_at.timestamp() for m in self.margin_calls.values())
                if self.margin_calls
                else float("inf")
            ),
            "on_watch_list": bool(self.watch),
            # repeated warnings, and the borrower group's other listed loans (docs/rules.md, issue 19)
            "warnings_30d": float(self.warnings_30d()),
            GROUP_FACT: float(group_others),
            "required_top_up_collateral": snap.required_top_up_collateral,
            "required_repayment": snap.required_repayment,
            "calibrating": snap.status == "calibrating",
            "in_silence_grace": any(
                sl.valuation is not None and sl.valuation.in_silence_grace for sl in self.assets.values()
            ),
        }

    @staticmethod
    def _asset_facts(v: CollateralValuation) -> dict[str, Any]:
        return {
            "id": v.asset_id,
            "profile": v.asset_profile,
            "status": v.status,
            "value": v.value,
            "value_lower": v.value_lower,
            "value_upper": v.value_upper,
            "appraisal_value": v.appraisal_value,
            "activity": v.activity,
            "activity_expected": v.activity_expected,
            "activity_index": v.activity_index,
            "quality_score": v.quality_score,
            "quality": {k: (v.quality.get(k) if v.quality.get(k) is not None else 1.0) for k in DIMENSIONS},
            "anomaly_score": v.anomaly_score,
            "anomalous": v.anomalous,
            "drift": v.drift,
            "last_event_age_seconds": v.last_event_age_seconds,
            "silent_in_service_seconds": v.silent_in_service_seconds,
            "silent_alone_seconds": v.silent_alone_seconds,
            "in_silence_grace": v.in_silence_grace,
            "activity_shortfall": v.activity_shortfall,
            "shortfall_ratio": v.shortfall_ratio if v.shortfall_ratio is not None else 1.0,
            "service_expected": v.service_expected,
            "events_in_window": float(v.events_in_window),
            "windows_seen": float(v.windows_seen),
        }

    def why(self) -> str:
        """One line naming the asset that moved the collateral most and why (index vs quality)."""
        worst: tuple[float, str] | None = None
        for s in self.assets.values():
            v = s.valuation
            if v is None:
                continue
            change = v.value / v.appraisal_value - 1.0
            qf = min(v.quality_score / v.quality_baseline, 1.0) if v.quality_baseline > 0 else 1.0
            text = (
                f"{v.asset_id} {change:+.0%} vs appraisal: activity index {v.activity_index:.2f}, "
                f"quality {v.quality_score:.2f}/{v.quality_baseline:.2f} (×{qf:.2f})"
            )
            acc = v.quality.get("accessibility")
            if acc is not None and acc < 0.8:
                text += f", feed reachable {acc:.0%}"
            drivers = sorted((x, k) for k, x in v.attribution_since_pledge.items() if abs(x) >= 1.0)[:3]
            if drivers:
                text += "; since pledge " + _drivers_text(drivers)
            if worst is None or change < worst[0]:
                worst = (change, text)
        return worst[1] if worst else "no valuation yet"

    # --- inputs ---------------------------------------------------------------------------
    def on_loan_event(
        self, ev: Any, rulebook: Rulebook | None, sensor: Sensor, group: GroupView | None = None
    ) -> list[Output]:
        """Apply one loan event (idempotent by event id) and re-evaluate the loan's rules.

        ``group`` tells the loan its borrower group's other listed loans (``None``: none, as for a
        loan alone in its book).

        Raises
        ------
        InputRejected
            ``conflicting_duplicate`` when the event id was seen with different content.
        """
        digest = _event_digest(ev)
        seen = self.seen_events.get(ev.event_id)
        if seen is not None:
            if seen != digest:
                msg = f"event_id: {ev.event_id!r} was already applied with different content; expected a new id"
                raise InputRejected("conflicting_duplicate", msg)
            sensor.on_event("pledge.loan-book", "duplicate")
            return []
        self.seen_events[ev.event_id] = digest
        sensor.on_event("pledge.loan-book", "ok")
        self.as_of = max(self.as_of, ev.effective_at.timestamp())
        out: list[Output] = []
        if isinstance(ev, CollateralPledged):
            slot = self.assets.get(ev.asset_id)
            if slot is None or slot.appraisal != ev.appraisal:
                # a new pledge, or a re-appraisal (renewal): the appraisal stands until the next valuation
                self.assets[ev.asset_id] = _AssetSlot(ev.asset_id, ev.appraisal)
            self.asset_meta[ev.asset_id] = (ev.asset_profile, ev.region_key)
            out.append(Output("asset-pledges", ev.asset_id, ev))
        elif isinstance(ev, CollateralReleased):
            self.assets.pop(ev.asset_id, None)
            self.asset_meta.pop(ev.asset_id, None)
            out.append(Output("asset-pledges", ev.asset_id, ev))
        elif isinstance(ev, BalanceChanged):
            self.principal_outstanding = ev.outstanding
        elif isinstance(ev, Repayment):
            # in decimal: repaying the demanded amount leaves exactly the outstanding it was computed for
            interest, amount = fen(self.accrued_interest), fen(ev.amount)
            paid_interest = min(interest, amount)
            self.accrued_interest = yuan(interest - paid_interest)
            self.principal_outstanding = yuan(
                max(Decimal(0), fen(self.principal_outstanding) - (amount - paid_interest))
            )
        elif isinstance(ev, InterestAccrued):
            self.accrued_interest = yuan(fen(self.accrued_interest) + fen(ev.amount))
        elif isinstance(ev, LinesChanged):
            self.thresholds = ev.thresholds
        elif isinstance(ev, PaymentOverdue):
            # a report older than the one held (redelivered late) does not roll the count back
            if self.past_due is None or ev.as_of.timestamp() >= self.past_due[1]:
                self.past_due = (ev.days_past_due, ev.as_of.timestamp())
        elif isinstance(ev, LoanRestructured):
            policy = rulebook.classification if rulebook is not None else ClassificationPolicy()
            prior = suggest(criteria(self._signals(self.snapshot()), policy))  # the category before it
            days = dt.timedelta(days=policy.observation_days)
            end = ev.observation_end if ev.observation_end is not None else ev.restructured_on + days
            self.restructuring = _Restructuring(ev.restructured_on, end, prior)
        elif isinstance(ev, LoanClosed):
            self.closed = True
            for mc in list(self.margin_calls.values()):
                if mc.status == "issued":
                    self.margin_calls[mc.margin_call_id] = upd = mc.model_copy(
                        update={"status": "withdrawn", "updated_at": ev.effective_at}
                    )
                    out.append(Output("margin-calls", self.loan_id, upd))
        out.extend(self._evaluate(rulebook, [], sensor, group))
        out.extend(self._drain(rulebook, sensor, group))  # a release can move the loan watermark
        return out

    def watermark(self) -> float | None:
        """The loan's valuation watermark, epoch seconds: the earliest of its assets' newest window ends.

        Assets not valued yet do not hold it (the loan is calibrating until they are). ``None``
        while no pledged asset has been valued.
        """
        newest: dict[str, float] = {}
        for s in self.assets.values():
            if s.valuation is not None:
                newest[s.asset_id] = s.valuation.window_end.timestamp()
        for v in self.pending.values():
            t = v.window_end.timestamp()
            if v.asset_id in self.assets and t > newest.get(v.asset_id, float("-inf")):
                newest[v.asset_id] = t
        return min(newest.values()) if newest else None

    def on_valuation(
        self, val: CollateralValuation, rulebook: Rulebook | None, sensor: Sensor, group: GroupView | None = None
    ) -> list[Output]:
        """Take an asset's new valuation; judge the loan's lines once per window, when all its assets are valued.

        A loan with several pledged assets is evaluated for the window ending at ``W`` only once every
        asset that has been valued has a valuation ending at or after ``W`` (the loan watermark), and
        then once with all of that window's valuations. The outcome is thus the same whatever order
        the asset partitions are read in (a restarted worker or a rebalance changes that order).
        A valuation not newer than the one already applied for its asset (a redelivery after a
        crash) is dropped: it never rolls the loan back.
        """
        slot = self.assets.get(val.asset_id)
        if slot is None or self.closed:
            return []
        if slot.valuation is not None and val.window_end <= slot.valuation.window_end:
            return []
        self.pending[(val.asset_id, val.window_end)] = val
        return self._drain(rulebook, sensor, group)

    def _drain(self, rulebook: Rulebook | None, sensor: Sensor, group: GroupView | None = None) -> list[Output]:
        """Apply the held valuations up to the loan watermark, one evaluation per window end."""
        self.pending = {k: v for k, v in self.pending.items() if v.asset_id in self.assets}
        wm = self.watermark()
        if wm is None:
            return []
        ready = sorted(
            (k for k, v in self.pending.items() if v.window_end.timestamp() <= wm), key=lambda k: (k[1], k[0])
        )
        out: list[Output] = []
        for end, keys in groupby(ready, key=lambda k: k[1]):  # by window end, assets in id order
            batch = [self.pending.pop(k) for k in keys]
            for v in batch:  # each newer than its slot's valuation (on_valuation dropped the rest)
                self.assets[v.asset_id].valuation = v
            if not self.closed:
                self.as_of = max(self.as_of, end.timestamp())
                out.extend(self._evaluate(rulebook, batch, sensor, group))
        return out

    # --- rules ------------------------------------------------------------------------------
    def _evaluate(
        self, rulebook: Rulebook | None, vals: list[CollateralValuation], sensor: Sensor, group: GroupView | None
    ) -> list[Output]:
        out = self._judge(rulebook, vals, sensor, group)
        self.report_watch(sensor)  # after the watch list and the category moved with this evaluation
        return out

    def report_watch(self, sensor: Sensor) -> None:
        """Report the loan's watch-list membership and suggested category (each evaluation, and on restore)."""
        sensor.on_loan_watch(self.loan_id, bool(self.watch), self.category)

    def _judge(
        self, rulebook: Rulebook | None, vals: list[CollateralValuation], sensor: Sensor, group: GroupView | None
    ) -> list[Output]:
        snap = self.snapshot()
        sensor.on_loan_risk(snap)
        out: list[Output] = [Output("loan-risk", self.loan_id, snap), *self._exposure()]
        if rulebook is None or self.closed or snap.status == "calibrating":
            # lines are judged only once every pledged asset has an active valuation; the past-due
            # and restructuring floors apply from the start
            return out if self.closed else out + self._classify(rulebook, snap)
        now = self.as_of
        now_dt = _ts(now)
        below = snap.coverage_ratio is not None and snap.coverage_ratio < snap.thresholds.warning
        if not below:
            self.below_warning_since = None
        elif self.below_warning_since is None:
            self.below_warning_since = now
        # the 30 days' warnings: older firings are dropped (the count never needs them again)
        self.warning_firings = {a: t for a, t in self.warning_firings.items() if now - t <= WARNINGS_WINDOW_S}
        loan = self._loan_facts(snap, group(self, now) if group is not None else 0)
        window = (
            {"start": vals[0].window_start, "end": vals[0].window_end} if vals else {"start": now_dt, "end": now_dt}
        )
        facts: dict[str, Any] = {"loan": loan, "window": window, "now": now_dt}
        transitions = evaluate_subject(rulebook, "loan", self.loan_id, facts, self.rule_states, now, sensor)
        asset_facts: dict[str, dict[str, Any]] = {}
        for val in vals:
            af = self._asset_facts(val)
            asset_facts[val.asset_id] = af
            transitions += evaluate_subject(
                rulebook, "asset", val.asset_id, {**facts, "asset": af}, self.rule_states, now, sensor
            )
        why = self.why()
        for tr in transitions:
            out.extend(self._emit(tr, rulebook, snap, {**facts, "asset": asset_facts.get(tr.subject)}, why, sensor))
        for mc in list(self.margin_calls.values()):
            if mc.status == "issued" and now >= mc.cure_deadline.timestamp():
                self.margin_calls[mc.margin_call_id] = upd = mc.model_copy(
                    update={"status": "expired", "updated_at": now_dt}
                )
                out.append(Output("margin-calls", self.loan_id, upd))
                out.append(Output("alerts", self.loan_id, self._expiry_alert(upd, snap, rulebook, "firing", sensor)))
        out.extend(self._classify(rulebook, snap))
        return out

    # --- the portfolio's concentration ---------------------------------------------------------
    def exposure(self) -> LoanExposure:
        """The loan's exposure (outstanding, yuan) and each pledged asset's profile, region and values (yuan).

        An asset pledged before its profile and region were kept (an older checkpoint) takes the
        profile of its valuation and the region ``unknown``.
        """
        slices = []
        for s in self.assets.values():
            profile, region = self.asset_meta.get(
                s.asset_id, (s.valuation.asset_profile if s.valuation else "unknown", "unknown")
            )
            value = s.valuation.value if s.valuation is not None else s.appraisal_value
            slices.append(
                ExposureSlice(
                    asset_id=s.asset_id,
                    asset_profile=profile,
                    region=region,
                    appraisal_value=s.appraisal_value,
                    value=yuan(fen(value)),
                )
            )
        return LoanExposure(
            loan_id=self.loan_id,
            borrower_id=self.opened.borrower_id,
            borrower_group=self.opened.group,
            as_of=_ts(self.as_of),
            exposure=0.0 if self.closed else self.outstanding,
            closed=self.closed,
            slices=slices,
        )

    def _exposure(self) -> list[Output]:
        """The exposure record for the portfolio when it changed since the last one sent (not on time alone)."""
        rec = self.exposure()
        content = (rec.borrower_group, rec.exposure, rec.closed, tuple(rec.slices))
        if content == self.exposure_sent:
            return []
        self.exposure_sent = content
        return [Output("portfolio-exposure", self.loan_id, rec)]

    # --- classification suggestion ----------------------------------------------------------
    def _signals(self, snap: LoanRiskSnapshot) -> Signals:
        """What the classification criteria read now (coverage only while the lines are judged)."""
        judged = snap.status not in ("calibrating", "closed")
        expired = sorted(
            str(a.facts.get("margin_call_id")) for a in self.active_alerts.values() if a.rule_id == EXPIRED_RULE
        )
        issued = sorted(m.margin_call_id for m in self.margin_calls.values() if m.status == "issued")
        r = self.restructuring
        cov = snap.coverage_ratio if judged else None
        t = snap.thresholds
        held_warning, held_close_out = self.lines_held
        return Signals(
            days_past_due=self.days_past_due(),
            observation_end=self.observation_end(),
            prior_category=r.prior if r is not None else "normal",
            watch_reasons=tuple(sorted({w.rule_id for w in self.watch.values()})),
            coverage_ratio=cov,
            below_warning=line_held(held_warning, cov, t.warning, t.warning + (t.warning - t.margin_call)),
            below_close_out=line_held(held_close_out, cov, t.close_out, t.margin_call),
            open_margin_call=issued[0] if issued else None,
            expired_margin_call=expired[0] if expired else None,
        )

    def _classify(self, rulebook: Rulebook | None, snap: LoanRiskSnapshot) -> list[Output]:
        """Recompute the suggested category; a change is one ``ClassificationSuggestion``, never applied.

        The category is the most severe floor of the criteria that apply (:mod:`monitor.core.classification`,
        the bank's floors from the rulebook's ``classification:`` section). Its id derives from (loan,
        event time, previous, new category), so a replay re-emits the same record.
        """
        policy = rulebook.classification if rulebook is not None else ClassificationPolicy()
        signals = self._signals(snap)
        reasons = criteria(signals, policy)
        category = suggest(reasons)
        self.category_reasons = reasons
        self.lines_held = (signals.below_warning, signals.below_close_out)
        if category == self.category:
            return []
        previous, self.category = self.category, category
        at = _ts(self.as_of)
        raw = f"{self.loan_id}|{self.as_of:.3f}|{previous}|{category}".encode()
        event = ClassificationSuggestion(
            suggestion_id="cs-" + hashlib.sha256(raw).hexdigest()[:20],
            loan_id=self.loan_id,
            borrower_id=self.opened.borrower_id,
            previous_category=previous,
            category=category,
            at=at,
            reasons=reasons,
            facts={
                "days_past_due": float(signals.days_past_due),
                "restructuring_observation_end": (
                    signals.observation_end.isoformat() if signals.observation_end is not None else None
                ),
                "on_watch_list": bool(self.watch),
                "coverage_ratio": snap.coverage_ratio,
                "collateral_value": snap.collateral_value,
                "outstanding": snap.outstanding,
                "warning_line": snap.thresholds.warning,
                "close_out_line": snap.thresholds.close_out,
                "status": snap.status,
            },
            rulebook=rulebook.name if rulebook is not None else "",
            rulebook_version=rulebook.version if rulebook is not None else 0,
        )
        return [Output("classification", self.loan_id, event)]

    def _expiry_alert(
        self, mc: MarginCall, snap: LoanRiskSnapshot, rulebook: Rulebook, status: AlertStatus, sensor: Sensor
    ) -> Alert:
        """The critical close-out alert of a margin call whose cure deadline passed unmet (``margin-call-expired``).

        It fires once at expiry and resolves when the breach episode ends (coverage back above the
        warning line); its id derives from the margin call's, so a replay re-emits nothing new.
        """
        cov = snap.coverage_ratio
        cov_s = f"{cov:.1%}" if cov is not None else "n/a"
        deadline = mc.cure_deadline.isoformat(timespec="minutes")
        if status == "firing":
            zh = f"追加保证金通知 {mc.margin_call_id} 已于 {deadline} 到期未补足，覆盖率 {cov_s}：启动平仓处置"
            en = f"Margin call {mc.margin_call_id} expired unmet at {deadline}, coverage {cov_s}: start close-out"
        else:
            zh = f"到期追加保证金通知 {mc.margin_call_id} 已解除：覆盖率回到 {cov_s}"
            en = f"Expired margin call {mc.margin_call_id} resolved: coverage back to {cov_s}"
        sensor.on_alert(EXPIRED_RULE, "critical", status, False, self.loan_id)
        alert = Alert(
            alert_id="al-" + mc.margin_call_id[3:] + "-x",
            status=status,
            rule_id=EXPIRED_RULE,
            severity="critical",
            scope="loan",
            subject=self.loan_id,
            loan_id=self.loan_id,
            episode_start=mc.cure_deadline,
            at=_ts(self.as_of),
            summary=zh,
            summary_en=en,
            facts={
                "coverage_ratio": cov,
                "collateral_value": snap.collateral_value,
                "outstanding": snap.outstanding,
                "margin_call_id": mc.margin_call_id,
                "required_top_up_collateral": snap.required_top_up_collateral,
                "required_repayment": snap.required_repayment,
                "why": self.why(),
            },
            rulebook=rulebook.name,
            rulebook_version=rulebook.version,
            model_versions=MODEL_VERSIONS,
            shadow=False,
        )
        self._track(alert)
        return alert

    def _rule_error_alert(self, tr: Transition, rulebook: Rulebook, snap: LoanRiskSnapshot, sensor: Sensor) -> Output:
        """The ``rule-evaluation-error`` alert of a rule that cannot be evaluated for this loan (case C27).

        Its severity is the failing rule's own (a critical rule that cannot fire is a critical blind
        spot); it resolves once the rule evaluates again. One episode per (rule, subject): its id
        derives from the failing rule's, so two failing rules are two alerts.
        """
        rule = tr.rule
        where = tr.subject if tr.subject == self.loan_id else f"{tr.subject} ({self.loan_id})"
        if tr.status == "firing":
            zh = f"规则 {rule.id} 对 {where} 无法求值（{tr.error}）：修正前该规则不起作用"
            en = f"Rule {rule.id} cannot be evaluated for {where} ({tr.error}): it guards nothing until fixed"
        else:
            zh = f"规则 {rule.id} 对 {where} 恢复求值"
            en = f"Rule {rule.id} evaluates again for {where}"
        facts: dict[str, float | str | None] = {
            "rule": rule.id,
            "error": tr.error or None,
            "coverage_ratio": snap.coverage_ratio,
            "collateral_value": snap.collateral_value,
            "outstanding": snap.outstanding,
        }
        aid = alert_id(self.loan_id, f"{RULE_ERROR}:{rule.id}", tr.subject, tr.episode_start)
        alert = self._transition_alert(tr, RULE_ERROR, aid, (zh, en), facts, rulebook, sensor)
        return Output("alerts", self.loan_id, alert)

    def _transition_alert(
        self,
        tr: Transition,
        rule_id: str,
        aid: str,
        summary: tuple[str, str],
        facts: dict[str, float | str | None],
        rulebook: Rulebook,
        sensor: Sensor,
    ) -> Alert:
        """The ``Alert`` record of one lifecycle transition of ``tr.rule`` (under ``rule_id``), counted and tracked.

        ``summary`` is ``(zh, en)``; severity, scope, subject, episode and shadow come from the
        transition and its rule.
        """
        rule = tr.rule
        alert = Alert(
            alert_id=aid,
            status=tr.status,
            rule_id=rule_id,
            severity=rule.severity,
            scope=rule.scope,
            subject=tr.subject,
            loan_id=self.loan_id,
            asset_id=tr.subject if rule.scope == "asset" else None,
            episode_start=_ts(tr.episode_start),
            at=_ts(tr.at),
            summary=summary[0],
            summary_en=summary[1],
            facts=facts,
            rulebook=rulebook.name,
            rulebook_version=rulebook.version,
            model_versions=MODEL_VERSIONS,
            shadow=rule.shadow,
        )
        sensor.on_alert(rule_id, rule.severity, tr.status, rule.shadow, self.loan_id)
        self._track(alert)
        return alert

    def _track(self, alert: Alert) -> None:
        if alert.status == "firing":
            self.active_alerts[alert.alert_id] = alert
        else:
            self.active_alerts.pop(alert.alert_id, None)

    def _emit(
        self,
        tr: Transition,
        rulebook: Rulebook,
        snap: LoanRiskSnapshot,
        facts: dict[str, Any],
        why: str,
        sensor: Sensor,
    ) -> Iterable[Output]:
        rule = tr.rule
        if tr.error is not None:
            yield self._rule_error_alert(tr, rulebook, snap, sensor)
            return
        aid = alert_id(self.loan_id, rule.id, tr.subject, tr.episode_start)
        key_facts: dict[str, float | str | None] = {
            "coverage_ratio": snap.coverage_ratio,
            "collateral_value": snap.collateral_value,
            "outstanding": snap.outstanding,
            "warning_line": snap.thresholds.warning,
            "margin_call_line": snap.thresholds.margin_call,
            "close_out_line": snap.thresholds.close_out,
            "required_top_up_collateral": snap.required_top_up_collateral,
            "required_repayment": snap.required_repayment,
            "why": why,
        }
        asset = facts.get("asset")
        if asset is not None:
            key_facts.update(
                asset_value=asset["value"],
                activity_index=asset["activity_index"],
                quality_score=asset["quality_score"],
                accessibility=asset["quality"]["accessibility"],
                anomaly_score=asset["anomaly_score"],
            )
        if tr.status == "resolved":
            # the rule's summary describes the breach; a resolved alert says what holds now instead
            zh, en = _resolved_summary(rule.scope, tr.subject, snap, asset)
        else:
            render_facts = {k: v for k, v in facts.items() if v is not None}
            try:
                zh = render_summary(rule.summary["zh"], render_facts)
                en = render_summary(rule.summary["en"], render_facts)
            except (KeyError, ValueError):  # a rulebook checked by an older version
                zh = en = f"{rule.id} {tr.status} on {tr.subject}"
        alert = self._transition_alert(tr, rule.id, aid, (zh, en), key_facts, rulebook, sensor)
        yield Output("alerts", self.loan_id, alert)
        if tr.status == "firing" and counts_as_warning(rule):
            self._note_warning(aid, tr.at, rulebook, asset)
        if rule.action == "watch_list" and not rule.shadow:
            loan = facts["loan"]
            watch_facts = {**key_facts, "warnings_30d": loan["warnings_30d"], GROUP_FACT: loan[GROUP_FACT]}
            yield from self._watch(tr, alert, watch_facts, rulebook)
            return
        if rule.action != "margin_call" or rule.shadow:
            return
        mc_id = "mc-" + aid[3:]
        if tr.status == "firing" and mc_id not in self.margin_calls and snap.coverage_ratio is not None:
            deadline = cure_deadline(_ts(tr.at), self.opened.cure_period, self.opened.cure_convention)
            mc = MarginCall(
                margin_call_id=mc_id,
                loan_id=self.loan_id,
                status="issued",
                issued_at=_ts(tr.at),
                updated_at=_ts(tr.at),
                coverage_ratio=snap.coverage_ratio,
                collateral_value=snap.collateral_value,
                outstanding=snap.outstanding,
                warning_line=snap.thresholds.warning,
                required_top_up_collateral=snap.required_top_up_collateral,
                required_repayment=snap.required_repayment,
                cure_deadline=deadline.at,
                deadline_provisional=deadline.provisional,
                alert_id=aid,
                rulebook=rulebook.name,
                rulebook_version=rulebook.version,
            )
            self.margin_calls[mc_id] = mc
            yield Output("margin-calls", self.loan_id, mc)
        elif tr.status == "resolved" and (open_mc := self.margin_calls.get(mc_id)) is not None:
            if open_mc.status == "expired":
                yield Output("alerts", self.loan_id, self._expiry_alert(open_mc, snap, rulebook, "resolved", sensor))
                return
            if open_mc.status != "issued":
                return
            self.margin_calls[mc_id] = upd = open_mc.model_copy(update={"status": "cured", "updated_at": _ts(tr.at)})
            yield Output("margin-calls", self.loan_id, upd)

    def _watch(
        self, tr: Transition, alert: Alert, facts: dict[str, float | str | None], rulebook: Rulebook
    ) -> Iterable[Output]:
        """The watch-list record of a watch-list rule's transition: entered, updated (reasons changed) or exited.

        A loan is on the list while any of its watch-list rules fires (on any subject); each firing
        adds its reason, each resolution removes it, and the loan exits with the last one. The reason
        keeps the firing alert's summary (why it entered), not the resolved one's.
        """
        key = f"{tr.rule.id}|{tr.subject}"
        was_on = bool(self.watch)
        status: Literal["entered", "updated", "exited"]
        if tr.status == "firing":
            if key in self.watch:
                return
            self.watch[key] = WatchReason(
                rule_id=tr.rule.id,
                subject=tr.subject,
                since=_ts(tr.episode_start),
                alert_id=alert.alert_id,
                summary=alert.summary,
                summary_en=alert.summary_en,
            )
            status = "updated" if was_on else "entered"
        else:
            if self.watch.pop(key, None) is None:
                return
            status = "updated" if self.watch else "exited"
        self._note_own_listing(group_rule_ids(rulebook), tr.at)
        event = WatchListEvent(
            loan_id=self.loan_id,
            borrower_id=self.opened.borrower_id,
            status=status,
            on_list=bool(self.watch),
            rule_id=tr.rule.id,
            at=_ts(tr.at),
            reasons=sorted(self.watch.values(), key=lambda r: (r.since, r.rule_id, r.subject)),
            facts=facts,
            rulebook=rulebook.name,
            rulebook_version=rulebook.version,
        )
        yield Output("watch-list", self.loan_id, event)

    def _note_warning(self, aid: str, at: float, rulebook: Rulebook, asset: dict[str, Any] | None) -> None:
        """Count alert ``aid``, started firing at ``at`` (POSIX s), in ``warnings_30d`` if it opens a warning episode.

        A warning episode of the loan starts when a counted alert (:func:`counts_as_warning`) starts
        firing while no other counted alert of the loan or its assets fires: alerts that overlap, as a
        coverage fall firing the warning, margin-call and close-out alerts one after the other, are one
        warning, however many rules they are. An asset alert that fires while the asset's silence is
        one every other asset of its collector shares (``asset.silent_alone_seconds`` 0 of a silence
        above 0: the collector's own outage, as ``watch-feed-dark`` reads it) is not a warning about
        the borrower and is not counted: on the Madison week the collector's evening stops would list
        every healthy loan for three ``feed-silent`` episodes. Nor does it hold an episode open while it
        fires: a real warning that starts during the collector's outage is counted.
        """
        self.outage_alerts &= self.active_alerts.keys()  # those resolved since are forgotten
        if asset is not None and asset["silent_in_service_seconds"] > 0.0 and asset["silent_alone_seconds"] == 0.0:
            self.outage_alerts.add(aid)
            return
        counted = {r.id for r in rulebook.rules if counts_as_warning(r)}
        if not any(
            a.rule_id in counted and a.alert_id != aid and a.alert_id not in self.outage_alerts
            for a in self.active_alerts.values()
        ):
            self.warning_firings.setdefault(aid, at)

    def _note_own_listing(self, group_rules: frozenset[str], at: float) -> None:
        """Record, at event time ``at``, whether a reason other than a group criterion holds (:attr:`own_listing`)."""
        own = any(r.rule_id not in group_rules for r in self.watch.values())
        before, changed_at, now = self.own_listing
        if own == now:
            return
        # a second change at the same event time keeps the value from before that time
        self.own_listing = (before if changed_at == at else now, at, own)


def _resolved_summary(
    scope: str, subject: str, snap: LoanRiskSnapshot, asset: dict[str, Any] | None
) -> tuple[str, str]:
    """``(zh, en)`` text of a resolved alert: the facts now, never the firing text's breach.

    A loan-scope alert states the coverage now; an asset-scope one the asset's last event age,
    accessibility and quality now (issue 15: a resolved alert read "coverage 131.0 % below
    margin-call line 120.0 %" or "feed silent: last event 0 min ago").

    Examples
    --------
    >>> snap = LoanRiskSnapshot.model_construct(coverage_ratio=1.31)
    >>> _resolved_summary("loan", "L1", snap, None)
    ('已解除：覆盖率回到 131.0%', 'resolved: coverage now 131.0%')
    """
    if scope == "asset" and asset is not None:
        age_min = asset["last_event_age_seconds"] / 60.0
        acc = asset["quality"]["accessibility"]
        q = asset["quality_score"]
        zh = f"已解除：数据资产 {subject} 最近事件距今 {age_min:.0f} 分钟，可访问性 {acc:.1%}，数据质量 {q:.1%}"
        en = f"resolved: {subject} last event {age_min:.0f} min ago, accessibility {acc:.1%}, quality {q:.1%}"
        return zh, en
    cov = snap.coverage_ratio
    cov_s = f"{cov:.1%}" if cov is not None else "n/a"
    return f"已解除：覆盖率回到 {cov_s}", f"resolved: coverage now {cov_s}"


#: Rule id of the close-out alert raised when a margin call's cure deadline passes unmet.
EXPIRED_RULE = "margin-call-expired"


def _drivers_text(drivers: list[tuple[float, str]]) -> str:
    """``accessibility and completeness -¥282,584 each, activity -¥90,000``: parts of equal amount named together.

    A dark feed lowers accessibility and completeness alike (both fall to 0, equally weighted), so
    their parts are equal by the method, not by a fault: said once, "each", so no one reads a bug.
    """
    groups: dict[str, list[str]] = {}
    for x, k in drivers:
        groups.setdefault(f"{'+' if x >= 0 else '-'}¥{abs(x):,.0f}", []).append(k.removeprefix("quality."))
    return ", ".join(
        f"{' and '.join(names)} {amount}" + (" each" if len(names) > 1 else "") for amount, names in groups.items()
    )


def _group_of(loan: LoanMonitor) -> str | None:
    """The loan's explicit ``borrower_group``, or ``None`` (a loan opened without one; or pickled before the field)."""
    return getattr(loan.opened, "borrower_group", None)


class LoanBook:
    """The loan side of one worker: loans, their rule lifecycle and margin calls.

    Parameters
    ----------
    rulebook
        The active rulebook (replaceable between events).
    sensor
        Receives metrics hooks.
    """

    def __init__(self, rulebook: Rulebook, sensor: Sensor) -> None:
        self.rulebook = rulebook
        self.sensor = sensor
        self.loans: dict[str, LoanMonitor] = {}
        #: borrower group -> ids of the book's loans of it (loans without ``borrower_group`` are in none)
        self._groups: dict[str, set[str]] = {}
        #: a stream worker's view of the loans it does not hold (``internal.group-listing``), else None:
        #: the backtest's book holds every loan
        self.remote: GroupListings | None = None

    def on_loan_event(self, ev: Any) -> list[Output]:
        """Apply one decoded loan event; returns snapshots, alerts, margin calls and pledges.

        Raises
        ------
        InputRejected
            ``unknown_loan`` for an event of a loan never opened.
        """
        loan = self.loans.get(ev.loan_id)
        if isinstance(ev, LoanOpened):
            if loan is not None:
                if _event_digest(ev) != loan.seen_events.get(ev.event_id):
                    msg = f"loan_id: {ev.loan_id!r} is already open with other terms; expected a new loan id"
                    raise InputRejected("conflicting_duplicate", msg)
                self.sensor.on_event("pledge.loan-book", "duplicate")
                return []
            self.loans[ev.loan_id] = loan = LoanMonitor(ev)
            self._index(loan)
            self.sensor.on_event("pledge.loan-book", "ok")
            return [Output("loan-risk", ev.loan_id, loan.snapshot())]
        if loan is None:
            msg = f"loan_id: got {ev.loan_id!r}, expected a loan opened by a loan_opened event"
            raise InputRejected("unknown_loan", msg)
        return loan.on_loan_event(ev, self.rulebook, self.sensor, self.group_listed)

    def restore(self, loan: LoanMonitor) -> None:
        """Put a loan's state restored from the changelog (restart, rebalance) into the book.

        Its gauges (risk position once it has been judged, watch-list membership, category) are reported
        at once: they would otherwise be missing (a restarted worker, or the worker a rebalance gave it
        to) until the loan's next evaluation, up to a window later.
        """
        self.loans[loan.loan_id] = loan
        self._index(loan)
        if any(slot.valuation is not None for slot in loan.assets.values()):
            self.sensor.on_loan_risk(loan.snapshot())
        loan.report_watch(self.sensor)

    def on_valuation(self, loan_id: str, val: CollateralValuation) -> list[Output]:
        """Take an asset valuation routed to one loan."""
        loan = self.loans.get(loan_id)
        return [] if loan is None else loan.on_valuation(val, self.rulebook, self.sensor, self.group_listed)

    def _index(self, loan: LoanMonitor) -> None:
        if (g := _group_of(loan)) is not None:
            self._groups.setdefault(g, set()).add(loan.loan_id)

    def group_listed(self, loan: LoanMonitor, at: float) -> int:
        """``loan.group_others_on_watch_list``: the book's other open loans of its borrower group listed before ``at``.

        A loan counts when it was on the watch list for a reason other than the group criterion just
        before the event time ``at`` (POSIX s; :meth:`LoanMonitor.listed_apart_from_group`), so two
        loans of a group listed by the group criterion alone never keep each other on the list. A
        loan without ``borrower_group`` is a group of its own: 0. The in-process ``Monitor`` holds
        every loan; a stream worker holds the loans of its partitions and adds those of the group it
        does not hold from :attr:`remote` (their latest records read, as of ``at`` alike; a loan it
        holds counts once, from its own state), docs/rules.md, *The borrower group on the list*.
        """
        name = _group_of(loan)
        if name is None:
            return 0
        ids = self._groups.get(name)
        if ids is None or loan.loan_id not in ids:  # a loan put into ``loans`` from outside: index anew
            self._groups = {}
            for other in self.loans.values():
                self._index(other)
            ids = self._groups[name]
        n = 0
        for lid in ids:  # an id whose loan left the book (a revoked partition) is skipped
            peer = self.loans.get(lid)
            if peer is not None and peer is not loan and not peer.closed and peer.listed_apart_from_group(at):
                n += 1
        if self.remote is not None:
            held = self.loans
            n += self.remote.count(name, at, lambda lid: lid == loan.loan_id or lid in held)
        return n
