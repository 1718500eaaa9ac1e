"""The contract documents: committed and current, every example valid against its schema and its model."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from monitor.contract import CHANNELS, MESSAGES, render_documents
from tests.conftest import ROOT

SCHEMAS = ROOT / "deploy" / "schemas"


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    return render_documents()


def test_contract__committed_documents_are_what_pledgewatch_schemas_writes(documents) -> None:  # type: ignore[no-untyped-def]
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.iterdir()}
    stale = sorted(name for name in documents if committed.get(name) != documents[name])
    assert stale == [] and set(committed) == set(documents), f"run: .venv/bin/pledgewatch schemas ({stale})"


def test_contract__every_example_validates_against_its_schema_and_round_trips_through_its_model(documents) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(documents["asyncapi.yaml"])
    checked = 0
    for name, msg in doc["components"]["messages"].items():
        schema = json.loads(documents[f"{name}.schema.json"])
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        model = MESSAGES[name][0]
        assert msg["examples"], name
        for ex in msg["examples"]:
            validator.validate(ex["payload"])
            raw = json.dumps(ex["payload"])
            obj = model.validate_json(raw) if hasattr(model, "validate_json") else model.model_validate_json(raw)
            dump = model.dump_python(obj, mode="json") if hasattr(model, "dump_python") else obj.model_dump(mode="json")
            assert dump == ex["payload"], name
            checked += 1
    assert checked >= 17  # 8 loan event types and one or more of every other message


def test_contract__schemas_reject_what_the_models_reject(documents) -> None:  # type: ignore[no-untyped-def]
    tele = jsonschema.Draft202012Validator(json.loads(documents["TelemetryEvent.schema.json"]))
    doc = yaml.safe_load(documents["asyncapi.yaml"])
    good = doc["components"]["messages"]["TelemetryEvent"]["examples"][0]["payload"]
    assert tele.is_valid(good)
    assert not tele.is_valid({**good, "passanger_count": 3})  # unknown field
    assert not tele.is_valid({k: v for k, v in good.items() if k != "asset_id"})  # required field


def test_asyncapi__every_topic_has_a_channel_an_operation_a_key_and_its_retention(documents) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(documents["asyncapi.yaml"])
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == {f"pledge.{c.logical}" for c in CHANNELS}
    for op in doc["operations"].values():
        assert op["action"] in {"send", "receive"}
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
    for msg in doc["components"]["messages"].values():
        assert msg["bindings"]["kafka"]["key"]["type"] == "string"
        assert (SCHEMAS / msg["payload"]["schema"]["$ref"].removeprefix("./")).exists()
    assert doc["channels"]["loan_risk"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]
    assert doc["channels"]["rules_control"]["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == -1
