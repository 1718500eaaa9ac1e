"""A source plugin outside the ``monitor`` package, installed with pip and found through entry points.

``examples/plugins/dispatch-log`` (docs/sources.md, "Write an adapter") reads an operator's dispatch
log. The test installs it with pip into a folder of its own (the project's venv is left as it was),
writes the Auckland sample as such a log, and runs ``pledgewatch backtest`` on it: the plugin is
found, recognises the file, and the demo's cut gives the same margin call as the original feed.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

from monitor.backtest import load_loan_book, pledged_assets, read_telemetry
from tests.integration.conftest import BIN, ROOT

PLUGIN = ROOT / "examples" / "plugins" / "dispatch-log"
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
CUT = "cut:akl-routes-7xx@3h:0.6"


def dispatch_log(out: Path) -> int:
    """The Auckland sample's completed trips and polls as a dispatch log; rows written."""
    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    rows = 0
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "asset", "vehicle", "trip", "event", "delay_s"])
        for e in read_telemetry(SAMPLE, pledged_assets(book), pledges=book):
            if e.kind == "trip_completed":
                delay = e.metrics.get("final_delay_s", "")
                w.writerow(
                    [
                        e.observed_at.isoformat(),
                        e.asset_id,
                        e.entity_id or "",
                        e.attributes["trip_id"],
                        "completed",
                        delay,
                    ]
                )
            elif e.kind == "feed_poll":
                w.writerow([e.observed_at.isoformat(), e.asset_id, int(e.metrics["entities"]), "", "heartbeat", ""])
            else:
                continue
            rows += 1
    return rows


def backtest(telemetry: Path, env: dict[str, str], *inject: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pledgewatch"), "backtest", "--telemetry", str(telemetry), *(f"--inject={i}" for i in inject)],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "250"},
        timeout=300,
    )


def test_source_plugin__installed_with_pip_found_through_entry_points_and_used_by_backtest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "site"
    pip = subprocess.run(
        [str(BIN / "pip"), "install", "--quiet", "--no-deps", "--target", str(target), str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    log = tmp_path / "dispatch.csv"
    rows = dispatch_log(log)

    without = backtest(log, dict(os.environ))
    assert without.returncode == 1 and "is not the first line of any telemetry kind" in without.stderr

    env = {**os.environ, "PYTHONPATH": str(target)}
    normal = backtest(log, env)
    assert normal.returncode == 0, normal.stderr
    assert f"{rows:,} telemetry records ({rows:,} ok)" in normal.stdout and "0 alert transitions" in normal.stdout
    with_plugin = backtest(log, env, CUT)
    original = backtest(SAMPLE, dict(os.environ), CUT)
    ids = re.findall(r"MARGIN CALL (mc-[0-9a-f]+)", original.stdout)
    assert ids and re.findall(r"MARGIN CALL (mc-[0-9a-f]+)", with_plugin.stdout) == ids
