"""The Prometheus adapter on a fresh registry: values read back, labels bounded to loans and assets."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.core import CoreParams, Monitor
from streams.prometheus import Metrics, PrometheusSensor
from tests.conftest import T0, healthy_window_events, make_event, make_loan, make_pledge


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the /metrics body the way Prometheus does: (sample name, sorted labels) -> value."""
    out = {}
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def healthy_monitor(rulebook) -> tuple[Metrics, Monitor]:  # type: ignore[no-untyped-def]
    """L1 pledging A1, six healthy windows in, reporting to a fresh registry."""
    import datetime as dt

    metrics = Metrics.create(CollectorRegistry())
    mon = Monitor(rulebook, CoreParams(), PrometheusSensor(metrics))
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    for i in range(6):
        for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * i), prefix=f"v{i}"):
            mon.on_telemetry(ev)
    return metrics, mon


def test_prometheus_sensor__exports_valuations_and_loan_position(rulebook) -> None:  # type: ignore[no-untyped-def]
    metrics, _ = healthy_monitor(rulebook)
    got = scrape(metrics)
    assert got[("pledgewatch_events_total", (("outcome", "ok"), ("topic", "pledge.telemetry")))] > 0
    assert got[("pledgewatch_asset_value_yuan", (("asset", "A1"),))] > 9_000_000
    assert got[("pledgewatch_loan_coverage_ratio", (("loan", "L1"),))] > 1.3
    assert got[("pledgewatch_loan_status", (("loan", "L1"), ("status", "ok")))] == 1.0
    assert got[("pledgewatch_loan_line_ratio", (("line", "margin_call"), ("loan", "L1")))] == 1.2
    assert got[("pledgewatch_asset_pledge_info", (("asset", "A1"), ("loan", "L1")))] == 1.0
    assert got[("pledgewatch_asset_quality_dimension_ratio", (("asset", "A1"), ("dimension", "accuracy")))] > 0.9
    labels = {tuple(k for k, _ in labels) for _, labels in got}
    assert all(
        set(ls)
        <= {
            "topic",
            "outcome",
            "reason",
            "rule",
            "severity",
            "status",
            "shadow",
            "asset",
            "dimension",
            "loan",
            "line",
            "category",
            "le",
        }
        for ls in labels
    )


def series(metrics: Metrics) -> int:
    return len(scrape(metrics))


def test_case_c13_ten_thousand_vehicles_add_no_series(rulebook) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    metrics = Metrics.create(CollectorRegistry())
    mon = Monitor(rulebook, CoreParams(), PrometheusSensor(metrics))
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    for i in range(4):  # every metric has its children: windows closed, loan valued
        for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * i), prefix=f"w{i}"):
            mon.on_telemetry(ev)
    before = series(metrics)
    start = T0 + dt.timedelta(minutes=60)
    for n in range(10_000):
        ev = make_event(
            event_id=f"c13-{n}",
            entity_id=f"vehicle-{n}",
            kind="vehicle_position",
            observed_at=start + dt.timedelta(milliseconds=n * 50),
            received_at=start + dt.timedelta(milliseconds=n * 50),
            metrics={"lat": -36.85, "lon": 174.76},
            attributes={"trip_id": f"trip-{n}"},
        )
        mon.on_telemetry(ev)
    after = series(metrics)
    assert scrape(metrics)[("pledgewatch_events_total", (("outcome", "ok"), ("topic", "pledge.telemetry")))] >= 10_000
    assert after == before


def test_portfolio_exposition__escapes_labels_and_renders_non_finite_values_as_prometheus_does() -> None:
    metrics = Metrics.create(CollectorRegistry())
    p = metrics.portfolio
    p.set("pledgewatch_loan_coverage_ratio", ('L"1\\x',), float("inf"))
    p.set("pledgewatch_asset_anomaly_score", ("A1",), float("nan"))
    p.set("pledgewatch_asset_value_yuan", ("A1",), 1.5)
    p.set("pledgewatch_asset_value_yuan", ("A1",), 2.5)
    p.set("pledgewatch_asset_pledge_info", ("A1", "L1"), 1.0)
    p.remove("pledgewatch_asset_pledge_info", ("A1", "L1"))
    got = scrape(metrics)
    assert got[("pledgewatch_loan_coverage_ratio", (("loan", 'L"1\\x'),))] == float("inf")
    assert got[("pledgewatch_asset_value_yuan", (("asset", "A1"),))] == 2.5
    nan = got[("pledgewatch_asset_anomaly_score", (("asset", "A1"),))]
    assert nan != nan
    assert not any(name == "pledgewatch_asset_pledge_info" for name, _ in got)
    assert p.count() == 3


def test_commit_failures__a_refused_commit_is_counted_and_a_good_one_is_not() -> None:
    """C05: faust's consumer returns False from its commit hook when the broker refuses it; that is a metric."""
    import asyncio

    from streams.app import count_commit_failures

    metrics = Metrics.create(CollectorRegistry())
    results = iter([True, False, False])

    class FakeConsumer:  # faust.transport.consumer.Consumer's hook: ``async _commit(offsets) -> bool``
        async def _commit(self, offsets):  # type: ignore[no-untyped-def]
            return next(results)

    class FakeApp:
        consumer = FakeConsumer()

    count_commit_failures(FakeApp(), metrics.commit_failures)  # type: ignore[arg-type]
    for _ in range(3):
        asyncio.run(FakeApp.consumer._commit({("pledge.telemetry", 0): 10}))
    assert scrape(metrics)[("pledgewatch_commit_failures_total", ())] == 2.0


def test_watch_list_and_category_gauges__values_restore_from_the_changelog_and_hidden_from_operations(rulebook) -> None:  # type: ignore[no-untyped-def]
    """A margin call puts L1 on the watch list with special_mention suggested; a worker restarted from the
    changelog (the loan table, read back through StateTable as the worker does) reports both before the
    loan's next event; the operations role's exposition has neither family."""
    import datetime as dt
    import pickle

    from monitor.schemas import BalanceChanged
    from streams.store import StateTable

    watch = ("pledgewatch_loan_on_watch_list", (("loan", "L1"),))

    def category(c: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("pledgewatch_loan_suggested_category", (("category", c), ("loan", "L1")))

    metrics, mon = healthy_monitor(rulebook)
    got = scrape(metrics)
    assert got[watch] == 0.0 and got[category("normal")] == 1.0
    assert sum(v for (name, _), v in got.items() if name == "pledgewatch_loan_suggested_category") == 1.0
    at = T0 + dt.timedelta(hours=2)
    # value 10 M, outstanding 9 M: coverage 1.11 under the 1.2 margin-call line: a margin call, then on the list
    for n, minutes in enumerate((0, 1)):
        ev = BalanceChanged(
            event_id=f"b{n}", loan_id="L1", effective_at=at + dt.timedelta(minutes=minutes), outstanding=9e6 + n
        )
        mon.on_loan_event(ev)
    got = scrape(metrics)
    assert got[watch] == 1.0
    assert [c for c in ("normal", "special_mention", "substandard", "doubtful", "loss") if got[category(c)]] == [
        "special_mention"
    ]

    # the restart: a fresh worker's metrics, the loans' state read back from the changelog
    table = {k.encode(): pickle.dumps(v) for k, v in mon.loan_book.loans.items()}
    metrics = Metrics.create(CollectorRegistry())
    restarted = Monitor(rulebook, CoreParams(), PrometheusSensor(metrics))
    assert watch not in scrape(metrics)
    assert StateTable(table, restarted.loan_book.loans, restore=restarted.loan_book.restore).load_all() == ["L1"]
    got = scrape(metrics)
    assert got[watch] == 1.0 and got[category("special_mention")] == 1.0 and got[category("normal")] == 0.0

    # the partition revoked (as Node.on_partitions_revoked does): the worker now holding the loan reports it
    restarted.loan_book.loans.pop("L1")
    restarted.loan_book.sensor.on_loan_forgotten("L1")
    got = scrape(metrics)
    assert not [k for k in got if k[0].startswith(("pledgewatch_loan_on_watch", "pledgewatch_loan_suggested"))]
    StateTable(table, restarted.loan_book.loans, restore=restarted.loan_book.restore).load_all()  # and back
    assert scrape(metrics)[watch] == 1.0

    hidden = metrics.exposition(per_loan=False).decode()
    assert "pledgewatch_loan_on_watch_list" not in hidden and "pledgewatch_loan_suggested_category" not in hidden
    assert 'loan="L1"' not in hidden


def test_rebalance__a_loan_and_an_asset_are_reported_by_the_worker_holding_them_and_by_no_other(rulebook) -> None:  # type: ignore[no-untyped-def]
    """After a rebalance the worker given L1 and A1 reports their risk position and valuation at once, from the
    changelog (not a window later), without claiming the valuation happened now; the worker that lost them
    drops every series of theirs, so a sum over workers counts each once."""
    import pickle

    from streams.store import StateTable

    cov = ("pledgewatch_loan_coverage_ratio", (("loan", "L1"),))
    ok = ("pledgewatch_loan_status", (("loan", "L1"), ("status", "ok")))
    info = ("pledgewatch_asset_pledge_info", (("asset", "A1"), ("loan", "L1")))
    value = ("pledgewatch_asset_value_yuan", (("asset", "A1"),))
    fresh = ("pledgewatch_asset_last_valuation_timestamp_seconds", (("asset", "A1"),))

    old_metrics, mon = healthy_monitor(rulebook)
    before = scrape(old_metrics)
    assets = {k.encode(): pickle.dumps(v) for k, v in mon.asset_book.assets.items()}
    loans = {k.encode(): pickle.dumps(v) for k, v in mon.loan_book.loans.items()}

    metrics = Metrics.create(CollectorRegistry())
    taker = Monitor(rulebook, CoreParams(), PrometheusSensor(metrics))
    StateTable(assets, taker.asset_book.assets, restore=taker.asset_book.restore).load_all()
    StateTable(loans, taker.loan_book.loans, restore=taker.loan_book.restore).load_all()
    got = scrape(metrics)
    assert got[cov] == before[cov] and got[ok] == 1.0 and got[info] == 1.0
    assert got[value] == before[value]
    assert time.time() - 60 < got[fresh] <= time.time(), "the takeover's time: the no-valuation alert's clock starts"

    # the old holder forgets them (Node.on_partitions_revoked): none of their series stays behind
    sensor = mon.loan_book.sensor
    sensor.on_loan_forgotten("L1")
    sensor.on_asset_forgotten("A1")
    left = [k for k in scrape(old_metrics) if dict(k[1]).get("loan") == "L1" or dict(k[1]).get("asset") == "A1"]
    assert left == []
    assert before[fresh] > 0  # it was there before the revocation


def test_a_poll_records_observations_are_counted_once_per_outcome_with_the_records_total(rulebook) -> None:  # type: ignore[no-untyped-def]
    """One batch record through the worker's step: the events counter moves by its observations (issue 18)."""
    import orjson

    from monitor.core import Provenance, apply_telemetry_record

    metrics = Metrics.create(CollectorRegistry())
    mon = Monitor(rulebook, CoreParams(), PrometheusSensor(metrics))
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    obs = [orjson.loads(make_event(event_id=f"p{i % 5}").model_dump_json()) for i in range(8)]  # 5 new, 3 repeats
    raw = orjson.dumps({"schema_version": 1, "asset_id": "A1", "observations": obs})
    limits = (T0.timestamp() + 86_400.0, 300.0, 0.0, 1_048_576)
    apply_telemetry_record(mon.asset_book, raw, Provenance(partition=0, offset=1), "A1", limits)
    got = scrape(metrics)
    counted = {
        dict(labels)["outcome"]: value
        for (name, labels), value in got.items()
        if name == "pledgewatch_events_total" and dict(labels).get("topic") == "pledge.telemetry"
    }
    assert counted == {"ok": 5.0, "duplicate": 3.0}


def test_firing_alerts__a_forgotten_loans_zeros_are_no_longer_reported() -> None:
    """A loan's alert that stopped firing stays at 0 (Prometheus sees it end), until the loan's partition is
    revoked: then the worker now holding it reports it, and the zeros here would only accumulate."""
    from types import SimpleNamespace

    from streams.prometheus import FiringAlerts

    gauge = FiringAlerts()
    alerts = [SimpleNamespace(rule_id="feed-silent", severity="warning", loan_id="L1", status="firing", shadow=False)]
    gauge.source = lambda: alerts

    def samples() -> dict[tuple[str, ...], float]:
        (family,) = list(gauge.collect())
        return {tuple(s.labels.values()): s.value for s in family.samples}

    assert samples() == {("feed-silent", "warning", "L1"): 1.0}
    alerts.clear()
    assert samples() == {("feed-silent", "warning", "L1"): 0.0}
    gauge.forget("L1")
    assert samples() == {}
