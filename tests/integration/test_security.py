"""Security on the real broker (issue 7, point 5): TLS + SASL/SCRAM end to end, secrets never logged.

The test makes its own CA and broker certificate (trustme), starts a private broker with a
``SASL_SSL`` listener (SCRAM-SHA-512) beside its plaintext one, creates the SCRAM user over the
plaintext listener, and then runs everything a deployment runs through ``SASL_SSL`` only:
``pledgewatch topics create``, the worker, the producer of the replay, the consumers that read the
outputs. It checks that a wrong password and a plaintext client are refused, that the worker's
HTTP endpoints listen on loopback only, and greps every log of the run for the password.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from kafka.admin import KafkaAdminClient, UserScramCredentialUpsertion
from kafka.errors import KafkaError

from monitor.errors import ConfigError
from monitor.settings import Settings
from streams.topics import admin_client
from tests.integration.conftest import BIN, ROOT, Env, PrivateBroker, Worker, demo_input, read_topic, replay

SASL_SSL_PROPERTIES = """
listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{port2},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{port2}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=KEYSTORE
ssl.keystore.password=KEYPASS
"""


def make_certificates(folder: Path) -> tuple[Path, Path, str]:
    """A throw-away CA and a broker certificate for 127.0.0.1 / localhost.

    Returns ``(ca.pem, broker PKCS#12 keystore, its password)``. PKCS#12 rather than PEM: Kafka's
    PEM key store wants an encrypted PKCS#8 key, and Java cannot read the PBES2 encryption that
    ``cryptography`` writes there.
    """
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    key_password = secrets.token_hex(12)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    chain = [x509.load_pem_x509_certificate(blob.bytes()) for blob in leaf.cert_chain_pems]
    keystore = folder / "broker-keystore.p12"
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"broker",
            key,  # type: ignore[arg-type]
            chain[0],
            chain[1:],
            serialization.BestAvailableEncryption(key_password.encode()),
        )
    )
    cafile = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return cafile, keystore, key_password


def loopback_listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6), e.g. ``{"127.0.0.1"}``."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def test_sasl_ssl_end_to_end_wrong_credentials_refused_and_the_password_is_in_no_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cafile, keystore, key_password = make_certificates(tmp_path)
    props = SASL_SSL_PROPERTIES.replace("KEYSTORE", str(keystore)).replace("KEYPASS", key_password)
    broker = PrivateBroker(tmp_path, props)
    password = "pw-" + secrets.token_urlsafe(18)
    try:
        broker.start()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            errors = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion("pledgewatch", "SCRAM-SHA-512", password, iterations=8192)]
            )
        finally:
            admin.close()
        assert not any(errors.values()), errors
        secure = f"127.0.0.1:{broker.port2}"
        security = {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "pledgewatch",
            "sasl_password": password,
            "ssl_cafile": str(cafile),
        }
        env = Env(secure, tmp_path, **security)

        # refused: a wrong password, and a plaintext client on the SASL_SSL port
        wrong = Settings(bootstrap_servers=secure, **{**security, "sasl_password": "not-" + password})
        with pytest.raises(ConfigError):
            admin_client(wrong, timeout_s=5).close()
        with pytest.raises((KafkaError, ssl.SSLError, OSError, ConfigError)):
            admin_client(secure, timeout_s=5).close()

        # the whole run through SASL_SSL: CLI, worker, producer, consumers
        cli = subprocess.run(
            [str(BIN / "pledgewatch"), "topics", "create"],
            env=env.vars,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        worker = Worker(env)
        worker.args = ["--loglevel", "debug"]  # the most a worker ever logs
        try:
            worker.start()
            book, events = demo_input()
            replay(env.settings, book, events[:3000])
            vals = read_topic(env.settings, "valuations", until=lambda rs: len(rs) >= 4, timeout=180)
            assert len(vals) >= 4  # windows closed and valued: records flowed through SASL_SSL both ways
            web_port = int(worker.vars["PLEDGEWATCH_WEB_PORT"])
            metrics_port = int(worker.vars["PLEDGEWATCH_METRICS_PORT"])
            assert loopback_listeners(web_port) == {"127.0.0.1"}
            assert loopback_listeners(metrics_port) == {"127.0.0.1"}
            body = b"x" * 2_000_000  # request bodies are bounded: the API takes none
            req = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/loans", data=body, method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=30)
            assert refused.value.code in (405, 413)
        finally:
            worker.stop(settle=True)  # a graceful stop, not a SIGKILL after 30 s: its shutdown logs are grepped too

        logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log")}
        logs["cli"] = cli.stdout + cli.stderr
        logs["broker"] = broker.server_log()
        assert sum(len(t) for t in logs.values()) > 1000  # there was something to grep
        leaks = [name for name, text in logs.items() if password in text]
        assert not leaks, f"the SASL password appears in {leaks}"
        assert password not in repr(env.settings) and password not in str(env.settings.model_dump())
        with capsys.disabled():
            sizes = ", ".join(f"{k} {len(v):,} chars" for k, v in logs.items())
            print(f"\n[security] SASL_SSL run: {len(vals)} valuations; password found in 0 logs ({sizes})")
    finally:
        broker.stop()
