"""Readable alert timelines for people: times in the display zone, amounts in yuan with separators."""

from __future__ import annotations

import zoneinfo

from rich.console import Console
from rich.table import Table

from monitor.schemas import Alert, MarginCall

__all__ = ["AlertPrinter", "format_yuan"]

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def format_yuan(amount: float) -> str:
    """Yuan with thousands separators.

    Examples
    --------
    >>> format_yuan(1234567.8)
    '¥1,234,568'
    """
    return f"¥{amount:,.0f}"


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
        self.console = console or Console(width=max(160, Console().width))
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.lang = lang
        self._header = False

    def _table(self) -> Table:
        t = Table(show_header=not self._header, box=None, pad_edge=False, expand=False)
        t.add_column("time", width=21)
        t.add_column("loan", width=15)
        t.add_column("rule / event", width=27)
        t.add_column("severity", width=8)
        t.add_column("coverage", justify="right", width=8)
        t.add_column("why", overflow="fold")
        self._header = True
        return t

    def alert(self, a: Alert) -> None:
        """Print one alert transition."""
        t = self._table()
        cov = a.facts.get("coverage_ratio")
        cov_s = f"{float(cov):.1%}" if isinstance(cov, float) else "n/a"
        state = "" if a.status == "firing" else " (resolved)"
        shadow = " [shadow]" if a.shadow else ""
        summary = a.summary if self.lang == "zh" else a.summary_en
        if a.status == "firing":
            why = f"{summary}. {a.facts.get('why', '')}"
        elif self.lang == "zh":
            why = f"已解除：当前覆盖率 {cov_s}"
        else:
            why = f"resolved: coverage now {cov_s}"
        t.add_row(
            a.at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z"),
            a.loan_id,
            f"{a.rule_id}{state}{shadow}",
            f"[{_STYLE.get(a.severity, '')}]{a.severity}[/]",
            cov_s,
            why,
        )
        self.console.print(t)

    def margin_call(self, m: MarginCall) -> None:
        """Print one margin-call record."""
        t = self._table()
        if m.status == "issued":
            why = (
                f"MARGIN CALL {m.margin_call_id}: pledge {format_yuan(m.required_top_up_collateral)} more collateral "
                f"or repay {format_yuan(m.required_repayment)} "
                f"by {m.cure_deadline.astimezone(self.tz):%Y-%m-%d %H:%M %Z}"
            )
        else:
            why = f"margin call {m.margin_call_id} {m.status}"
        t.add_row(
            m.updated_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z"),
            m.loan_id,
            f"margin-call:{m.status}",
            "[bold red]critical[/]" if m.status in ("issued", "expired") else "info",
            f"{m.coverage_ratio:.1%}",
            why,
        )
        self.console.print(t)
