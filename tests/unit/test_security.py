"""Authentication and roles of the HTTP surfaces (issue 22): ``streams.security.Authenticator``.

Tokens are signed here with keys made for the test (``cryptography``), the issuer's public keys
written as a JWKS file, as a bank's identity provider would publish them. Every refusal is an
:class:`Unauthorized`, never another exception (a 500 on the worker), fuzzed with hypothesis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ConfigError
from streams.security import (
    PRINCIPAL_HEADER,
    ROLES,
    Authenticator,
    Forbidden,
    Principal,
    Unauthorized,
    hash_token,
)

ISSUER, AUDIENCE = "https://idp.bank.example/realms/risk", "pledgewatch"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.get_algorithm_by_name(alg)
    data = json.loads(algo.to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": alg}


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idp") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(RSA_KEY, "k1", "RS256"), jwk(EC_KEY, "k2", "ES256")]}))
    return path


def token(
    claims: dict[str, Any] | None = None, key: Any = RSA_KEY, kid: str = "k1", alg: str = "RS256", **kw: Any
) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now, "roles": ["risk_officer"]}
    body.update(claims or {})
    body.update(kw)
    for k in [k for k, v in body.items() if v is None]:
        del body[k]
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def auth(jwks_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Authenticator:
    folder = tmp_path_factory.mktemp("auth")
    tokens = folder / "tokens.yaml"
    tokens.write_text(
        "tokens:\n"
        f"  - {{name: nightly-report, sha256: {hash_token('machine-secret')}, role: auditor}}\n"
        f"  - {{name: rm-batch, sha256: {hash_token('rm-secret')}, role: relationship_manager, borrowers: [B-7]}}\n"
    )
    mapping = folder / "rm.yaml"
    mapping.write_text("bob: [B-1, B-2]\n")
    return Authenticator(
        str(jwks_file), ISSUER, AUDIENCE, rm_mapping=mapping, tokens_file=tokens, peer_token="peer-secret"
    )


def bearer(t: str) -> str:
    return f"Bearer {t}"


def test_a_valid_token_gives_its_subject_and_role(auth: Authenticator) -> None:
    p = auth.authenticate(bearer(token()))
    assert p == Principal("alice", "risk_officer", None, "jwt")
    assert auth.authenticate(bearer(token(key=EC_KEY, kid="k2", alg="ES256"))).role == "risk_officer"
    assert auth.authenticate(bearer(token(roles="auditor"))).role == "auditor"  # a single string claim


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(exp=int(time.time()) - 3600), "expired"),
        (lambda: token(key=OTHER_KEY), "InvalidSignatureError"),  # forged: another key under the issuer's kid
        (lambda: token(iss="https://evil.example"), "InvalidIssuerError"),
        (lambda: token(aud="another-app"), "InvalidAudienceError"),
        (lambda: token(exp=None), "MissingRequiredClaimError"),
        (lambda: token(sub=None), "MissingRequiredClaimError"),
        (lambda: token(nbf=int(time.time()) + 3600), "ImmatureSignatureError"),
        (lambda: token(kid="k9"), "no key 'k9'"),
        (lambda: token(roles=["admin", "superuser"]), "names none of"),
        (lambda: token(roles=None), "names none of"),
    ],
)
def test_a_token_that_fails_verification_is_401_with_a_reason_that_never_holds_it(
    auth: Authenticator, make: Any, reason: str
) -> None:
    t = make()
    with pytest.raises(Unauthorized) as err:
        auth.authenticate(bearer(t))
    assert reason in err.value.reason and t not in err.value.reason


def test_algorithm_confusion_and_none_are_refused(auth: Authenticator) -> None:
    """The issuer's public key used as an HMAC secret, or no signature at all: both 401."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "roles": ["risk_officer"]}

    # PyJWT refuses to sign this way itself; an attacker's own code does not
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "kid": "k1"}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs = f"{signing_input}.{b64(mac)}"
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    for t in (hs, unsigned):
        with pytest.raises(Unauthorized, match="not accepted"):
            auth.authenticate(bearer(t))


def test_no_header_or_another_scheme_or_an_unknown_token_is_401(auth: Authenticator) -> None:
    for header in (None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token abc", "bearer unknown"):
        with pytest.raises(Unauthorized):
            auth.authenticate(header)


def test_a_relationship_manager_reads_only_the_borrowers_of_the_claim_or_the_mapping(auth: Authenticator) -> None:
    claim = auth.authenticate(bearer(token(sub="carol", roles=["relationship_manager"], borrowers=["B-9"])))
    assert claim.borrowers == {"B-9"} and claim.may_read_borrower("B-9") and not claim.may_read_borrower("B-1")
    mapped = auth.authenticate(bearer(token(sub="bob", roles=["relationship_manager"])))
    assert mapped.borrowers == {"B-1", "B-2"}
    unknown = auth.authenticate(bearer(token(sub="dave", roles=["relationship_manager"])))
    assert unknown.borrowers == frozenset() and not unknown.may_read_borrower("B-1")  # assigned nothing: reads nothing
    ops = auth.authenticate(bearer(token(roles=["operations"])))
    assert not ops.may_read_borrower("B-1")
    with pytest.raises(Forbidden, match="'operations' may not read"):
        auth.require(ops, ("risk_officer", "relationship_manager", "auditor"))
    auth.require(claim, ("risk_officer", "relationship_manager"))


def test_static_tokens_are_known_by_their_hash_only(auth: Authenticator) -> None:
    assert auth.authenticate(bearer("machine-secret")) == Principal("nightly-report", "auditor", None, "token")
    rm = auth.authenticate(bearer("rm-secret"))
    assert rm.role == "relationship_manager" and rm.borrowers == {"B-7"}
    # a principal header from anyone but a peer is ignored
    forged = Principal("x", "risk_officer").header()
    assert auth.authenticate(bearer("rm-secret"), forged).borrowers == {"B-7"}


def test_a_peer_forwards_the_callers_principal_never_its_token(auth: Authenticator) -> None:
    caller = auth.authenticate(bearer(token(sub="carol", roles=["relationship_manager"], borrowers=["B-9"])))
    got = auth.authenticate(bearer("peer-secret"), caller.header())
    assert (got.subject, got.role, got.borrowers, got.via) == ("carol", "relationship_manager", {"B-9"}, "peer")
    for header in (None, "{", '{"subject": "x", "role": "root", "borrowers": null}',
                   '{"subject": "x", "role": "relationship_manager", "borrowers": null}'):  # fmt: skip
        with pytest.raises(Unauthorized, match=PRINCIPAL_HEADER):
            auth.authenticate(bearer("peer-secret"), header)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(st.none(), st.text(max_size=300), st.text(max_size=300).map(lambda t: "Bearer " + t)))
def test_property__any_authorization_header_is_a_principal_or_a_401(auth: Authenticator, header: str | None) -> None:
    try:
        p = auth.authenticate(header, header)
    except Unauthorized:
        return
    assert p.role in ROLES


claim_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.lists(st.one_of(st.text(max_size=20), st.sampled_from(ROLES), st.integers()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    claims=st.dictionaries(
        st.sampled_from(["sub", "exp", "nbf", "iat", "iss", "aud", "roles", "borrowers"]), claim_values
    )
)
def test_property__signed_tokens_with_any_claims_never_bypass_the_checks(
    auth: Authenticator, claims: dict[str, Any]
) -> None:
    """Claims of any type from a correctly signed token: a 401, or a principal whose claims all check out."""
    now = time.time()
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(now) + 300, "roles": ["risk_officer"], **claims}
    try:
        t = jwt.encode(
            {k: v for k, v in body.items() if v is not None}, RSA_KEY, algorithm="RS256", headers={"kid": "k1"}
        )
    except (TypeError, ValueError):
        return  # not encodable as a JWT at all
    try:
        p = auth.authenticate(bearer(t))
    except Unauthorized:
        return
    assert body["iss"] == ISSUER and body["sub"] == p.subject and p.role in ROLES
    assert isinstance(body["exp"], int | float) and not isinstance(body["exp"], bool) and body["exp"] > now - 60
    assert body["aud"] == AUDIENCE or (isinstance(body["aud"], list) and AUDIENCE in body["aud"])


def test_bad_token_files_are_one_clear_error_naming_the_field(tmp_path: Path) -> None:
    cases = {
        "tokens: {}\n": "has no 'tokens' list",
        "tokens:\n  - {name: a, sha256: abc, role: auditor}\n": "tokens[0].sha256: got 'abc', expected 64",
        f"tokens:\n  - {{name: a, sha256: {'a' * 64}, role: root}}\n": "tokens[0].role: got 'root', expected one of",
        f"tokens:\n  - {{name: a, sha256: {'a' * 64}, role: relationship_manager}}\n": (
            "tokens[0].borrowers: got None"
        ),
        "tokens: [\n": "is not valid YAML",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"t{i}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="api_tokens_file") as err:
            Authenticator(tokens_file=path)
        assert message in str(err.value)
    with pytest.raises(ConfigError, match="auth_jwks: cannot read"):
        Authenticator(str(tmp_path / "missing.json"), ISSUER, AUDIENCE)
    with pytest.raises(ConfigError, match="expected auth_issuer and auth_audience"):
        Authenticator(str(tmp_path / "missing.json"))


def test_a_worker_bound_beyond_loopback_without_tls_and_authentication_refuses_to_start(tmp_path: Path) -> None:
    import trustme

    from monitor.settings import Settings

    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        Settings(web_host=host).check_web_exposure()  # this host's users only
    with pytest.raises(ConfigError) as err:
        Settings(web_host="0.0.0.0").check_web_exposure()
    message = str(err.value)
    assert message.startswith("web_host: got '0.0.0.0', not a loopback address")
    assert "PLEDGEWATCH_WEB_TLS_CERTFILE" in message and "PLEDGEWATCH_API_TOKENS_FILE" in message
    ca = trustme.CA()
    leaf = ca.issue_cert("10.0.0.5")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"tokens:\n  - {{name: a, sha256: {'a' * 64}, role: auditor}}\n")
    with pytest.raises(ConfigError, match="expected PLEDGEWATCH_AUTH_JWKS") as err:
        Settings(web_host="10.0.0.5", web_tls_certfile=cert, web_tls_keyfile=key).check_web_exposure()
    assert "WEB_TLS" not in str(err.value)  # names only what is missing
    with pytest.raises(ConfigError, match="expected PLEDGEWATCH_WEB_TLS_CERTFILE"):
        Settings(web_host="bank-worker-1.internal", api_tokens_file=tokens).check_web_exposure()
    secure = Settings(web_host="10.0.0.5", web_tls_certfile=cert, web_tls_keyfile=key, api_tokens_file=tokens)
    secure.check_web_exposure()
    assert secure.canonical_url == "https://10.0.0.5:6066"


def test_the_web_certificate_is_reloaded_when_its_files_change_and_a_bad_pair_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    import os

    import trustme

    from streams.security import ReloadingCertificate

    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"

    def issue(name: str) -> None:
        leaf = ca.issue_cert(name)
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))

    issue("127.0.0.2")
    tls = ReloadingCertificate(cert, key)
    assert not tls.maybe_reload()  # unchanged
    issue("127.0.0.3")
    later = tls.stamp[0] + 10
    os.utime(cert, (later, later))
    os.utime(key, (later, later))
    assert tls.maybe_reload()
    key.write_text("not a key")
    os.utime(key, (later + 10, later + 10))
    assert not tls.maybe_reload()  # a half-written rotation: the loaded certificate stays
    with pytest.raises(ConfigError, match=r"web_tls_certfile / web_tls_keyfile: .* cannot be loaded"):
        ReloadingCertificate(cert, key)


def test_the_compose_development_secrets_are_a_verifiable_certificate_and_tokens_the_workers_accept(
    tmp_path: Path,
) -> None:
    import importlib.util

    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store

    from streams.security import ReloadingCertificate

    spec = importlib.util.spec_from_file_location(
        "dev_secrets", Path(__file__).parents[2] / "deploy" / "dev_secrets.py"
    )
    assert spec is not None and spec.loader is not None
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    tokens = dev.make(tmp_path / "secrets", ["worker-1", "worker-2", "127.0.0.1"])
    folder = tmp_path / "secrets"
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((folder / "worker.pem").read_bytes())
    for host in ("worker-1", "worker-2"):
        verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(host))
        verifier.verify(chain[0], chain[1:])  # raises when the name or the signature does not check out
    ReloadingCertificate(folder / "worker.pem", folder / "worker.key")
    auth = Authenticator(tokens_file=folder / "tokens.yaml")
    assert auth.authenticate(bearer((folder / "scraper-token").read_text())).role == "scraper"
    assert auth.authenticate(bearer(tokens["risk-officer"])).role == "risk_officer"
    assert (folder / "worker.env").read_text() == f"PLEDGEWATCH_PEER_TOKEN={tokens['peer']}\n"
    assert (folder / "worker.key").stat().st_mode & 0o077 == 0  # the key is the owner's alone
    assert tokens["scraper"] not in (folder / "tokens.yaml").read_text()  # hashes only


def test_metrics_need_a_token_and_only_the_scrapers_roles_see_per_loan_series(tmp_path: Path) -> None:
    import socket
    import urllib.error
    import urllib.request

    from prometheus_client import CollectorRegistry

    from streams.prometheus import Metrics, serve_metrics

    metrics = Metrics.create(CollectorRegistry())
    metrics.portfolio.set("pledgewatch_loan_coverage_ratio", ("L-1",), 1.4)
    metrics.events.labels("pledge.telemetry", "ok").inc()
    metrics.alerts_firing.source = lambda: iter([])  # type: ignore[attr-defined]
    tokens = tmp_path / "tokens.yaml"
    roles = {"scraper": "s" * 32, "operations": "o" * 32, "relationship_manager": "r" * 32}
    tokens.write_text(
        "tokens:\n"
        + "".join(
            f"  - {{name: {role}, sha256: '{hash_token(tok)}', role: {role}, borrowers: [B-1]}}\n"
            for role, tok in roles.items()
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve_metrics(metrics, port, "127.0.0.1", Authenticator(tokens_file=tokens))
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape(token: str | None) -> tuple[int, str]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        status, body = scrape(roles["scraper"])
        assert status == 200 and 'pledgewatch_loan_coverage_ratio{loan="L-1"} 1.4' in body
        assert "pledgewatch_events_total" in body
        status, body = scrape(roles["operations"])
        assert status == 200 and "pledgewatch_events_total" in body
        assert "loan=" not in body and "asset=" not in body and "pledgewatch_alerts_firing" not in body
        assert scrape(roles["relationship_manager"])[0] == 403
        for token in (None, "wrong-token"):
            status, body = scrape(token)
            assert status == 401 and "pledgewatch" not in body.replace("pledgewatch-metrics", "")
    finally:
        server.shutdown()
        server.server_close()


def test_the_issuers_keys_come_from_its_https_jwks_url_checked_against_its_ca(tmp_path: Path) -> None:
    """A JWKS URL as an identity provider publishes it, served here over HTTPS on loopback; http:// is refused."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    ca = trustme.CA()
    served = json.dumps({"keys": [jwk(RSA_KEY, "k1", "RS256")]}).encode()
    fetched: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cafile = tmp_path / "idp-ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    url = f"https://127.0.0.1:{server.server_address[1]}/realms/risk/certs"
    try:
        auth = Authenticator(url, ISSUER, AUDIENCE, jwks_cafile=cafile)
        assert auth.fetches_keys
        assert auth.authenticate(bearer(token())).subject == "alice"
        assert auth.authenticate(bearer(token(sub="bob"))).subject == "bob"
        assert fetched == ["/realms/risk/certs"]  # fetched once, then cached
        untrusted = Authenticator(url, ISSUER, AUDIENCE)  # the system's CAs do not know the test's CA
        with pytest.raises(Unauthorized, match="PyJWKClient"):
            untrusted.authenticate(bearer(token()))
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ConfigError, match=r"auth_jwks: got .http://idp\.example/certs., expected an https:// URL"):
        Authenticator("http://idp.example/certs", ISSUER, AUDIENCE)


def test_the_worker_command_bound_beyond_loopback_without_tls_and_tokens_exits_with_one_message(
    tmp_path: Path,
) -> None:
    """``pledgewatch worker`` stops before it touches Kafka (no broker is needed to see it refuse)."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PLEDGEWATCH_WEB_HOST": "0.0.0.0",
        "PLEDGEWATCH_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: a refusal after a connect would time out
    }
    run = subprocess.run(
        [str(Path(sys.executable).parent / "pledgewatch"), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "web_host: got '0.0.0.0', not a loopback address" in run.stderr
    assert "PLEDGEWATCH_WEB_TLS_CERTFILE" in run.stderr and "no Kafka broker" not in run.stderr


def test_plain_http_to_the_https_metrics_port_is_one_log_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import socket
    import ssl
    import urllib.error
    import urllib.request

    import trustme
    from prometheus_client import CollectorRegistry

    from streams.prometheus import Metrics, serve_metrics

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve_metrics(Metrics.create(CollectorRegistry()), port, "127.0.0.1", tls_context=ctx)
    try:
        with caplog.at_level(logging.INFO, logger="streams.prometheus"):
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            client = ssl.create_default_context()
            ca.configure_trust(client)
            body = urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", timeout=10, context=client).read()
            assert b"pledgewatch_events_total" in body  # the server still serves after the failed client
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err
    assert any("plain HTTP to the HTTPS port?" in r.getMessage() for r in caplog.records)
