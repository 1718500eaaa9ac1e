"""The query API with two workers on 4 partitions: every loan and asset answered by either worker.

Then schemathesis, driven by the API's own OpenAPI document, finds no 5xx and no answer off its schema.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

from monitor.core import decode_loan_event
from monitor.schemas import CollateralPledged, LoanOpened
from tests.integration.conftest import BIN, Worker, start_two_and_replay_demo

#: 11:30 NZST: the demo's margin call (window 10:45 NZST) has been issued
SLICE_END = dt.datetime(2016, 5, 19, 23, 30, tzinfo=dt.UTC)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_api__every_loan_and_asset_from_either_of_two_workers_and_no_5xx_under_schemathesis(env) -> None:  # type: ignore[no-untyped-def]
    w1, w2 = Worker(env), Worker(env, second=True)
    try:
        book = start_two_and_replay_demo(env, w1, w2, SLICE_END)
        decoded = [decode_loan_event(raw) for raw in book]
        loans = sorted({e.loan_id for e in decoded if isinstance(e, LoanOpened)})
        assets = sorted({e.asset_id for e in decoded if isinstance(e, CollateralPledged)})
        bases = [f"http://127.0.0.1:{w.vars['PLEDGEWATCH_WEB_PORT']}" for w in (w1, w2)]

        for base in bases:
            status, listed = get(f"{base}/api/loans")
            assert status == 200 and [x["loan_id"] for x in listed] == loans
            status, local = get(f"{base}/api/loans?scope=local")
            assert status == 200 and len(local) < len(loans)  # each worker holds only its partitions' loans
            for loan in loans:
                status, detail = get(f"{base}/api/loans/{loan}")
                assert status == 200 and detail["snapshot"]["loan_id"] == loan
                assert {a["asset_id"] for a in detail["assets"]} <= set(assets) and detail["assets"]
            for asset in assets:
                status, detail = get(f"{base}/api/assets/{asset}")
                assert status == 200 and detail["asset_id"] == asset and detail["valuation"]["asset_id"] == asset
            assert get(f"{base}/api/loans/L-NOPE")[0] == 404
            assert get(f"{base}/api/assets/nope")[0] == 404

        # the loan in margin call shows its margin call and its firing alerts, whichever worker is asked
        for base in bases:
            _, detail = get(f"{base}/api/loans/L-AKL-002")
            assert detail["snapshot"]["status"] in {"margin_call", "close_out"}
            assert [m["status"] for m in detail["margin_calls"]] == ["issued"]
            assert {"coverage-below-margin-call"} <= {a["rule_id"] for a in detail["active_alerts"]}
        # the portfolio has one owner: either worker answers with its book (the other forwards)
        bodies = []
        for base in bases:
            status, body = get(f"{base}/api/portfolio/concentration")
            assert status == 200 and set(body) == {"as_of", "rows"}
            bodies.append(body)
        assert bodies[0] == bodies[1] and bodies[0]["as_of"] is not None
        groups = {r["key"] for r in bodies[0]["rows"] if r["dimension"] == "borrower_group"}
        assert groups == {"B-AKL-CENTRAL", "B-AKL-EAST", "B-AKL-NORTH"}
        _, doc = get(f"{bases[0]}/api/openapi.json")
        assert doc["openapi"] == "3.1.0" and set(doc["paths"]) == {
            "/api/loans",
            "/api/loans/{loan_id}",
            "/api/assets/{asset_id}",
            "/api/portfolio/concentration",
            "/loans/{loan_id}/report",
        }

        st = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "run",
                f"{bases[1]}/api/openapi.json",
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
                "--max-examples",
                "60",
                "--seed",
                "7",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=env.tmp,
        )
        assert st.returncode == 0, st.stdout[-4000:] + st.stderr[-2000:]
        print(st.stdout[-1500:])  # the summary, shown with -s
        assert w1.alive() and w2.alive()
    finally:
        w2.stop()
        w1.stop()
