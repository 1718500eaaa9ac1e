"""Development secrets for deploy/docker-compose.yml: a CA, the workers' certificate, tokens.

    .venv/bin/python deploy/dev_secrets.py deploy/secrets [--hosts worker-1,worker-2,localhost]

Writes into the folder (git-ignored; files 0600 but the CA and Prometheus's token, which the
Prometheus container reads as ``nobody``):

- ``ca.pem`` and ``worker.pem`` / ``worker.key``: a throw-away CA (10 days) and one certificate for
  every host name given (the workers' service names), so the workers' HTTPS servers, their
  forwarding to each other and Prometheus's scrapes verify;
- ``tokens.yaml``: the SHA-256 hashes of a ``scraper`` token (Prometheus) and a ``risk_officer``
  token (you, with curl); ``scraper-token`` and ``risk-officer-token`` hold the tokens themselves;
- ``worker.env``: ``PLEDGEWATCH_PEER_TOKEN``, the workers' forwarding credential.

For development only: a bank issues certificates from its own PKI and access tokens from its identity
provider (docs/runbook.md, *HTTP security*). Uses ``cryptography`` (installed with PyJWT's crypto extra)
rather than an ``openssl`` command line, whose flags differ between versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streams.security import hash_token

#: Days the development CA and certificate are valid: long enough for a demo, short enough that a
#: forgotten copy expires by itself.
VALID_DAYS = 10


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def make(folder: Path, hosts: list[str]) -> dict[str, str]:
    """Write the secrets into ``folder``; returns the tokens by name (for tests and the caller's output)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Prometheus's image runs as nobody: it must traverse the folder and read the CA and its own token
    folder.chmod(0o755)
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("pledgewatch development CA"))
        .issuer_name(_name("pledgewatch development CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )  # digital_signature (ECDHE key exchange)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(folder / "ca.pem", ca.public_bytes(pem), 0o644)  # public by nature
    _write(folder / "worker.pem", leaf.public_bytes(pem) + ca.public_bytes(pem))
    _write(
        folder / "worker.key",
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    tokens = {name: secrets.token_urlsafe(32) for name in ("scraper", "risk-officer", "peer")}
    _write(folder / "scraper-token", tokens["scraper"].encode(), 0o644)  # read by Prometheus (nobody)
    _write(folder / "risk-officer-token", tokens["risk-officer"].encode())
    _write(
        folder / "tokens.yaml",
        (
            "# hashes only (pledgewatch auth hash-token); the tokens are in scraper-token and risk-officer-token\n"
            "tokens:\n"
            f"  - {{name: prometheus, sha256: '{hash_token(tokens['scraper'])}', role: scraper}}\n"
            f"  - {{name: developer, sha256: '{hash_token(tokens['risk-officer'])}', role: risk_officer}}\n"
        ).encode(),
    )
    _write(folder / "worker.env", f"PLEDGEWATCH_PEER_TOKEN={tokens['peer']}\n".encode())
    return tokens


def main() -> None:
    """Command line: ``dev_secrets.py FOLDER [--hosts a,b,...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--hosts", default="worker-1,worker-2,localhost,127.0.0.1")
    args = parser.parse_args()
    os.umask(0o077)
    make(args.folder, [h.strip() for h in args.hosts.split(",") if h.strip()])
    print(f"wrote {args.folder}: ca.pem, worker.pem/.key, tokens.yaml, scraper-token, risk-officer-token, worker.env")


if __name__ == "__main__":
    main()
