"""``pledgewatch report``: a post-loan review (贷后检查) of one loan or all, as one HTML file and a PNG per chart.

Per loan, on one time axis (the display time zone):

1. **Collateral value** with its 90 % prediction interval (the sum over the loan's assets of
   ``value_lower`` … ``value_upper``) and the appraisal (sum of ``appraisal_value``), yuan;
2. **Coverage ratio** (collateral value ÷ outstanding) with the contract's warning, margin-call and
   close-out lines;
3. **The six quality dimensions** (GB/T 36344-2018 names; their smoothed levels, mean over the loan's assets);
4. **Anomaly score** of each asset (HalfSpaceTrees, 0..1) with the anomaly threshold;

firing alerts and issued margin calls are markers on the value and coverage charts, and listed in a
table with their times and summaries. A second table gives the largest window-to-window value changes
with their attribution in yuan (activity, each quality dimension, anomaly handling:
``CollateralValuation.attribution``, whose parts sum to the change; ``docs/valuation.md``).

The HTML embeds plotly.js, so it opens without a network. PNGs are written by kaleido, which drives a
Chrome or Chromium (Debian: ``apt-get install chromium``; ``--no-png`` skips them).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import os
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.display import TERMS, format_yuan, severity_label
from monitor.errors import ConfigError
from monitor.schemas import DIMENSIONS, Alert, CollateralValuation, LoanRiskSnapshot, MarginCall
from monitor.valuation import ValuationParams

__all__ = [
    "DEFAULT_DAYS",
    "LABELS",
    "LoanHistory",
    "build_report",
    "histories",
    "last_days",
    "loan_report",
    "render_report",
    "script_hashes",
]

_VALUATION_DEFAULTS = ValuationParams()

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Post-loan review",
        "value": "Collateral value (yuan)",
        "interval": "90 % prediction interval",
        "appraisal": "Appraisal",
        "coverage": "Coverage ratio",
        "warning": "Warning line",
        "margin_call": "Margin-call line",
        "close_out": "Close-out line",
        "quality": "Quality dimensions (0..1)",
        "anomaly": "Anomaly score",
        "threshold": "Anomaly threshold",
        "warmup": "Warm-up ({n} windows): scores not yet flagged",
        "alerts": "Alerts and margin calls",
        "alert": "Alert",
        "call": "Margin call",
        "changes": "Largest value changes and why (yuan)",
        "time": "Time",
        "asset": "Asset",
        "change": "Change",
        "activity": "Activity",
        "anomaly_handling": "Anomaly handling",
        "rule": "Rule",
        "severity": "Severity",
        "summary": "Summary",
        "outstanding": "Outstanding",
        "period": "Period",
        "none": "none",
        "normativity": "Normativity",
        "completeness": "Completeness",
        "accuracy": "Accuracy",
        "consistency": "Consistency",
        "timeliness": "Timeliness",
        "accessibility": "Accessibility",
        **TERMS["en"],
    },
    "zh": {
        "title": "贷后检查报告",
        "value": "押品价值（元）",
        "interval": "90% 预测区间",
        "appraisal": "评估值",
        "coverage": "押品覆盖率",
        "warning": "预警线",
        "margin_call": "追加保证金线",
        "close_out": "平仓线",
        "quality": "数据质量六维度（0..1）",
        "anomaly": "异常分数",
        "threshold": "异常阈值",
        "warmup": "预热期（{n} 个窗口）：不判定异常",
        "alerts": "告警与追加保证金通知",
        "alert": "告警",
        "call": "追加保证金通知",
        "changes": "价值变动最大的窗口及其归因（元）",
        "time": "时间",
        "asset": "数据资产",
        "change": "变动",
        "activity": "业务活跃度",
        "anomaly_handling": "异常处理",
        "rule": "规则",
        "severity": "级别",
        "summary": "摘要",
        "outstanding": "贷款余额",
        "period": "期间",
        "none": "无",
        "normativity": "规范性",
        "completeness": "完整性",
        "accuracy": "准确性",
        "consistency": "一致性",
        "timeliness": "时效性",
        "accessibility": "可访问性",
        **TERMS["zh"],
    },
}


@dataclass
class LoanHistory:
    """What one loan's report shows: its snapshots, its assets' valuations, its alerts and margin calls."""

    loan_id: str
    snapshots: list[LoanRiskSnapshot] = field(default_factory=list)
    valuations: list[CollateralValuation] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    margin_calls: list[MarginCall] = field(default_factory=list)


def _write_png(fig: Any, path: Path) -> None:
    """Write one chart as a 1100 × 420 PNG through kaleido, up to three attempts one second apart.

    Under load kaleido's page can run its render call before its own scripts have loaded
    (``ReferenceError: kaleido_scopes is not defined``, seen while another Chromium was busy); a
    fresh attempt renders. The last error is raised (tenacity, ``reraise=True``).
    """
    from tenacity import Retrying, stop_after_attempt, wait_fixed

    for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_fixed(1.0), reraise=True):
        with attempt:
            fig.write_image(path, width=1100, height=420, scale=1)


def histories(
    valuations: Iterable[CollateralValuation],
    snapshots: Iterable[LoanRiskSnapshot],
    alerts: Iterable[Alert],
    margin_calls: Iterable[MarginCall],
    loan_id: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[LoanHistory]:
    """Group outputs by loan (one loan, or every loan with a snapshot), kept to ``[start, end)``.

    Raises
    ------
    ConfigError
        When ``loan_id`` has no snapshot in the period.
    """
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"--from / --to: got {start.isoformat()} … {end.isoformat()}, expected --from before --to")

    def within(t: dt.datetime) -> bool:
        return (start is None or t >= start) and (end is None or t < end)

    out: dict[str, LoanHistory] = {}
    for s in snapshots:
        if (loan_id is None or s.loan_id == loan_id) and within(s.as_of):
            out.setdefault(s.loan_id, LoanHistory(s.loan_id)).snapshots.append(s)
    if loan_id is not None and loan_id not in out:
        msg = f"--loan: got {loan_id!r}, expected a loan with risk snapshots in the period"
        raise ConfigError(msg)
    for v in valuations:
        if within(v.window_end):
            for lid in v.loan_ids:
                if lid in out:
                    out[lid].valuations.append(v)
    for a in alerts:
        if a.loan_id in out and within(a.at):
            out[a.loan_id].alerts.append(a)
    for m in margin_calls:
        if m.loan_id in out and within(m.updated_at):
            out[m.loan_id].margin_calls.append(m)
    return [out[k] for k in sorted(out)]


#: Chinese date ticks (d3-time-format; plotly.js ships English month names only).
_ZH_DATES = {
    "tickformatstops": [
        {"dtickrange": [None, 86_400_000], "value": "%H:%M<br>%m月%d日"},
        {"dtickrange": [86_400_000, None], "value": "%Y年%m月%d日"},
    ],
    "hoverformat": "%Y年%m月%d日 %H:%M",
}


def _charts(h: LoanHistory, lang: str, tz: zoneinfo.ZoneInfo, threshold: float, warmup: int) -> dict[str, Any]:
    """The four figures of one loan; ``warmup`` = windows before HalfSpaceTrees may flag (``hst_window``)."""
    import plotly.graph_objects as go

    t = LABELS[lang]

    def local(d: dt.datetime) -> dt.datetime:
        return d.astimezone(tz).replace(tzinfo=None)  # plotly plots naive times: local ones

    by_window: dict[dt.datetime, list[CollateralValuation]] = defaultdict(list)
    for v in h.valuations:
        by_window[v.window_end].append(v)
    ends = sorted(by_window)
    xs = [local(e) for e in ends]
    value = [sum(v.value for v in by_window[e]) for e in ends]
    lower = [sum(v.value_lower for v in by_window[e]) for e in ends]
    upper = [sum(v.value_upper for v in by_window[e]) for e in ends]
    appraisal = [sum(v.appraisal_value for v in by_window[e]) for e in ends]
    firing = [a for a in h.alerts if a.status == "firing"]
    issued = [m for m in h.margin_calls if m.status == "issued"]

    def markers(fig: Any, times: list[dt.datetime], series: list[float]) -> None:
        """Alerts and margin calls on a line: each at the line's last point at or before it."""

        def near(when: dt.datetime) -> float | None:
            before = [y for x, y in zip(times, series, strict=True) if x <= when]
            return before[-1] if before else (series[0] if series else None)

        for times_, texts, symbol, size, colour, name in (
            (
                [a.at for a in firing],
                [f"{a.rule_id} ({a.severity}) {local(a.at):%Y-%m-%d %H:%M}" for a in firing],
                "triangle-down",
                12,
                "#d62728",
                t["alert"],
            ),
            (
                [m.updated_at for m in issued],
                [f"{m.margin_call_id} {format_yuan(m.required_top_up_collateral, up=True)}" for m in issued],
                "x",
                13,
                "#000000",
                t["call"],
            ),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[local(w) for w in times_],
                    y=[near(w) for w in times_],
                    mode="markers",
                    marker={"symbol": symbol, "size": size, "color": colour},
                    name=name,
                    text=texts,
                    hoverinfo="text",
                )
            )

    layout = {"template": "plotly_white", "height": 380, "margin": {"l": 70, "r": 20, "t": 50, "b": 40}}
    fv = go.Figure(layout={**layout, "title": f"{h.loan_id}: {t['value']}"})
    fv.add_trace(go.Scatter(x=xs, y=upper, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"))
    fv.add_trace(
        go.Scatter(
            x=xs,
            y=lower,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            name=t["interval"],
            fillcolor="rgba(31,119,180,0.2)",
        )
    )
    fv.add_trace(go.Scatter(x=xs, y=value, mode="lines", name=t["value"], line={"color": "#1f77b4"}))
    dashed = {"dash": "dash", "color": "#7f7f7f"}
    fv.add_trace(go.Scatter(x=xs, y=appraisal, mode="lines", name=t["appraisal"], line=dashed))
    markers(fv, ends, value)
    fv.update_yaxes(tickformat=",.0f", title=t["value"])

    snaps = sorted(h.snapshots, key=lambda s: s.as_of)
    if ends:  # from the first valuation on: before it the loan has no collateral value yet (coverage 0)
        snaps = [s for s in snaps if s.as_of >= ends[0]] or snaps
    cov_t = [s.as_of for s in snaps if s.coverage_ratio is not None]
    cov = [s.coverage_ratio for s in snaps if s.coverage_ratio is not None]
    fc = go.Figure(layout={**layout, "title": f"{h.loan_id}: {t['coverage']}"})
    fc.add_trace(go.Scatter(x=[local(x) for x in cov_t], y=cov, mode="lines", name=t["coverage"]))
    if snaps:
        lines = snaps[-1].thresholds
        for key, level, colour in (
            ("warning", lines.warning, "#ff7f0e"),
            ("margin_call", lines.margin_call, "#d62728"),
            ("close_out", lines.close_out, "#8c0000"),
        ):
            fc.add_hline(
                y=level,
                line={"dash": "dot", "color": colour},
                annotation_text=f"{t[key]} {level:.0%}",
                annotation_position="top left",
            )
    markers(fc, cov_t, cov)  # type: ignore[arg-type]  # coverage ratios, Nones left out above
    fc.update_yaxes(tickformat=".0%", title=t["coverage"])

    fq = go.Figure(layout={**layout, "title": f"{h.loan_id}: {t['quality']}"})
    for d in DIMENSIONS:
        ys = []
        for e in ends:
            vals = [v.quality.get(d) for v in by_window[e] if v.quality.get(d) is not None]
            ys.append(sum(vals) / len(vals) if vals else None)  # type: ignore[arg-type]
        fq.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=t[d]))
    fq.update_yaxes(range=[0, 1.05])

    fa = go.Figure(layout={**layout, "title": f"{h.loan_id}: {t['anomaly']}"})
    per_asset: dict[str, list[CollateralValuation]] = defaultdict(list)
    for v in h.valuations:
        per_asset[v.asset_id].append(v)
    warm_ends = []
    for aid, vs in sorted(per_asset.items()):
        vs.sort(key=lambda v: v.window_end)
        x = [local(v.window_end) for v in vs]
        fa.add_trace(go.Scatter(x=x, y=[v.anomaly_score for v in vs], mode="lines", name=aid))
        if vs and vs[0].windows_seen <= warmup:  # the report starts inside this asset's warm-up
            inside = [xi for xi, v in zip(x, vs, strict=True) if v.windows_seen <= warmup]
            warm_ends.append((x[0], inside[-1]))
    if warm_ends:
        x0, x1 = min(w[0] for w in warm_ends), max(w[1] for w in warm_ends)
        fa.add_vrect(
            x0=x0,
            x1=x1,
            fillcolor="#7f7f7f",
            opacity=0.12,
            line_width=0,
            annotation_text=t["warmup"].format(n=warmup),
            annotation_position="top left",
        )
    label = f"{t['threshold']} {threshold:.2f}"
    fa.add_hline(y=threshold, line={"dash": "dot", "color": "#d62728"}, annotation_text=label)
    fa.update_yaxes(range=[0, 1.05])
    figs = {"value": fv, "coverage": fc, "quality": fq, "anomaly": fa}
    if lang == "zh":
        for fig in figs.values():
            fig.update_xaxes(**_ZH_DATES)
    return figs


def _changes_table(h: LoanHistory, lang: str, tz: zoneinfo.ZoneInfo, top: int) -> str:
    t = LABELS[lang]
    rows = sorted(
        (v for v in h.valuations if v.attribution),
        key=lambda v: -abs(sum(v.attribution.values())),
    )[:top]
    cols = ["activity", *[f"quality.{d}" for d in DIMENSIONS], "anomaly_handling"]
    head = "".join(f"<th>{html.escape(t[c.removeprefix('quality.')])}</th>" for c in cols)
    body = []
    for v in rows:
        cells = "".join(f"<td class=num>{format_yuan(v.attribution.get(c, 0.0))}</td>" for c in cols)
        change = format_yuan(sum(v.attribution.values()))
        when = v.window_end.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        body.append(f"<tr><td>{when}</td><td>{html.escape(v.asset_id)}</td><td class=num>{change}</td>{cells}</tr>")
    empty = f"<tr><td>{t['none']}</td></tr>"
    return (
        f"<h3>{html.escape(t['changes'])}</h3><table><tr><th>{t['time']}</th><th>{t['asset']}</th>"
        f"<th>{t['change']}</th>{head}</tr>{''.join(body) or empty}</table>"
    )


def _alerts_table(h: LoanHistory, lang: str, tz: zoneinfo.ZoneInfo) -> str:
    t = LABELS[lang]
    rows = []

    for a in sorted(h.alerts, key=lambda a: a.at):
        summary = a.summary if lang == "zh" else a.summary_en
        rows.append(
            f"<tr class=alert id='{html.escape(a.alert_id)}-{a.status}'><td>{a.at.astimezone(tz):%Y-%m-%d %H:%M}</td>"
            f"<td>{t['alert']} ({t[a.status]})</td><td>{html.escape(a.rule_id)}</td>"
            f"<td>{severity_label(a.severity, lang)}</td>"
            f"<td>{html.escape(summary)}</td></tr>"
        )
    for m in sorted(h.margin_calls, key=lambda m: m.updated_at):
        rows.append(
            f"<tr class=call><td>{m.updated_at.astimezone(tz):%Y-%m-%d %H:%M}</td><td>{t['call']} ({t[m.status]})</td>"
            f"<td>{html.escape(m.margin_call_id)}</td><td></td>"
            f"<td>{format_yuan(m.required_top_up_collateral, up=True)}</td></tr>"
        )
    empty = f"<tr><td>{t['none']}</td></tr>"
    return (
        f"<h3>{html.escape(t['alerts'])}</h3><table><tr><th>{t['time']}</th><th></th><th>{t['rule']}</th>"
        f"<th>{t['severity']}</th><th>{t['summary']}</th></tr>{''.join(rows) or empty}</table>"
    )


def _div_id(loan_id: str, chart: str) -> str:
    """The chart's element id: the loan id with anything but letters, digits, ``-`` and ``_`` as ``_``.

    Plotly writes the id into the page and its script unescaped, and loan ids come from other systems.
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", loan_id) + f"-{chart}"


def _render(
    loans: list[LoanHistory],
    lang: str,
    timezone: str,
    top_changes: int,
    anomaly_threshold: float,
    hst_window: int,
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The report's HTML page and each loan's figures (loan id, chart name -> plotly figure)."""
    import plotly.offline

    if lang not in LABELS:
        raise ConfigError(f"--lang: got {lang!r}, expected one of {sorted(LABELS)}")
    if not loans:
        raise ConfigError("report: no loan has risk snapshots in the period; nothing to report")
    tz = zoneinfo.ZoneInfo(timezone)
    t = LABELS[lang]
    figures: list[tuple[str, dict[str, Any]]] = []
    sections = []
    for h in loans:
        charts = _charts(h, lang, tz, anomaly_threshold, hst_window)
        figures.append((h.loan_id, charts))
        last = max(h.snapshots, key=lambda s: s.as_of)
        first = min(h.snapshots, key=lambda s: s.as_of)
        fmt = "%Y-%m-%d %H:%M"
        period = f"{first.as_of.astimezone(tz):{fmt}} – {last.as_of.astimezone(tz):{fmt}} ({timezone})"
        divs = "".join(
            fig.to_html(full_html=False, include_plotlyjs=False, div_id=_div_id(h.loan_id, name))
            for name, fig in charts.items()
        )
        sections.append(
            f"<section id='{html.escape(h.loan_id)}'><h2>{html.escape(h.loan_id)}</h2>"
            f"<p>{t['period']}: {period}. {t['outstanding']}: {format_yuan(last.outstanding)}; "
            f"{t['coverage']}: {'–' if last.coverage_ratio is None else f'{last.coverage_ratio:.1%}'}; "
            f"{t['warning']} {last.thresholds.warning:.0%} · {t['margin_call']} {last.thresholds.margin_call:.0%} · "
            f"{t['close_out']} {last.thresholds.close_out:.0%}</p>"
            f"{divs}{_alerts_table(h, lang, tz)}{_changes_table(h, lang, tz, top_changes)}</section>"
        )
    page = (
        f"<!doctype html><html lang='{'zh-CN' if lang == 'zh' else 'en'}'><head><meta charset='utf-8'>"
        f"<title>{t['title']}: {html.escape(', '.join(h.loan_id for h in loans))}</title>"
        "<style>body{font-family:'Noto Sans CJK SC','Noto Sans',sans-serif;margin:24px}"
        "table{border-collapse:collapse;margin:8px 0 24px}td,th{border:1px solid #ccc;padding:3px 8px}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}</style>"
        f"<script>{plotly.offline.get_plotlyjs()}</script></head><body><h1>{t['title']}</h1>"
        f"{''.join(sections)}</body></html>"
    )
    return page, figures


def render_report(
    loans: list[LoanHistory],
    lang: str = "en",
    timezone: str = "Asia/Shanghai",
    top_changes: int = 10,
    anomaly_threshold: float = _VALUATION_DEFAULTS.anomaly_threshold,
    hst_window: int = _VALUATION_DEFAULTS.hst_window,
) -> str:
    """The report's HTML page (one string, plotly.js inline) as :func:`build_report` writes it; nothing written.

    Every text from data is escaped; the only scripts are plotly.js and one per chart (see
    :func:`script_hashes`).

    Raises
    ------
    ConfigError
        For an unknown ``lang`` or no loan to report.
    """
    return _render(loans, lang, timezone, top_changes, anomaly_threshold, hst_window)[0]


_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def script_hashes(page: str) -> list[str]:
    """CSP source expressions (``'sha256-<base64>'``) of every inline script of ``page``, in page order.

    Hashes of the UTF-8 text between ``<script>`` and ``</script>``, as browsers compute them. Meant for
    pages of :func:`render_report`, whose data never forms a tag (escaped, and plotly's JSON writes
    ``<`` as a ``u003c`` escape): a page with injected markup would get its script allowed.
    """
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _SCRIPT.findall(page)
    ]


#: Days of event time a single loan's report covers by default (``last_days``).
DEFAULT_DAYS = 7


def last_days(snapshots: Iterable[LoanRiskSnapshot], loan_id: str, days: float = DEFAULT_DAYS) -> dt.datetime | None:
    """The start of the last ``days`` of ``loan_id``'s event time: its newest snapshot's ``as_of`` − ``days``.

    Event time, not the wall clock, so that a replay of old data (the demo's 2016) still shows its last
    week. None when the loan has no snapshot (``histories`` then raises for it).

    Raises
    ------
    ConfigError
        For ``days`` not positive.
    """
    if not days > 0:
        raise ConfigError(f"days: got {days!r}, expected a number of days above 0")
    newest = max((s.as_of for s in snapshots if s.loan_id == loan_id), default=None)
    return None if newest is None else newest - dt.timedelta(days=days)


def loan_report(
    valuations: Iterable[CollateralValuation],
    snapshots: Iterable[LoanRiskSnapshot],
    alerts: Iterable[Alert],
    margin_calls: Iterable[MarginCall],
    loan_id: str,
    days: float = DEFAULT_DAYS,
    lang: str = "en",
    timezone: str = "Asia/Shanghai",
    anomaly_threshold: float = _VALUATION_DEFAULTS.anomaly_threshold,
    hst_window: int = _VALUATION_DEFAULTS.hst_window,
) -> str:
    """One loan's report page over its last ``days`` of event time (:func:`last_days`), from the output records.

    What ``pledgewatch report --loan <id> --from <newest − days>`` writes as ``report.html``
    (:func:`histories`, :func:`render_report`), returned instead of written.

    Raises
    ------
    ConfigError
        When the loan has no risk snapshot, for ``days`` not above 0, or an unknown ``lang``.
    """
    snapshots = list(snapshots)
    start = last_days(snapshots, loan_id, days)
    loans = histories(valuations, snapshots, alerts, margin_calls, loan_id, start)
    return render_report(loans, lang, timezone, anomaly_threshold=anomaly_threshold, hst_window=hst_window)


def build_report(
    loans: list[LoanHistory],
    out: Path,
    lang: str = "en",
    timezone: str = "Asia/Shanghai",
    png: bool = True,
    top_changes: int = 10,
    anomaly_threshold: float = _VALUATION_DEFAULTS.anomaly_threshold,
    hst_window: int = _VALUATION_DEFAULTS.hst_window,
) -> list[Path]:
    """Write ``out/report.html`` and (with ``png``) ``out/<loan>-<chart>.png``; return the paths written.

    ``anomaly_threshold`` (0..1) and ``hst_window`` (windows of warm-up, shaded on the anomaly chart)
    are the valuation's (:class:`monitor.valuation.ValuationParams`). The page is :func:`render_report`'s.

    Raises
    ------
    ConfigError
        For an unknown ``lang``, no loan to report, or when PNGs are asked for and no Chrome/Chromium
        is found for kaleido.
    """
    if lang not in LABELS:
        raise ConfigError(f"--lang: got {lang!r}, expected one of {sorted(LABELS)}")
    if not loans:
        raise ConfigError("report: no loan has risk snapshots in the period; nothing to report")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: got {out}, an existing file; expected a folder (created when missing)")
    page, figures = _render(loans, lang, timezone, top_changes, anomaly_threshold, hst_window)
    out.mkdir(parents=True, exist_ok=True)
    if png and os.environ.get("CHROMIUM_BIN"):
        os.environ.setdefault("BROWSER_PATH", os.environ["CHROMIUM_BIN"])  # kaleido's choreographer reads this
    written: list[Path] = []
    for loan_id, charts in figures if png else ():
        for name, fig in charts.items():
            path = out / f"{loan_id}-{name}.png"
            try:
                _write_png(fig, path)
            except Exception as exc:  # noqa: BLE001 - kaleido raises its own types when no browser runs
                msg = f"report: PNG export needs Chrome or Chromium for kaleido (apt-get install chromium): {exc}"
                raise ConfigError(msg) from None
            written.append(path)
    page_path = out / "report.html"
    page_path.write_text(page, encoding="utf-8")
    return [page_path, *written]
