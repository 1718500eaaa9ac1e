"""Who may see a loan, on the real workers (issue 22): TLS, bearer tokens, roles, forwarding, the access log.

Two workers of one group bound to 127.0.0.2 and 127.0.0.3 (addresses other than 127.0.0.1, each with
its own certificate from a CA the test makes), tokens signed by a key the test makes and publishes
as a JWKS file (the bank's identity provider), a static token for a machine, and the peer credential
the workers forward with. The demo's loans are split between the workers by partition, so a loan
asked of one worker is often held by the other: those answers cross between the workers over TLS.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import re
import secrets
import ssl
import string
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.core import decode_loan_event
from monitor.portfolio import LABELS
from monitor.schemas import AccessLogEntry, LoanOpened
from streams.security import PRINCIPAL_HEADER, hash_token
from tests.integration.conftest import BIN, ROOT, Env, Worker, free_port, read_topic, start_two_and_replay_demo
from tests.integration.test_api import SLICE_END

ISSUER, AUDIENCE = "https://idp.bank.example/realms/risk", "pledgewatch"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign(key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "bank-1"})


def call(url: str, ctx: ssl.SSLContext | None, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


@pytest.fixture
def secured(env: Env, tmp_path: Path) -> dict[str, Any]:
    """CA, worker certificates, JWKS, tokens file and peer secret; the env vars of each worker."""
    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    jwk = json.loads(jwt.get_algorithm_by_name("RS256").to_jwk(KEY.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "bank-1", "use": "sig", "alg": "RS256"}]}))
    ops_token, scraper_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        "tokens:\n"
        f"  - {{name: grafana-health, sha256: '{hash_token(ops_token)}', role: operations}}\n"
        f"  - {{name: prometheus, sha256: '{hash_token(scraper_token)}', role: scraper}}\n"
    )
    (tmp_path / "scraper-token").write_text(scraper_token)
    (tmp_path / "ops-token").write_text(ops_token)
    peer = secrets.token_urlsafe(32)
    per_worker = []
    for host in ("127.0.0.2", "127.0.0.3"):
        leaf = ca.issue_cert(host)
        cert, key = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        per_worker.append(
            {
                "PLEDGEWATCH_WEB_HOST": host,
                "PLEDGEWATCH_METRICS_HOST": host,
                "PLEDGEWATCH_WEB_TLS_CERTFILE": str(cert),
                "PLEDGEWATCH_WEB_TLS_KEYFILE": str(key),
                "PLEDGEWATCH_WEB_TLS_CAFILE": str(cafile),
                "PLEDGEWATCH_AUTH_JWKS": str(jwks),
                "PLEDGEWATCH_AUTH_ISSUER": ISSUER,
                "PLEDGEWATCH_AUTH_AUDIENCE": AUDIENCE,
                "PLEDGEWATCH_API_TOKENS_FILE": str(tokens),
                "PLEDGEWATCH_PEER_TOKEN": peer,
            }
        )
    ctx = ssl.create_default_context(cafile=str(cafile))
    return {
        "workers": per_worker, "ctx": ctx, "ops": ops_token, "scraper": scraper_token, "peer": peer,
        "cafile": cafile, "folder": tmp_path,
    }  # fmt: skip


def test_http_security__tls_between_two_workers_tokens_roles_and_every_read_in_the_access_log(
    env: Env, secured: dict[str, Any]
) -> None:
    w1, w2 = Worker(env), Worker(env, second=True)
    ctx: ssl.SSLContext = secured["ctx"]
    for worker, extra in zip((w1, w2), secured["workers"], strict=True):
        worker.vars.update(extra)
        worker.metrics_url = (
            f"https://{extra['PLEDGEWATCH_WEB_HOST']}:{worker.vars['PLEDGEWATCH_METRICS_PORT']}/metrics"
        )
        worker.metrics_ctx = ctx
    try:
        book = start_two_and_replay_demo(env, w1, w2, SLICE_END)
        opened = [e for e in map(decode_loan_event, book) if isinstance(e, LoanOpened)]
        borrower = {e.loan_id: e.borrower_id for e in opened}
        loans = sorted(borrower)
        bases = [f"https://{x['PLEDGEWATCH_WEB_HOST']}:{w.vars['PLEDGEWATCH_WEB_PORT']}" for x, w in
                 zip(secured["workers"], (w1, w2), strict=True)]  # fmt: skip
        officer = sign(sub="risk.li", roles=["risk_officer"])
        rm = sign(sub="rm.zhang", roles=["relationship_manager"], borrowers=[borrower["L-AKL-002"]])
        held = {}
        for base in bases:  # which worker holds which loan (the risk officer's local view)
            status, local, _ = call(f"{base}/api/loans?scope=local", ctx, officer)
            assert status == 200
            held.update({x["loan_id"]: base for x in local})
        assert sorted(held) == loans and len(set(held.values())) == 2  # the loans are split between them

        for base in bases:
            # no token, a forged one, an expired one, a token of another issuer: 401, saying how to authenticate
            forged = sign(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), roles=["risk_officer"])
            expired = sign(roles=["risk_officer"], exp=int(time.time()) - 120)
            for token in (None, forged, expired, sign(roles=["risk_officer"], iss="https://idp.evil.example"), "x"):
                status, body, headers = call(f"{base}/api/loans/L-AKL-001", ctx, token)
                assert (
                    status == 401
                    and body["error"].startswith("unauthorized")
                    and "Bearer" in headers["WWW-Authenticate"]
                )
            # operations: pipeline health, no loan data
            for path in ("/api/loans", "/api/loans/L-AKL-001", "/api/assets/akl-routes-7xx"):
                status, body, _ = call(base + path, ctx, secured["ops"])
                assert status == 403 and "operations" in body["error"]
            # the peer credential without a principal is no key to the data
            assert call(f"{base}/api/loans", ctx, secured["peer"])[0] == 401
            # the risk officer reads every loan, whichever worker holds it (forwarded over TLS)
            status, listed, _ = call(f"{base}/api/loans", ctx, officer)
            assert status == 200 and [x["loan_id"] for x in listed] == loans
            for loan in loans:
                status, detail, _ = call(f"{base}/api/loans/{loan}", ctx, officer)
                assert status == 200 and detail["snapshot"]["loan_id"] == loan
            status, asset, _ = call(f"{base}/api/assets/akl-routes-7xx", ctx, officer)
            assert status == 200 and asset["asset_id"] == "akl-routes-7xx"
            # the relationship manager sees only their borrower's loan, in the list and by id, on either worker
            status, listed, _ = call(f"{base}/api/loans", ctx, rm)
            assert status == 200 and [x["loan_id"] for x in listed] == ["L-AKL-002"]
            assert call(f"{base}/api/loans/L-AKL-002", ctx, rm)[0] == 200
            for loan in ("L-AKL-001", "L-AKL-003"):
                status, body, _ = call(f"{base}/api/loans/{loan}", ctx, rm)
                assert status == 403 and "not of a borrower assigned to 'rm.zhang'" in body["error"], (base, loan, held)
            assert call(f"{base}/api/assets/akl-routes-7xx", ctx, rm)[0] == 403
        # a loan's report: the API's roles and borrowers, on either worker; the worker not holding the loan
        # forwards the request with its query (the language) over TLS and the answer keeps its report headers
        for base in bases:
            status, page, headers = fetch_page(f"{base}/loans/L-AKL-002/report?lang=zh&days=2", ctx, rm)
            assert status == 200 and "<html lang='zh-CN'>" in page and "<h2>L-AKL-002</h2>" in page, page[:300]
            assert headers["Cache-Control"] == "no-store" and "'sha256-" in headers["Content-Security-Policy"]
            assert rm not in page
            for loan in ("L-AKL-001", "L-AKL-003"):
                status, text, headers = fetch_page(f"{base}/loans/{loan}/report", ctx, rm)
                assert (status, json.loads(text)) == call(f"{base}/api/loans/{loan}", ctx, rm)[:2], (base, loan)
                assert status == 403 and "<section" not in text and "Content-Security-Policy" not in headers
            assert fetch_page(f"{base}/loans/L-AKL-002/report", ctx, secured["ops"])[0] == 403
            assert fetch_page(f"{base}/loans/L-AKL-002/report", ctx, None)[0] == 401
        reports = [
            (e.subject, e.resource_id, e.status)
            for e in map(AccessLogEntry.model_validate_json, (r.value for r in read_topic(env.settings, "access-log")))
            if e.action == "read_report"
        ]
        assert sorted(x for x in reports if x[0] == "rm.zhang") == sorted(
            [("rm.zhang", "L-AKL-002", 200), ("rm.zhang", "L-AKL-001", 403), ("rm.zhang", "L-AKL-003", 403)] * 2
        )  # once per request, on the worker asked

        # a refused loan held by the other worker was among those asked: its 403 came from its owner
        assert {held["L-AKL-001"], held["L-AKL-003"]} - {bases[0]} or {held["L-AKL-001"], held["L-AKL-003"]} - {
            bases[1]
        }

        # the portfolio page: the API's roles and borrowers on either worker, the list crossing between them
        for base in bases:
            status, page, headers = fetch_page(f"{base}/portfolio?lang=zh", ctx, officer)
            assert status == 200 and sorted(re.findall(r"data-loan='([^']*)'", page)) == loans
            assert officer not in page and headers["Cache-Control"] == "no-store"
            # the concentrations are asked of the worker itself with the peer credential over TLS: a 404
            # (the endpoint is another change's) shows "not available" without a reason, rows otherwise
            c_status, c_body, _ = fetch_page(f"{base}/api/portfolio/concentration", ctx, officer)
            if c_status == 404:
                assert f"<p class=not-available>{LABELS['zh']['not_available']}</p>" in page
            else:
                assert c_status == 200 and all(r["key"] in page for r in json.loads(c_body)["rows"])
            status, page, _ = fetch_page(f"{base}/portfolio", ctx, rm)
            assert status == 200 and re.findall(r"data-loan='([^']*)'", page) == ["L-AKL-002"]
            assert fetch_page(f"{base}/portfolio", ctx, secured["ops"])[0] == 403
            assert fetch_page(f"{base}/portfolio", ctx, None)[0] == 401
            assert fetch_page(f"{base}/portfolio", ctx, forged)[0] == 401

        # plain HTTP on the TLS port gets no loan data
        for base in bases:
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                urllib.request.urlopen(base.replace("https://", "http://") + "/api/loans", timeout=10).read()

        # schemathesis from the API's own document: without a token only 401s, with one no server error
        started = dt.datetime.now(dt.UTC)
        fuzz(env, secured, bases[1], None)
        between = dt.datetime.now(dt.UTC)
        fuzz(env, secured, bases[1], officer)
        fuzzed = [AccessLogEntry.model_validate_json(r.value) for r in read_topic(env.settings, "access-log")]
        anonymous = [e for e in fuzzed if started <= e.at < between]
        assert anonymous and {(e.status, e.subject) for e in anonymous} == {(401, "unauthenticated")}
        assert all(e.status < 500 for e in fuzzed)

        # the Authorization header and the claims fuzzed against a real worker: never a 5xx, never a bypass
        fuzz_authorization(bases[0], ctx, secured)

        # every read is on the access log, once, with who, what, from where and the answer; never a token
        entries = [AccessLogEntry.model_validate_json(r.value) for r in read_topic(env.settings, "access-log")]
        raw = b"".join(r.value for r in read_topic(env.settings, "access-log"))
        logs = b"".join(w.log.read_bytes() for w in (w1, w2))
        for secret in (officer, rm, forged, secured["ops"], secured["peer"], secured["scraper"]):
            assert secret.encode() not in raw and secret.encode() not in logs  # nor in any worker's log line
        rm_refused = [
            e for e in entries if e.subject == "rm.zhang" and e.decision == "refused" and e.action == "read_loan"
        ]
        assert sorted((e.resource_id, e.status) for e in rm_refused) == sorted(
            (loan, 403) for loan in ("L-AKL-001", "L-AKL-003") for _ in bases for _asked in ("json", "beside report")
        )  # once per request, though half of them crossed to the other worker
        assert all(
            (e.remote or "").startswith("127.") and e.via == "jwt" and e.role == "relationship_manager"
            for e in rm_refused
        )
        officer_reads = [e for e in entries if e.subject == "risk.li" and e.action == "read_loan" and e.at < started]
        assert len(officer_reads) == len(loans) * len(bases) and all(e.decision == "allowed" for e in officer_reads)
        unauthenticated = [e for e in entries if e.subject == "unauthenticated"]
        assert len(unauthenticated) >= 5 * len(bases) and all(e.status == 401 and e.reason for e in unauthenticated)
        assert {e.worker for e in entries} == set(bases)
        for w in (w1, w2):
            req = urllib.request.Request(w.metrics_url, headers={"Authorization": f"Bearer {secured['scraper']}"})
            body = urllib.request.urlopen(req, timeout=10, context=ctx).read().decode()
            refused = [x for x in body.splitlines() if x.startswith("pledgewatch_api_requests_total{")
                       and 'decision="refused"' in x]  # fmt: skip
            assert refused and sum(float(x.rsplit(" ", 1)[1]) for x in refused) > 0

        # /metrics: the scraper's credential reads every series, operations the pipeline's only, none nothing
        scrape_metrics(secured, w1)
        assert w1.alive() and w2.alive()
    finally:
        w2.stop()
        w1.stop()


def fetch_page(url: str, ctx: ssl.SSLContext | None, token: str | None) -> tuple[int, str, dict[str, str]]:
    """GET a page (HTML or any text) with ``token``: status, body, headers."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def fuzz_authorization(base: str, ctx: ssl.SSLContext, secured: dict[str, Any]) -> None:
    """Garbage, near-miss and hostile Authorization headers, and signed tokens with claims of every type.

    Each must be a 401 (or, for a correctly signed token, whatever its checked role allows): no 5xx,
    and no loan data for a credential that is not valid.
    """
    rng = random.Random(22)
    alphabet = string.printable.strip() + "é中\x7f"
    now = int(time.time())
    headers = [
        "", "Bearer", "Bearer  ", "bearer", "Basic cm9vdDpyb290", "Bearer null", "Bearer undefined", "Bearer a.b.c",
        "Bearer ..", "Bearer " + "A" * 9000, "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer " + jwt.encode({"sub": "x", "roles": ["risk_officer"], "iss": ISSUER, "aud": AUDIENCE,
                                "exp": now + 60}, None, algorithm="none"),
        "Bearer " + secured["peer"] + "x", "Bearer " + secured["ops"][:-1], "Token " + secured["ops"],
    ]  # fmt: skip
    headers += ["Bearer " + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))) for _ in range(60)]
    values: list[Any] = [None, True, 0, -1, 1e308, "", "risk_officer", ["risk_officer"], ["admin"], {"a": 1}, [1, 2]]
    claims = []
    for _ in range(60):
        c: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "fuzz", "exp": now + 300, "roles": ["risk_officer"]}
        for name in rng.sample(["sub", "exp", "nbf", "iat", "iss", "aud", "roles", "borrowers"], rng.randint(1, 3)):
            c[name] = rng.choice(values)
        claims.append(c)
    signed = []
    for c in claims:
        try:
            signed.append(f"Bearer {sign(**c)}")
        except (TypeError, ValueError):  # PyJWT will not even encode it (a non-string iss)
            continue
    assert len(signed) > 30
    host, port = urllib.parse.urlparse(base).hostname, urllib.parse.urlparse(base).port
    for header in headers + signed:
        conn = http.client.HTTPSConnection(host or "", port, context=ctx, timeout=30)
        try:
            conn.putrequest("GET", "/api/loans/L-AKL-002")
            conn.putheader("Authorization", header.encode("utf-8"))
            conn.putheader(PRINCIPAL_HEADER, '{"subject": "x", "role": "risk_officer", "borrowers": null}')
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status < 500, (header[:80], resp.status, body[:200])
        if resp.status == 200:  # only a correctly signed token whose every checked claim holds
            decoded = jwt.decode(header.split(" ", 1)[1], KEY.public_key(), algorithms=["RS256"], audience=AUDIENCE,
                                 issuer=ISSUER, options={"require": ["exp", "iss", "aud", "sub"]})  # fmt: skip
            assert "risk_officer" in (decoded["roles"] if isinstance(decoded["roles"], list) else [decoded["roles"]])
        else:
            # aiohttp's parser refuses itself (400), before pledgewatch sees it, a header over its 8,190-byte
            # field limit or with a control character; a header of printable ASCII reaches the check
            plain = len(header) <= 8190 and all(32 <= ord(ch) < 127 for ch in header)
            refused = (401, 403) if plain else (400, 401, 403)
            assert resp.status in refused and b"snapshot" not in body, (header[:80], resp.status)  # no loan data


def fuzz(env: Env, secured: dict[str, Any], base: str, token: str | None) -> None:
    """schemathesis against one worker, from the OpenAPI document, with ``token`` or none."""
    from streams.api import openapi

    schema = env.tmp / "openapi.json"
    schema.write_text(json.dumps(openapi()))
    cmd = [str(BIN / "schemathesis"), "run", str(schema), "--url", base, "--tls-verify", str(secured["cafile"]),
           "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance",
           "--max-examples", "25", "--seed", "7"]  # fmt: skip
    if token is not None:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=env.tmp)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def scrape_metrics(secured: dict[str, Any], worker: Worker) -> None:
    """Real Prometheus scrapes the worker's HTTPS /metrics three ways: with the scraper's token, with
    operations' token, and with none; per-loan series reach it only through the first."""
    from tests.integration.test_observability import PROMETHEUS, Server, query, wait_for

    folder: Path = secured["folder"]
    url = urllib.parse.urlparse(worker.metrics_url)

    # the scrape job shipped for docker compose, its secrets' paths pointed at the test's files
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text())
    base_job = shipped["scrape_configs"][0]
    assert base_job["scheme"] == "https" and base_job["authorization"]["type"] == "Bearer"

    def job(name: str, token_file: str | None) -> dict[str, Any]:
        cfg = {**base_job, "job_name": name, "static_configs": [{"targets": [url.netloc]}]}
        cfg["tls_config"] = {**base_job["tls_config"], "ca_file": str(secured["cafile"])}
        if token_file:
            cfg["authorization"] = {**base_job["authorization"], "credentials_file": str(folder / token_file)}
        else:
            del cfg["authorization"]
        return cfg

    config = folder / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [job("scraper", "scraper-token"), job("operations", "ops-token"), job("none", None)],
            }
        )
    )
    port = free_port()
    prom = Server(
        "prometheus",
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'prom-data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/-/ready",
        folder / "prometheus.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("every job scraped", lambda: len({r["metric"]["job"] for r in query(base, "up")}) == 3, 60)
        up = {r["metric"]["job"]: r["value"][1] for r in query(base, "up")}
        assert up == {"scraper": "1", "operations": "1", "none": "0"}
        loans = wait_for("per-loan series", lambda: query(base, 'pledgewatch_loan_coverage_ratio{job="scraper"}'), 60)
        assert {r["metric"]["loan"] for r in loans}
        assert query(base, 'pledgewatch_loan_coverage_ratio{job="operations"}') == []
        assert query(base, 'pledgewatch_alerts_firing{job="operations"}') == []
        assert query(base, 'pledgewatch_events_total{job="operations"}')  # the pipeline's health it does see
        targets = json.loads(urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10).read())
        errors = {t["labels"]["job"]: t["lastError"] for t in targets["data"]["activeTargets"]}
        assert "401" in errors["none"] and not errors["scraper"]
    finally:
        prom.stop()
