"""Who may read what on the workers' HTTP surfaces: authentication, roles, and the principal forwarded between workers.

Three kinds of credential arrive as ``Authorization: Bearer <token>``:

- **OIDC/JWT access tokens** from the bank's identity provider, verified with PyJWT against the
  issuer's keys (a JWKS file, or a JWKS URL fetched and cached by PyJWT's ``PyJWKClient``): signature
  (asymmetric algorithms only: an HMAC or ``none`` token is refused, so a public key can never be
  used as a shared secret), ``exp`` (required), ``nbf``, ``iss`` and ``aud``. The role comes from a
  claim (default ``roles``, a list or a string; the first pledgewatch role in it counts); a
  relationship manager's borrowers from a claim (default ``borrowers``) or, failing that, from the
  mapping file (``subject: [borrower ids]``).
- **Static API tokens** for machines (a monitoring job, a batch reader): only their SHA-256 hashes
  are kept, in a YAML file ``tokens: [{name, sha256, role, borrowers?}]``; compared in constant time.
- **The peer credential** of worker-to-worker forwarding: a worker answering for a key another worker
  holds forwards the request with its own credential and the caller's principal (subject, role,
  borrowers) in :data:`PRINCIPAL_HEADER`, never the caller's token. That header is believed only
  alongside a valid peer credential; from anyone else it is ignored.

Roles (:data:`ROLES`): ``risk_officer`` reads every loan and asset; ``relationship_manager`` the loans
of their own borrowers; ``auditor`` everything a risk officer reads (the access log records it);
``operations`` pipeline health only, no loan data; ``scraper`` (Prometheus) every ``/metrics`` series
and nothing of the query API. Each endpoint names the roles it admits
(``streams.api``). Errors: :class:`Unauthorized` (HTTP 401: no, malformed, expired, forged token) and
:class:`Forbidden` (HTTP 403: a valid principal whose role the endpoint does not admit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml

from monitor.errors import ConfigError

__all__ = [
    "FULL_METRICS_READERS",
    "PEER",
    "PRINCIPAL_HEADER",
    "ROLES",
    "Authenticator",
    "Forbidden",
    "Principal",
    "Unauthorized",
    "hash_token",
]

log = logging.getLogger(__name__)

#: The roles of pledgewatch's HTTP surfaces (issue 22), and the peer role of worker-to-worker forwarding.
RISK_OFFICER, RELATIONSHIP_MANAGER, OPERATIONS, AUDITOR, SCRAPER, PEER = (
    "risk_officer",
    "relationship_manager",
    "operations",
    "auditor",
    "scraper",
    "peer",
)
#: ``scraper`` is Prometheus's: every ``/metrics`` series and nothing of the query API (least privilege:
#: its token, in Prometheus's configuration, opens no loan's detail if it leaks).
ROLES = (RISK_OFFICER, RELATIONSHIP_MANAGER, OPERATIONS, AUDITOR, SCRAPER)
#: Roles that read the per-loan and per-asset series of ``/metrics``; ``operations`` reads the rest.
FULL_METRICS_READERS = (SCRAPER, RISK_OFFICER, AUDITOR)
#: Header carrying the caller's principal on a forwarded request (JSON), believed only from a peer.
PRINCIPAL_HEADER = "X-Pledgewatch-Principal"
#: Asymmetric JWS algorithms accepted (RFC 7518): never HS* (a public key would become a shared secret)
#: nor ``none``.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: Seconds of clock skew allowed on ``exp``/``nbf``/``iat`` between the identity provider and the worker
#: (RFC 7519 §4.1.4 leaves it to the implementer; a minute covers NTP-synchronised hosts).
LEEWAY_S = 60
#: Seconds the issuer's keys fetched from a JWKS URL are kept before they are fetched again (an unknown
#: ``kid``, as after a key rotation, fetches at once).
JWKS_CACHE_S = 300.0
#: Seconds a JWKS fetch may take; the request being verified answers 401 after it.
JWKS_TIMEOUT_S = 10.0
#: Longest bearer token read, bytes: a JWT with a few claims is under 2 KB; far longer is not a token.
MAX_TOKEN_BYTES = 8192


class Unauthorized(Exception):
    """No valid credential (HTTP 401). ``reason`` is safe to log: it never contains the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """A valid principal the endpoint does not admit, or a loan outside its borrowers (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who is asking.

    Attributes
    ----------
    subject
        The token's ``sub`` (JWT) or the static token's name.
    role
        One of :data:`ROLES`.
    borrowers
        The borrower ids a relationship manager may read; ``None`` for roles that read every loan.
    via
        ``jwt``, ``token`` (a static API token) or ``peer:<worker url>`` (forwarded by a worker).
    """

    subject: str
    role: str
    borrowers: frozenset[str] | None = None
    via: str = "jwt"

    def may_read_borrower(self, borrower_id: str) -> bool:
        """Whether this principal may read a loan of ``borrower_id`` (only risk officers and auditors read all)."""
        if self.role in (RISK_OFFICER, AUDITOR):
            return True
        return self.role == RELATIONSHIP_MANAGER and self.borrowers is not None and borrower_id in self.borrowers

    def header(self) -> str:
        """Return the principal as the JSON of :data:`PRINCIPAL_HEADER`."""
        borrowers = None if self.borrowers is None else sorted(self.borrowers)
        return json.dumps({"subject": self.subject, "role": self.role, "borrowers": borrowers, "via": self.via})


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a static API token is stored (the token itself never is).

    >>> hash_token("s3cret")[:16]
    '1ec1c26b50d5d3c5'
    """
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _StaticToken:
    name: str
    sha256: str
    role: str
    borrowers: frozenset[str] | None


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or refuses it.

    Parameters
    ----------
    jwks
        JWKS of the identity provider: a file path, or an ``https://`` URL (PyJWT's ``PyJWKClient``
        fetches and caches it, checked against ``jwks_cafile`` or the system's CAs), or None when
        only static tokens are used. ``http://`` is refused.
    issuer, audience
        Expected ``iss`` and ``aud`` of a JWT (both required when ``jwks`` is set).
    roles_claim, borrowers_claim
        Claims holding the role(s) and a relationship manager's borrower ids.
    rm_mapping
        YAML file ``{subject: [borrower ids]}`` for relationship managers whose token has no
        borrowers claim.
    tokens_file
        YAML file of static API tokens, hashes only (module docstring).
    peer_token
        The secret the workers forward with; None when a single worker runs (forwarded requests are
        then refused).

    Raises
    ------
    ConfigError
        A file that cannot be read or does not hold what is expected, named with the field and value.
    """

    def __init__(
        self,
        jwks: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        roles_claim: str = "roles",
        borrowers_claim: str = "borrowers",
        rm_mapping: Path | None = None,
        tokens_file: Path | None = None,
        peer_token: str | None = None,
        jwks_cafile: Path | None = None,
    ) -> None:
        if jwks is not None and not (issuer and audience):
            raise ConfigError(f"auth_jwks: set to {jwks!r}, expected auth_issuer and auth_audience set as well")
        self.issuer, self.audience = issuer, audience
        self.roles_claim, self.borrowers_claim = roles_claim, borrowers_claim
        self._jwk_client: jwt.PyJWKClient | None = None
        self._jwk_set: jwt.PyJWKSet | None = None
        if jwks is not None:
            if jwks.startswith("http://"):
                msg = (
                    f"auth_jwks: got {jwks!r}, expected an https:// URL or a file: keys fetched over plain HTTP "
                    "could be replaced in transit, and every token signed with the replacement would pass"
                )
                raise ConfigError(msg)
            if jwks.startswith("https://"):
                import ssl

                ctx = ssl.create_default_context(cafile=str(jwks_cafile) if jwks_cafile is not None else None)
                # keys cached 5 min (a rotated key is fetched at once: an unknown kid refetches)
                self._jwk_client = jwt.PyJWKClient(
                    jwks, cache_keys=True, lifespan=JWKS_CACHE_S, timeout=JWKS_TIMEOUT_S, ssl_context=ctx
                )
            else:
                self._jwk_set = _read_jwks(Path(jwks))
        self.rm_mapping = _read_rm_mapping(rm_mapping) if rm_mapping is not None else {}
        self.tokens = _read_tokens(tokens_file) if tokens_file is not None else []
        self._peer_sha = hash_token(peer_token) if peer_token else None

    @property
    def fetches_keys(self) -> bool:
        """Whether verifying a token may fetch the issuer's keys over the network (blocking: run it in a thread)."""
        return self._jwk_client is not None

    def authenticate(self, authorization: str | None, principal_header: str | None = None) -> Principal:
        """The principal of a request's ``Authorization`` header (and, from a peer, its forwarded principal).

        Raises
        ------
        Unauthorized
            No header, not ``Bearer``, an unknown static token, a JWT that fails verification, or a
            peer's request without a readable principal.
        """
        if not authorization:
            raise Unauthorized("no Authorization header; expected 'Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization: expected 'Bearer <token>'")
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(f"Authorization: token of {len(token)} characters, expected at most {MAX_TOKEN_BYTES}")
        digest = hash_token(token)
        if self._peer_sha is not None and hmac.compare_digest(digest, self._peer_sha):
            return _forwarded(principal_header)
        for static in self.tokens:
            if hmac.compare_digest(digest, static.sha256):
                return Principal(static.name, static.role, static.borrowers, via="token")
        if token.count(".") == 2 and (self._jwk_client is not None or self._jwk_set is not None):
            return self._verify_jwt(token)
        raise Unauthorized("unknown token")

    def _verify_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg not in ALGORITHMS:
                raise Unauthorized(f"token: algorithm {alg!r} not accepted, expected one of {', '.join(ALGORITHMS)}")
            if self._jwk_client is not None:
                key = self._jwk_client.get_signing_key_from_jwt(token).key
            else:
                assert self._jwk_set is not None
                kid = header.get("kid")
                matches = [k for k in self._jwk_set.keys if kid is None or k.key_id == kid]
                if not matches:
                    raise Unauthorized(f"token: no key {kid!r} in the issuer's key set")
                key = matches[0].key
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except Unauthorized:
            raise
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token: expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token: {type(exc).__name__}") from None
        except Exception as exc:  # noqa: BLE001 - a malformed token is the caller's 401, never a 500
            raise Unauthorized(f"token: unreadable ({type(exc).__name__})") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("token: claim 'sub' missing or not a string")
        role = _first_role(claims.get(self.roles_claim))
        if role is None:
            raise Unauthorized(f"token: claim {self.roles_claim!r} names none of {', '.join(ROLES)}")
        borrowers: frozenset[str] | None = None
        if role == RELATIONSHIP_MANAGER:
            raw = claims.get(self.borrowers_claim)
            if isinstance(raw, list) and all(isinstance(b, str) for b in raw):
                borrowers = frozenset(raw)
            else:
                borrowers = self.rm_mapping.get(subject, frozenset())
        return Principal(subject, role, borrowers, via="jwt")

    def require(self, principal: Principal, roles: Iterable[str]) -> None:
        """Refuse ``principal`` unless its role is among ``roles``.

        Raises
        ------
        Forbidden
            Naming the role and the roles admitted.
        """
        admitted = tuple(roles)
        if principal.role not in admitted:
            raise Forbidden(f"role {principal.role!r} may not read this; admitted: {', '.join(admitted)}")


def _first_role(raw: Any) -> str | None:
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    for value in values:
        if isinstance(value, str) and value in ROLES:
            return value
    return None


def _forwarded(header: str | None) -> Principal:
    """The caller's principal a peer forwarded (:data:`PRINCIPAL_HEADER`)."""
    if not header:
        raise Unauthorized(f"peer request without {PRINCIPAL_HEADER}")
    try:
        data = json.loads(header)
        subject, role, borrowers = data["subject"], data["role"], data["borrowers"]
    except (ValueError, KeyError, TypeError):
        raise Unauthorized(f"{PRINCIPAL_HEADER}: unreadable") from None
    if not isinstance(subject, str) or role not in ROLES:
        raise Unauthorized(f"{PRINCIPAL_HEADER}: expected a subject and one of {', '.join(ROLES)}")
    if borrowers is not None and not (isinstance(borrowers, list) and all(isinstance(b, str) for b in borrowers)):
        raise Unauthorized(f"{PRINCIPAL_HEADER}: borrowers must be a list of ids or null")
    if role == RELATIONSHIP_MANAGER and borrowers is None:
        raise Unauthorized(f"{PRINCIPAL_HEADER}: a relationship manager's borrowers must be listed")
    return Principal(subject, role, None if borrowers is None else frozenset(borrowers), via=PEER)


def _load_yaml(path: Path, field: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{field}: cannot read {str(path)!r} ({exc.strerror}); expected a readable YAML file"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{field}: {str(path)!r} is not valid YAML ({exc}); expected a YAML file") from None


def _read_jwks(path: Path) -> jwt.PyJWKSet:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return jwt.PyJWKSet.from_dict(data)
    except OSError as exc:
        raise ConfigError(f"auth_jwks: cannot read {str(path)!r} ({exc.strerror}); expected a JWKS JSON file") from None
    except (ValueError, jwt.PyJWTError) as exc:
        raise ConfigError(
            f'auth_jwks: {str(path)!r} is not a usable JWKS ({exc}); expected {{"keys": [...]}}'
        ) from None


def _read_rm_mapping(path: Path) -> dict[str, frozenset[str]]:
    data = _load_yaml(path, "auth_rm_mapping")
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(b, str) for b in v) for k, v in data.items()
    ):
        raise ConfigError(
            f"auth_rm_mapping: {str(path)!r} holds {type(data).__name__}, expected a mapping subject -> [borrower ids]"
        )
    return {k: frozenset(v) for k, v in data.items()}


def _read_tokens(path: Path) -> list[_StaticToken]:
    data = _load_yaml(path, "api_tokens_file")
    entries = data.get("tokens") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f"api_tokens_file: {str(path)!r} has no 'tokens' list; expected tokens: [{{name, sha256, role}}]"
        )
    out = []
    for i, entry in enumerate(entries):
        where = f"api_tokens_file: {str(path)!r} tokens[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: got {type(entry).__name__}, expected a mapping with name, sha256 and role")
        name, sha, role = entry.get("name"), entry.get("sha256"), entry.get("role")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: got {name!r}, expected a non-empty name")
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ConfigError(
                f"{where}.sha256: got {sha!r}, expected 64 lower-case hex digits (`pledgewatch auth hash-token`); "
                "the token itself is never stored"
            )
        if role not in ROLES:
            raise ConfigError(f"{where}.role: got {role!r}, expected one of {', '.join(ROLES)}")
        raw = entry.get("borrowers")
        if role == RELATIONSHIP_MANAGER and not (isinstance(raw, list) and all(isinstance(b, str) for b in raw)):
            raise ConfigError(f"{where}.borrowers: got {raw!r}, expected the list of borrower ids it may read")
        borrowers = frozenset(raw) if role == RELATIONSHIP_MANAGER and isinstance(raw, list) else None
        out.append(_StaticToken(name, sha, role, borrowers))
    return out


class ReloadingCertificate:
    """The web server's TLS context, its certificate chain re-read when the files change (rotation).

    ``ssl.SSLContext.load_cert_chain`` on the live context applies to the handshakes that follow; the
    connections open keep theirs. TLS 1.2 at least (RFC 8996 retired 1.0 and 1.1).

    Parameters
    ----------
    certfile, keyfile
        PEM certificate chain and private key.

    Raises
    ------
    ConfigError
        When the pair cannot be loaded at start (names both files and the error).
    """

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        import ssl

        self.certfile, self.keyfile = Path(certfile), Path(keyfile)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            self.context.load_cert_chain(str(self.certfile), str(self.keyfile))
        except (OSError, ssl.SSLError) as exc:
            msg = (
                f"web_tls_certfile / web_tls_keyfile: {str(self.certfile)!r} and {str(self.keyfile)!r} cannot be "
                f"loaded ({exc}); expected a PEM certificate chain and its private key"
            )
            raise ConfigError(msg) from None
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[float, float]:
        return (self.certfile.stat().st_mtime, self.keyfile.stat().st_mtime)

    def maybe_reload(self) -> bool:
        """Re-read the pair if either file changed since it was loaded; returns whether it did.

        A pair that does not load (a half-written rotation) is logged as an error and the running
        certificate stays; the next call tries again.
        """
        import ssl

        try:
            stamp = self._stamp()
        except OSError as exc:
            log.error("web TLS: certificate files unreadable (%s); keeping the loaded certificate", exc)
            return False
        if stamp == self.stamp:
            return False
        try:
            self.context.load_cert_chain(str(self.certfile), str(self.keyfile))
        except (OSError, ssl.SSLError) as exc:
            log.error("web TLS: new certificate not loaded (%s); keeping the previous one", exc)
            return False
        self.stamp = stamp
        # routine rotation: INFO on the lifecycle logger, shown at the worker's default level
        logging.getLogger("pledgewatch.lifecycle").info("web TLS: certificate reloaded from %s", self.certfile)
        return True
