"""Optional push of pledgewatch alerts to Prometheus Alertmanager's v2 API (``POST /api/v2/alerts``).

People get routing, grouping, inhibition, silences and e-mail / webhook / WeChat receivers from a
well-kept tool instead of ours (``deploy/alertmanager/alertmanager.yml``). The Kafka alerts topic
stays the system of record: a failed push is logged and counted
(``pledgewatch_alertmanager_push_failures_total``), never retried in the event path.

Alertmanager's contract (its API docs, "Clients"): a client re-sends every firing alert
periodically, with ``endsAt`` some time ahead, or the alert resolves by itself once ``endsAt`` has
passed; a resolved alert is sent once more with ``endsAt`` = now. :meth:`AlertmanagerPusher.resend`
does the former from the worker's timer; :meth:`AlertmanagerPusher.on_alerts` does both on each
transition.

Labels: ``alertname`` (the rule id), ``rule``, ``severity``, ``loan``, ``asset`` (empty for a loan-scope
rule), ``source="pledgewatch"``. Annotations: ``summary`` (English), ``summary_zh``, ``coverage``,
``required_top_up``, ``cure_deadline`` (of the margin call issued with it, else empty), ``alert_id``.
aiohttp (faust's own HTTP client) does the I/O.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from monitor.display import format_yuan
from monitor.schemas import Alert, MarginCall

__all__ = ["AlertmanagerPusher", "to_alertmanager"]

log = logging.getLogger(__name__)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def to_alertmanager(
    alert: Alert, now: dt.datetime, ends_in_s: float, cure_deadline: dt.datetime | None
) -> dict[str, Any]:
    """One alert in Alertmanager's v2 ``postableAlert`` shape.

    ``endsAt`` is ``now + ends_in_s`` while firing and ``now`` once resolved (times RFC 3339, UTC).
    """
    facts = alert.facts
    cov = facts.get("coverage_ratio")
    top_up = facts.get("required_top_up_collateral")
    ends = now if alert.status == "resolved" else now + dt.timedelta(seconds=ends_in_s)
    return {
        "labels": {
            "alertname": alert.rule_id,
            "rule": alert.rule_id,
            "severity": alert.severity,
            "loan": alert.loan_id or "",
            "asset": alert.asset_id or "",
            "source": "pledgewatch",
        },
        "annotations": {
            "summary": alert.summary_en,
            "summary_zh": alert.summary,
            "coverage": f"{float(cov):.1%}" if isinstance(cov, int | float) else "",
            "required_top_up": format_yuan(float(top_up), up=True) if isinstance(top_up, int | float) else "",
            "cure_deadline": _iso(cure_deadline) if cure_deadline is not None else "",
            "alert_id": alert.alert_id,
        },
        "startsAt": _iso(alert.episode_start),
        "endsAt": _iso(ends),
        "generatorURL": f"pledgewatch://alerts/{alert.alert_id}",
    }


class AlertmanagerPusher:
    """Keeps the firing alerts of this worker and pushes them to Alertmanager.

    Parameters
    ----------
    url
        Alertmanager's base URL, e.g. ``http://127.0.0.1:9093``.
    resend_s
        How often the timer re-sends firing alerts (seconds); ``endsAt`` is 4× this ahead.
    timeout_s
        Timeout of one push (seconds).
    on_failure
        Called once per failed push (a metric counter's ``inc``).
    """

    def __init__(self, url: str, resend_s: float = 30.0, timeout_s: float = 5.0, on_failure: Any = None) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.resend_s = resend_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.on_failure = on_failure
        self.firing: dict[str, tuple[Alert, dt.datetime | None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def on_alerts(self, alerts: Iterable[Alert], margin_calls: Iterable[MarginCall] = ()) -> None:
        """Record transitions (shadow alerts are not pushed) and push them without blocking the caller."""
        deadlines = {m.loan_id: m.cure_deadline for m in margin_calls if m.status == "issued"}
        batch = []
        now = dt.datetime.now(dt.UTC)
        for a in alerts:
            if a.shadow:
                continue
            deadline = deadlines.get(a.loan_id or "") if a.rule_id.endswith("margin-call") else None
            if a.status == "firing":
                self.firing[a.alert_id] = (a, deadline)
            else:
                self.firing.pop(a.alert_id, None)
            batch.append(to_alertmanager(a, now, 4 * self.resend_s, deadline))
        if batch:
            self._spawn(batch)

    def resend(self) -> None:
        """Re-send every firing alert (Alertmanager resolves alerts that are not re-sent)."""
        now = dt.datetime.now(dt.UTC)
        batch = [to_alertmanager(a, now, 4 * self.resend_s, d) for a, d in self.firing.values()]
        if batch:
            self._spawn(batch)

    def _spawn(self, batch: list[dict[str, Any]]) -> None:
        task = asyncio.ensure_future(self.push(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push(self, batch: list[dict[str, Any]]) -> bool:
        """POST one batch; returns whether Alertmanager accepted it (failures are logged and counted)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(self.url, json=batch) as resp:
                if resp.status == 200:
                    return True
                body = (await resp.text())[:200]
                log.warning("alertmanager %s answered %s: %s", self.url, resp.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alertmanager %s unreachable: %s", self.url, exc)
        if self.on_failure is not None:
            self.on_failure()
        return False

    async def close(self) -> None:
        """Wait for pushes in flight and close the HTTP session."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
