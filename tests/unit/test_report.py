"""The risk officer's report of the shipped sample, rendered by headless Chromium (issue 9's acceptance).

Chromium is a Debian package (``deploy/chromium.sh ensure``, run by ``make test``); without it the
rendering test fails and says how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitor.backtest import load_loan_book, run_backtest
from monitor.errors import ConfigError
from monitor.incidents import parse_incident
from monitor.report import LABELS, build_report, histories, last_days, script_hashes
from rules.rulebook import load_rulebook
from tests.conftest import ROOT, sample_telemetry

SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium() -> str:
    if not Path(CHROMIUM).exists():  # make test installs it first; a bare pytest run must too
        pytest.fail(f"Chromium missing at {CHROMIUM}: run `bash deploy/chromium.sh ensure` (or set CHROMIUM_BIN)")
    return CHROMIUM


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    """The demo's backtest: the shipped sample with the route group 7xx dark from 3 h on."""
    book = load_loan_book(ROOT / "examples" / "loan_book.jsonl")
    return run_backtest(
        book,
        sample_telemetry(),
        load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"),
        incidents=[parse_incident("outage:akl-routes-7xx@3h")],
    )


def test_report_in_headless_chromium__not_blank__loan_lines_and_every_alert_on_the_page(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image, ImageStat

    browser = chromium()
    loans = histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls, loan_id="L-AKL-002")
    assert loans[0].alerts, "the demo incident raises alerts on L-AKL-002"
    paths = build_report(loans, tmp_path, lang="en", png=True)
    page = paths[0]
    pngs = [p for p in paths if p.suffix == ".png"]
    assert {p.name for p in pngs} == {f"L-AKL-002-{c}.png" for c in ("value", "coverage", "quality", "anomaly")}
    url = page.as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *FLAGS, "--window-size=1300,2600", "--virtual-time-budget=15000", f"--screenshot={shot}", url],
        check=True,
        capture_output=True,
        timeout=180,
    )
    img = Image.open(shot).convert("L")
    stat = ImageStat.Stat(img)
    assert stat.stddev[0] > 10, "screenshot is blank"  # a white page has stddev 0
    assert len(img.getcolors(maxcolors=1 << 16) or ()) > 50  # text, lines and fills, not one colour
    dom = subprocess.run(
        [browser, *FLAGS, "--virtual-time-budget=15000", "--dump-dom", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    assert "L-AKL-002" in dom
    # the three lines are drawn by plotly.js as SVG annotations: present only if the charts rendered
    svg_text = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", dom))
    for line in ("Warning line 130%", "Margin-call line 120%", "Close-out line 110%"):
        assert line in svg_text, line
    for alert in loans[0].alerts:
        assert f'id="{alert.alert_id}-{alert.status}"' in dom, alert.rule_id
    for call in loans[0].margin_calls:
        assert call.margin_call_id in dom
    assert re.search(r"¥\d{1,3}(,\d{3})+", dom), "amounts in yuan with thousands separators"


def test_chinese_labels_and_attribution_table(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    loans = histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls, loan_id="L-AKL-002")
    page = build_report(loans, tmp_path, lang="zh", png=False)[0].read_text(encoding="utf-8")
    for key in ("warning", "margin_call", "close_out", "changes", "activity", "accuracy"):
        assert LABELS["zh"][key] in page
    # the largest value change is listed with its parts, which add up to it (within rounding)
    biggest = max((v for v in loans[0].valuations if v.attribution), key=lambda v: abs(sum(v.attribution.values())))
    assert f"¥{sum(biggest.attribution.values()):,.0f}" in page


def test_bad_requests_are_one_clear_error(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    with pytest.raises(ConfigError, match="--loan: got 'L-NOPE'"):
        histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls, loan_id="L-NOPE")
    loans = histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls)
    with pytest.raises(ConfigError, match="--lang: got 'fr'"):
        build_report(loans, tmp_path, lang="fr", png=False)
    a_file = tmp_path / "taken"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"--out: got .*taken, an existing file"):
        build_report(loans, a_file, lang="en", png=False)
    t = dt.datetime(2016, 5, 20, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="expected --from before --to"):
        histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls, start=t, end=t)


def test_chinese_date_ticks_and_the_anomaly_warm_up_is_shaded(demo) -> None:  # type: ignore[no-untyped-def]
    import zoneinfo

    from monitor.report import _charts

    (loan,) = histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls, loan_id="L-AKL-002")
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    zh = _charts(loan, "zh", tz, 0.85, 32)
    for fig in zh.values():
        assert fig.layout.xaxis.hoverformat == "%Y年%m月%d日 %H:%M"
        assert [s.value for s in fig.layout.xaxis.tickformatstops] == ["%H:%M<br>%m月%d日", "%Y年%m月%d日"]
    en = _charts(loan, "en", tz, 0.85, 32)
    assert en["value"].layout.xaxis.hoverformat is None  # plotly's own English dates
    # the sample day starts every asset's model, so its first 32 windows are shaded and labelled
    (shade,) = zh["anomaly"].layout.shapes[:1]
    assert zh["anomaly"].layout.annotations[0].text == "预热期（32 个窗口）：不判定异常"
    warm = [v for v in loan.valuations if v.windows_seen == 32]
    assert warm and shade.x1 == max(v.window_end for v in warm).astimezone(tz).replace(tzinfo=None)
    # past the warm-up nothing is shaded: a report that starts after it has no band
    late = [v for v in loan.valuations if v.windows_seen > 32]
    loan.valuations = late
    assert not [s for s in _charts(loan, "en", tz, 0.85, 32)["anomaly"].layout.shapes if s.type == "rect"]


def test_one_loans_report_is_the_clis_page_of_that_loan_over_its_last_days(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from monitor.report import loan_report, render_report

    out = (demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls)
    page = loan_report(*out, loan_id="L-AKL-002", days=7, lang="zh", timezone="Asia/Shanghai")
    # what the CLI writes for --loan L-AKL-002 --from <newest snapshot - 7 days>
    newest = max(s.as_of for s in demo.snapshots if s.loan_id == "L-AKL-002")
    (loan,) = histories(*out, loan_id="L-AKL-002", start=newest - dt.timedelta(days=7))
    assert page == build_report([loan], tmp_path, lang="zh", png=False)[0].read_text(encoding="utf-8")
    assert page == render_report([loan], "zh")
    # the loan's snapshots since its opening (2016-04-30) are left out: the period is bounded
    (whole,) = histories(*out, loan_id="L-AKL-002")
    assert min(s.as_of for s in whole.snapshots) < newest - dt.timedelta(days=7) <= loan.snapshots[0].as_of
    assert re.findall(r"<section id='([^']*)'>", page) == ["L-AKL-002"]  # no other loan
    assert loan.alerts and all(f"<tr class=alert id='{a.alert_id}-{a.status}'>" in page for a in loan.alerts)

    # one hour back from the newest snapshot: only that hour's records, the incident's earlier alerts gone
    assert last_days(demo.snapshots, "L-AKL-002", 1 / 24) == newest - dt.timedelta(hours=1)
    (hour,) = histories(*out, loan_id="L-AKL-002", start=newest - dt.timedelta(hours=1))
    assert hour.valuations and all(v.window_end >= newest - dt.timedelta(hours=1) for v in hour.valuations)
    assert len(hour.valuations) < len(loan.valuations) and hour.snapshots[0].as_of > loan.snapshots[0].as_of
    short = loan_report(*out, loan_id="L-AKL-002", days=1 / 24, lang="en")
    assert short == render_report([hour], "en")
    gone = [a for a in loan.alerts if a.at < newest - dt.timedelta(hours=1)]
    assert gone and not any(f"id='{a.alert_id}-{a.status}'" in short for a in gone)

    assert last_days(demo.snapshots, "L-NOPE") is None
    with pytest.raises(ConfigError, match="days: got 0"):
        last_days(demo.snapshots, "L-AKL-002", 0)
    with pytest.raises(ConfigError, match="--loan: got 'L-NOPE'"):
        loan_report(*out, loan_id="L-NOPE")


def test_script_hashes_cover_plotly_and_each_chart_and_data_never_adds_a_script(demo) -> None:  # type: ignore[no-untyped-def]
    import base64
    import dataclasses
    import hashlib

    import plotly.offline

    from monitor.report import render_report
    from streams.api import report_headers

    (loan,) = histories(demo.valuations, demo.snapshots, demo.alerts, demo.margin_calls, loan_id="L-AKL-002")
    page = render_report([loan], "en")
    hashes = script_hashes(page)
    assert len(hashes) == 1 + 4  # plotly.js, then one script per chart
    lib = hashlib.sha256(plotly.offline.get_plotlyjs().encode()).digest()
    assert hashes[0] == f"'sha256-{base64.b64encode(lib).decode()}'"
    csp = report_headers(page)["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    assert directives["script-src"].split() == hashes  # those scripts and nothing else: no host, no 'unsafe-inline'
    assert directives["style-src"] == "'unsafe-inline'" and directives["frame-ancestors"] == "'none'"
    headers = report_headers(page)
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"

    # a loan id from another system that is markup: escaped in the page, in plotly's JSON and in the ids
    evil = "</script><script>alert(1)</script><p id='x"
    bad = dataclasses.replace(
        loan,
        loan_id=evil,
        snapshots=[s.model_copy(update={"loan_id": evil}) for s in loan.snapshots],
    )
    evil_page = render_report([bad], "en")
    assert len(script_hashes(evil_page)) == 5 and "<script>alert(1)" not in evil_page
    assert report_headers(evil_page)["Content-Security-Policy"].count("'sha256-") == 5


def test_the_reports_prefilter_keeps_every_record_of_its_loan() -> None:
    """``streams.latest.mentions_of``: a record the report skips undecoded is never one of its loan's.

    Every output of the demo with its cut and outage (a margin call, alerts), serialised as the worker publishes it
    (``model_dump_json``), is filtered by each loan's byte strings; the report's histories from what
    passes equal those from everything. A loan id with ``/`` (JSON's one optional escape among an id's
    characters) is matched in both spellings.
    """
    from streams.latest import mentions_of

    result = run_backtest(
        load_loan_book(ROOT / "examples" / "loan_book.jsonl"),
        sample_telemetry(),
        load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"),
        incidents=[parse_incident("cut:akl-routes-7xx@3h:0.6"), parse_incident("outage:akl-routes-9xx@3h")],
    )
    topics = {"valuations": [], "loan-risk": [], "alerts": [], "margin-calls": []}  # type: ignore[var-annotated]
    for o in result.outputs:
        if o.topic in topics:
            topics[o.topic].append(o.message)
    loans = sorted({s.loan_id for s in topics["loan-risk"]})
    assert len(loans) >= 3 and topics["margin-calls"] and topics["alerts"]
    for loan in loans:
        needles = mentions_of(loan)
        kept = {
            t: [m for m in ms if any(n in m.model_dump_json().encode() for n in needles)] for t, ms in topics.items()
        }
        assert sum(map(len, kept.values())) < sum(map(len, topics.values()))  # it does skip other loans' records
        whole = histories(topics["valuations"], topics["loan-risk"], topics["alerts"], topics["margin-calls"], loan)
        part = histories(kept["valuations"], kept["loan-risk"], kept["alerts"], kept["margin-calls"], loan)
        assert part == whole
    assert set(mentions_of("L/1")) == {b'"L/1"', b'"L\\/1"'}
    assert b'"L\\/1"' in b'{"loan_id":"L\\/1"}' and mentions_of("L-1") == (b'"L-1"',)
