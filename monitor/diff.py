"""Diff the alerts two rulebooks raise on the same history (``pledgewatch backtest --compare``).

Firing alerts are grouped by (loan, rule, subject); within a group the episodes
of A and B are paired in time order. A pair is the *same alert*, earlier or
later by the difference of their firing times; episodes left over are *only in
A* or *only in B*. Rule ids are the join key, so a renamed rule shows as removed
and added.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from monitor.schemas import Alert, MarginCall

__all__ = ["AlertDiff", "diff_alerts"]


@dataclass
class AlertDiff:
    """The difference between the alerts of rulebook A and rulebook B.

    Attributes
    ----------
    only_a, only_b
        Firing alerts without a counterpart in the other run.
    shifted
        ``(a, b, seconds)`` for the same alert firing at a different time; seconds = b − a
        (negative: B fires earlier).
    same
        Alerts firing at the same time in both.
    margin_calls_a, margin_calls_b
        Margin calls issued by each run.
    """

    only_a: list[Alert] = field(default_factory=list)
    only_b: list[Alert] = field(default_factory=list)
    shifted: list[tuple[Alert, Alert, float]] = field(default_factory=list)
    same: list[Alert] = field(default_factory=list)
    margin_calls_a: list[MarginCall] = field(default_factory=list)
    margin_calls_b: list[MarginCall] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready summary (times ISO 8601 UTC, shifts in seconds)."""

        def brief(a: Alert) -> dict[str, object]:
            return {
                "loan_id": a.loan_id,
                "rule_id": a.rule_id,
                "subject": a.subject,
                "severity": a.severity,
                "at": a.at.isoformat(),
                "coverage_ratio": a.facts.get("coverage_ratio"),
                "shadow": a.shadow,
            }

        return {
            "only_a": [brief(a) for a in self.only_a],
            "only_b": [brief(b) for b in self.only_b],
            "shifted": [{"a": brief(a), "b": brief(b), "shift_seconds": s} for a, b, s in self.shifted],
            "same": len(self.same),
            "margin_calls": {
                "a": len([m for m in self.margin_calls_a if m.status == "issued"]),
                "b": len([m for m in self.margin_calls_b if m.status == "issued"]),
            },
        }


def diff_alerts(
    a: list[Alert], b: list[Alert], mcs_a: list[MarginCall] | None = None, mcs_b: list[MarginCall] | None = None
) -> AlertDiff:
    """Pair the firing alerts of two runs and report what B adds, removes and moves.

    Examples
    --------
    >>> diff_alerts([], []).to_json()["same"]
    0
    """
    groups: dict[tuple[str, str, str], tuple[list[Alert], list[Alert]]] = defaultdict(lambda: ([], []))
    for side, alerts in ((0, a), (1, b)):
        for al in alerts:
            if al.status == "firing":
                groups[(al.loan_id, al.rule_id, al.subject)][side].append(al)
    out = AlertDiff(margin_calls_a=list(mcs_a or []), margin_calls_b=list(mcs_b or []))
    for key in sorted(groups):
        xs, ys = (sorted(v, key=lambda al: al.at) for v in groups[key])
        for x, y in zip(xs, ys, strict=False):
            shift = (y.at - x.at).total_seconds()
            if shift:
                out.shifted.append((x, y, shift))
            else:
                out.same.append(x)
        out.only_a.extend(xs[len(ys) :])
        out.only_b.extend(ys[len(xs) :])
    return out
