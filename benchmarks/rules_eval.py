"""Cost of evaluating a rulebook for one loan: µs per evaluation and per rule, with 10 / 100 / 1,000 rules.

Run: ``.venv/bin/python benchmarks/rules_eval.py``. Writes ``benchmarks/results/rules_eval.json`` and
the ``rules_eval`` rows of ``docs/benchmarks.md``. One evaluation = ``rules.lifecycle.evaluate_subject``
for one loan: one CEL context shared by all rules, every condition run, lifecycle advanced. For
contrast it also times building a context per rule.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import cel
from report import publish  # benchmarks/report.py (the scripts run from benchmarks/)

from rules.lifecycle import RuleState, evaluate_subject
from rules.rulebook import example_facts, parse_rulebook

ROOT = Path(__file__).resolve().parents[1]


def rulebook(n: int) -> str:
    lines = ["rulebook: bench", "version: 1", "rules:"]
    for i in range(n):
        lines += [
            f"  - id: r{i}",
            "    scope: loan",
            "    severity: warning",
            f"    when: loan.coverage_ratio < {1.0 + i % 50 / 100:.2f} && loan.ltv > {0.5 + i % 7 / 100:.2f}",
            "    for: 15m",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    facts = example_facts("loan")
    rows = []
    for n in (10, 100, 1000):
        rb = parse_rulebook(rulebook(n))
        states: dict[str, RuleState] = {}
        reps = max(50, 20_000 // n)
        t0 = time.perf_counter()
        for k in range(reps):
            evaluate_subject(rb, "loan", "L1", facts, states, float(k * 900))
        per_eval = (time.perf_counter() - t0) / reps * 1e6
        progs = [r.program for r in rb.rules]
        t0 = time.perf_counter()
        for _ in range(reps):
            for p in progs:
                ctx = cel.Context()
                ctx.update(facts)
                p.execute(ctx)
        per_eval_ctx_per_rule = (time.perf_counter() - t0) / reps * 1e6
        rows.append(
            {
                "rules": n,
                "us_per_evaluation": round(per_eval, 1),
                "us_per_rule": round(per_eval / n, 2),
                "us_per_evaluation_context_per_rule": round(per_eval_ctx_per_rule, 1),
            }
        )
    result = {"benchmark": "rules_eval", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": rows}
    publish(
        "rules_eval",
        result,
        [
            (
                f"one loan evaluated against {r['rules']:,} rules (shared CEL context)",
                f"{r['us_per_evaluation']:,} µs per evaluation, {r['us_per_rule']} µs per rule "
                f"(context per rule: {r['us_per_evaluation_context_per_rule']:,} µs)",
            )
            for r in rows
        ],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
