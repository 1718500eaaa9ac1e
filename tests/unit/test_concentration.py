"""The portfolio's concentration (issue 19, point 3): exposure and collateral by group, asset profile, region.

The share judged is a key's uncovered exposure over the portfolio's exposure; the limits are the
rulebook's ``concentration:`` section (shares 0..1, per-key overrides, hysteresis); a breach firing
or resolved is one ``Alert`` of scope ``portfolio``, judged once per event time.
"""

from __future__ import annotations

import datetime as dt
import io
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from rich.console import Console

from monitor.backtest import load_loan_book
from monitor.core import Monitor, decode_loan_event
from monitor.core.common import _event_digest
from monitor.core.loans import LoanMonitor
from monitor.core.money import fen
from monitor.core.portfolio import UNPLEDGED, PortfolioBook, attribute
from monitor.display import AlertPrinter
from monitor.errors import RulebookError
from monitor.schemas import CONCENTRATION_DIMENSIONS, Alert, BalanceChanged, ExposureSlice, LoanClosed, LoanExposure
from monitor.sensors import CountingSensor
from rules.rulebook import parse_rulebook
from tests.conftest import BOOK, ROOT, T0, make_loan, make_pledge

DEFAULT = (ROOT / "rules" / "rulebooks" / "default.yaml").read_text()


def _rulebook(section: str = "") -> object:
    text = "rulebook: t\nversion: 1\nrules: []\n" + (f"concentration:\n{section}" if section else "")
    return parse_rulebook(text, "book.yaml")


def _rec(loan: str, group: str, exposure: float, at: float = 0.0, slices=(), closed: bool = False) -> LoanExposure:  # type: ignore[no-untyped-def]
    return LoanExposure(
        loan_id=loan,
        borrower_id=f"B-{loan}",
        borrower_group=group,
        as_of=T0 + dt.timedelta(seconds=at),
        exposure=exposure,
        closed=closed,
        slices=[
            ExposureSlice(asset_id=f"{loan}-{i}", asset_profile=p, region=r, appraisal_value=a, value=v)
            for i, (p, r, a, v) in enumerate(slices)
        ],
    )


def _c(amount: float) -> int:
    """Whole fen, half-up (as the book counts)."""
    return int(fen(amount) * 100)


def _alerts(outputs) -> list[Alert]:  # type: ignore[no-untyped-def]
    return [o.message for o in outputs if o.topic == "alerts" and o.message.scope == "portfolio"]


_slice = st.tuples(
    st.sampled_from(["bus_dispatch", "daily_ridership"]),
    st.sampled_from(["NZ-AUK", "US-IL", "CN-31"]),
    st.floats(1.0, 1e7),
    st.floats(0.0, 2e7),
)
_loan = st.tuples(st.sampled_from(["G1", "G2", "G3", "G4"]), st.floats(0.0, 1e7), st.lists(_slice, max_size=3))


def _book_of(loans: list[tuple[str, float, list[tuple[str, str, float, float]]]]) -> PortfolioBook:
    book = PortfolioBook()
    rb = _rulebook()
    for i, (group, exposure, slices) in enumerate(loans):
        book.on_exposure(_rec(f"L{i}", group, exposure, slices=slices), rb)  # type: ignore[arg-type]
    return book


@settings(max_examples=60, deadline=None)
@given(st.lists(_loan, min_size=1, max_size=12))
def test_attribution__exposure_is_conserved_and_shares_stay_within_0_and_1(loans) -> None:  # type: ignore[no-untyped-def]
    book = _book_of(loans)
    total = sum(_c(e) for _g, e, _s in loans)
    for dim in CONCENTRATION_DIMENSIONS:
        # every fen of exposure is attributed to exactly one key of each dimension
        assert sum(v[0] for v in book.totals[dim].values()) == book.exposure == total
        shares = [book.share(dim, k) for k in book.totals[dim]]
        assert all(0.0 <= s <= 1.0 for s in shares)
        assert sum(shares) <= 1.0 + 1e-12
    # the group's uncovered is the whole loan's: the groups' shares sum to the portfolio's uncovered ratio
    uncovered = sum(max(0, _c(e) - sum(_c(v) for *_x, v in s)) for _g, e, s in loans)
    if total:
        assert sum(book.share("borrower_group", k) for k in book.totals["borrower_group"]) == pytest.approx(
            uncovered / total
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(_loan, min_size=1, max_size=12), st.floats(0.01, 1.0))
def test_limits__no_breach_while_every_share_is_at_or_below_its_limit(loans, limit) -> None:  # type: ignore[no-untyped-def]
    rb = _rulebook(
        f"  borrower_group: {{max_share: {limit}}}\n  asset_profile: {{max_share: {limit}}}\n"
        f"  region: {{max_share: {limit}}}\n"
    )
    # judged once, with no breach before: a breach exactly where a share is above its limit
    book = PortfolioBook()
    out = []
    for i, (group, exposure, slices) in enumerate(loans):
        out += book.on_exposure(_rec(f"L{i}", group, exposure, slices=slices), rb)  # type: ignore[arg-type]
    out += book.flush(rb)  # type: ignore[arg-type]
    over = {f"{r.dimension}:{r.key}" for r in book.rows(rb) if r.share > limit}  # type: ignore[arg-type]
    assert {a.subject for a in _alerts(out) if a.status == "firing"} == over
    # judged after each record: every share above its limit is breached, and a breach held under the
    # hysteresis is never below the resolve line
    book = PortfolioBook()
    for i, (group, exposure, slices) in enumerate(loans):
        book.on_exposure(_rec(f"L{i % 3}", group, exposure, at=float(i), slices=slices), rb)  # type: ignore[arg-type]
        book.flush(rb)  # type: ignore[arg-type]
        rows = book.rows(rb)  # type: ignore[arg-type]
        assert all(r.breached for r in rows if r.share > limit)
        assert all(r.share >= limit * 0.9 for r in rows if r.breached)


def test_attribution__a_loan_splits_by_appraisal_and_an_unpledged_loan_is_wholly_uncovered() -> None:
    rec = _rec("L1", "G1", 100.0, slices=[("p", "NZ-AUK", 75.0, 10.0), ("q", "US-IL", 25.0, 50.0)])
    att = attribute(rec)
    assert att["borrower_group"] == {"G1": (10000, 6000, 4000)}
    assert att["asset_profile"] == {"p": (7500, 1000, 6500), "q": (2500, 5000, 0)}
    assert att["region"] == {"NZ-AUK": (7500, 1000, 6500), "US-IL": (2500, 5000, 0)}
    bare = attribute(_rec("L2", "G2", 33.33))
    assert bare["asset_profile"] == {UNPLEDGED: (3333, 0, 3333)} == bare["region"]


def test_breach__fires_above_the_limit_names_rule_key_share_limit_and_top_loans_then_resolves_below_the_gap() -> None:
    rb = _rulebook(
        "  hysteresis: 0.1\n  borrower_group: {max_share: 0.2}\n  asset_profile: {max_share: null}\n"
        "  region: {max_share: null}\n"
    )
    book = PortfolioBook()
    covered = [("bus_dispatch", "NZ-AUK", 100.0, 100.0)]
    for i in range(8):  # 8 covered loans of 100 in groups of their own
        book.on_exposure(_rec(f"C{i}", f"G{i}", 100.0, slices=covered), rb)  # type: ignore[arg-type]
    book.on_exposure(_rec("X1", "GX", 100.0, slices=[("bus_dispatch", "NZ-AUK", 100.0, 100.0)]), rb)  # type: ignore[arg-type]
    book.on_exposure(_rec("X2", "GX", 100.0, slices=[("bus_dispatch", "NZ-AUK", 100.0, 100.0)]), rb)  # type: ignore[arg-type]
    assert _alerts(book.flush(rb)) == []  # type: ignore[arg-type]
    # group GX's collateral collapses to 50 of 200: 150 of the portfolio's 1,000 uncovered is 15 %: within 20 %
    out = book.on_exposure(_rec("X1", "GX", 100.0, at=60, slices=[("bus_dispatch", "NZ-AUK", 100.0, 0.0)]), rb)  # type: ignore[arg-type]
    out += book.on_exposure(_rec("X2", "GX", 100.0, at=60, slices=[("bus_dispatch", "NZ-AUK", 100.0, 50.0)]), rb)  # type: ignore[arg-type]
    assert _alerts(out + book.flush(rb)) == []  # type: ignore[arg-type]
    # and to nothing: 200 of 1,000 is at the limit, still no breach; 210 of 1,010 is above it
    book.on_exposure(_rec("X2", "GX", 100.0, at=120, slices=[("bus_dispatch", "NZ-AUK", 100.0, 0.0)]), rb)  # type: ignore[arg-type]
    assert book.share("borrower_group", "GX") == pytest.approx(0.2)
    assert _alerts(book.flush(rb)) == []  # type: ignore[arg-type]
    book.on_exposure(_rec("X2", "GX", 110.0, at=180, slices=[("bus_dispatch", "NZ-AUK", 100.0, 0.0)]), rb)  # type: ignore[arg-type]
    fired = _alerts(book.flush(rb))  # type: ignore[arg-type]
    assert [(a.rule_id, a.subject, a.status, a.scope, a.loan_id) for a in fired] == [
        ("concentration-group", "borrower_group:GX", "firing", "portfolio", "")
    ]
    f = fired[0].facts
    assert (f["dimension"], f["key"], f["limit"]) == ("borrower_group", "GX", 0.2)
    assert f["resolve_below"] == pytest.approx(0.18)
    assert f["share"] == pytest.approx(210 / 1010)
    assert f["top_loans"] == "X2 ¥110, X1 ¥100"
    assert "above the limit 20.0%" in fired[0].summary_en and "集中度超限" in fired[0].summary
    # hovering between the resolve line (18 %) and the limit: still the same one breach, nothing new
    book.on_exposure(_rec("X2", "GX", 95.0, at=240, slices=[("bus_dispatch", "NZ-AUK", 100.0, 0.0)]), rb)  # type: ignore[arg-type]
    assert 0.18 < book.share("borrower_group", "GX") < 0.2
    assert _alerts(book.flush(rb)) == []  # type: ignore[arg-type]
    assert [r.breached for r in book.rows(rb) if r.key == "GX"] == [True]  # type: ignore[arg-type]
    # below 18 %: resolved, same episode (same alert id)
    book.on_exposure(_rec("X2", "GX", 100.0, at=300, slices=[("bus_dispatch", "NZ-AUK", 100.0, 60.0)]), rb)  # type: ignore[arg-type]
    resolved = _alerts(book.flush(rb))  # type: ignore[arg-type]
    assert [(a.status, a.alert_id) for a in resolved] == [("resolved", fired[0].alert_id)]
    assert resolved[0].episode_start == fired[0].episode_start


def test_breach__a_per_key_override_and_a_null_limit_apply_to_their_key_only() -> None:
    rb = _rulebook("  region: {max_share: 0.1, keys: {NZ-AUK: 0.6, US-IL: null}}\n")
    book = PortfolioBook()
    book.on_exposure(_rec("A", "GA", 50.0, slices=[("bus_dispatch", "NZ-AUK", 50.0, 0.0)]), rb)  # type: ignore[arg-type]
    book.on_exposure(_rec("B", "GB", 30.0, slices=[("bus_dispatch", "US-IL", 30.0, 0.0)]), rb)  # type: ignore[arg-type]
    book.on_exposure(_rec("C", "GC", 20.0, slices=[("bus_dispatch", "CN-31", 20.0, 0.0)]), rb)  # type: ignore[arg-type]
    fired = {a.subject for a in _alerts(book.flush(rb)) if a.rule_id == "concentration-region"}  # type: ignore[arg-type]
    assert fired == {"region:CN-31"}  # 50 % ≤ 60 % override; 30 % without limit; 20 % > 10 %
    limits = {r.key: r.limit for r in book.rows(rb) if r.dimension == "region"}  # type: ignore[arg-type]
    assert limits == {"NZ-AUK": 0.6, "US-IL": None, "CN-31": 0.1}


def test_judged_once_per_event_time__a_loan_pledging_its_assets_one_by_one_at_one_instant_is_no_breach() -> None:
    rb = _rulebook("  borrower_group: {max_share: 0.5}\n")
    recs = [
        _rec("L1", "G1", 100.0, slices=[("bus_dispatch", "NZ-AUK", 60.0, 60.0)]),  # first pledge: 40 uncovered
        _rec("L1", "G1", 100.0, slices=[("bus_dispatch", "NZ-AUK", 60.0, 60.0), ("bus_dispatch", "NZ-AUK", 60, 60)]),
        _rec("L2", "G2", 100.0, slices=[("bus_dispatch", "NZ-AUK", 200.0, 200.0)]),
    ]
    for order in (recs, recs[-1:] + recs[:-1]):  # a loan's own records stay in their order
        book = PortfolioBook()
        out = [o for r in order for o in book.on_exposure(r, rb)]  # type: ignore[arg-type]
        assert _alerts(out + book.flush(rb)) == []  # type: ignore[arg-type]


def test_closed_loan__leaves_the_book_and_its_breach_resolves() -> None:
    rb = _rulebook("  borrower_group: {max_share: 0.3}\n")
    book = PortfolioBook()
    book.on_exposure(_rec("L1", "G1", 50.0), rb)  # type: ignore[arg-type]
    book.on_exposure(_rec("L2", "G2", 50.0, slices=[("bus_dispatch", "NZ-AUK", 50.0, 50.0)]), rb)  # type: ignore[arg-type]
    assert [a.status for a in _alerts(book.flush(rb))] == ["firing", "firing", "firing"]  # type: ignore[arg-type]
    book.on_exposure(_rec("L1", "G1", 0.0, at=10, closed=True), rb)  # type: ignore[arg-type]
    out = _alerts(book.flush(rb))  # type: ignore[arg-type]
    assert sorted((a.subject, a.status) for a in out) == [
        ("asset_profile:unpledged", "resolved"),
        ("borrower_group:G1", "resolved"),
        ("region:unpledged", "resolved"),
    ]
    assert book.exposure == 5000 and "L1" not in book.loans and not book.breaches
    # a redelivered older record of a loan is dropped
    book.on_exposure(_rec("L2", "G2", 999.0, at=-5), rb)  # type: ignore[arg-type]
    assert book.exposure == 5000


def test_monitor__the_loan_side_feeds_the_portfolio_with_group_profile_and_region_from_the_loan_book() -> None:
    rb = parse_rulebook(DEFAULT, "default.yaml")
    mon = Monitor(rb, sensor=CountingSensor())
    out = []
    for i, group in enumerate(["GRP-A", "GRP-A", "GRP-B"]):
        loan = f"L{i}"
        out += mon.on_loan_event(
            make_loan(event_id=f"{loan}:o", loan_id=loan, borrower_id=f"B{i}", borrower_group=group)
        )
        out += mon.on_loan_event(
            make_pledge(
                event_id=f"{loan}:p", loan_id=loan, asset_id=f"A{i}", region="NZ-AUK", pledge_registration_no="R"
            )
        )
    out += mon.flush(T0.timestamp())
    rows = {(r.dimension, r.key): r for r in mon.portfolio.rows(rb)}
    assert rows[("borrower_group", "GRP-A")].exposure_yuan == 14_000_000.0
    assert rows[("borrower_group", "GRP-A")].collateral_yuan == 20_000_000.0
    assert rows[("region", "NZ-AUK")].exposure_yuan == 21_000_000.0
    assert rows[("asset_profile", "bus_dispatch")].share == 0.0
    assert _alerts(out) == []
    # GRP-A draws down to 40 M a loan against 10 M of collateral each: 60 M uncovered of 87 M
    at = T0 + dt.timedelta(hours=1)
    for loan in ("L0", "L1"):
        out = mon.on_loan_event(BalanceChanged(event_id=f"{loan}:b", loan_id=loan, effective_at=at, outstanding=4e7))
        assert _alerts(out) == []  # judged once the time of these records is complete
    fired = _alerts(mon.flush(at.timestamp()))
    assert {(a.rule_id, a.subject) for a in fired} == {
        ("concentration-group", "borrower_group:GRP-A"),
        ("concentration-profile", "asset_profile:bus_dispatch"),
        ("concentration-region", "region:NZ-AUK"),
    }
    group = next(a for a in fired if a.rule_id == "concentration-group")
    assert (
        group.facts["share"] == pytest.approx(60 / 87) and group.facts["top_loans"] == "L0 ¥30,000,000, L1 ¥30,000,000"
    )
    # closing the loans ends the breach of their group
    out = []
    later = at + dt.timedelta(hours=1)
    for loan in ("L0", "L1"):
        out += mon.on_loan_event(LoanClosed(event_id=f"{loan}:c", loan_id=loan, effective_at=later))
    resolved = _alerts(out + mon.flush(later.timestamp()))
    assert {(a.subject, a.status) for a in resolved} >= {("borrower_group:GRP-A", "resolved")}


def test_state__pickle_round_trips_and_old_loan_states_and_events_load() -> None:
    rb = _rulebook("  borrower_group: {max_share: 0.3}\n")
    book = PortfolioBook(CountingSensor())
    book.on_exposure(_rec("L1", "G1", 50.0), rb)  # type: ignore[arg-type]
    book.flush(rb)  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(book))
    assert copy.rows(rb) == book.rows(rb) and copy.breaches == book.breaches  # type: ignore[arg-type]
    # a loan state pickled before the concentration existed: no asset meta, no exposure sent, and its
    # LoanOpened without borrower_group; it reports its valuation's profile and region unknown
    loan = LoanMonitor(make_loan())
    loan.on_loan_event(make_pledge(region="NZ-AUK"), None, CountingSensor())
    old = pickle.loads(pickle.dumps(loan))
    for name in ("asset_meta", "exposure_sent"):
        del old.__dict__[name]
    del old.opened.__dict__["borrower_group"]
    restored = pickle.loads(pickle.dumps(old))
    rec = restored.exposure()
    assert (rec.borrower_group, rec.slices[0].region, rec.slices[0].asset_profile) == ("B1", "unknown", "unknown")
    assert restored.exposure_sent is None and loan.exposure().slices[0].region == "NZ-AUK"
    # events digest as they did before the optional fields existed (a redelivery is no conflicting duplicate)
    opened, pledged = (decode_loan_event(raw, 2e9, 300, 0) for raw in load_loan_book(BOOK)[:2])
    assert pledged.region == "NZ-AUK"  # the demo's loan book names it; the same pledge without it:
    unset = type(pledged).model_validate(pledged.model_dump(exclude={"region"}))
    assert [_event_digest(opened), _event_digest(unset)] == [15566090455636666231, 15254706015128044118]


def test_schemas__group_and_region_default_and_are_strict() -> None:
    assert make_loan().group == "B1" and make_loan(borrower_group="G9").group == "G9"
    assert make_pledge().region_key == "unknown"
    assert make_pledge(asset_country="NZ").region_key == "NZ"
    assert make_pledge(asset_country="NZ", region="NZ-WGN").region_key == "NZ-WGN"
    with pytest.raises(ValidationError, match="region"):
        make_pledge(region="Auckland")
    with pytest.raises(ValidationError, match="borrower_group"):
        make_loan(borrower_group="group with spaces")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("  sector: {max_share: 0.1}\n", "book.yaml:5: concentration.sector: unknown key, expected one of"),
        (
            "  region:\n    max_share: 1.5\n",
            "book.yaml:5: concentration.region.max_share: got 1.5, expected a share of the portfolio above 0",
        ),
        ("  region: {max_share: high}\n", "concentration.region.max_share: got 'high', expected a share"),
        ("  region: {max_share: 0}\n", "concentration.region.max_share: got 0, expected a share"),
        ("  region: {keys: {NZ-AUK: -1}}\n", "book.yaml:5: concentration.region.keys.NZ-AUK: got -1, expected"),
        ("  region: {limit: 0.1}\n", "concentration.region.limit: unknown key, expected max_share or keys"),
        ("  region: 0.1\n", "concentration.region: got 0.1, expected a mapping with max_share"),
        (
            "  hysteresis: 0.9\n",
            "book.yaml:5: concentration.hysteresis: got 0.9, expected a relative gap from 0 to 0.5",
        ),
        ("  severity: page\n", "concentration.severity: got 'page', expected one of info, warning, critical"),
        ("  - 0.1\n", "book.yaml:4: concentration: got [0.1], expected a mapping of dimension -> limit"),
    ],
)
def test_rulebook__a_bad_concentration_section_is_refused_naming_file_line_field_value_and_expected(
    section: str, message: str
) -> None:
    with pytest.raises(RulebookError) as err:
        _rulebook(section)
    assert any(message in p for p in err.value.problems), err.value.problems


def test_rulebook__defaults_and_the_shipped_section() -> None:
    plain = _rulebook()
    assert [plain.concentration.limit(d, "x") for d in CONCENTRATION_DIMENSIONS] == [0.015, 0.05, 0.05]  # type: ignore[attr-defined]
    shipped = parse_rulebook(DEFAULT, "default.yaml").concentration
    assert shipped.limit("borrower_group", "x") == 0.015 and shipped.hysteresis == 0.1


def test_printer__a_portfolio_alert_shows_its_subject_share_and_rule() -> None:
    rb = _rulebook("  borrower_group: {max_share: 0.3}\n")
    book = PortfolioBook()
    book.on_exposure(_rec("L1", "G1", 50.0), rb)  # type: ignore[arg-type]
    alert = next(a for a in _alerts(book.flush(rb)) if a.rule_id == "concentration-group")  # type: ignore[arg-type]
    buf = io.StringIO()
    AlertPrinter(Console(file=buf, width=220), timezone="UTC").alert(alert)
    text = buf.getvalue()
    assert " G1 " in text and "concentration-group" in text and "100.0%" in text
    assert "limit 30.0%" in text


def test_simulate__1000_loans_in_50_groups_breach_only_where_a_shock_concentrates() -> None:
    from monitor.incidents import parse_incident
    from monitor.schemas import CollateralValuation
    from monitor.simulate import REGIONS, Fleet
    from monitor.stress import Shock, concentration

    fleet = Fleet(1000, 1, groups=50, incidents=[parse_incident("outage:G-007@2h")])
    assert {i.asset_id for i in fleet.incidents} == {f"sim-{i:04d}" for i in range(7, 1000, 50)}
    rb = parse_rulebook(DEFAULT, "default.yaml")
    mon = Monitor(rb)
    out = [o for raw in fleet.loan_book() for o in mon.on_loan_event(decode_loan_event(raw, 2e9, 300, 0))]
    out += mon.portfolio.flush(rb)
    rows = mon.portfolio.rows(rb)
    groups = {r.key for r in rows if r.dimension == "borrower_group"}
    assert len(mon.loans) == 1000 and len(groups) == 50
    assert {r.key for r in rows if r.dimension == "region"} == set(REGIONS)
    assert _alerts(out) == []  # opened at a coverage of 1.6: nothing uncovered
    # the outage's effect on value: G-007's assets lose all activity (its 20 loans, 2 % of the portfolio)
    exposures = [e for e in (o.message for o in out if o.topic == "portfolio-exposure")]
    latest = {e.loan_id: e for e in exposures}
    vals = {
        a: CollateralValuation.model_construct(
            asset_id=a, activity_index=1.0, quality_score=0.99, quality_baseline=0.99, appraisal_value=8e6
        )
        for a in fleet.asset_ids
    }
    shock = Shock(activity_drop=1.0, assets=frozenset(i.asset_id for i in fleet.incidents))
    changes = concentration(latest.values(), vals, shock, rb)
    new = [(c.after.dimension, c.after.key, round(c.after.share, 4)) for c in changes if c.breaches]
    assert new == [("borrower_group", "G-007", 0.02)]  # 2 % > 1.5 %; its one region holds 2 % < 5 %
    # the same shock spread over 20 groups (one loan each) breaches nothing
    spread = Shock(activity_drop=1.0, assets=frozenset(f"sim-{i:04d}" for i in range(20)))
    assert [c for c in concentration(latest.values(), vals, spread, rb) if c.breaches] == []


def test_stress_cli__prints_the_concentration_before_and_after_the_shock_with_its_breaches() -> None:
    from typer.testing import CliRunner

    from monitor.cli import app

    out = CliRunner().invoke(app, ["stress", "--activity-drop", "0.9", "--asset", "akl-routes-0xx"])
    assert out.exit_code == 0, out.output
    assert "concentration: uncovered exposure as a share of the portfolio" in out.output
    # L-AKL-001's 0xx asset is most of its collateral: its group, profile and region leave 7.5 % uncovered
    assert (
        "concentration breaches after the shock: borrower_group:B-AKL-CENTRAL, asset_profile:bus_dispatch, "
        "region:NZ-AUK" in " ".join(out.output.split())
    )
    calm = CliRunner().invoke(app, ["stress", "--activity-drop", "0.1"])
    assert "concentration breaches after the shock: none" in calm.output


def test_simulate__groups_must_fit_the_loans_and_a_group_outage_names_a_group() -> None:
    from monitor.errors import ConfigError
    from monitor.incidents import parse_incident
    from monitor.simulate import Fleet

    with pytest.raises(ConfigError, match="--groups: got 30, expected 1 to 20"):
        Fleet(20, 1, groups=30)
    with pytest.raises(
        ConfigError, match=r"--inject: got group 'G-099', expected a group of the simulated loans \(G-000 … G-004\)"
    ):
        Fleet(20, 1, groups=5, incidents=[parse_incident("outage:G-099@1h")])
    plain = Fleet(3, 1).loan_book()
    assert b"borrower_group" not in b"".join(plain) and b"region" not in b"".join(plain)  # unchanged without groups


def test_backtest__the_auckland_demo_with_its_incidents_breaches_the_group_of_the_cut_loan_with_its_rule() -> None:
    """Valuations reach the portfolio through the loans (the router routes the loans' exposure records on)."""
    from monitor.backtest import run_backtest
    from monitor.incidents import parse_incident
    from tests.conftest import sample_telemetry

    rb = parse_rulebook(DEFAULT, "default.yaml")
    demo = [parse_incident("cut:akl-routes-7xx@3h:0.6"), parse_incident("outage:akl-routes-9xx@3h")]
    res = run_backtest(load_loan_book(BOOK), sample_telemetry(), rb, incidents=demo)
    fired = [a for a in res.alerts if a.scope == "portfolio" and a.status == "firing"]
    group = [a for a in fired if a.rule_id == "concentration-group"]
    assert [(a.subject, a.facts["limit"]) for a in group] == [("borrower_group:B-AKL-EAST", 0.015)]
    assert str(group[0].facts["top_loans"]).startswith("L-AKL-002 ¥")  # the loan of the trip cut's margin call
    assert float(group[0].facts["share"]) > 0.015  # type: ignore[arg-type]
    # the same history without incidents: every loan covered, no breach
    calm = run_backtest(load_loan_book(BOOK), sample_telemetry(), rb)
    assert [a for a in calm.alerts if a.scope == "portfolio"] == []
