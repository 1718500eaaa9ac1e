"""The portfolio side of the core: concentration of exposure and collateral, judged against the rulebook's limits.

:class:`PortfolioBook` holds each loan's last :class:`~monitor.schemas.LoanExposure` and, per
dimension (``borrower_group``, ``asset_profile``, ``region``) and key, the exposure, the collateral
and the *uncovered* exposure attributed to it, in whole fen (integers: adding and removing a loan
never drifts). The share judged against a limit is::

    share(key) = uncovered(key) / exposure(portfolio)          (a ratio 0..1)

the part of the whole portfolio's exposure that the key leaves uncovered by its collateral. Why not
the gross share ``exposure(key) / exposure(portfolio)``: a pledged-data-asset book is concentrated
by design (a lender to bus operators), and a large, well-covered group is not the risk the limit is
for; the large-exposure rules this borrows its scale from also count exposures after eligible
credit-risk mitigation. The gross share stays readable from each row's ``exposure_yuan``.

Attribution of one loan (exposure ``E``, assets ``a`` with appraisal ``A_a`` and value ``V_a``):

* ``borrower_group``: the whole loan, ``E`` and ``Σ V_a``, uncovered ``max(0, E − Σ V_a)``;
* ``asset_profile`` / ``region``: the exposure splits by the assets' shares of the loan's appraised
  collateral (``E × A_a / Σ A``, fixed at pledge: what the bank lent against each asset; the largest
  remainder method keeps the fen summing to ``E``); the collateral is each asset's value now; the
  uncovered of a key is ``max(0, exposure − collateral)`` of the loan's slice of it. A loan with no
  asset pledged counts under the key ``unpledged``, wholly uncovered.

So the exposure attributed per dimension always sums to the portfolio's, and the shares of one
dimension sum to at most 1. A breach fires when a share is above its limit and resolves once it is
below ``limit × (1 − hysteresis)`` (:class:`rules.concentration.ConcentrationPolicy`); each
transition is one :class:`~monitor.schemas.Alert` of scope ``portfolio``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from monitor.core.common import Output, _ts
from monitor.core.money import fen
from monitor.schemas import CONCENTRATION_DIMENSIONS, Alert, AlertStatus, LoanExposure
from monitor.sensors import NullSensor, Sensor
from monitor.valuation import MODEL_VERSIONS
from rules.lifecycle import alert_id
from rules.rulebook import Rulebook

__all__ = ["RULE_IDS", "UNPLEDGED", "ConcentrationRow", "PortfolioBook", "attribute"]

#: Key of the profile and region of a loan with no asset pledged.
UNPLEDGED = "unpledged"
#: The rule id of a breach of each dimension's limit (the rulebook's ``concentration:`` section).
RULE_IDS = {
    "borrower_group": "concentration-group",
    "asset_profile": "concentration-profile",
    "region": "concentration-region",
}
#: Loans named in a breach alert: the largest uncovered exposures of the key.
TOP_LOANS = 3
#: The Kafka key of portfolio alerts on ``pledge.alerts`` (a loan id keys the others).
PORTFOLIO_KEY = "portfolio"

_WORDS = {
    "borrower_group": ("借款人集团", "borrower group"),
    "asset_profile": ("数据资产类型", "asset profile"),
    "region": ("地区", "region"),
}

#: (exposure, collateral, uncovered) in fen
_Amounts = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class ConcentrationRow:
    """One key of one dimension now (amounts in yuan, share and limit ratios 0..1).

    ``share`` is the key's uncovered exposure over the portfolio's exposure; ``limit`` is ``None``
    when the rulebook sets none; ``breached`` whether a breach alert is firing for the key.
    """

    dimension: str
    key: str
    exposure_yuan: float
    collateral_yuan: float
    uncovered_yuan: float
    share: float
    limit: float | None
    breached: bool

    def as_json(self) -> dict[str, Any]:
        """The row as ``GET /api/portfolio/concentration`` returns it."""
        return {
            "dimension": self.dimension,
            "key": self.key,
            "exposure_yuan": self.exposure_yuan,
            "collateral_yuan": self.collateral_yuan,
            "share": self.share,
            "limit": self.limit,
            "breached": self.breached,
        }


def _cents(amount: float) -> int:
    return int(fen(amount) * 100)


def _split(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` fen split by ``weights`` (largest remainder), summing exactly to ``total``.

    Examples
    --------
    >>> _split(100, {"a": 1, "b": 1, "c": 1})
    {'a': 34, 'b': 33, 'c': 33}
    """
    wsum = sum(weights.values())
    base = {k: total * w // wsum for k, w in weights.items()}
    rest = total - sum(base.values())
    order = sorted(weights, key=lambda k: (-(total * weights[k] % wsum), k))
    for k in order[:rest]:
        base[k] += 1
    return base


def attribute(rec: LoanExposure) -> dict[str, dict[str, _Amounts]]:
    """One loan's (exposure, collateral, uncovered) in fen per dimension and key (module note).

    Examples
    --------
    >>> from monitor.schemas import ExposureSlice
    >>> rec = LoanExposure(loan_id="L1", borrower_id="B1", borrower_group="G1", as_of=_ts(0), exposure=100.0,
    ...     slices=[
    ...     ExposureSlice(asset_id="a", asset_profile="p", region="NZ", appraisal_value=60.0, value=30.0),
    ...     ExposureSlice(asset_id="b", asset_profile="q", region="NZ", appraisal_value=40.0, value=50.0)])
    >>> attribute(rec)["asset_profile"]  # p: 60 lent against 30; q: 40 lent against 50
    {'p': (6000, 3000, 3000), 'q': (4000, 5000, 0)}
    >>> attribute(rec)["borrower_group"]
    {'G1': (10000, 8000, 2000)}
    """
    e = _cents(rec.exposure)
    coll = sum(_cents(s.value) for s in rec.slices)
    out: dict[str, dict[str, _Amounts]] = {"borrower_group": {rec.borrower_group: (e, coll, max(0, e - coll))}}
    for dim in ("asset_profile", "region"):
        if not rec.slices:
            out[dim] = {UNPLEDGED: (e, 0, e)}
            continue
        weights: dict[str, int] = {}
        values: dict[str, int] = {}
        for s in rec.slices:
            k = s.asset_profile if dim == "asset_profile" else s.region
            weights[k] = weights.get(k, 0) + _cents(s.appraisal_value)
            values[k] = values.get(k, 0) + _cents(s.value)
        if sum(weights.values()) == 0:
            weights = dict.fromkeys(weights, 1)
        parts = _split(e, weights)
        out[dim] = {k: (parts[k], values[k], max(0, parts[k] - values[k])) for k in sorted(weights)}
    return out


class PortfolioBook:
    r"""The portfolio's concentration: every loan's exposure and collateral, by dimension and key.

    One owner per deployment (the stream keeps it on one partition; ``docs/architecture.md``).

    Parameters
    ----------
    sensor
        Receives the alert hooks.

    Examples
    --------
    >>> from rules.rulebook import parse_rulebook
    >>> limits = "{borrower_group: {max_share: 0.5}, asset_profile: {max_share: null}, region: {max_share: null}}"
    >>> rb = parse_rulebook(f"rulebook: r\nversion: 1\nrules: []\nconcentration: {limits}")
    >>> book = PortfolioBook()
    >>> def rec(loan, group, exposure):
    ...     return LoanExposure(loan_id=loan, borrower_id=loan, borrower_group=group, as_of=_ts(0), exposure=exposure)
    >>> _ = book.on_exposure(rec("L1", "G1", 60.0), rb)
    >>> _ = book.on_exposure(rec("L2", "G2", 40.0), rb)
    >>> [(o.message.subject, o.message.status) for o in book.flush(rb)]  # L1's 60 of 100 uncovered: above 50 %
    [('borrower_group:G1', 'firing')]
    """

    def __init__(self, sensor: Sensor | None = None) -> None:
        self.sensor: Sensor = sensor or NullSensor()
        #: loan id -> its attribution (fen) and the record it came from
        self.loans: dict[str, tuple[dict[str, dict[str, _Amounts]], LoanExposure]] = {}
        #: dimension -> key -> [exposure, collateral, uncovered] in fen
        self.totals: dict[str, dict[str, list[int]]] = {d: {} for d in CONCENTRATION_DIMENSIONS}
        #: the portfolio's exposure, fen
        self.exposure = 0
        #: (dimension, key) -> the firing breach alert
        self.breaches: dict[tuple[str, str], Alert] = {}
        #: newest event time seen (POSIX s), or None before any record
        self.as_of: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("sensor", None)  # a checkpoint holds state, not the metrics adapter
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.sensor = NullSensor()

    def _add(self, attribution: dict[str, dict[str, _Amounts]], sign: int) -> None:
        for dim, keys in attribution.items():
            bucket = self.totals[dim]
            for key, amounts in keys.items():
                cur = bucket.setdefault(key, [0, 0, 0])
                for i in range(3):
                    cur[i] += sign * amounts[i]
                if cur[0] == 0 and cur[1] == 0 and cur[2] == 0:
                    del bucket[key]

    def on_exposure(self, rec: LoanExposure, rulebook: Rulebook) -> list[Output]:
        """Take one loan's exposure record; returns the breach alerts of the time before it, if it moves time on.

        The book is judged as of a time once every record of that time is in: when a record of a
        later event time arrives (or :meth:`flush`). A loan book opening a loan and pledging its
        assets at one instant is thus judged once, complete, not after each pledge; and the records
        of one instant give the same result in any order. A record older than the loan's one held
        (a redelivery) is dropped; a closed loan leaves the book.
        """
        t = rec.as_of.timestamp()
        out = self.evaluate(rulebook) if self.as_of is not None and t > self.as_of else []
        self.apply(rec)
        return out

    def apply(self, rec: LoanExposure) -> bool:
        """Put one loan's record into the book without judging it (a restore); False when dropped as older."""
        held = self.loans.get(rec.loan_id)
        if held is not None:
            if rec.as_of < held[1].as_of:
                return False
            self._add(held[0], -1)
            self.exposure -= held[0]["borrower_group"][held[1].borrower_group][0]
            del self.loans[rec.loan_id]
        if not rec.closed:
            att = attribute(rec)
            self._add(att, 1)
            self.exposure += att["borrower_group"][rec.borrower_group][0]
            self.loans[rec.loan_id] = (att, rec)
        t = rec.as_of.timestamp()
        self.as_of = t if self.as_of is None else max(self.as_of, t)
        return True

    def flush(self, rulebook: Rulebook) -> list[Output]:
        """Judge the book as of its newest time now (the end of a backtest; the stream's idle timer)."""
        return self.evaluate(rulebook)

    def share(self, dimension: str, key: str) -> float:
        """The key's uncovered exposure over the portfolio's exposure (ratio 0..1; 0 for an empty portfolio)."""
        amounts = self.totals[dimension].get(key)
        if amounts is None or self.exposure <= 0:
            return 0.0
        return amounts[2] / self.exposure

    def rows(self, rulebook: Rulebook | None = None) -> list[ConcentrationRow]:
        """Every key of every dimension now, by dimension then share (largest first)."""
        policy = rulebook.concentration if rulebook is not None else None
        out: list[ConcentrationRow] = []
        for dim in CONCENTRATION_DIMENSIONS:
            for key, (e, c, u) in self.totals[dim].items():
                out.append(
                    ConcentrationRow(
                        dimension=dim,
                        key=key,
                        exposure_yuan=e / 100,
                        collateral_yuan=c / 100,
                        uncovered_yuan=u / 100,
                        share=self.share(dim, key),
                        limit=policy.limit(dim, key) if policy is not None else None,
                        breached=(dim, key) in self.breaches,
                    )
                )
        order: dict[str, int] = {d: i for i, d in enumerate(CONCENTRATION_DIMENSIONS)}
        return sorted(out, key=lambda r: (order[r.dimension], -r.share, r.key))

    def evaluate(self, rulebook: Rulebook) -> list[Output]:
        """Judge every key against its limit with the rulebook's hysteresis; one alert per transition."""
        policy = rulebook.concentration
        out: list[Output] = []
        now = self.as_of if self.as_of is not None else 0.0
        for dim in CONCENTRATION_DIMENSIONS:
            for key in sorted(self.totals[dim]):
                limit = policy.limit(dim, key)
                share = self.share(dim, key)
                firing = (dim, key) in self.breaches
                if not firing and limit is not None and share > limit:
                    out.append(self._alert(dim, key, share, limit, "firing", now, now, rulebook))
                elif firing and (limit is None or share < policy.resolve_below(limit)):
                    start = self.breaches[(dim, key)].episode_start.timestamp()
                    out.append(self._alert(dim, key, share, limit, "resolved", start, now, rulebook))
        for gone_dim, key in sorted(self.breaches):  # a key gone from the book (its loans closed) resolves too
            if key not in self.totals[gone_dim]:
                start = self.breaches[(gone_dim, key)].episode_start.timestamp()
                limit = policy.limit(gone_dim, key)
                out.append(self._alert(gone_dim, key, 0.0, limit, "resolved", start, now, rulebook))
        return out

    def top_loans(self, dimension: str, key: str, n: int = TOP_LOANS) -> list[tuple[str, float]]:
        """The ``n`` loans with the largest uncovered exposure under the key: ``(loan id, yuan)``, largest first."""
        found = [
            (att[dimension][key][2], loan_id) for loan_id, (att, _rec) in self.loans.items() if key in att[dimension]
        ]
        found.sort(key=lambda x: (-x[0], x[1]))
        return [(loan_id, u / 100) for u, loan_id in found[:n] if u > 0]

    def _alert(
        self,
        dim: str,
        key: str,
        share: float,
        limit: float | None,
        status: AlertStatus,
        start: float,
        now: float,
        rulebook: Rulebook,
    ) -> Output:
        policy = rulebook.concentration
        rule_id = RULE_IDS[dim]
        subject = f"{dim}:{key}"
        e, c, u = self.totals[dim].get(key, [0, 0, 0])
        top = self.top_loans(dim, key)
        top_s = ", ".join(f"{loan} ¥{amount:,.0f}" for loan, amount in top) or "none"
        zh_dim, en_dim = _WORDS[dim]
        limit_s = f"{limit:.1%}" if limit is not None else "none"
        if status == "firing":
            zh = (
                f"集中度超限：{zh_dim} {key} 未覆盖敞口 ¥{u / 100:,.0f} 占组合敞口 {share:.1%}，"
                f"超过限额 {limit_s}；主要贷款：{top_s}"
            )
            en = (
                f"Concentration: {en_dim} {key} leaves ¥{u / 100:,.0f} uncovered, {share:.1%} of the portfolio's "
                f"exposure, above the limit {limit_s}; largest: {top_s}"
            )
        else:
            zh = f"已解除：{zh_dim} {key} 未覆盖敞口占组合敞口 {share:.1%}（限额 {limit_s}）"
            en = f"resolved: {en_dim} {key} uncovered share now {share:.1%} (limit {limit_s})"
        alert = Alert(
            alert_id=alert_id(PORTFOLIO_KEY, rule_id, subject, start),
            status=status,
            rule_id=rule_id,
            severity=policy.severity,  # type: ignore[arg-type]  # checked by parse_concentration
            scope="portfolio",
            subject=subject,
            loan_id="",
            episode_start=_ts(start),
            at=_ts(now),
            summary=zh,
            summary_en=en,
            facts={
                "dimension": dim,
                "key": key,
                "share": share,
                "limit": limit,
                "resolve_below": policy.resolve_below(limit) if limit is not None else None,
                "exposure_yuan": e / 100,
                "collateral_yuan": c / 100,
                "uncovered_yuan": u / 100,
                "portfolio_exposure_yuan": self.exposure / 100,
                "top_loans": top_s,
                "why": f"{rule_id}: share {share:.1%} vs limit {limit_s}",
            },
            rulebook=rulebook.name,
            rulebook_version=rulebook.version,
            model_versions=MODEL_VERSIONS,
            shadow=False,
        )
        if status == "firing":
            self.breaches[(dim, key)] = alert
        else:
            self.breaches.pop((dim, key), None)
        self.sensor.on_alert(rule_id, alert.severity, status, False, "")
        return Output("alerts", PORTFOLIO_KEY, alert)

    def as_of_time(self) -> dt.datetime | None:
        """The newest event time the book has seen (aware UTC), ``None`` before any record."""
        return _ts(self.as_of) if self.as_of is not None else None
