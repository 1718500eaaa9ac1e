"""Readable alert timelines for people: times in the display zone, amounts in yuan with separators."""

from __future__ import annotations

import datetime as dt
import os
import sys
import zoneinfo
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from monitor.schemas import Alert, ClassificationSuggestion, MarginCall, WatchListEvent

__all__ = ["TERMS", "AlertPrinter", "coverage_part", "format_time", "format_value", "format_yuan", "make_console"]

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
#: How a watch-list record reads (关注名单: the five-category practice's watch list, issue 19)
WATCH_TERMS = {
    "zh": {"entered": "列入关注名单", "updated": "关注原因变化", "exited": "移出关注名单"},
    "en": {"entered": "on the watch list", "updated": "watch-list reasons changed", "exited": "off the watch list"},
}
#: The five risk categories as people read them (《商业银行金融资产风险分类办法》), and their styles.
CATEGORY_TERMS = {
    "zh": {"normal": "正常", "special_mention": "关注", "substandard": "次级", "doubtful": "可疑", "loss": "损失"},
    "en": {
        "normal": "normal",
        "special_mention": "special mention",
        "substandard": "substandard",
        "doubtful": "doubtful",
        "loss": "loss",
    },
}
_CATEGORY_LEVEL = {
    "normal": "info",
    "special_mention": "warning",
    "substandard": "critical",
    "doubtful": "critical",
    "loss": "critical",
}

#: Alert / margin-call statuses and severities as people read them (shared with the report).
TERMS: dict[str, dict[str, str]] = {
    "en": {
        "firing": "firing",
        "resolved": "resolved",
        "issued": "issued",
        "cured": "cured",
        "expired": "expired",
        "withdrawn": "withdrawn",
        "info": "info",
        "critical": "critical",
        "severity_warning": "warning",
    },
    "zh": {
        "firing": "触发",
        "resolved": "解除",
        "issued": "已发出",
        "cured": "已补足",
        "expired": "已到期",
        "withdrawn": "已撤回",
        "info": "提示",
        "critical": "严重",
        "severity_warning": "警告",
    },
}
_HEADS = {
    "en": ("time", "loan", "rule / event", "severity", "coverage", "why"),
    "zh": ("时间", "贷款", "规则 / 事件", "级别", "覆盖率", "说明"),
}


def make_console(
    stderr: bool = False,
    min_width: int = 0,
    file_width: int | None = None,
    environ: Mapping[str, str] | None = None,
    stream: object = None,
    **kwargs: Any,
) -> Console:
    """The console pledgewatch prints to: colours and styles on a terminal only, plain text elsewhere.

    Output redirected to a file or a pipe (a log) carries no escape code whatever ``FORCE_COLOR`` or
    ``TTY_COMPATIBLE`` say, and ``NO_COLOR`` (https://no-color.org) turns colours off on a terminal
    too. ``min_width``: the least width (a terminal's own width when wider); ``file_width``: the
    width when not a terminal, where rich would assume 80 columns and cut cells (default
    ``min_width``, at least 80). ``stream``: the stream to judge (default stderr or stdout, as
    ``stderr`` says); the console writes to ``sys.stdout`` / ``sys.stderr`` as they are when it
    prints. Other keywords go to :class:`rich.console.Console`.

    >>> import io
    >>> c = make_console(min_width=160, stream=io.StringIO())
    >>> c.is_terminal, c.color_system, c.width
    (False, None, 160)
    """
    env = os.environ if environ is None else environ
    target = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    try:
        tty = bool(target.isatty())  # type: ignore[attr-defined,union-attr]
    except (AttributeError, ValueError):  # no isatty, or a closed stream: not a terminal
        tty = False
    if not tty:
        width = file_width if file_width is not None else max(min_width, 80)
        return Console(stderr=stderr, force_terminal=False, no_color=True, color_system=None, width=width, **kwargs)
    no_color = bool(env.get("NO_COLOR"))
    probe = Console(stderr=stderr, no_color=no_color)
    return Console(stderr=stderr, no_color=no_color, width=max(min_width, probe.width), **kwargs)


def severity_label(level: str, lang: str) -> str:
    """``critical`` / ``warning`` / ``info`` in ``lang`` (``"zh"`` or ``"en"``)."""
    return TERMS[lang]["severity_warning" if level == "warning" else level]


def format_time(t: dt.datetime, tz: dt.tzinfo) -> str:
    """One stamp for every line pledgewatch prints: local date and time with the UTC offset.

    The offset, not the zone abbreviation: "CST" is China Standard Time and US Central alike.

    Examples
    --------
    >>> import zoneinfo
    >>> format_time(dt.datetime(2016, 5, 19, 20, 30, tzinfo=dt.UTC), zoneinfo.ZoneInfo("Asia/Shanghai"))
    '2016-05-20 04:30 +08:00'
    """
    local = t.astimezone(tz)
    off = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {off[:3]}:{off[3:]}"


def format_yuan(amount: float, up: bool = False) -> str:
    """Whole yuan with thousands separators, rounded in decimal: half-up for a value, up for a demand.

    ``up=True`` for what a borrower is asked to pay or pledge: the notice never asks for less than the
    demand (case C26; the demand itself is exact to the fen in the margin call).

    Examples
    --------
    >>> format_yuan(1234567.8), format_yuan(1234567.5), format_yuan(1234567.01, up=True)
    ('¥1,234,568', '¥1,234,568', '¥1,234,568')
    """
    whole = Decimal(repr(float(amount))).quantize(Decimal(1), ROUND_CEILING if up else ROUND_HALF_UP)
    return f"¥{whole:,}"


def format_value(value: float, lower: float | None, lang: str = "en") -> str:
    """A collateral value with its 90 % lower bound, so the value's uncertainty is seen beside it.

    A dark feed's value is carried forward within its silence grace while its interval widens: the
    point value alone reads flat ("¥9,200,000" window after window) and hides what the lower bound,
    on which the margin call is judged, shows.

    Examples
    --------
    >>> format_value(9_200_000.0, 7_350_000.4)
    '¥9,200,000 (90% lower bound ¥7,350,000)'
    >>> format_value(9_200_000.0, 7_350_000.4, "zh"), format_value(5.0, None)
    ('¥9,200,000（90% 下限 ¥7,350,000）', '¥5')
    """
    if lower is None:
        return format_yuan(value)
    if lang == "zh":
        return f"{format_yuan(value)}（90% 下限 {format_yuan(lower)}）"
    return f"{format_yuan(value)} (90% lower bound {format_yuan(lower)})"


def coverage_part(
    loan_id: str, coverage: float | None, status: str, value: float, lower: float | None, lang: str = "en"
) -> str:
    """One loan's part of the live coverage line: coverage, status, collateral value and its lower bound.

    >>> coverage_part("L1", 1.423, "active", 9_200_000.0, 8_100_000.0)
    'L1 142.3% active ¥9,200,000 (90% lower bound ¥8,100,000)'
    >>> coverage_part("L1", None, "calibrating", 0.0, 0.0)
    'L1 awaiting valuation'
    """
    if status == "calibrating" or coverage is None:
        return f"{loan_id} awaiting valuation"
    return f"{loan_id} {coverage:.1%} {status} {format_value(value, lower, lang)}"


class AlertPrinter:
    """Prints alert transitions and margin calls as table rows, one at a time (live or at the end).

    Parameters
    ----------
    console
        Where to print.
    timezone
        IANA zone for displayed times (default Asia/Shanghai).
    lang
        ``"zh"`` or ``"en"`` summaries.
    """

    def __init__(self, console: Console | None = None, timezone: str = "Asia/Shanghai", lang: str = "en") -> None:
        self.console = console or make_console(min_width=160)
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.lang = lang
        self._header = False

    def _table(self) -> Table:
        t = Table(show_header=not self._header, box=None, pad_edge=False, expand=False)
        when, loan, rule, severity, coverage, why = _HEADS[self.lang]
        t.add_column(when, width=23, no_wrap=True)  # "2016-05-20 04:30 +08:00"
        t.add_column(loan, width=15)
        t.add_column(rule, width=27)
        t.add_column(severity, width=8)
        t.add_column(coverage, justify="right", width=8)
        t.add_column(why, overflow="fold")
        self._header = True
        return t

    def alert(self, a: Alert) -> None:
        """Print one alert transition."""
        t = self._table()
        cov = a.facts.get("coverage_ratio")
        cov_s = f"{float(cov):.1%}" if isinstance(cov, float) else "n/a"
        if a.scope == "portfolio":  # a concentration limit: the share judged, not a loan's coverage
            share = a.facts.get("share")
            cov_s = f"{float(share):.1%}" if isinstance(share, float) else "n/a"
        zh = self.lang == "zh"
        state = "" if a.status == "firing" else ("（解除）" if zh else " (resolved)")
        shadow = ("（影子规则）" if zh else " [shadow]") if a.shadow else ""
        summary = a.summary if self.lang == "zh" else a.summary_en
        if a.status == "firing":
            why = f"{summary}. {a.facts.get('why', '')}"
        elif a.scope == "portfolio":
            why = summary
        elif self.lang == "zh":
            why = f"已解除：当前覆盖率 {cov_s}"
        else:
            why = f"resolved: coverage now {cov_s}"
        t.add_row(
            format_time(a.at, self.tz),
            a.loan_id or str(a.facts.get("key", a.subject)),
            f"{a.rule_id}{state}{shadow}",
            f"[{_STYLE.get(a.severity, '')}]{severity_label(a.severity, self.lang)}[/]",
            cov_s,
            why,
        )
        self.console.print(t)

    def margin_call(self, m: MarginCall) -> None:
        """Print one margin-call record."""
        t = self._table()
        deadline = format_time(m.cure_deadline, self.tz)
        if m.deadline_provisional:  # a year without the official holiday notice: the date may still move
            deadline += "（暂定）" if self.lang == "zh" else " (provisional)"
        top_up, repay = format_yuan(m.required_top_up_collateral, up=True), format_yuan(m.required_repayment, up=True)
        if self.lang == "zh":
            why = (
                f"追加保证金通知 {m.margin_call_id}：请于 {deadline} 前追加押品 {top_up} 或还款 {repay}"
                if m.status == "issued"
                else f"追加保证金通知 {m.margin_call_id} {TERMS['zh'][m.status]}"
            )
        elif m.status == "issued":
            why = f"MARGIN CALL {m.margin_call_id}: pledge {top_up} more collateral or repay {repay} by {deadline}"
        else:
            why = f"margin call {m.margin_call_id} {m.status}"
        level = "critical" if m.status in ("issued", "expired") else "info"
        t.add_row(
            format_time(m.updated_at, self.tz),
            m.loan_id,
            f"margin-call:{m.status}",
            f"[{_STYLE[level]}]{severity_label(level, self.lang)}[/]",
            f"{m.coverage_ratio:.1%}",
            why,
        )
        self.console.print(t)

    def watch_list(self, w: WatchListEvent) -> None:
        """Print one watch-list record: the loan entered, its reasons changed, or it exited; with the reasons."""
        t = self._table()
        reasons = "; ".join(f"{r.rule_id}: {r.summary if self.lang == 'zh' else r.summary_en}" for r in w.reasons)
        verb = WATCH_TERMS[self.lang][w.status]
        sep = "：" if self.lang == "zh" else ": "
        why = f"{verb} ({w.rule_id})" + (f"{sep}{reasons}" if reasons else "")
        self._record_row(t, w.at, w.loan_id, f"watch-list:{w.status}", "info", w.facts.get("coverage_ratio"), why)

    def classification(self, c: ClassificationSuggestion) -> None:
        """Print one change of a loan's suggested category, with each criterion that gives it (fact = value).

        E.g. ``suggested category normal → substandard (a suggestion; the credit committee decides):
        close-out (bank policy) coverage_ratio = 0.808 → substandard; ...``.
        """
        t = self._table()
        terms = CATEGORY_TERMS[self.lang]
        zh = self.lang == "zh"

        def value(v: float | str | bool) -> str:
            return f"{v:.3g}" if isinstance(v, float) else str(v)

        source = {"regulation": "监管规定" if zh else "regulation", "bank_policy": "本行政策" if zh else "bank policy"}
        reasons = "; ".join(
            f"{r.criterion} ({source[r.source]}) {r.fact} = {value(r.value)} → {terms[r.floor]}" for r in c.reasons
        )
        change = f"{terms[c.previous_category]} → {terms[c.category]}"
        if zh:
            why = f"建议风险分类 {change}（建议，由信贷审批委员会认定）" + (
                f"：{reasons}" if reasons else "：无适用标准"
            )
        else:
            why = f"suggested category {change} (a suggestion; the credit committee decides)" + (
                f": {reasons}" if reasons else ": no criterion applies"
            )
        level = _CATEGORY_LEVEL[c.category]
        self._record_row(t, c.at, c.loan_id, f"classification:{c.category}", level, c.facts.get("coverage_ratio"), why)

    def _record_row(self, t: Table, at: dt.datetime, loan_id: str, kind: str, level: str, cov: Any, why: str) -> None:
        """Print one loan record's row (watch list, classification): time, loan, kind, level, coverage, why."""
        t.add_row(
            format_time(at, self.tz),
            loan_id,
            kind,
            f"[{_STYLE[level]}]{severity_label(level, self.lang)}[/]",
            f"{cov:.1%}" if isinstance(cov, float) else "",
            why,
        )
        self.console.print(t)
