"""The CTA history on the risk officer's page (issue 19): what ``backtest`` prints, the page shows.

The CTA daily boardings 2001-2024 (the shipped file, ``examples/cta``) go through one in-process
:class:`~monitor.core.Monitor` in event-time order, with the loan events taking effect as their time
passes, as ``run_backtest`` does. The page is then built from that monitor's state exactly as a worker
holding the loan builds ``GET /portfolio`` (``streams.api.loan_summary`` entries, the concentration
body, ``monitor.portfolio.render_portfolio``), twice: a few days into the March 2020 collapse, and at
the end of the history. The figures it must show are the committed backtest's
(``benchmarks/results/cta_history.json``, kept true by ``test_cta_history.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

import pytest

from monitor.backtest import load_loan_book, pledged_assets, read_telemetry
from monitor.core import Monitor, decode_loan_event
from monitor.display import CATEGORY_TERMS, format_time
from monitor.portfolio import LABELS, render_portfolio
from rules.rulebook import load_rulebook
from streams.api import concentration_view, loan_summary
from tests.conftest import ROOT
from tests.unit.test_portfolio import Doc

CTA = ROOT / "examples" / "cta"
CSV = ROOT / "examples" / "data" / "cta-daily-boardings.csv"
RESULT = ROOT / "benchmarks" / "results" / "cta_history.json"
LOAN = "L-CTA-RIDERSHIP"
TZ = zoneinfo.ZoneInfo("America/Chicago")
#: end of service day 2020-03-24 (Chicago): after the margin call (03-19), the watch-list entry (03-20) and
#: the close-out alert (03-21), before the margin call's cure deadline passes (expired 03-29)
MID_COLLAPSE = dt.datetime(2020, 3, 25, tzinfo=TZ)


def _params() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("cta_history", CTA / "history.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PARAMS, mod.RULES


def page_of(mon: Monitor, lang: str) -> tuple[str, list[dict[str, Any]]]:
    """The portfolio page and its ``/api/loans`` entries for the monitor's state, as a worker serves them."""
    rulebook = mon.loan_book.rulebook
    loans = json.loads(json.dumps([loan_summary(x).model_dump(mode="json") for x in mon.loan_book.loans.values()]))
    conc = json.loads(json.dumps(concentration_view(mon.portfolio, rulebook, lambda _borrower: True)))
    return render_portfolio(loans, lang, TZ, dt.datetime.now(dt.UTC), conc), loans


@pytest.fixture(scope="module")
def pages() -> dict[str, Any]:
    """The pages (en, zh) and entries mid-collapse and at the history's end, from one run."""
    params, rules = _params()
    mon = Monitor(load_rulebook(rules), params)
    book = load_loan_book(CTA / "loan_book.jsonl")
    wall = dt.datetime.now(dt.UTC).timestamp()
    pending = sorted(
        (decode_loan_event(raw, wall, params.max_clock_skew_s, params.earliest_event_time_s) for raw in book),
        key=lambda ev: ev.effective_at,
    )
    out: dict[str, Any] = {}
    due = 0
    for ev in read_telemetry(CSV, pledged_assets(book)):
        if "mid" not in out and ev.observed_at >= MID_COLLAPSE:
            out["mid"] = {lang: page_of(mon, lang) for lang in ("en", "zh")}
        while due < len(pending) and pending[due].effective_at <= ev.observed_at:
            mon.on_loan_event(pending[due])
            due += 1
        mon.on_telemetry(ev)
    out["end"] = {lang: page_of(mon, lang) for lang in ("en", "zh")}
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_cta_page__mid_collapse_the_margin_call_watch_list_entry_and_category_with_their_rules(pages, lang) -> None:  # type: ignore[no-untyped-def]
    committed = json.loads(RESULT.read_text())
    issued = next(m for m in committed["margin_calls"] if m["status"] == "issued")
    entered = next(w for w in committed["watch_list"] if w["status"] == "entered")
    assert issued["service_day"] == "2020-03-19" and entered["service_day"] == "2020-03-20"  # the backtest's
    page, (entry,) = pages["mid"][lang]
    doc = Doc(page)
    (row,) = doc.rows()
    text = "".join(doc.text)
    t = LABELS[lang]
    assert row["data-loan"] == LOAN and row["data-status"] == entry["status"] == "close_out"
    # the margin call the backtest issued on 2020-03-19, open, with its cure deadline
    (call,) = entry["open_margin_calls"]
    assert call["margin_call_id"] == issued["id"] and call["status"] == "issued"
    assert call["margin_call_id"] in text
    assert format_time(dt.datetime.fromisoformat(call["cure_deadline"]), TZ) in text
    # on the watch list by the rule the backtest printed, with that rule on the page
    assert entry["on_watch_list"] and entered["rule"] in {r["rule_id"] for r in entry["watch_reasons"]}
    assert [a for tag, a in doc.tags if tag == "td" and a.get("data-on-list") == "true"]
    reason = next(r for r in entry["watch_reasons"] if r["rule_id"] == entered["rule"])
    assert t["on_list"] in text and (reason["summary"] if lang == "zh" else reason["summary_en"]) in text
    # the suggested category and the criteria that set it
    assert entry["suggested_category"] not in (None, "normal")
    assert [a for tag, a in doc.tags if tag == "td" and a.get("data-category") == entry["suggested_category"]]
    assert CATEGORY_TERMS[lang][entry["suggested_category"]] in text
    criteria = {r["criterion"] for r in entry["category_reasons"]}
    assert "margin-call-open" in criteria and all(t[c] in text for c in criteria if c in t)
    assert f"{entry['coverage_ratio']:.1%}" in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_cta_page__at_the_end_of_the_history_the_loan_is_off_the_list_as_the_backtest_exited_it(pages, lang) -> None:  # type: ignore[no-untyped-def]
    committed = json.loads(RESULT.read_text())
    assert committed["watch_list"][-1]["status"] == "exited"  # the backtest's last watch-list event
    page, (entry,) = pages["end"][lang]
    doc = Doc(page)
    (row,) = doc.rows()
    assert row["data-loan"] == LOAN and not entry["on_watch_list"]
    assert [a for tag, a in doc.tags if tag == "td" and a.get("data-on-list") == "false"]
    assert LABELS[lang]["off_list"] in "".join(doc.text)
    # no call within its cure period; the two the backtest let expire (2020, 2021) are still listed: an
    # expired call waits for the bank's close-out decision, which no loan event of the contract reports
    expired = [m["id"] for m in committed["margin_calls"] if m["status"] == "expired"]
    assert [c["status"] for c in entry["open_margin_calls"]] == ["expired"] * len(expired) == ["expired"] * 2
    assert sorted(c["margin_call_id"] for c in entry["open_margin_calls"]) == sorted(expired)
