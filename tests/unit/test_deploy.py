"""Deployment files: generated dashboards are current, the compose file names real files and services."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from deploy.grafana.dashboards import queries, render, substitute
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def test_dashboards__committed_json_is_what_the_generator_produces() -> None:
    produced = render()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    assert committed == produced, "run: .venv/bin/python deploy/grafana/dashboards.py"


def test_dashboards__three_boards_with_a_loan_variable_and_only_pledgewatch_or_faust_metrics() -> None:
    docs = {name: json.loads(text) for name, text in render().items()}
    assert {d["uid"] for d in docs.values()} == {"pledgewatch-portfolio", "pledgewatch-loan", "pledgewatch-pipeline"}
    assert [v["name"] for v in docs["loan.json"]["templating"]["list"]] == ["loan"]
    for doc in docs.values():
        for where, expr in queries(doc):
            assert "pledgewatch_" in expr or "faust_" in expr or "up{" in expr, where
            assert "$" not in substitute(expr, "L-1"), where


def test_compose__services_and_mounted_files_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "worker-1", "worker-2", "prometheus", "alertmanager", "grafana"}
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src == "./secrets":  # made by deploy/dev_secrets.py: checked below
                continue
            assert (DEPLOY / src).exists(), vol
    assert services["worker-1"]["environment"]["PLEDGEWATCH_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert (ROOT / services["worker-1"]["build"]["dockerfile"]).exists()


def test_compose__every_secret_it_names_is_one_dev_secrets_writes(tmp_path: Path) -> None:
    """The workers' certificate, key, CA, tokens and peer token, and Prometheus's CA and token (issue 22)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dev_secrets", DEPLOY / "dev_secrets.py")
    assert spec is not None and spec.loader is not None
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    dev.make(tmp_path, ["worker-1", "worker-2"])
    written = {f.name for f in tmp_path.iterdir()}
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    worker = compose["services"]["worker-1"]
    mounted = {
        vol.split(":")[1]: vol.split(":")[0] for svc in compose["services"].values() for vol in svc.get("volumes", [])
    }
    paths = [v for k, v in worker["environment"].items() if isinstance(v, str) and v.startswith("/etc/pledgewatch/")]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-compose.yml").read_text())["scrape_configs"][0]
    paths += [prom["tls_config"]["ca_file"], prom["authorization"]["credentials_file"]]
    assert len(paths) == 6
    for path in paths:
        folder, name = path.rsplit("/", 1)
        assert mounted[folder] == "./secrets" and name in written, path
    assert [Path(f).name for f in worker["env_file"]] == ["worker.env"] and "worker.env" in written
