"""The portfolio's one owner in the stream (``streams.portfolio``), its query view and its gauges.

The book is the core's (tested in ``test_concentration``); here: records from the topic are judged as a
backtest judges them, the table holds each loan's record and the breaches so a restarted owner
resumes without a second firing, the API's body keeps its agreed shape and hides other borrowers'
groups from a relationship manager, and the gauges are bounded.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry

from monitor.core import Monitor, decode_loan_event
from monitor.schemas import ExposureSlice, LoanExposure
from monitor.sensors import CountingSensor
from monitor.simulate import Fleet
from rules.rulebook import parse_rulebook
from streams.api import Concentration, concentration_view, openapi
from streams.portfolio import BREACHES_KEY, IDLE_FLUSH_S, PortfolioOwner
from streams.prometheus import ConcentrationGauges, Metrics
from streams.security import AUDITOR, RELATIONSHIP_MANAGER, Principal
from tests.conftest import ROOT, T0

DEFAULT = parse_rulebook((ROOT / "rules" / "rulebooks" / "default.yaml").read_text(), "default.yaml")


def _rec(loan: str, borrower: str, group: str, exposure: float, value: float, at: float = 0.0) -> bytes:
    rec = LoanExposure(
        loan_id=loan,
        borrower_id=borrower,
        borrower_group=group,
        as_of=T0 + dt.timedelta(seconds=at),
        exposure=exposure,
        slices=[
            ExposureSlice(
                asset_id=f"{loan}-A",
                asset_profile="bus_dispatch",
                region="NZ-AUK",
                appraisal_value=exposure,
                value=value,
            )
        ],
    )
    return rec.model_dump_json().encode()


def _owner(table: dict[bytes, bytes]) -> PortfolioOwner:
    return PortfolioOwner(table, lambda: DEFAULT, CountingSensor())


def _subjects(outputs: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(o.message.subject, o.message.status) for o in outputs]


def test_owner__judges_records_as_the_backtest_does_and_a_restart_resumes_the_breach_without_firing_again() -> None:
    table: dict[bytes, bytes] = {}
    owner = _owner(table)
    out = []
    for i in range(100):  # 100 loans of 1 M, covered
        loan = f"L{i:03d}"
        out += owner.on_record(_rec(loan, f"B{i}", f"G{i % 10}", 1e6, 1.5e6))
        owner.save(loan)
    # group G3's ten loans lose their collateral at t=60: 10 M of 100 M uncovered
    for i in range(3, 100, 10):
        loan = f"L{i:03d}"
        out += owner.on_record(_rec(loan, f"B{i}", "G3", 1e6, 0.0, at=60))
        owner.save(loan)
    assert _subjects(out) == []  # judged when a later time comes, or when idle
    assert owner.idle_flush(now=owner.last_record + 1) == []  # not idle yet
    fired = owner.idle_flush(now=owner.last_record + IDLE_FLUSH_S)
    owner.save_breaches()
    assert _subjects(fired) == [
        ("borrower_group:G3", "firing"),
        ("asset_profile:bus_dispatch", "firing"),
        ("region:NZ-AUK", "firing"),
    ]
    assert BREACHES_KEY in table and len(table) == 101
    # a new owner (restart, rebalance) rebuilds the book from the table: same rows, the breach held
    again = _owner(table)
    assert again.load() == 100
    assert again.book.rows(DEFAULT) == owner.book.rows(DEFAULT)
    out = again.on_record(_rec("L003", "B3", "G3", 1e6, 0.0, at=120))  # time moves on: judged, nothing new
    assert _subjects(out) == []
    # the same records through the in-process router raise the same breaches (backtest == stream)
    mon_book = Monitor(DEFAULT).portfolio
    recs = [LoanExposure.model_validate_json(v) for k, v in table.items() if k != BREACHES_KEY]
    for rec in sorted(recs, key=lambda r: (r.as_of, r.loan_id)):
        mon_book.on_exposure(rec, DEFAULT)
    mon_book.flush(DEFAULT)
    assert {a.subject for a in mon_book.breaches.values()} == {a.subject for a in again.book.breaches.values()}
    # a closed loan's record deletes its entry; an unreadable record is logged and skipped
    closed = LoanExposure.model_validate_json(_rec("L003", "B3", "G3", 0.0, 0.0, at=180))
    again.on_record(closed.model_copy(update={"closed": True, "slices": []}).model_dump_json().encode())
    again.save("L003")
    assert b"L003" not in table
    assert again.on_record(b"{not json") == []


def test_api_view__keeps_the_agreed_shape_and_shows_a_relationship_manager_only_their_groups() -> None:
    owner = _owner({})
    owner.on_record(_rec("L1", "B1", "GA", 1e6, 0.0))
    owner.on_record(_rec("L2", "B2", "GB", 3e6, 4e6))
    owner.book.flush(DEFAULT)
    body = concentration_view(owner.book, DEFAULT, Principal("a", AUDITOR, via="token").may_read_borrower)
    assert set(body) == {"as_of", "rows"} and body["as_of"] == T0.isoformat()
    Concentration.model_validate(body)  # the OpenAPI document's schema
    assert set(body["rows"][0]) == {
        "dimension",
        "key",
        "exposure_yuan",
        "collateral_yuan",
        "share",
        "limit",
        "breached",
    }
    groups = {(r["key"], r["share"], r["breached"]) for r in body["rows"] if r["dimension"] == "borrower_group"}
    assert groups == {("GA", 0.25, True), ("GB", 0.0, False)}
    rm = Principal("rm", RELATIONSHIP_MANAGER, frozenset({"B2"}), via="token")
    mine = concentration_view(owner.book, DEFAULT, rm.may_read_borrower)
    assert [r["key"] for r in mine["rows"] if r["dimension"] == "borrower_group"] == ["GB"]
    assert {r["dimension"] for r in mine["rows"]} == {"borrower_group", "asset_profile", "region"}
    empty = concentration_view(_owner({}).book, DEFAULT, rm.may_read_borrower)
    assert empty == {"as_of": None, "rows": []}
    doc = openapi()
    assert "Concentration" in doc["components"]["schemas"]
    assert doc["paths"]["/api/portfolio/concentration"]["get"]["operationId"] == "getConcentration"


def test_gauges__share_and_limit_per_key_bounded_per_dimension_with_every_breach() -> None:
    reg = CollectorRegistry()
    metrics = Metrics.create(reg)
    fleet = Fleet(60, 1, groups=60)
    mon = Monitor(DEFAULT)
    for raw in fleet.loan_book():
        mon.on_loan_event(decode_loan_event(raw, 2e9, 300, 0))
    book = mon.portfolio
    # loan 59 (group G-059) and loan 58 lose their collateral; the others are covered
    for n in (58, 59):
        rec = book.loans[f"SIM-L00{n}"][1]
        later = rec.model_copy(update={"as_of": rec.as_of + dt.timedelta(hours=1), "slices": []})
        book.on_exposure(later, DEFAULT)
    book.flush(DEFAULT)
    metrics.concentration.source = lambda: book.rows(DEFAULT)
    share = reg.get_sample_value
    assert share("pledgewatch_concentration_share", {"dimension": "borrower_group", "key": "G-059"}) == 1 / 60
    assert share("pledgewatch_concentration_limit", {"dimension": "borrower_group", "key": "G-059"}) == 0.015
    text = metrics.exposition().decode()
    groups = [
        line
        for line in text.splitlines()
        if line.startswith('pledgewatch_concentration_share{dimension="borrower_group"')
    ]
    assert len(groups) == ConcentrationGauges.MAX_KEYS  # 60 groups, 20 reported: the two breached among them
    assert "pledgewatch_concentration_share" not in metrics.exposition(per_loan=False).decode()
