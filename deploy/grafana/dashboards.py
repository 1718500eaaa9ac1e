"""Grafana dashboards of pledgewatch, as code (grafana-foundation-sdk, Grafana's own builder library).

Run: ``.venv/bin/python deploy/grafana/dashboards.py`` writes ``deploy/grafana/dashboards/*.json``
(provisioned by ``deploy/grafana/provisioning/``). A unit test fails when the committed JSON differs
from what this script produces, and an integration test runs every panel's PromQL against a real
Prometheus scraping a real worker (:func:`queries` lists them). Why the SDK rather than hand-written
JSON: typed builders that track Grafana's schema, so panels stay valid across Grafana versions.

Dashboards
- ``pledgewatch-portfolio``: coverage of every loan against its lines, loans by status, total exposure
  vs collateral; loans on the watch list, suggested categories, concentration against the rulebook's
  limits (share / limit, red from 100 %); firing alerts.
- ``pledgewatch-loan``: one loan (variable ``loan``): value with its interval, coverage with the three
  lines, its assets' quality dimensions, activity index and anomaly score, alert annotations.
- ``pledgewatch-pipeline``: events/s by outcome, consumer lag, processing and event-to-alert latency,
  dead letters by reason, commit latency, workers up, active rulebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, VizOrientation
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="prometheus")

#: assets pledged to the selected loan, to join asset series to it
OF_LOAN = 'on (asset) group_left () pledgewatch_asset_pledge_info{loan="$loan"}'
#: each concentration key's share over its limit: 1 (100 %) and above is a breach; keys without a limit have none
CONCENTRATION_USE = "pledgewatch_concentration_share / on (dimension, key) pledgewatch_concentration_limit"
LAG = "sum by (topic) (faust_topic_partition_end_offset - on (topic, partition) faust_topic_partition_offset_commited)"


def quantile(phi: float, histogram: str, by: str = "") -> str:
    """PromQL of the ``phi`` quantile of a histogram's buckets over Grafana's rate interval."""
    keys = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({phi}, sum by ({keys}) (rate({histogram}_bucket[$__rate_interval])))"


def q(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    """A Prometheus query of a panel."""
    return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(DS)


def ts(title: str, unit: str, *queries: prometheus.Dataquery, w: int = 12, h: int = 8) -> timeseries.Panel:
    """A time-series panel."""
    p = timeseries.Panel().title(title).unit(unit).datasource(DS).height(h).span(w)
    for query in queries:
        p = p.with_target(query)
    return p


def steps(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: ``(None, base colour)`` first, then ``(value, colour from that value)``."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def portfolio() -> dashboard.Dashboard:
    """Portfolio overview: every loan's coverage and lines, statuses, exposure, firing alerts."""
    return (
        dashboard.Dashboard("pledgewatch / portfolio overview")
        .uid("pledgewatch-portfolio")
        .tags(["pledgewatch", "risk"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_row(dashboard.Row("Coverage"))
        .with_panel(
            ts(
                "Coverage ratio of every loan",
                "percentunit",
                q("pledgewatch_loan_coverage_ratio", "{{loan}}"),
                w=16,
            )
        )
        .with_panel(
            stat.Panel()
            .title("Loans by status")
            .datasource(DS)
            .span(8)
            .height(8)
            .with_target(q("sum by (status) (pledgewatch_loan_status)", "{{status}}"))
        )
        .with_panel(
            table.Panel()
            .title("Headroom to each line (coverage − line)")
            .unit("percentunit")
            .datasource(DS)
            .span(12)
            .height(8)
            .with_target(
                q(
                    "pledgewatch_loan_coverage_ratio - on (loan) group_right () pledgewatch_loan_line_ratio",
                    "{{loan}} {{line}}",
                )
            )
        )
        .with_panel(
            ts(
                "Total exposure vs collateral",
                "currencyCNY",
                q("sum(pledgewatch_loan_outstanding_yuan)", "outstanding (principal + interest)"),
                q("sum(pledgewatch_loan_collateral_value_yuan)", "collateral value", "B"),
                q("sum(pledgewatch_loan_collateral_value_lower_yuan)", "collateral value, lower bound", "C"),
            )
        )
        .with_row(dashboard.Row("Watch list, classification and concentration"))
        .with_panel(
            stat.Panel()
            .title("Loans on the watch list")
            .datasource(DS)
            .span(6)
            .height(8)
            .thresholds(steps((None, "green"), (1, "orange")))
            .with_target(q("sum(pledgewatch_loan_on_watch_list)", "on the watch list"))
        )
        .with_panel(
            stat.Panel()
            .title("Suggested categories (loans)")
            .datasource(DS)
            .span(8)
            .height(8)
            .with_target(q("sum by (category) (pledgewatch_loan_suggested_category)", "{{category}}"))
        )
        .with_panel(
            bargauge.Panel()
            .title("Concentration against limits (share / limit)")
            .description(
                "Exposure each key leaves uncovered over the portfolio's exposure, over the rulebook's limit "
                "for it: red from 100 % (breached). Keys without a limit are not shown."
            )
            .unit("percentunit")
            .min(0)
            .max(1.5)
            .datasource(DS)
            .span(10)
            .height(8)
            .display_mode(BarGaugeDisplayMode.GRADIENT)
            .orientation(VizOrientation.HORIZONTAL)
            .thresholds(steps((None, "green"), (0.8, "orange"), (1, "red")))
            .with_target(q(CONCENTRATION_USE, "{{dimension}} {{key}}"))
        )
        .with_row(dashboard.Row("Alerts"))
        .with_panel(
            table.Panel()
            .title("Alerts firing by rule, severity and loan")
            .datasource(DS)
            .span(24)
            .height(8)
            .with_target(q("sum by (rule, severity, loan) (pledgewatch_alerts_firing)", "{{rule}} {{loan}}"))
        )
        .build()
    )


def loan() -> dashboard.Dashboard:
    """Loan drill-down with a ``loan`` variable."""
    return (
        dashboard.Dashboard("pledgewatch / loan drill-down")
        .uid("pledgewatch-loan")
        .tags(["pledgewatch", "risk"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(
            dashboard.QueryVariable("loan")
            .label("loan")
            .datasource(DS)
            .query("label_values(pledgewatch_loan_coverage_ratio, loan)")
        )
        .annotation(
            dashboard.AnnotationQuery()
            .name("alerts firing")
            .datasource(DS)
            .enable(True)
            .icon_color("red")
            .expr('pledgewatch_alerts_firing{loan="$loan"}')
        )
        .with_panel(
            ts(
                "Collateral value with its interval",
                "currencyCNY",
                q('pledgewatch_loan_collateral_value_yuan{loan="$loan"}', "collateral value"),
                q('pledgewatch_loan_collateral_value_lower_yuan{loan="$loan"}', "lower bound", "B"),
                q('pledgewatch_loan_outstanding_yuan{loan="$loan"}', "outstanding", "C"),
            )
        )
        .with_panel(
            ts(
                "Coverage and the contract's lines",
                "percentunit",
                q('pledgewatch_loan_coverage_ratio{loan="$loan"}', "coverage"),
                q('pledgewatch_loan_line_ratio{loan="$loan"}', "{{line}} line", "B"),
            )
        )
        .with_panel(
            ts(
                "Asset values",
                "currencyCNY",
                q(f"pledgewatch_asset_value_yuan * {OF_LOAN}", "{{asset}}"),
                q(f"pledgewatch_asset_value_lower_yuan * {OF_LOAN}", "{{asset}} lower bound", "B"),
            )
        )
        .with_panel(
            ts(
                "Quality dimensions (GB/T 36344)",
                "percentunit",
                q(f"pledgewatch_asset_quality_dimension_ratio * {OF_LOAN}", "{{asset}} {{dimension}}"),
            )
        )
        .with_panel(
            ts(
                "Activity index",
                "percentunit",
                q(f"pledgewatch_asset_activity_index_ratio * {OF_LOAN}", "{{asset}}"),
            )
        )
        .with_panel(
            ts(
                "Anomaly score (HalfSpaceTrees)",
                "none",
                q(f"pledgewatch_asset_anomaly_score * {OF_LOAN}", "{{asset}}"),
            )
        )
        .build()
    )


def pipeline() -> dashboard.Dashboard:
    """Pipeline health for operations."""
    return (
        dashboard.Dashboard("pledgewatch / pipeline health")
        .uid("pledgewatch-pipeline")
        .tags(["pledgewatch", "operations"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_panel(
            ts(
                "Input records/s by topic and outcome",
                "reqps",
                q(
                    "sum by (topic, outcome) (rate(pledgewatch_events_total[$__rate_interval]))",
                    "{{topic}} {{outcome}}",
                ),
            )
        )
        .with_panel(ts("Consumer lag (records behind the committed offset)", "short", q(LAG, "{{topic}}")))
        .with_panel(
            ts(
                "Processing time per record",
                "s",
                q(
                    quantile(0.5, "pledgewatch_processing_seconds", "topic"),
                    "p50 {{topic}}",
                ),
                q(
                    quantile(0.99, "pledgewatch_processing_seconds", "topic"),
                    "p99 {{topic}}",
                    "B",
                ),
            )
        )
        .with_panel(
            ts(
                "Event-to-alert latency",
                "s",
                q(
                    quantile(0.5, "pledgewatch_event_to_alert_seconds"),
                    "p50",
                ),
                q(
                    quantile(0.99, "pledgewatch_event_to_alert_seconds"),
                    "p99",
                    "B",
                ),
            )
        )
        .with_panel(
            ts(
                "Dead letters/s by reason",
                "reqps",
                q("sum by (reason) (rate(pledgewatch_dead_letters_total[$__rate_interval]))", "{{reason}}"),
            )
        )
        .with_panel(
            ts(
                "Offset commit latency (faust)",
                "ms",
                q(
                    quantile(0.99, "faust_consumer_commit_latency"),
                    "p99",
                ),
            )
        )
        .with_panel(
            stat.Panel()
            .title("Workers up")
            .datasource(DS)
            .span(8)
            .height(6)
            .with_target(q('sum(up{job="pledgewatch"})', "workers up"))
        )
        .with_panel(
            table.Panel()
            .title("Active rulebook per worker")
            .datasource(DS)
            .span(16)
            .height(6)
            .with_target(q("pledgewatch_rulebook_info == 1", "{{instance}} {{rulebook}} v{{version}}"))
        )
        .build()
    )


DASHBOARDS = {"portfolio": portfolio, "loan": loan, "pipeline": pipeline}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    enc = JSONEncoder(sort_keys=True, indent=2)
    return {f"{name}.json": enc.encode(build()) + "\n" for name, build in DASHBOARDS.items()}


def queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and annotation of a dashboard's JSON."""
    out = [
        (f"{p.get('title')}/{t.get('refId')}", t["expr"])
        for p in doc.get("panels", [])
        for t in p.get("targets", [])
        if t.get("expr")
    ]
    for a in doc.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a.get('name')}", a["expr"]))
    return out


def substitute(expr: str, loan_id: str, rate_interval: str = "1m") -> str:
    """Replace Grafana's variables the way Grafana would for one selected loan."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", "15s")
    return re.sub(r"\$\{?loan\}?", loan_id, expr)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for fname, text in render().items():
        (OUT / fname).write_text(text, encoding="utf-8")
        n = len(queries(json.loads(text)))
        print(f"wrote {OUT / fname} ({n} queries)")
