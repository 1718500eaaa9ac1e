"""The risk officers' portfolio page (issue 19): every loan's line status, category, watch list and margin calls.

:func:`render_portfolio` turns the JSON of ``GET /api/loans`` (``streams.api.LoanSummary``) and of
``GET /api/portfolio/concentration`` into one HTML page, in Chinese or English like the report
(:mod:`monitor.report`). The worker renders it (``GET /portfolio``, :mod:`streams.api`) from the same
answers the API gives that caller, so the page carries no credential and runs no script: it reloads
itself every 30 s (``<meta http-equiv=refresh>``), which repeats the same authenticated request.
Each loan links to its post-loan review (``GET /loans/{id}/report``, the page's language) and, small, to
its JSON (``GET /api/loans/{id}``).

Every text that comes from data (loan, borrower, margin-call and rule ids, reasons, summaries) is
escaped here: loan ids and reasons are input from other systems, never markup.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from typing import Any

from monitor.display import CATEGORY_TERMS, TERMS, format_time, format_yuan
from monitor.report import DEFAULT_DAYS

__all__ = ["LABELS", "REFRESH_S", "STATUS_ORDER", "render_concentration", "render_portfolio", "worst_first"]

#: Seconds between two reloads of the page.
REFRESH_S = 30
#: Line statuses, worst first: the page's order (then the lowest coverage, then the loan id).
STATUS_ORDER = ("close_out", "margin_call", "warning", "ok", "calibrating", "closed")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Loan portfolio: post-loan risk",
        "lang": "en",
        "other_lang": "中文",
        "as_of": "Data as of",
        "stop": ".",
        "rendered": "page rendered",
        "refresh": "reloads every {n} s",
        "loans": "Loans",
        "loan": "Loan",
        "borrower": "Borrower",
        "status": "Status",
        "coverage": "Coverage",
        "lines": "lines: warning {w} · margin call {m} · close-out {c}",
        "category": "Suggested category",
        "category_note": "a suggestion; the credit committee decides",
        "watch": "Watch list",
        "on_list": "on the list",
        "off_list": "no",
        "since": "since",
        "calls": "Open margin calls",
        "top_up": "top-up",
        "repay": "or repay",
        "deadline": "deadline",
        "provisional": "provisional: next year's holidays not yet published",
        "data": "Data",
        "report_link": "Post-loan review",
        "report_note": "the loan's charted review (last {days} days of event time)",
        "data_link": "JSON",
        "data_note": "the loan's API answer",
        "none": "none",
        "no_loans": "No loan to show.",
        "unavailable": "The loan list is not available now: {why}",
        "concentration": "Concentrations",
        "dimension": "Dimension",
        "key": "Key",
        "exposure": "Exposure",
        "collateral": "Collateral",
        "share": "Share",
        "limit": "Limit",
        "breached": "Limit breached",
        "no_limit": "no limit",
        "not_available": "not available",
        "borrower_group": "borrower group",
        "asset_profile": "asset profile",
        "region": "region",
        "yes": "yes",
        "ok": "ok",
        "warning": "warning",
        "margin_call": "margin call",
        "close_out": "close-out",
        "calibrating": "calibrating",
        "closed": "closed",
        "days-past-due": "days past due",
        "restructured": "restructured",
        "watch-list": "on the watch list",
        "below-warning": "below the warning line",
        "margin-call-open": "margin call open",
        "margin-call-expired": "margin call expired",
        "close-out": "below the close-out line",
        "regulation": "regulation",
        "bank_policy": "bank policy",
        **TERMS["en"],
    },
    "zh": {
        "title": "贷款组合贷后风险监测",
        "lang": "zh-CN",
        "other_lang": "English",
        "as_of": "数据截至",
        "stop": "。",
        "rendered": "页面生成于",
        "refresh": "每 {n} 秒刷新",
        "loans": "贷款",
        "loan": "贷款",
        "borrower": "借款人",
        "status": "状态",
        "coverage": "押品覆盖率",
        "lines": "预警线 {w} · 追加保证金线 {m} · 平仓线 {c}",
        "category": "建议风险分类",
        "category_note": "仅为建议，由信贷审批委员会认定",
        "watch": "关注名单",
        "on_list": "已列入",
        "off_list": "否",
        "since": "自",
        "calls": "未结追加保证金通知",
        "top_up": "补充押品",
        "repay": "或偿还",
        "deadline": "期限",
        "provisional": "暂定：次年节假日尚未公布",
        "data": "数据",
        "report_link": "贷后检查报告",
        "report_note": "该笔贷款的图表版贷后检查报告（最近 {days} 天，按事件时间）",
        "data_link": "JSON",
        "data_note": "查询接口的贷款数据",
        "none": "无",
        "no_loans": "没有可显示的贷款。",
        "unavailable": "贷款列表暂不可用：{why}",
        "concentration": "集中度",
        "dimension": "维度",
        "key": "对象",
        "exposure": "敞口",
        "collateral": "押品",
        "share": "占比",
        "limit": "限额",
        "breached": "超限",
        "no_limit": "无限额",
        "not_available": "暂无数据（not available）",
        "borrower_group": "借款人集团",
        "asset_profile": "数据资产类型",
        "region": "地区",
        "yes": "是",
        "ok": "安全",
        "warning": "预警",
        "margin_call": "追加保证金",
        "close_out": "平仓",
        "calibrating": "校准中",
        "closed": "已结清",
        "days-past-due": "逾期天数",
        "restructured": "重组",
        "watch-list": "列入关注名单",
        "below-warning": "低于预警线",
        "margin-call-open": "追加保证金未补足",
        "margin-call-expired": "追加保证金到期未补足",
        "close-out": "低于平仓线",
        "regulation": "监管规定",
        "bank_policy": "本行政策",
        **TERMS["zh"],
    },
}

_STYLE = (
    "body{font-family:'Noto Sans CJK SC','Noto Sans',sans-serif;margin:24px}"
    "table{border-collapse:collapse;margin:8px 0 24px}td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}small{color:#555}"
    "tr.close_out td.status{background:#8c0000;color:#fff}tr.margin_call td.status{background:#d62728;color:#fff}"
    "tr.warning td.status{background:#ff7f0e}tr.ok td.status{background:#dff0d8}"
    "tr.breached td{background:#fde0e0;font-weight:bold}ul{margin:0;padding-left:16px}"
    "td.status{white-space:nowrap}td.coverage{min-width:11em}"
)


def _e(value: Any) -> str:
    """Escape any value for HTML text and quoted attributes."""
    return html.escape(str(value), quote=True)


def _pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.1%}"


def worst_first(loans: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Loans in the page's order: close-out, margin call, warning, ok (then calibrating, closed); lowest coverage first.

    Examples
    --------
    >>> rows = [{"loan_id": "a", "status": "ok", "coverage_ratio": 1.5},
    ...         {"loan_id": "b", "status": "margin_call", "coverage_ratio": 1.15},
    ...         {"loan_id": "c", "status": "ok", "coverage_ratio": 1.4}]
    >>> [r["loan_id"] for r in worst_first(rows)]
    ['b', 'c', 'a']
    """
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}

    def key(loan: dict[str, Any]) -> tuple[int, float, str]:
        cov = loan.get("coverage_ratio")
        return (rank.get(loan["status"], len(rank)), math.inf if cov is None else cov, loan["loan_id"])

    return sorted(loans, key=key)


def _when(value: str, tz: dt.tzinfo) -> str:
    return format_time(dt.datetime.fromisoformat(value), tz)


def _row(loan: dict[str, Any], lang: str, tz: dt.tzinfo) -> str:
    t = LABELS[lang]
    lid = loan["loan_id"]
    status = loan["status"]
    lines = loan["thresholds"]
    coverage = (
        f"<td class='num coverage'>{_pct(loan['coverage_ratio'])}<br><small>"
        + _e(t["lines"].format(w=_pct(lines["warning"]), m=_pct(lines["margin_call"]), c=_pct(lines["close_out"])))
        + "</small></td>"
    )
    category = loan["suggested_category"]
    reasons = "".join(
        f"<li>{_e(t.get(r['criterion'], r['criterion']))} ({_e(t.get(r['source'], r['source']))}): "
        f"{_e(r['fact'])} = {_e(r['value'])}</li>"
        for r in loan["category_reasons"]
    )
    category_cell = (
        f"<td class=category data-category='{_e(category)}'>{_e(CATEGORY_TERMS[lang].get(category, category))}"
        + (f"<ul>{reasons}</ul>" if reasons else "")
        + "</td>"
    )
    if loan["on_watch_list"]:
        items = "".join(
            f"<li>{_e(r['summary'] if lang == 'zh' else r['summary_en'])} <small>({_e(r['rule_id'])}, "
            f"{t['since']} {_when(r['since'], tz)})</small></li>"
            for r in loan["watch_reasons"]
        )
        watch = f"<td class=watch data-on-list=true><b>{t['on_list']}</b><ul>{items}</ul></td>"
    else:
        watch = f"<td class=watch data-on-list=false>{t['off_list']}</td>"
    calls = "".join(
        f"<li class=call data-margin-call='{_e(m['margin_call_id'])}'>{_e(m['margin_call_id'])} "
        f"({_e(t.get(m['status'], m['status']))}): {t['top_up']} "
        f"{format_yuan(m['required_top_up_collateral'], up=True)} {t['repay']} "
        f"{format_yuan(m['required_repayment'], up=True)}; {t['deadline']} "
        f"<time datetime='{_e(m['cure_deadline'])}'>{_when(m['cure_deadline'], tz)}</time>"
        + (f" <small>({t['provisional']})</small>" if m.get("deadline_provisional") else "")
        + "</li>"
        for m in loan["open_margin_calls"]
    )
    quoted = urllib.parse.quote(lid, safe="")
    href = "/api/loans/" + quoted
    report = f"/loans/{quoted}/report?lang={'zh' if lang == 'zh' else 'en'}"
    return (
        f"<tr class='{_e(status)}' data-loan='{_e(lid)}' data-status='{_e(status)}'>"
        f"<td class=loan>{_e(lid)}</td><td>{_e(loan['borrower_id'])}</td>"
        f"<td class=status>{_e(t.get(status, status))}</td>{coverage}{category_cell}{watch}"
        f"<td class=calls>{f'<ul>{calls}</ul>' if calls else t['none']}</td>"
        f"<td><a class=report href='{_e(report)}' title='{_e(t['report_note'].format(days=DEFAULT_DAYS))}'>"
        f"{t['report_link']}</a><br><small><a class=json href='{_e(href)}' title='{_e(t['data_note'])}'>"
        f"{t['data_link']}</a></small></td></tr>"
    )


def render_concentration(data: dict[str, Any] | None, lang: str, why: str | None = None, tz: dt.tzinfo = dt.UTC) -> str:
    """The concentrations section: ``data`` is the JSON of ``/api/portfolio/concentration``.

    ``None`` (the endpoint answered 404, or could not be asked: ``why``) shows "not available". A
    breached row is highlighted (class ``breached``); shares and limits are ratios shown as percent;
    ``as_of`` in the zone ``tz``.
    """
    t = LABELS[lang]
    head = f"<section id=concentration><h2>{t['concentration']}</h2>"
    if data is None:
        detail = f" <small>({_e(why)})</small>" if why else ""
        return f"{head}<p class=not-available>{t['not_available']}{detail}</p></section>"
    rows = []
    for r in data["rows"]:
        limit = t["no_limit"] if r["limit"] is None else _pct(r["limit"])
        breached = bool(r["breached"])
        rows.append(
            f"<tr class='{'breached' if breached else 'within'}' data-dimension='{_e(r['dimension'])}' "
            f"data-key='{_e(r['key'])}'><td>{_e(t.get(r['dimension'], r['dimension']))}</td><td>{_e(r['key'])}</td>"
            f"<td class=num>{format_yuan(r['exposure_yuan'])}</td>"
            f"<td class=num>{format_yuan(r['collateral_yuan'])}</td>"
            f"<td class=num>{_pct(r['share'])}</td><td class=num>{limit}</td>"
            f"<td>{t['yes'] if breached else t['off_list']}</td></tr>"
        )
    as_of = ""
    if data.get("as_of"):
        try:
            stamp = _when(str(data["as_of"]), tz)
        except ValueError:  # not RFC 3339: shown as it came
            stamp = _e(data["as_of"])
        as_of = f"<p>{t['as_of']} {stamp}</p>"
    body = "".join(rows) or f"<tr><td colspan=7>{t['none']}</td></tr>"
    return (
        f"{head}{as_of}<table><tr><th>{t['dimension']}</th><th>{t['key']}</th><th>{t['exposure']}</th>"
        f"<th>{t['collateral']}</th><th>{t['share']}</th><th>{t['limit']}</th><th>{t['breached']}</th></tr>"
        f"{body}</table></section>"
    )


def render_portfolio(
    loans: list[dict[str, Any]] | None,
    lang: str,
    tz: dt.tzinfo,
    now: dt.datetime,
    concentration: dict[str, Any] | None = None,
    concentration_why: str | None = None,
    error: str | None = None,
) -> str:
    """The whole page.

    Parameters
    ----------
    loans
        ``/api/loans`` entries (JSON dicts) the caller may read; ``None`` with ``error`` when the list
        cannot be had now (a worker did not answer).
    lang
        ``"zh"`` or ``"en"``.
    tz
        Display zone of deadlines and times (each shown with its UTC offset).
    now
        When the page is rendered (shown at the top).
    concentration, concentration_why
        :func:`render_concentration`'s arguments.

    Raises
    ------
    KeyError
        For a ``lang`` other than ``zh`` and ``en`` (the view checks it first).
    """
    t = LABELS[lang]
    other = "en" if lang == "zh" else "zh"
    if loans is None:
        body = f"<p class=unavailable>{_e(t['unavailable'].format(why=error or ''))}</p>"
        summary = ""
    else:
        ordered = worst_first(loans)
        counts = Counter(x["status"] for x in ordered)
        summary = " · ".join(f"{_e(t.get(s, s))} {counts[s]}" for s in STATUS_ORDER if counts[s])
        newest = max((x["as_of"] for x in ordered), default=None, key=lambda v: dt.datetime.fromisoformat(v))
        if newest is not None:
            summary = f"{t['as_of']} {_when(newest, tz)}{t['stop']} {summary}"
        heads = ("loan", "borrower", "status", "coverage", "category", "watch", "calls", "data")
        head = "".join(f"<th>{t[h]}</th>" for h in heads)
        rows = "".join(_row(x, lang, tz) for x in ordered)
        body = (
            f"<table id=loans><tr>{head}</tr>{rows}</table><p><small>{t['category']}: {t['category_note']}.</small></p>"
            if rows
            else f"<p>{t['no_loans']}</p>"
        )
    return (
        f"<!doctype html><html lang='{t['lang']}'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S}'><title>{t['title']}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{t['title']}</h1>"
        f"<p>{summary} <small>{t['rendered']} {format_time(now, tz)}; {t['refresh'].format(n=REFRESH_S)}; "
        f"<a href='?lang={other}'>{t['other_lang']}</a></small></p>"
        f"<section id=loans-section><h2>{t['loans']}</h2>{body}</section>"
        f"{render_concentration(concentration, lang, concentration_why, tz)}</body></html>"
    )
