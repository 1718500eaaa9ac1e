"""How every benchmark publishes: ``benchmarks/results/<name>.json`` and its rows of ``docs/benchmarks.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "# Benchmarks\n\nMeasured on the project's 2-core machine; re-run the scripts in `benchmarks/` "
    "(`make bench`) to refresh a row. Timings live here, never in tests.\n\n"
    "| benchmark | what | result | date |\n| --- | --- | --- | --- |"
)


def publish(name: str, result: dict[str, Any], rows: list[tuple[str, str]]) -> None:
    """Write ``result`` as JSON and replace the ``name`` rows of the table with ``(what, result)`` rows."""
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    doc = ROOT / "docs" / "benchmarks.md"
    lines = doc.read_text().splitlines() if doc.exists() else HEADER.splitlines()
    lines = [ln for ln in lines if not ln.startswith(f"| {name} |")]
    when = str(result.get("when", ""))[:10]
    lines += [f"| {name} | {what} | {res} | {when} |" for what, res in rows]
    doc.write_text("\n".join(lines) + "\n")
