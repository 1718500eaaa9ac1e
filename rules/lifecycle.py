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


#: Rule id of the alert raised while a rule cannot be evaluated (case C27): a rule that errors is never
#: silently "not holding" — a critical rule that never fires would be a blind spot nobody sees.
RULE_ERROR = "rule-evaluation-error"


@dataclass(slots=True)
class RuleState:
    """Lifecycle state of one (rule, subject); plain data so it pickles into a changelog.

    ``errored`` / ``error_since`` (POSIX s): the rule's condition raised at its last evaluation, and
    since when (the episode of its ``rule-evaluation-error`` alert).
    """

    phase: str = "inactive"
    since: float = 0.0
    last_true: float = 0.0
    errored: bool = False
    error_since: float = 0.0

    def __setstate__(self, state: Any) -> None:
        """Restore; a checkpoint from before ``error_since`` existed takes its default."""
        self.phase, self.since, self.last_true, self.errored, self.error_since = "inactive", 0.0, 0.0, False, 0.0
        slots = state[1] if isinstance(state, tuple) else state  # pickle's default state of a slots class
        for name, value in (slots or {}).items():
            setattr(self, name, value)


@dataclass(slots=True)
class Transition:
    """One lifecycle change: the rule fired or resolved for a subject at ``at`` (POSIX s).

    ``error`` is ``None`` for the rule's own alert; for its ``rule-evaluation-error`` alert
    (:data:`RULE_ERROR`) it is the error (``firing``) or ``""`` (``resolved``: it evaluates again).
    """

    rule: Rule
    subject: str
    status: AlertStatus
    episode_start: float
    at: float
    error: str | None = None


def _run(rule: Rule, program: Any, ctx: Any, sensor: RuleSensor | None) -> tuple[bool | None, str | None]:
    """``(result, None)``, or ``(None, "Type: message")`` when the condition raised (counted in the sensor)."""
    try:
        result = program.execute(ctx)
    except Exception as exc:  # noqa: BLE001 - a rule fault must never stop the others
        if sensor is not None:
            sensor.on_rule_error(rule.id)
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return bool(result), None


def _error_transition(rule: Rule, subject: str, state: RuleState, error: str | None, now: float) -> list[Transition]:
    """The ``rule-evaluation-error`` episode: it fires when the rule starts failing, resolves when it evaluates."""
    if error is not None and not state.errored:
        log.warning("rule %s on %s cannot be evaluated (%s): rule-evaluation-error alert", rule.id, subject, error)
        state.errored, state.error_since = True, now
        return [Transition(rule, subject, "firing", now, now, error=error)]
    if error is None and state.errored:
        state.errored = False
        return [Transition(rule, subject, "resolved", state.error_since, now, error="")]
    return []


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
        cond, error = _run(rule, rule.program, ctx, sensor)
        resolved: bool | None = None
        if state.phase == "firing" and not cond:
            if rule.resolve_program is not None:
                resolved, resolve_error = _run(rule, rule.resolve_program, ctx, sensor)
                error = error or resolve_error
            else:
                resolved = cond is False
        out += _error_transition(rule, subject, state, error, now)
        if state.phase == "firing":
            if cond:
                state.last_true = now
                continue
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
