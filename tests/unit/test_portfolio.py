"""The portfolio page (issue 19): what it shows of a loan, in Chinese and English; data never becomes markup.

The page is rendered from the JSON of ``/api/loans`` (``streams.api.LoanSummary``) and of
``/api/portfolio/concentration``; these tests render it from a real loan state (in margin call, on
the watch list) and from fixed JSON with hostile text in every field that comes from data.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
import zoneinfo
from html.parser import HTMLParser
from typing import Any

import jsonschema
import pytest

from monitor.core import CoreParams, Monitor
from monitor.display import CATEGORY_TERMS, format_time, format_yuan
from monitor.portfolio import LABELS, render_concentration, render_portfolio, worst_first
from monitor.sensors import CountingSensor
from streams.api import loan_summary, older_entries, openapi
from tests.conftest import make_loan, make_pledge
from tests.unit.test_engine import _collapse, _with_l2
from tests.unit.test_watch_list import rulebook_with_watch_rules

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2024, 3, 4, 8, 0, tzinfo=dt.UTC)
#: markup in every field that comes from data: none of it may reach the page as a tag or attribute
EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>'\"&"


class Doc(HTMLParser):
    """The tags (with attributes) and text of a page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def rows(self) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == "tr" and "data-loan" in a]


def loan_json(loan_id: str, status: str, coverage: float | None, **kw: Any) -> dict[str, Any]:
    """One ``/api/loans`` entry as the API serialises it."""
    base: dict[str, Any] = {
        "loan_id": loan_id,
        "borrower_id": "B-" + loan_id,
        "status": status,
        "coverage_ratio": coverage,
        "collateral_value": 1_200_000.0,
        "outstanding": 1_000_000.0,
        "as_of": "2024-03-04T07:45:00Z",
        "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1},
        "suggested_category": "normal",
        "category_reasons": [],
        "on_watch_list": False,
        "watch_reasons": [],
        "open_margin_calls": [],
    }
    return {**base, **kw}


def hostile_loan() -> dict[str, Any]:
    return loan_json(
        EVIL + "L",
        "margin_call",
        1.15,
        borrower_id=EVIL + "B",
        suggested_category="special_mention",
        category_reasons=[
            {
                "criterion": EVIL + "c",
                "source": "bank_policy",
                "floor": "special_mention",
                "fact": EVIL + "f",
                "value": EVIL + "v",
            },
        ],
        on_watch_list=True,
        watch_reasons=[
            {
                "rule_id": EVIL + "r",
                "subject": EVIL + "s",
                "since": "2024-03-04T06:00:00Z",
                "alert_id": "al-1",
                "summary": EVIL + "zh",
                "summary_en": EVIL + "en",
            },
        ],
        open_margin_calls=[
            {
                "margin_call_id": EVIL + "mc",
                "status": "issued",
                "issued_at": "2024-03-04T06:00:00Z",
                "required_top_up_collateral": 123_456.01,
                "required_repayment": 95_000.0,
                "cure_deadline": "2024-03-11T06:00:00Z",
                "deadline_provisional": False,
            },
        ],
    )


CONCENTRATION = {
    "as_of": "2024-03-04T07:45:00Z",
    "rows": [
        {"dimension": "borrower_group", "key": "G-ACME", "exposure_yuan": 30_000_000.0, "collateral_yuan": 36_000_000.0,
         "share": 0.31, "limit": 0.25, "breached": True},
        {"dimension": "asset_profile", "key": "bus_dispatch", "exposure_yuan": 60_000_000.0,
         "collateral_yuan": 80_000_000.0, "share": 0.62, "limit": None, "breached": False},
        {"dimension": "region", "key": "NZ-AKL", "exposure_yuan": 9_000_000.0, "collateral_yuan": 9_500_000.0,
         "share": 0.09, "limit": 0.4, "breached": False},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def real_loan():  # type: ignore[no-untyped-def]
    """L1 after an activity collapse with watch-list rules: in margin call (open) and on the watch list."""
    mon = _with_l2(Monitor(rulebook_with_watch_rules(), CoreParams(), CountingSensor()))
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    _collapse(mon, range(8), trips=10)
    _collapse(mon, range(8, 24))
    return mon.loans["L1"]


def test_the_list_entry_of_a_loan_in_margin_call_on_the_watch_list_conforms_to_the_openapi_document(real_loan) -> None:  # type: ignore[no-untyped-def]
    summary = loan_summary(real_loan).model_dump(mode="json")
    doc = openapi()
    schema = {**doc["components"]["schemas"]["LoanSummary"], "components": doc["components"]}
    validator = jsonschema.Draft202012Validator(schema)  # the document's refs resolve in its components
    validator.validate(summary)
    assert summary["on_watch_list"] and summary["watch_reasons"][0]["rule_id"] == "watch-coverage-below-warning"
    (call,) = summary["open_margin_calls"]
    mc = next(m for m in real_loan.margin_calls.values() if m.status == "issued")
    assert (
        call["margin_call_id"] == mc.margin_call_id
        and call["cure_deadline"] == mc.model_dump(mode="json")["cure_deadline"]
    )
    assert summary["suggested_category"] == real_loan.category != "normal"
    assert {r["criterion"] for r in summary["category_reasons"]} >= {"margin-call-open", "below-warning"}
    assert summary["thresholds"] == {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1}
    # a wrong type is refused by the same schema (the check can fail)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**summary, "on_watch_list": "yes"})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**summary, "open_margin_calls": [{**call, "cure_deadline": None}]})


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_page_shows_status_coverage_lines_category_watch_reason_and_margin_call_deadline(real_loan, lang) -> None:  # type: ignore[no-untyped-def]
    summary = loan_summary(real_loan).model_dump(mode="json")
    page = render_portfolio([summary], lang, TZ, NOW)
    doc = Doc(page)
    (row,) = doc.rows()
    assert row["data-loan"] == "L1" and row["data-status"] == real_loan.snapshot().status
    t = LABELS[lang]
    text = "".join(doc.text)
    mc = next(m for m in real_loan.margin_calls.values() if m.status == "issued")
    assert (
        f"{mc.margin_call_id} ({t['issued']}): {t['top_up']} {format_yuan(mc.required_top_up_collateral, up=True)}"
        in text
    )
    assert format_time(mc.cure_deadline, TZ) in text
    assert t["lines"].format(w="130.0%", m="120.0%", c="110.0%") in text
    assert f"{real_loan.snapshot().coverage_ratio:.1%}" in text
    assert CATEGORY_TERMS[lang][real_loan.category] in text and t["margin-call-open"] in text
    reason = next(iter(real_loan.watch.values()))
    assert t["on_list"] in text and (reason.summary if lang == "zh" else reason.summary_en) in text
    links = {a.get("class"): a["href"] for tag, a in doc.tags if tag == "a" and a.get("class")}
    assert links == {
        "report": f"/loans/L1/report?lang={lang}",
        "json": "/api/loans/L1",
    }  # the review in the page's language
    assert t["report_link"] in text
    assert ("http-equiv", "refresh") in [(k, v) for tag, a in doc.tags if tag == "meta" for k, v in a.items()]
    assert page.count("<meta http-equiv='refresh' content='30'>") == 1
    assert f"<html lang='{t['lang']}'>" in page and t["title"] in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_text_field_from_data_is_escaped(lang: str) -> None:
    conc = {"as_of": EVIL, "rows": [{**CONCENTRATION["rows"][0], "key": EVIL + "k", "dimension": EVIL + "d"}]}
    loan = hostile_loan()
    loan["status"] = EVIL + "status"
    page = render_portfolio([loan], lang, TZ, NOW, conc)
    doc = Doc(page)
    assert not [t for t, _ in doc.tags if t in ("script", "img")]
    assert not [a for _, attrs in doc.tags for a in attrs if a.startswith("on")]
    assert "<script>" not in page and "<img" not in page
    text = "".join(doc.text)
    for suffix in ("L", "B", "c", "f", "v", "r", "mc", "k", "d", "status", "zh" if lang == "zh" else "en"):
        assert EVIL + suffix in text, suffix  # shown as the text it is
    (row,) = doc.rows()
    assert row["data-loan"] == EVIL + "L"  # the attribute holds the id, quotes and all
    (link,) = [a for t, a in doc.tags if t == "a" and (a.get("href") or "").startswith("/api/loans/")]
    assert link["href"] == "/api/loans/" + urllib.parse.quote(EVIL + "L", safe="")  # the id, never a path or markup
    assert "%3Cscript%3E" in link["href"] and "%2F" in link["href"]
    (report,) = [a for t, a in doc.tags if t == "a" and a.get("class") == "report"]
    assert report["href"] == f"/loans/{urllib.parse.quote(EVIL + 'L', safe='')}/report?lang={lang}"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_worst_first_close_out_margin_call_warning_ok_then_the_rest(lang: str) -> None:
    loans = [
        loan_json("A", "ok", 1.6),
        loan_json("B", "calibrating", None),
        loan_json("C", "warning", 1.25),
        loan_json("D", "close_out", 1.05),
        loan_json("E", "ok", 1.35),
        loan_json("F", "margin_call", 1.12),
        loan_json("G", "closed", None),
    ]
    doc = Doc(render_portfolio(loans, lang, TZ, NOW))
    assert [r["data-loan"] for r in doc.rows()] == ["D", "F", "C", "E", "A", "B", "G"]
    text = "".join(doc.text)
    for status in ("ok", "warning", "margin_call", "close_out", "calibrating", "closed"):
        assert LABELS[lang][status] in text
    assert [x["loan_id"] for x in worst_first(loans)] == ["D", "F", "C", "E", "A", "B", "G"]


def test_chinese_and_english_labels_differ_and_name_the_five_categories() -> None:
    assert set(LABELS["zh"]) == set(LABELS["en"])
    zh = render_portfolio([loan_json("L", "ok", 1.5, suggested_category="substandard")], "zh", TZ, NOW)
    en = render_portfolio([loan_json("L", "ok", 1.5, suggested_category="substandard")], "en", TZ, NOW)
    assert "次级" in zh and "substandard" in en and "次级" not in en
    for key in ("coverage", "category", "watch", "calls", "borrower"):
        assert LABELS["zh"][key] in zh and LABELS["en"][key] in en
    assert list(CATEGORY_TERMS["zh"].values()) == ["正常", "关注", "次级", "可疑", "损失"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_concentration_rows_with_the_breached_one_highlighted(lang: str) -> None:
    t = LABELS[lang]
    doc = Doc(render_concentration(CONCENTRATION, lang))
    rows = [a for tag, a in doc.tags if tag == "tr" and "data-dimension" in a]
    assert [(r["data-dimension"], r["data-key"], r["class"]) for r in rows] == [
        ("borrower_group", "G-ACME", "breached"),
        ("asset_profile", "bus_dispatch", "within"),
        ("region", "NZ-AKL", "within"),
    ]
    text = "".join(doc.text)
    for piece in ("31.0%", "25.0%", "62.0%", t["no_limit"], "¥30,000,000", "¥36,000,000", t["borrower_group"]):
        assert piece in text, piece
    page = render_portfolio([loan_json("L", "ok", 1.5)], lang, TZ, NOW, CONCENTRATION)
    assert "tr.breached td{background:#fde0e0" in page and "class='breached'" in page
    # the endpoint's as_of in the display zone
    assert f"<p>{t['as_of']} 2024-03-04 15:45 +08:00</p>" in render_concentration(CONCENTRATION, lang, tz=TZ)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_concentration_not_available_when_the_endpoint_answers_404_or_cannot_be_asked(lang: str) -> None:
    t = LABELS[lang]
    page = render_portfolio([loan_json("L", "ok", 1.5)], lang, TZ, NOW, None)
    assert f"<p class=not-available>{t['not_available']}</p>" in page
    page = render_portfolio([loan_json("L", "ok", 1.5)], lang, TZ, NOW, None, "HTTP 403 <b>")
    assert "HTTP 403 &lt;b&gt;" in page and "not-available" in page


def test_no_loans_and_a_list_that_is_not_available_now_say_so() -> None:
    assert LABELS["en"]["no_loans"] in render_portfolio([], "en", TZ, NOW)
    page = render_portfolio(None, "zh", TZ, NOW, error="worker http://w2 did not answer; try again")
    assert "贷款列表暂不可用：worker http://w2 did not answer; try again" in page and "data-loan" not in page


def test_entries_of_a_worker_of_an_older_version_are_recognised(real_loan) -> None:  # type: ignore[no-untyped-def]
    current = loan_summary(real_loan).model_dump(mode="json")
    before = {k: current[k] for k in ("loan_id", "borrower_id", "status", "coverage_ratio", "collateral_value",
                                      "outstanding", "as_of")}  # fmt: skip  # the fields before issue 19's page
    assert older_entries([current]) == []
    assert older_entries([current, {**before, "loan_id": "L-OLD"}]) == ["L-OLD"]
