"""The Prometheus adapter on a fresh registry: values read back, labels bounded to loans and assets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitor.engine import CoreParams, Monitor
from streams.prometheus import Metrics, PrometheusSensor
from tests.conftest import T0, healthy_window_events, make_event, make_loan, make_pledge


def test_prometheus_sensor__exports_valuations_and_loan_position(rulebook) -> None:  # type: ignore[no-untyped-def]
    reg = CollectorRegistry()
    mon = Monitor(rulebook, CoreParams(), PrometheusSensor(Metrics.create(reg)))
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    import datetime as dt

    for i in range(6):
        for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * i), prefix=f"v{i}"):
            mon.on_telemetry(ev)
    assert reg.get_sample_value("pledgewatch_events_total", {"topic": "pledge.telemetry", "outcome": "ok"}) > 0
    assert reg.get_sample_value("pledgewatch_asset_value_yuan", {"asset": "A1"}) > 9_000_000
    cov = reg.get_sample_value("pledgewatch_loan_coverage_ratio", {"loan": "L1"})
    assert cov is not None and cov > 1.3
    assert reg.get_sample_value("pledgewatch_loan_status", {"loan": "L1", "status": "ok"}) == 1.0
    labels = {tuple(sorted(s.labels)) for m in reg.collect() for s in m.samples}
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
            "le",
        }
        for ls in labels
    )


def series(reg: CollectorRegistry) -> int:
    return sum(len(m.samples) for m in reg.collect())


def test_case_c13_ten_thousand_vehicles_add_no_series(rulebook) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    reg = CollectorRegistry()
    mon = Monitor(rulebook, CoreParams(), PrometheusSensor(Metrics.create(reg)))
    mon.on_loan_event(make_loan())
    mon.on_loan_event(make_pledge())
    for i in range(4):  # every metric has its children: windows closed, loan valued
        for ev in healthy_window_events("A1", T0 + dt.timedelta(minutes=15 * i), prefix=f"w{i}"):
            mon.on_telemetry(ev)
    before = series(reg)
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
    after = series(reg)
    assert reg.get_sample_value("pledgewatch_events_total", {"topic": "pledge.telemetry", "outcome": "ok"}) >= 10_000
    assert after == before
