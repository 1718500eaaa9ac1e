"""Read-only query API on the worker (faust web views), bound to 127.0.0.1 by default.

- ``GET /api/loans``: every loan with status and coverage, across all workers (each worker answers
  for its partitions and asks the others; ``?scope=local`` answers for this worker only).
- ``GET /api/loans/{loan_id}``: one loan's risk position, its assets' valuation components, its
  active alerts and its margin calls.
- ``GET /api/assets/{asset_id}``: one asset's appraisal, loans and latest valuation.
- ``GET /api/openapi.json``: the OpenAPI 3.1 document of these endpoints.

A request for a loan or asset held by another worker is forwarded to it by faust's table routing
(``app.table_route``: the key's partition in the state table's changelog names the owner's
``canonical_url``). Unknown ids answer 404 with ``{"error": ...}``; nothing here writes state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import aiohttp
from faust.exceptions import SameNode
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from monitor.schemas import Alert, Appraisal, CollateralValuation, LoanRiskSnapshot, MarginCall

__all__ = ["AssetDetail", "LoanDetail", "LoanSummary", "openapi", "register_api"]

log = logging.getLogger(__name__)


class LoanSummary(BaseModel):
    """One loan in the list: status and coverage (ratios), amounts in yuan."""

    loan_id: str
    status: str
    coverage_ratio: float | None
    collateral_value: float
    outstanding: float
    as_of: dt.datetime


class LoanDetail(BaseModel):
    """One loan: its risk position, its assets' latest valuations, active alerts and margin calls."""

    snapshot: LoanRiskSnapshot
    assets: list[CollateralValuation]
    active_alerts: list[Alert]
    margin_calls: list[MarginCall]


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


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the query API (schemas from the pydantic models)."""
    _, schemas = models_json_schema(
        [(m, "serialization") for m in (LoanSummary, LoanDetail, AssetDetail, ApiError)],
        ref_template="#/components/schemas/{model}",
    )

    def ok(ref: str, array: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = {"$ref": f"#/components/schemas/{ref}"}
        if array:
            schema = {"type": "array", "items": schema}
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}

    unavailable = {
        "description": "A worker that holds part of the answer cannot be reached now; try again",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
    }
    not_found = {
        "description": "No such id on any worker",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
    }
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
                    "responses": {"200": ok("LoanSummary", array=True), "503": unavailable},
                }
            },
            "/api/loans/{loan_id}": {
                "get": {
                    "operationId": "getLoan",
                    "summary": "One loan with valuation components, active alerts and margin calls",
                    "parameters": [{"name": "loan_id", "in": "path", "required": True, "schema": ident}],
                    "responses": {"200": ok("LoanDetail"), "404": not_found, "503": unavailable},
                }
            },
            "/api/assets/{asset_id}": {
                "get": {
                    "operationId": "getAsset",
                    "summary": "One pledged asset with its appraisal and latest valuation",
                    "parameters": [{"name": "asset_id", "in": "path", "required": True, "schema": ident}],
                    "responses": {"200": ok("AssetDetail"), "404": not_found, "503": unavailable},
                }
            },
        },
        "components": {"schemas": schemas["$defs"]},
    }


def register_api(app: Any, node: Any, loan_table: Any, asset_table: Any) -> None:
    """Add the views to the faust ``app``; ``node`` is the worker's :class:`streams.worker.Node`."""

    def local_loans() -> list[dict[str, Any]]:
        node.loan_state.load_all()
        out = []
        for loan in node.loans.loans.values():
            s = loan.snapshot()
            out.append(
                LoanSummary(
                    loan_id=s.loan_id,
                    status=s.status,
                    coverage_ratio=s.coverage_ratio,
                    collateral_value=s.collateral_value,
                    outstanding=s.outstanding,
                    as_of=s.as_of,
                ).model_dump(mode="json")
            )
        return out

    async def remote_loans(url: str) -> list[dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{url.rstrip('/')}/api/loans", params={"scope": "local"}) as resp:
                resp.raise_for_status()
                return list(await resp.json())

    @app.page("/api/loans")
    async def loans_view(web: Any, request: Any) -> Any:
        loans = local_loans()
        if request.query.get("scope", "all") != "local":
            me = str(app.conf.canonical_url).rstrip("/")
            others = [str(u).rstrip("/") for u in app.router.table_metadata(loan_table.name)]
            others = [u for u in others if u != me]
            answers = await asyncio.gather(*(remote_loans(u) for u in others), return_exceptions=True)
            for url, got in zip(others, answers, strict=True):
                if isinstance(got, BaseException):
                    log.warning("query API: worker %s did not answer: %s", url, got)
                    return web.json({"error": f"worker {url} did not answer; try again"}, status=503)
                loans.extend(got)
        return web.json(sorted(loans, key=lambda x: x["loan_id"]))

    async def routed(table: Any, key: str, web: Any, request: Any, local: Any) -> Any:
        """Answer here when this worker holds ``key``, else forward to the owner (faust's table routing)."""
        try:
            return await app.router.route_req(table.name, key, web, request)
        except SameNode:
            return await local()
        except Exception as exc:  # noqa: BLE001 - routing trouble is the caller's 503, never a 500
            log.warning("query API: cannot route %r of %s: %s", key, table.name, exc)
            msg = f"the worker holding {key!r} cannot be reached now ({type(exc).__name__}); try again"
            return web.json({"error": msg}, status=503)

    @app.page("/api/loans/{loan_id}")
    async def loan_view(web: Any, request: Any, loan_id: str) -> Any:
        return await routed(loan_table, loan_id, web, request, lambda: loan_local(web, loan_id))

    async def loan_local(web: Any, loan_id: str) -> Any:
        node.loan_state.load(loan_id)
        loan = node.loans.loans.get(loan_id)
        if loan is None:
            return web.json({"error": f"loan_id: no loan {loan_id!r}"}, status=404)
        detail = LoanDetail(
            snapshot=loan.snapshot(),
            assets=[s.valuation for s in loan.assets.values() if s.valuation is not None],
            active_alerts=sorted(loan.active_alerts.values(), key=lambda a: a.at),
            margin_calls=sorted(loan.margin_calls.values(), key=lambda m: m.issued_at),
        )
        return web.json(detail.model_dump(mode="json"))

    @app.page("/api/assets/{asset_id}")
    async def asset_view(web: Any, request: Any, asset_id: str) -> Any:
        return await routed(asset_table, asset_id, web, request, lambda: asset_local(web, asset_id))

    async def asset_local(web: Any, asset_id: str) -> Any:
        node.asset_state.load(asset_id)
        asset = node.assets.assets.get(asset_id)
        if asset is None:
            return web.json({"error": f"asset_id: no pledged asset {asset_id!r}"}, status=404)
        detail = AssetDetail(
            asset_id=asset.asset_id,
            asset_profile=asset.profile_name,
            loan_ids=list(asset.loan_ids),
            appraisal=asset.pledge.appraisal,
            windows_seen=asset.valuer.windows_seen,
            valuation=asset.last_valuation,
        )
        return web.json(detail.model_dump(mode="json"))

    @app.page("/api/openapi.json")
    async def openapi_view(web: Any, request: Any) -> Any:
        return web.json(openapi())
