"""Settings: Kafka security options, secrets kept out of reprs and error messages, bounded inputs."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from monitor.cli import app
from monitor.core import decode_loan_event, decode_telemetry
from monitor.errors import InputRejected
from monitor.settings import Settings

SECRET = "s3cr3t-do-not-log"


def test_settings__sasl_without_credentials_names_the_fields_and_what_is_expected() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(security_protocol="SASL_SSL", sasl_username="pw")
    text = str(err.value)
    assert "PLEDGEWATCH_SASL_PASSWORD" in text and "SASL_SSL" in text


def test_settings__password_is_a_secret_masked_in_repr_and_dump_but_given_to_the_clients(tmp_path: Path) -> None:
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_username="pw", sasl_password=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump()) and SECRET not in s.model_dump_json()
    opts = s.kafka_options()
    assert opts["sasl_plain_password"] == SECRET and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in opts


def test_settings__ssl_builds_a_context_from_the_ca_file_and_rejects_a_missing_file(tmp_path: Path) -> None:
    import trustme  # a dev dependency (make test installs it)

    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    ctx = Settings(security_protocol="SSL", ssl_cafile=cafile).kafka_options()["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ValidationError, match=r"ssl_cafile: got .*nope\.pem.*expected a readable PEM file"):
        Settings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(ValidationError, match="ssl_certfile / ssl_keyfile"):
        Settings(security_protocol="SSL", ssl_certfile=cafile)


def test_cli__bad_security_configuration_is_one_clear_message_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLEDGEWATCH_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PLEDGEWATCH_SASL_PASSWORD", SECRET)
    monkeypatch.delenv("PLEDGEWATCH_SASL_USERNAME", raising=False)
    res = CliRunner().invoke(app, ["topics", "create"])
    assert res.exit_code == 2
    out = res.output
    assert "bad configuration" in out and "PLEDGEWATCH_SASL_USERNAME" in out
    assert SECRET not in out


def test_ingress__records_over_max_message_bytes_are_rejected_unparsed_as_oversized() -> None:
    big = b'{"x": "' + b"a" * 2_000_000 + b'"}'
    for decode in (lambda raw: decode_telemetry(raw, 1.8e9), decode_loan_event):
        with pytest.raises(InputRejected) as err:
            decode(big)
        assert err.value.reason == "oversized" and "2,000,009 bytes" in str(err.value)
    with pytest.raises(InputRejected) as err:
        decode_telemetry(b"{}" + b" " * 5000, 1.8e9, max_bytes=4096)
    assert err.value.reason == "oversized"


def test_settings__dedup_horizon_shorter_than_an_open_window_is_refused_and_reaches_the_core() -> None:
    from monitor.cli import _params

    with pytest.raises(ValidationError, match="dedup_horizon_s: got 600, expected at least"):
        Settings(dedup_horizon_s=600)
    assert _params(Settings(dedup_horizon_s=7200)).dedup_horizon_s == 7200
    assert _params(Settings()).dedup_horizon_s == 21600
    assert _params(Settings(window_s=86400)).dedup_horizon_s == 86400 + 600


def test_settings__level_shift_false_alarm_horizons_reach_the_valuer_and_keep_their_order() -> None:
    from monitor.cli import _params

    with pytest.raises(ValidationError, match="shift_confirm_every_s: got 100, expected at least"):
        Settings(shift_confirm_every_s=100)
    v = _params(Settings(shift_warning_every_s=86_400, shift_confirm_every_s=30 * 86_400)).valuation
    assert (v.shift_warning_every_s, v.shift_confirm_every_s) == (86_400, 30 * 86_400)


def test_settings__the_local_broker_default_follows_kafka_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: set KAFKA_PORT to run beside another Kafka; the CLI must then not talk to the other one."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("PLEDGEWATCH_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_PORT", "19092")
    assert Settings().bootstrap_servers == "127.0.0.1:19092"
    monkeypatch.delenv("KAFKA_PORT")
    assert Settings().bootstrap_servers == "127.0.0.1:9092"
    monkeypatch.setenv("PLEDGEWATCH_BOOTSTRAP_SERVERS", "kafka.bank:9093")
    assert Settings().bootstrap_servers == "kafka.bank:9093"


def test_state_folder__one_per_app_id_so_a_reused_data_dir_never_mixes_two_apps_tables(tmp_path: Path) -> None:
    """Issue 17: a data_dir reused by a worker of another app id crashed recovery (faust ConsistencyError:
    persisted offset higher than the changelog's highwater), because table files are named by table only."""
    from monitor.core import CoreParams
    from monitor.sensors import CountingSensor
    from rules.rulebook import load_rulebook
    from streams.app import create_app
    from tests.conftest import ROOT

    rulebook = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    dirs = []
    for app_id in ("pledgewatch-a", "pledgewatch-b"):
        s = Settings(app_id=app_id, data_dir=tmp_path, store="memory")
        app, _ = create_app(s, rulebook, CoreParams(), CountingSensor())
        assert Path(app.conf.datadir) == tmp_path / app_id
        dirs.append(Path(app.conf.tabledir))
    assert dirs[0] != dirs[1] and all(tmp_path in d.parents for d in dirs)


def test_settings__every_setting_is_in_the_runbook_under_the_variable_that_sets_it() -> None:
    """An operator tunes a worker from docs/runbook.md's table: a setting missing there is one they cannot find."""
    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    prefix = Settings.model_config.get("env_prefix", "")
    missing = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = alias.choices if hasattr(alias, "choices") else [alias or f"{prefix}{name}"]
        if not any(f"`{str(n).upper()}`" in runbook for n in names):
            missing.append(name)
    assert missing == [], f"settings without a row in docs/runbook.md: {missing}"
