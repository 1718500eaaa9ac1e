"""How every benchmark publishes: ``benchmarks/results/<name>.json`` and its rows of ``docs/benchmarks.md``."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "# Benchmarks\n\nMeasured on the project's 2-core machine; re-run the scripts in `benchmarks/` "
    "(`make bench`) to refresh a row. Timings live here, never in tests.\n\n"
    "| benchmark | what | result | date |\n| --- | --- | --- | --- |"
)


def header(name: str) -> dict[str, Any]:
    """The fields every result starts with: benchmark name, UTC time, and the machine it ran on."""
    return {
        "benchmark": name,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
    }


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
