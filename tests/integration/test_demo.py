"""``make demo`` itself (deploy/demo.sh) on the real broker: what a newcomer sees, end to end (issue 20).

The demo runs faster than its default (``DEMO_RATE``) and stops by itself (``DEMO_SECONDS``, as the
README documents); the broker is the suite's, which the demo then leaves running. The assertions are
on the lines the demo prints: its story (feed-silent first, then the shortfall, the margin call and
the close-out), the coverage lines with the collateral value in yuan and the zone offset, and the
line that says the replay is over instead of a silent screen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.integration.conftest import ROOT, free_port

#: events/s: the whole sample (≈56,000 records) in ≈12 s instead of ≈110 s at the default 500
DEMO_RATE = "5000"
#: seconds of watch: the worker's 8-s start, the replay, the 5-s pause before the end line, and margin
DEMO_SECONDS = "75"


def test_make_demo_tells_its_story_and_says_when_the_replay_is_over(bootstrap: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PLEDGEWATCH_") or k == "PLEDGEWATCH_DISPLAY_TIMEZONE"
    }
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        DEMO_RATE=DEMO_RATE,
        DEMO_SECONDS=DEMO_SECONDS,
        PLEDGEWATCH_METRICS_PORT=str(free_port()),
        PLEDGEWATCH_WEB_PORT=str(free_port()),
    )
    proc = subprocess.run(
        ["bash", "deploy/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    out = proc.stdout
    sys.stdout.write(out)  # shown by pytest on failure
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = out.splitlines()

    def first(pattern: str) -> int:
        hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert hits, f"no line matches {pattern!r}"
        return hits[0]

    # point 2: the end of the replay is said, not left to a silent screen; everything stops after
    end = first(r"^demo: replay finished")
    assert first(r"^demo: stopped; nothing left running") > end
    # point 1: one time format with the offset, never an ambiguous zone abbreviation such as CST
    assert not [line for line in lines if re.search(r"\b(CST|CDT)\b", line)]
    stamped = [line for line in lines if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d", line)]
    assert stamped and all(re.match(r"^2016-05-(19|20) \d\d:\d\d \+08:00 ", line) for line in stamped)
    # point 2: the collateral value in yuan beside every coverage figure, with its 90 % lower bound (a
    # silent feed's value stays while its bound falls: the uncertainty must show)
    coverage = [line for line in stamped if re.match(r"^\S+ \S+ \+08:00 coverage: ", line)]
    assert len(coverage) >= 20, f"{len(coverage)} coverage lines"
    parts = [part for line in coverage for part in line.split(" coverage: ", 1)[1].split(" | ")]
    valued = [part for part in parts if "%" in part]
    shown = r"% \w+ ¥[\d,]+ \(90% lower bound ¥[\d,]+\)$"
    assert valued and all(re.search(shown, part) for part in valued), valued[:3]
    # point 1: a coverage line is stamped at its window's start, as the alerts that window raised are (a
    # coverage line a window late showed an alert's coverage at two times); an alert's own coverage may
    # differ from its line's, which is the loan's last snapshot of that window (another of its assets
    # valued after the alert)
    lined = {line.split(" coverage: ")[0] for line in coverage}
    alerts = [m.group(1) for line in stamped if (m := re.match(r"^(\S+ \S+ \+08:00)  L-", line))]
    assert alerts and set(alerts) <= lined, sorted(set(alerts) - lined)
    # the story, in order: the dark feed is first uncertainty (feed-silent), the activity collapse a margin call
    silent = first(r"feed-silent")
    assert "akl-routes-9xx" in " ".join(lines[silent : silent + 3])
    call = first(r"MARGIN CALL mc-85eb052407f567a4cf7e")
    assert silent < call
    assert not [line for line in lines if "MARGIN CALL" in line and "mc-85eb052407f567a4cf7e" not in line]
