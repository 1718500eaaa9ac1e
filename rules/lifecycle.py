"""Alert lifecycle per (rule, subject): inactive → pending (``for``) → firing → resolved.

Event time drives every transition (the caller passes ``now``), so a backtest
and the stream agree. One transition is reported per change, never one per
event. ``resolve_when`` gives hysteresis; ``keep_firing_for`` holds a firing
alert after its condition clears; ``inhibits`` keeps lesser rules of the same
subject from starting to fire. Alert ids are deterministic: a hash of
(loan, rule, subject, episode start), so a replay or restart cannot double them
(after Prometheus alerting rules and Alertmanager fingerprints).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import cel

from monitor.schemas import AlertStatus
from rules.rulebook import Rule, Rulebook

__all__ = ["RuleSensor", "RuleState", "Transition", "alert_id", "evaluate_subject"]

log = logging.getLogger(__name__)


class RuleSensor(Protocol):
    """What the lifecycle reports about rule faults (a subset of ``monitor.sensors.Sensor``)."""

    def on_rule_error(self, rule_id: str) -> None:
        """A rule's condition raised at run time."""


def alert_id(loan_id: str, rule_id: str, subject: str, episode_start: float) -> str:
    """Deterministic alert id of one episode.

    Examples
    --------
    >>> alert_id("L1", "r", "L1", 0.0) == alert_id("L1", "r", "L1", 0.0)
    True
    """
    raw = f"{loan_id}|{rule_id}|{subject}|{episode_start:.3f}".encode()
    return "al-" + hashlib.sha256(raw).hexdigest()[:20]


@dataclass(slots=True)
class RuleState:
    """Lifecycle state of one (rule, subject); plain data so it pickles into a changelog."""

    phase: str = "inactive"
    since: float = 0.0
    last_true: float = 0.0
    errored: bool = False


@dataclass(slots=True)
class Transition:
    """One lifecycle change: the rule fired or resolved for a subject at ``at`` (POSIX s)."""

    rule: Rule
    subject: str
    status: AlertStatus
    episode_start: float
    at: float


def _run(rule: Rule, program: Any, ctx: Any, state: RuleState, sensor: RuleSensor | None) -> bool | None:
    try:
        result = program.execute(ctx)
    except Exception as exc:  # noqa: BLE001 - a rule fault must never stop the others
        if not state.errored:
            log.warning("rule %s errored (%s: %s); treated as not holding", rule.id, type(exc).__name__, exc)
            state.errored = True
        if sensor is not None:
            sensor.on_rule_error(rule.id)
        return None
    state.errored = False
    return bool(result)


def evaluate_subject(
    rulebook: Rulebook,
    scope: str,
    subject: str,
    facts: dict[str, Any],
    states: dict[str, RuleState],
    now: float,
    sensor: RuleSensor | None = None,
) -> list[Transition]:
    """Evaluate every rule of ``scope`` for one subject and advance its lifecycle.

    Parameters
    ----------
    rulebook
        The active rulebook.
    scope
        ``"loan"`` or ``"asset"``.
    subject
        Loan id or asset id.
    facts
        The facts (``docs/rules.md``); numbers as floats, times as aware datetimes.
    states
        ``"rule_id|subject"`` -> :class:`RuleState`, updated in place.
    now
        Event time of the evaluation, POSIX seconds.
    sensor
        Receives rule faults.

    Returns
    -------
    list of Transition
        Firing and resolved transitions, in rule evaluation order.
    """
    ctx = cel.Context()
    ctx.update(facts)
    out: list[Transition] = []
    firing = {
        r.id for r in rulebook.for_scope(scope) if (st := states.get(f"{r.id}|{subject}")) and st.phase == "firing"
    }
    for rule in rulebook.for_scope(scope):
        key = f"{rule.id}|{subject}"
        state = states.get(key)
        if state is None:
            state = states[key] = RuleState()
        cond = _run(rule, rule.program, ctx, state, sensor)
        if state.phase == "firing":
            if cond:
                state.last_true = now
                continue
            if rule.resolve_program is not None:
                resolved = _run(rule, rule.resolve_program, ctx, state, sensor)
            else:
                resolved = cond is False
            if resolved and now - state.last_true >= rule.keep_firing_for_s:
                out.append(Transition(rule, subject, "resolved", state.since, now))
                state.phase = "inactive"
                firing.discard(rule.id)
            continue
        if not cond:
            state.phase = "inactive"
            continue
        if state.phase == "inactive":
            state.phase, state.since = "pending", now
        inhibited = any(i in firing for i in rulebook.inhibitors_of(rule.id))
        if not inhibited and now - state.since >= rule.for_s:
            state.phase, state.last_true = "firing", now
            firing.add(rule.id)
            out.append(Transition(rule, subject, "firing", state.since, now))
    return out
