"""Read-only query API on the worker (faust web views), bound to 127.0.0.1 by default.

- ``GET /api/loans``: every loan with status and coverage, across all workers (each worker answers
  for its partitions and asks the others; ``?scope=local`` answers for this worker only).
- ``GET /api/loans/{loan_id}``: one loan's risk position, its assets' valuation components, its
  active alerts and its margin calls.
- ``GET /api/assets/{asset_id}``: one asset's appraisal, loans and latest valuation.
- ``GET /api/portfolio/concentration``: the portfolio's concentration by borrower group, asset profile
  and region (each key's exposure and collateral in yuan, its share and limit, whether it is breached),
  answered by the worker that owns the portfolio (``streams.portfolio``).
- ``GET /loans/{loan_id}/report`` (``?lang=zh|en&days=N``): the loan's post-loan review (贷后检查) over
  its last ``N`` days of event time (7 by default), the HTML ``pledgewatch report --source topics`` writes
  for one loan (:func:`monitor.report.loan_report`), read from the output topics by the worker holding
  the loan, with the roles and borrower scoping of ``/api/loans/{loan_id}``.
- ``GET /api/openapi.json``: the OpenAPI 3.1 document of these endpoints.
- ``GET /portfolio`` (``?lang=zh|en``): the risk officers' portfolio page, HTML rendered here from the
  same answers as ``/api/loans`` (and ``/api/portfolio/concentration`` when a worker serves it), with
  the same roles and credentials (:mod:`monitor.portfolio`).

A request for a loan or asset held by another worker is forwarded to it by faust's table routing
(``app.table_route``: the key's partition in the state table's changelog names the owner's
``canonical_url``). Unknown ids answer 404 with ``{"error": ...}``; nothing here writes state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from monitor.errors import ConfigError
from monitor.portfolio import LABELS as PAGE_LABELS
from monitor.portfolio import render_portfolio
from monitor.report import DEFAULT_DAYS, loan_report, script_hashes
from monitor.schemas import (
    AccessLogEntry,
    Alert,
    Appraisal,
    Category,
    ClassificationReason,
    CollateralValuation,
    LoanRiskSnapshot,
    MarginCall,
    Thresholds,
    WatchReason,
)
from streams.security import (
    AUDITOR,
    PEER,
    PRINCIPAL_HEADER,
    RELATIONSHIP_MANAGER,
    RISK_OFFICER,
    ROLES,
    Authenticator,
    Forbidden,
    Principal,
    Unauthorized,
)

if TYPE_CHECKING:
    from monitor.valuation import ValuationParams
    from streams.latest import Outputs

__all__ = [
    "ApiSecurity",
    "AssetDetail",
    "Concentration",
    "ConcentrationRow",
    "LoanDetail",
    "LoanSummary",
    "OpenMarginCall",
    "concentration_view",
    "loan_summary",
    "openapi",
    "register_api",
    "report_headers",
]

log = logging.getLogger(__name__)


class OpenMarginCall(BaseModel):
    """A margin call not yet settled: ``issued`` (within its cure period) or ``expired`` (unmet, close-out).

    Amounts in yuan, exact to the fen (the notice rounds them up); ``cure_deadline`` is when the
    cure period ends (``deadline_provisional``: computed without next year's holiday calendar).
    """

    margin_call_id: str
    status: str
    issued_at: dt.datetime
    required_top_up_collateral: float
    required_repayment: float
    cure_deadline: dt.datetime
    deadline_provisional: bool


class LoanSummary(BaseModel):
    """One loan in the list: status, coverage (ratios) and its contract lines, amounts in yuan.

    With the loan's suggested risk category (五级分类, a suggestion the credit committee decides on)
    and the criteria that set it, its place on the watch list (关注名单) and the reasons that hold,
    and its open margin calls: everything the portfolio page shows of a loan.
    """

    loan_id: str
    borrower_id: str
    status: str
    coverage_ratio: float | None
    collateral_value: float
    outstanding: float
    as_of: dt.datetime
    thresholds: Thresholds
    suggested_category: Category
    category_reasons: list[ClassificationReason]
    on_watch_list: bool
    watch_reasons: list[WatchReason]
    open_margin_calls: list[OpenMarginCall]


class LoanDetail(BaseModel):
    """One loan: its risk position, its assets' latest valuations, active alerts and margin calls.

    ``summary`` is the loan as ``/api/loans`` lists it (category, watch list, open margin calls).
    """

    snapshot: LoanRiskSnapshot
    summary: LoanSummary
    assets: list[CollateralValuation]
    active_alerts: list[Alert]
    margin_calls: list[MarginCall]


#: Fields of a list entry; an entry without them comes from a worker of an older version.
SUMMARY_FIELDS = frozenset(LoanSummary.model_fields)


def older_entries(loans: list[dict[str, Any]]) -> list[str]:
    """Ids of list entries without every :class:`LoanSummary` field: answered by a worker of an older version.

    >>> older_entries([{"loan_id": "L1", "status": "ok"}])
    ['L1']
    """
    return [str(x.get("loan_id")) for x in loans if not SUMMARY_FIELDS <= x.keys()]


#: Margin-call statuses that are still open: within the cure period, or expired unmet (close-out).
OPEN_MARGIN_CALL = ("issued", "expired")


def loan_summary(loan: Any) -> LoanSummary:
    """The list entry of one :class:`~monitor.core.loans.LoanMonitor` (its state now, nothing written)."""
    s = loan.snapshot()
    calls = sorted(
        (m for m in loan.margin_calls.values() if m.status in OPEN_MARGIN_CALL), key=lambda m: m.cure_deadline
    )
    return LoanSummary(
        loan_id=s.loan_id,
        borrower_id=loan.opened.borrower_id,
        status=s.status,
        coverage_ratio=s.coverage_ratio,
        collateral_value=s.collateral_value,
        outstanding=s.outstanding,
        as_of=s.as_of,
        thresholds=s.thresholds,
        suggested_category=loan.category,
        category_reasons=list(loan.category_reasons),
        on_watch_list=bool(loan.watch),
        watch_reasons=sorted(loan.watch.values(), key=lambda r: (r.since, r.rule_id, r.subject)),
        open_margin_calls=[
            OpenMarginCall(
                margin_call_id=m.margin_call_id,
                status=m.status,
                issued_at=m.issued_at,
                required_top_up_collateral=m.required_top_up_collateral,
                required_repayment=m.required_repayment,
                cure_deadline=m.cure_deadline,
                deadline_provisional=m.deadline_provisional,
            )
            for m in calls
        ],
    )


class AssetDetail(BaseModel):
    """One pledged asset: profile, appraisal, loans and latest valuation (``None`` before its first)."""

    asset_id: str
    asset_profile: str
    loan_ids: list[str]
    appraisal: Appraisal
    windows_seen: int
    valuation: CollateralValuation | None


class ApiError(BaseModel):
    """An error answer."""

    error: str


class ConcentrationRow(BaseModel):
    """One key of one dimension of the portfolio (``monitor.core.portfolio``).

    ``exposure_yuan``: the outstanding attributed to the key (yuan); ``collateral_yuan``: its collateral
    value now (yuan); ``share``: the exposure it leaves uncovered over the portfolio's exposure (ratio
    0..1), what ``limit`` (the rulebook's, 0..1; null: none) bounds; ``breached``: a breach alert fires.
    """

    dimension: Literal["borrower_group", "asset_profile", "region"]
    key: str
    exposure_yuan: float
    collateral_yuan: float
    share: float
    limit: float | None
    breached: bool


class Concentration(BaseModel):
    """The portfolio's concentration now: ``as_of`` the newest event time judged (null before any loan)."""

    as_of: dt.datetime | None
    rows: list[ConcentrationRow]


def concentration_view(book: Any, rulebook: Any, may_read_borrower: Callable[[str], bool]) -> dict[str, Any]:
    """The body of ``GET /api/portfolio/concentration`` from a :class:`~monitor.core.portfolio.PortfolioBook`.

    A reader restricted to some borrowers (a relationship manager) sees the borrower-group rows of
    the groups that hold one of their borrowers' loans only; the profile and region rows are totals over
    many borrowers and shown to every reader of the loan list.
    """
    groups = {rec.borrower_group for _att, rec in book.loans.values() if may_read_borrower(rec.borrower_id)}
    rows = [r.as_json() for r in book.rows(rulebook) if r.dimension != "borrower_group" or r.key in groups]
    as_of = book.as_of_time()
    return {"as_of": as_of.isoformat() if as_of is not None else None, "rows": rows}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the query API (schemas from the pydantic models)."""
    _, schemas = models_json_schema(
        [(m, "serialization") for m in (LoanSummary, LoanDetail, AssetDetail, Concentration, ApiError)],
        ref_template="#/components/schemas/{model}",
    )

    def ok(ref: str, array: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = {"$ref": f"#/components/schemas/{ref}"}
        if array:
            schema = {"type": "array", "items": schema}
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}

    def error(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
        }

    unavailable = error("A worker that holds part of the answer cannot be reached now; try again")
    not_found = error("No such id on any worker")
    unauthorized = error("No valid credential: no, malformed, expired or forged bearer token")
    forbidden = error("A valid credential whose role may not read this (or a loan of another borrower)")
    refusals = {"401": unauthorized, "403": forbidden}
    ident = {"type": "string", "minLength": 1, "maxLength": 200}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pledgewatch query API",
            "version": "1.0.0",
            "description": "Read-only views of the loans and pledged data assets the workers hold. Amounts in yuan.",
        },
        "paths": {
            "/api/loans": {
                "get": {
                    "operationId": "listLoans",
                    "summary": "Every loan with status and coverage, across all workers",
                    "parameters": [
                        {
                            "name": "scope",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["all", "local"], "default": "all"},
                        }
                    ],
                    "responses": {"200": ok("LoanSummary", array=True), "503": unavailable, **refusals},
                }
            },
            "/api/loans/{loan_id}": {
                "get": {
                    "operationId": "getLoan",
                    "summary": "One loan with valuation components, active alerts and margin calls",
                    "parameters": [{"name": "loan_id", "in": "path", "required": True, "schema": ident}],
                    "responses": {"200": ok("LoanDetail"), "404": not_found, "503": unavailable, **refusals},
                }
            },
            "/api/portfolio/concentration": {
                "get": {
                    "operationId": "getConcentration",
                    "summary": "The portfolio's concentration by borrower group, asset profile and region, with limits",
                    "responses": {"200": ok("Concentration"), "503": unavailable, **refusals},
                }
            },
            "/loans/{loan_id}/report": {
                "get": {
                    "operationId": "getLoanReport",
                    "summary": "One loan's post-loan review (贷后检查) over its last days of event time, as HTML",
                    "parameters": [
                        {"name": "loan_id", "in": "path", "required": True, "schema": ident},
                        {
                            "name": "lang",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["en", "zh"], "default": "en"},
                        },
                        {
                            "name": "days",
                            "in": "query",
                            "required": False,
                            "description": "Days of event time back from the loan's newest risk snapshot",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_REPORT_DAYS,
                                "default": DEFAULT_DAYS,
                            },
                        },
                    ],
                    "responses": {
                        "200": {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "400": error("A lang other than zh or en, or days not a whole number in range"),
                        "404": error("No such loan on any worker, or no risk snapshot of it on the output topics yet"),
                        "503": error("The output topics or the worker holding the loan cannot be read now; try again"),
                        **refusals,
                    },
                }
            },
            "/api/assets/{asset_id}": {
                "get": {
                    "operationId": "getAsset",
                    "summary": "One pledged asset with its appraisal and latest valuation",
                    "parameters": [{"name": "asset_id", "in": "path", "required": True, "schema": ident}],
                    "responses": {"200": ok("AssetDetail"), "404": not_found, "503": unavailable, **refusals},
                }
            },
        },
        # a bearer token: the bank's OIDC access token (JWT) or a static API token (streams.security)
        "security": [{"bearer": []}],
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


@dataclass
class ApiSecurity:
    """Who may read the query API, and the trace each read leaves (issue 22, ``streams.security``).

    Attributes
    ----------
    auth
        Verifies credentials; None on a loopback API without credentials (every caller is then the
        ``anonymous`` reader with the risk officer's view, and still logged).
    peer_token
        The credential this worker forwards with (the same on every worker); None: no forwarding
        while ``auth`` is set.
    client_ssl
        TLS context for forwarding to another worker's HTTPS server (its CA), or None for plain HTTP.
    access_log
        Awaited with each :class:`~monitor.schemas.AccessLogEntry` (the worker sends it to
        ``pledge.access-log``); None: not logged (unit tests).
    count
        Called with (action, decision) for ``pledgewatch_api_requests_total``.
    worker
        This worker's URL, named in the log entries.
    """

    auth: Authenticator | None = None
    peer_token: str | None = None
    client_ssl: ssl.SSLContext | None = None
    access_log: Callable[[AccessLogEntry], Awaitable[None]] | None = None
    count: Callable[[str, str], None] | None = None
    worker: str = ""


#: Roles each endpoint admits (``streams.security``): operations read pipeline health, never loan data;
#: an asset's view spans the loans of every borrower that pledged it, so relationship managers read
#: assets through their own loans' detail (which carries each asset's valuation).
LOAN_READERS = (RISK_OFFICER, RELATIONSHIP_MANAGER, AUDITOR)
ASSET_READERS = (RISK_OFFICER, AUDITOR)
DOC_READERS = ROLES
#: Seconds a worker waits for another worker's answer before the caller gets a 503: the owner answers
#: from memory in milliseconds, so 10 s means it is gone or stalled (a rebalance moves its keys within
#: the 15-s session timeout) and the caller is better told to retry than left waiting.
FORWARD_TIMEOUT_S = 10.0
#: Headers of the portfolio page: loan data is never cached, framed, sniffed as another type, or sent
#: on as a referrer; the page runs no script and loads nothing (its style is inline).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


#: Seconds the output topics may take to be read for one report (each of the four read to its end):
#: past it the caller gets a 503 rather than a report of part of the history.
REPORT_READ_TIMEOUT_S = 30.0
#: Seconds past the read a report may take to render (plotly's figures of a week: well under one).
REPORT_RENDER_S = 15.0
#: The longest period a report may cover, in days: its charts carry every window of every asset.
MAX_REPORT_DAYS = 92


def report_headers(page: str) -> dict[str, str]:
    """Headers of a loan's report page (``page``: its HTML, :func:`monitor.report.render_report`'s).

    As :data:`PAGE_HEADERS`, but the page runs its inline scripts (plotly.js and one per chart), each
    allowed by its SHA-256 hash and nothing else; it loads nothing (``default-src 'none'``: no network,
    no font, no frame), plotly's images are data URLs. Styles are inline (``'unsafe-inline'``): plotly
    sets ``style`` attributes and adds style rules as it draws, which hashes cannot cover; with nothing
    loadable a style cannot send anything anywhere.
    """
    scripts = " ".join(dict.fromkeys(script_hashes(page))) or "'none'"
    csp = (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {**PAGE_HEADERS, "Content-Security-Policy": csp}


def register_api(
    app: Any,
    node: Any,
    loan_table: Any,
    asset_table: Any,
    security: ApiSecurity | None = None,
    display_timezone: str = "Asia/Shanghai",
    portfolio_table: Any = None,
    read_outputs: Callable[..., Outputs] | None = None,
    valuation: ValuationParams | None = None,
) -> None:
    """Add the views to the faust ``app``; ``node`` is the worker's :class:`streams.worker.Node`.

    ``read_outputs(timeout_s, loan_id=...)`` reads the output topics for a loan's report (blocking, run in an
    executor; :func:`streams.latest.read_outputs`; None: the report answers 503); ``valuation`` gives the
    report's anomaly threshold and warm-up (None: the defaults).

    ``display_timezone`` is the zone of the portfolio page's times (each shown with its offset);
    ``portfolio_table`` the table of the portfolio's concentration book (:mod:`streams.portfolio`), held by
    the one worker that owns the portfolio (None: the endpoint answers 404 on this worker).

    Every view authenticates the caller (:class:`ApiSecurity`), checks the endpoint's roles, answers
    for the data this worker holds or forwards to the worker holding it (with this worker's own
    credential and the caller's principal, never the caller's token), and logs the answer.
    """
    sec = security or ApiSecurity()
    tz = zoneinfo.ZoneInfo(display_timezone)

    def who(request: Any) -> Principal:
        if sec.auth is None:
            return Principal("anonymous", RISK_OFFICER, None, via="none")
        return sec.auth.authenticate(request.headers.get("Authorization"), request.headers.get(PRINCIPAL_HEADER))

    async def trace(
        request: Any, principal: Principal | None, action: str, ident: str | None, status: int, reason: str | None
    ) -> None:
        if principal is not None and principal.via == PEER:
            return  # the worker the client asked logs and counts it, with the final answer
        decision = {200: "allowed", 404: "not_found", 503: "unavailable"}.get(status, "refused")
        if sec.count is not None:
            sec.count(action, decision)
        if sec.access_log is None:
            return
        entry = AccessLogEntry(
            at=dt.datetime.now(dt.UTC),
            worker=sec.worker,
            subject=principal.subject if principal is not None else "unauthenticated",
            role=principal.role if principal is not None else None,
            via=principal.via if principal is not None else None,
            action=action,  # type: ignore[arg-type]  # one of the Literal's values, from the views below
            resource_id=ident,
            remote=request.remote,
            decision=decision,  # type: ignore[arg-type]
            status=status,
            reason=reason,
        )
        try:
            await sec.access_log(entry)
        except Exception as exc:  # noqa: BLE001 - the read was answered; a lost log entry is an error to see
            log.error("access log: entry not written (%s: %s): %s", type(exc).__name__, exc, entry.model_dump_json())

    async def guarded(
        web: Any, request: Any, action: str, ident: str | None, roles: tuple[str, ...], answer: Any
    ) -> Any:
        """Authenticate, check the roles, answer (``answer(principal)``) and log; 401 / 403 as JSON."""
        principal: Principal | None = None
        try:
            if sec.auth is not None and sec.auth.fetches_keys:  # a key fetch blocks: off the event loop
                principal = await asyncio.to_thread(who, request)
            else:
                principal = who(request)
            if sec.auth is not None:
                sec.auth.require(principal, roles)
        except Unauthorized as exc:
            await trace(request, None, action, ident, 401, exc.reason)
            headers = {"WWW-Authenticate": 'Bearer realm="pledgewatch"'}
            return web.json({"error": f"unauthorized: {exc.reason}"}, status=401, headers=headers)
        except Forbidden as exc:
            await trace(request, principal, action, ident, 403, exc.reason)
            return web.json({"error": f"forbidden: {exc.reason}"}, status=403)
        response, reason = await answer(principal)
        await trace(request, principal, action, ident, response.status, reason)
        return response

    def local_loans(principal: Principal) -> list[dict[str, Any]]:
        node.loan_state.load_all()
        out = []
        for loan in node.loans.loans.values():
            if not principal.may_read_borrower(loan.opened.borrower_id):
                continue
            out.append(loan_summary(loan).model_dump(mode="json"))
        return out

    def forward_headers(principal: Principal) -> dict[str, str] | None:
        """Return the worker's own credential and the caller's principal; None when forwarding is not configured."""
        if sec.auth is None:
            return {}
        if not sec.peer_token:
            return None
        return {"Authorization": f"Bearer {sec.peer_token}", PRINCIPAL_HEADER: principal.header()}

    async def fetch(url: str, principal: Principal, params: dict[str, str] | None = None) -> tuple[int, str, str]:
        headers = forward_headers(principal)
        if headers is None:
            raise ForwardingNotConfigured()
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, params=params, headers=headers, ssl=sec.client_ssl or True) as resp:
                return resp.status, await resp.text(), resp.content_type

    async def every_loan(principal: Principal) -> tuple[list[dict[str, Any]] | None, str | None, str | None]:
        """Every loan ``principal`` may read, from this worker and every other one, sorted by id.

        Returns ``(loans, None, None)``, or ``(None, message, reason)`` when a worker did not answer
        (the caller gets no partial list).
        """
        loans = local_loans(principal)
        me = str(app.conf.canonical_url).rstrip("/")
        others = [str(u).rstrip("/") for u in app.router.table_metadata(loan_table.name)]
        others = [u for u in others if u != me]
        answers = await asyncio.gather(
            *(fetch(f"{u}/api/loans", principal, {"scope": "local"}) for u in others), return_exceptions=True
        )
        for url, got in zip(others, answers, strict=True):
            if isinstance(got, BaseException) or got[0] != 200:
                why = got if isinstance(got, BaseException) else f"HTTP {got[0]}"
                log.warning("query API: worker %s did not answer: %s", url, why)
                return None, f"worker {url} did not answer; try again", f"worker {url}: {why}"
            loans.extend(json.loads(got[1]))
        return sorted(loans, key=lambda x: x["loan_id"]), None, None

    @app.page("/api/loans")
    async def loans_view(web: Any, request: Any) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            if request.query.get("scope", "all") == "local":
                return web.json(sorted(local_loans(principal), key=lambda x: x["loan_id"])), None
            loans, msg, reason = await every_loan(principal)
            if loans is None:
                return web.json({"error": msg}, status=503), reason
            return web.json(loans), None

        return await guarded(web, request, "list_loans", None, LOAN_READERS, answer)

    async def concentration(principal: Principal) -> tuple[dict[str, Any] | None, str | None]:
        """The JSON of ``/api/portfolio/concentration`` asked of this worker as ``principal``, or ``(None, why)``.

        Asked over HTTP like any forwarded request (this worker's peer credential and the caller's
        principal, never the caller's token), so the caller's role applies to it as to the API.
        """
        me = str(app.conf.canonical_url).rstrip("/")
        try:
            status, text, _ = await fetch(f"{me}/api/portfolio/concentration", principal)
        except ForwardingNotConfigured:
            return None, "needs PLEDGEWATCH_PEER_TOKEN to be asked from the page"
        except Exception as exc:  # noqa: BLE001 - the loans are shown without it, never a 500
            return None, f"{type(exc).__name__}"
        if status != 200:
            return None, None if status == 404 else f"HTTP {status}"
        try:
            data = json.loads(text)
            rows = data["rows"]
            if not isinstance(rows, list):
                raise TypeError("rows")
        except (ValueError, KeyError, TypeError) as exc:
            return None, f"unreadable answer ({type(exc).__name__})"
        return data, None

    @app.page("/portfolio")
    async def portfolio_view(web: Any, request: Any) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            lang = request.query.get("lang", "en")
            if lang not in PAGE_LABELS:
                bad = f"lang: got {lang[:20]!r}, expected zh or en"
                return web.json({"error": bad}, status=400), bad
            loans, msg, reason = await every_loan(principal)
            if loans is not None and (old := older_entries(loans)):
                # a worker of an older version (a rolling upgrade) lists loans without the page's fields
                msg = f"{len(old)} loans (e.g. {old[0]!r}) come from a worker of an older version; retry after it"
                loans, reason = None, msg
            conc, why = await concentration(principal) if loans is not None else (None, None)
            page = render_portfolio(loans, lang, tz, dt.datetime.now(dt.UTC), conc, why, error=msg)
            return web.html(page, status=200 if loans is not None else 503, headers=dict(PAGE_HEADERS)), reason

        return await guarded(web, request, "read_portfolio", None, LOAN_READERS, answer)

    async def routed(
        table: Any,
        key: str,
        web: Any,
        request: Any,
        principal: Principal,
        local: Callable[[], Awaitable[tuple[Any, str | None]]],
        headers: Callable[[str], dict[str, str]] | None = None,
    ) -> tuple[Any, str | None]:
        """Answer here when this worker holds ``key``, else forward to the owner with this worker's credential.

        The request's query goes along; ``headers(body)`` gives the headers of an owner's 200 answer.
        """
        try:
            owner = str(app.router.key_store(table.name, key)).rstrip("/")
        except Exception as exc:  # noqa: BLE001 - no assignment yet (a rebalance): the caller's 503, never a 500
            msg = f"the worker holding {key!r} is not known now ({type(exc).__name__}); try again"
            return web.json({"error": msg}, status=503), msg
        if owner == str(app.conf.canonical_url).rstrip("/"):
            return await local()
        try:
            status, text, content_type = await fetch(f"{owner}{request.path}", principal, dict(request.query))
        except ForwardingNotConfigured:
            msg = "forwarding to another worker needs PLEDGEWATCH_PEER_TOKEN on every worker"
            log.error("query API: %s (asked for %r of %s)", msg, key, table.name)
            return web.json({"error": f"the worker holding {key!r} cannot be asked: {msg}"}, status=503), msg
        except Exception as exc:  # noqa: BLE001 - routing trouble is the caller's 503, never a 500
            log.warning("query API: cannot reach %s for %r of %s: %s", owner, key, table.name, exc)
            msg = f"the worker holding {key!r} cannot be reached now ({type(exc).__name__}); try again"
            return web.json({"error": msg}, status=503), msg
        reason = None if status == 200 else f"answered {status} by {owner}"
        extra = headers(text) if headers is not None and status == 200 else None
        return web.text(text, content_type=content_type, status=status, headers=extra), reason

    @app.page("/api/loans/{loan_id}")
    async def loan_view(web: Any, request: Any, loan_id: str) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            local = lambda: loan_local(web, loan_id, principal)  # noqa: E731
            return await routed(loan_table, loan_id, web, request, principal, local)

        return await guarded(web, request, "read_loan", loan_id, LOAN_READERS, answer)

    def readable_loan(web: Any, loan_id: str, principal: Principal) -> tuple[Any, tuple[Any, str | None] | None]:
        """The loan this worker holds if ``principal`` may read it, else the refusal to answer (404 or 403)."""
        node.loan_state.load(loan_id)
        loan = node.loans.loans.get(loan_id)
        if loan is None:
            return None, (web.json({"error": f"loan_id: no loan {loan_id!r}"}, status=404), None)
        if not principal.may_read_borrower(loan.opened.borrower_id):
            msg = f"loan {loan_id!r} is not of a borrower assigned to {principal.subject!r}"
            return None, (web.json({"error": f"forbidden: {msg}"}, status=403), msg)
        return loan, None

    async def loan_local(web: Any, loan_id: str, principal: Principal) -> tuple[Any, str | None]:
        loan, refusal = readable_loan(web, loan_id, principal)
        if refusal is not None:
            return refusal
        detail = LoanDetail(
            snapshot=loan.snapshot(),
            summary=loan_summary(loan),
            assets=[s.valuation for s in loan.assets.values() if s.valuation is not None],
            active_alerts=sorted(loan.active_alerts.values(), key=lambda a: a.at),
            margin_calls=sorted(loan.margin_calls.values(), key=lambda m: m.issued_at),
        )
        return web.json(detail.model_dump(mode="json")), None

    @app.page("/loans/{loan_id}/report")
    async def report_view(web: Any, request: Any, loan_id: str) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            lang = request.query.get("lang", "en")
            days_text = request.query.get("days", str(DEFAULT_DAYS))
            bad = None
            if lang not in PAGE_LABELS:
                bad = f"lang: got {lang[:20]!r}, expected zh or en"
            elif not (days_text.isascii() and days_text.isdigit() and 1 <= int(days_text) <= MAX_REPORT_DAYS):
                bad = f"days: got {days_text[:20]!r}, expected a whole number of days from 1 to {MAX_REPORT_DAYS}"
            if bad is not None:
                return web.json({"error": bad}, status=400), bad
            local = lambda: report_local(web, loan_id, principal, lang, int(days_text))  # noqa: E731
            return await routed(loan_table, loan_id, web, request, principal, local, report_headers)

        return await guarded(web, request, "read_report", loan_id, LOAN_READERS, answer)

    async def report_local(
        web: Any, loan_id: str, principal: Principal, lang: str, days: int
    ) -> tuple[Any, str | None]:
        """The report of a loan this worker holds: the checks of ``/api/loans/{id}``, then the topics read."""
        _loan, refusal = readable_loan(web, loan_id, principal)
        if refusal is not None:
            return refusal
        if read_outputs is None:
            msg = "this worker does not read the output topics"
            return web.json({"error": f"the report of {loan_id!r} is not available: {msg}"}, status=503), msg
        reader = read_outputs
        params = valuation

        def build() -> str:
            """Read the topics and render (both blocking: kafka-python, then plotly's figures)."""
            out = reader(REPORT_READ_TIMEOUT_S, loan_id=loan_id)  # only its records decoded
            extra = {} if params is None else {"anomaly_threshold": params.anomaly_threshold,
                                                "hst_window": params.hst_window}  # fmt: skip
            return loan_report(*out, loan_id=loan_id, days=days, lang=lang, timezone=display_timezone, **extra)

        try:
            loop = asyncio.get_running_loop()
            page = await asyncio.wait_for(loop.run_in_executor(None, build), REPORT_READ_TIMEOUT_S + REPORT_RENDER_S)
        except ConfigError:
            msg = f"loan_id: no risk snapshot of loan {loan_id!r} on the output topics yet"
            return web.json({"error": msg}, status=404), None
        except Exception as exc:  # noqa: BLE001 - a broker that cannot be read is the caller's 503, never a 500
            log.warning("report of %r: output topics not read: %s: %s", loan_id, type(exc).__name__, exc)
            msg = f"the output topics cannot be read now ({type(exc).__name__}); try again"
            return web.json({"error": f"the report of {loan_id!r} is not available: {msg}"}, status=503), msg
        return web.html(page, headers=report_headers(page)), None

    @app.page("/api/assets/{asset_id}")
    async def asset_view(web: Any, request: Any, asset_id: str) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            return await routed(asset_table, asset_id, web, request, principal, lambda: asset_local(web, asset_id))

        return await guarded(web, request, "read_asset", asset_id, ASSET_READERS, answer)

    async def asset_local(web: Any, asset_id: str) -> tuple[Any, str | None]:
        node.asset_state.load(asset_id)
        asset = node.assets.assets.get(asset_id)
        if asset is None:
            return web.json({"error": f"asset_id: no pledged asset {asset_id!r}"}, status=404), None
        detail = AssetDetail(
            asset_id=asset.asset_id,
            asset_profile=asset.profile_name,
            loan_ids=list(asset.loan_ids),
            appraisal=asset.pledge.appraisal,
            windows_seen=asset.valuer.windows_seen,
            valuation=asset.last_valuation,
        )
        return web.json(detail.model_dump(mode="json")), None

    @app.page("/api/portfolio/concentration")
    async def concentration_page(web: Any, request: Any) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            async def local() -> tuple[Any, str | None]:
                owner = node.portfolio
                if owner is None:
                    return web.json({"error": "this worker keeps no portfolio"}, status=503), "no portfolio"
                if not owner.loaded:
                    owner.load()
                body = concentration_view(owner.book, node.loans.rulebook, principal.may_read_borrower)
                return web.json(body), None

            if portfolio_table is None:
                return await local()
            # one partition: its owner is the worker that keeps the portfolio
            return await routed(portfolio_table, "portfolio", web, request, principal, local)

        return await guarded(web, request, "read_concentration", None, LOAN_READERS, answer)

    @app.page("/api/openapi.json")
    async def openapi_view(web: Any, request: Any) -> Any:
        async def answer(principal: Principal) -> tuple[Any, str | None]:
            return web.json(openapi()), None

        return await guarded(web, request, "read_openapi", None, DOC_READERS, answer)


class ForwardingNotConfigured(Exception):
    """Raised when a request must go to another worker and no peer credential is set."""
