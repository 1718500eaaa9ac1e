"""The msgspec fast path of telemetry decoding changes no decision, reason, message or value (issue 18).

:func:`monitor.core.decode_fast.fast_telemetry_batch` and :func:`~monitor.core.decode_fast.fast_telemetry_event`
either give exactly the events pydantic gives (field by field: types, float bits, dict order, UTC
times, ``model_fields_set``) or say "not sure", and the record goes to pydantic. Checked here on
records generated field by field from valid and invalid pieces (JSON text, so NaN tokens, duplicate
keys, long integers and broken bytes can be sent), against the reference: the same decoders with the
fast path switched off.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.core import decode, decode_fast
from monitor.core.decode import decode_record_timed, telemetry_records
from monitor.core.decode_fast import fast_telemetry_batch, fast_telemetry_event
from monitor.errors import InputRejected
from monitor.schemas import _PARSED, MAX_BATCH_OBSERVATIONS, TelemetryBatch, TelemetryEvent
from tests.conftest import sample_telemetry

#: The decoders' clock: records are generated around it, so some times are plausible and some not.
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()
EXAMPLES = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextmanager
def reference_path() -> Iterator[None]:
    """Today's pydantic-only decoding: the fast path always says "not sure"."""
    with (
        mock.patch.object(decode, "fast_telemetry_batch", lambda raw: None),
        mock.patch.object(decode, "fast_telemetry_event", lambda raw: None),
    ):
        yield


# --- generators: JSON text, piece by piece --------------------------------------------------------
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@/-"


def js(value: Any, ascii_only: bool = True) -> str:
    """JSON text of a value (strings with or without \\u escapes)."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


@st.composite
def json_string(draw: st.DrawFn, inner: st.SearchStrategy[str]) -> str:
    return js(draw(inner), draw(st.booleans()))


good_id = st.text(ID_CHARS, min_size=1, max_size=30)
ids = st.one_of(
    good_id,
    good_id,
    good_id,
    st.just(""),
    st.text(ID_CHARS, min_size=199, max_size=202),
    good_id.map(lambda s: s + "\n"),
    good_id.map(lambda s: s + " "),
    good_id.map(lambda s: "\n" + s),
    st.text(min_size=1, max_size=8),  # unicode letters, spaces, control characters
)
id_text = st.one_of(json_string(ids), st.sampled_from(["1", "null", "true", "[]", "{}"]))


@st.composite
def time_text(draw: st.DrawFn) -> str:
    """An RFC 3339 time or something close: offsets, 'Z'/'z', naive, fractions, epochs, bad fields."""
    odd = draw(st.booleans())  # else every part is well formed, and only the zone (or none) varies

    def part(good: list[Any], bad: list[Any]) -> Any:
        return draw(st.sampled_from(good + bad if odd else good))

    year = part([2014, 2016, 2024, 2029, 2030, 2031], [1, 9999])
    month, day = part([1, 2, 6, 12], [13, 0]), part([1, 15, 28], [29, 31, 32])
    hour, minute, second = part([0, 12, 23], [24]), part([0, 59], [60]), part([0, 30, 59], [60])
    sep = part(["T", "t", " "], ["_", ""])
    frac = part(["", ".5", ".047", ".123456"], [".1234567", ".999999999", "."])
    zone = draw(
        st.sampled_from(["Z", "z", "+00:00", "+12:00", "-05:30", "+05:45:30", "+14:00", "+2400", "-00:00", "", "", ""])
    )
    clock = part([f"{hour:02d}:{minute:02d}:{second:02d}{frac}", f"{hour:02d}:{minute:02d}"], [f"{hour:02d}"])
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{clock}{zone}"
    special = st.sampled_from(
        [
            "1700000000",
            "2024-03-04",
            "20240304T080000Z",
            "2024-W10-1T08:00:00Z",
            "",
            "now",
            "2024-03-04T08:00:00+08:00",
            "\uff12\uff10\uff12\uff14-03-04T08:00:00Z",
            "\u0662\u0660\u0662\u0664-03-04T08:00:00Z",
            "2024-03-04T08:00:00Z\n",
            "2024-03-04T08:00:00Z\n2024-03-04T08:00:00Z",
            "2024-03-04T08:00:00.Z",
            "2024-03-04T08:00:00+08:00:00.5",
        ]
    )
    well_formed = json_string(st.just(text))
    return draw(
        st.one_of(
            well_formed,
            well_formed,
            well_formed,
            json_string(special),
            st.sampled_from(["1700000000", "null", "1.5e9"]),
        )
    )


def valid_time_text(year: int, second: int, zone: str) -> str:
    return js(f"{year:04d}-05-20T10:00:{second:02d}{zone}")


naive_time_text = st.sampled_from(["2024-05-20T10:00:00", "2024-05-20 10:00:00.5", "2016-05-20t10:00"]).map(js)
number_text = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "true", "12.5"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-(2**60), 2**60).map(str),
    st.integers().map(str),
    st.sampled_from(
        [
            "0",
            "-0",
            "-0.0",
            "1E5",
            "1.0e+2",
            "1e-400",
            "1e400",
            "-1e400",
            "9" * 400,
            "-" + "9" * 400,
            str(2**53),
            str(2**53 + 1),
            str(-(2**53) - 1),
            "9007199254740993.0",
            "18446744073709551616",
            "0.1000000000000000055511151231257827021181583404541015625000001",
            "NaN",
            "Infinity",
            "-Infinity",
            "true",
            "false",
            "null",
            '"5"',
            '"nan"',
            "[]",
            "{}",
            "01",
            "1.",
            "+1",
            ".5",
        ]
    ),
)
key_text = st.one_of(json_string(st.text(max_size=6)), st.sampled_from(['"a"', '"b"', '"trips"', '"\\ud83d\\ude00"']))


@st.composite
def object_text(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    """A JSON object of the given values' text; keys may repeat."""
    pairs = draw(st.lists(st.tuples(key_text, values), max_size=4))
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


string_value = st.one_of(
    json_string(st.text(max_size=10)),
    st.sampled_from(['"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"\\u0000"', '"a\\nb"', "1", "null", "true"]),
)
metrics_text = st.one_of(
    *[object_text(number_text)] * 4,
    st.sampled_from(['{"a":NaN}', '{"a":-Infinity}', '{"a":1e400}', '{"a":true}', '{"a":5}', '{"a":1,"a":2.5}']),
    st.sampled_from(["[]", "null", "1", '"x"']),
)
attributes_text = st.one_of(*[object_text(string_value)] * 3, st.sampled_from(["[]", "null", '{"a":1}']))
kind_text = st.one_of(
    json_string(st.text(min_size=1, max_size=10)),
    json_string(st.text(min_size=60, max_size=66)),
    json_string(st.text(st.characters(min_codepoint=0x1F600, max_codepoint=0x1F64F), min_size=63, max_size=65)),
    st.sampled_from(['""', "null", "5"]),
)
entity_text = st.one_of(
    json_string(st.text(max_size=10)),
    json_string(st.text("é", min_size=199, max_size=201)),
    st.sampled_from(["null", "1", "true"]),
)
version_text = st.sampled_from(["1", "1", "1.0", "true", "2", "0", '"1"', "null"])


@st.composite
def observation(draw: st.DrawFn, asset: str, valid_bias: bool = True) -> str:
    """One observation's JSON text: mostly a valid one with a few fields replaced, dropped or added."""
    year = draw(st.sampled_from([2016, 2024, 2029, 2029, 2014, 2031]))  # the last two implausible
    fields: dict[str, str] = {
        "event_id": js(draw(good_id)),
        "asset_id": js(asset),
        "observed_at": valid_time_text(year, draw(st.integers(0, 59)), draw(st.sampled_from(["Z", "+12:00", "z"]))),
        "received_at": valid_time_text(year, 30, "+00:00"),
        "entity_id": js("v1"),
        "kind": js("trip_update"),
        "metrics": '{"delay_s": 12.5, "stop_sequence": 3}',
        "attributes": '{"trip_id": "t1"}',
    }
    optional = ["schema_version", "received_at", "entity_id", "metrics", "attributes"]
    for name in draw(st.lists(st.sampled_from(optional), unique=True)):
        fields.pop(name, None)
    if draw(st.booleans()):
        fields["schema_version"] = "1"
    replacements = {
        "schema_version": version_text,
        "event_id": id_text,
        "asset_id": st.one_of(st.just(js(asset)), id_text),
        "observed_at": st.one_of(time_text(), naive_time_text),
        "received_at": st.one_of(time_text(), naive_time_text, st.just("null")),
        "entity_id": entity_text,
        "kind": kind_text,
        "metrics": metrics_text,
        "attributes": attributes_text,
    }
    n_changes = draw(st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2] if valid_bias else [1, 1, 2, 3, 4]))
    pairs = list(fields.items())
    for _ in range(n_changes):
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "extra", "duplicate"]))
        if action == "replace":
            name = draw(st.sampled_from([*sorted(replacements), "observed_at", "received_at", "metrics", "metrics"]))
            value = draw(replacements[name])
            pairs = [(k, value if k == name else v) for k, v in pairs]
            if name not in dict(pairs):
                pairs.append((name, value))
        elif action == "drop" and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif action == "extra":
            pairs.append((draw(st.sampled_from(["metrix", "extra", "observations", "Event_id"])), "1"))
        elif action == "duplicate" and pairs:
            name = draw(st.sampled_from([k for k, _ in pairs]))
            pairs.append((name, draw(replacements.get(name, st.just("1")))))
    if draw(st.sampled_from([False] * 9 + [True])):  # not an object at all
        return draw(st.sampled_from(["1", "null", "[]", '"x"', "true"]))
    return "{" + ",".join(f"{js(k)}:{v}" for k, v in pairs) + "}"


@st.composite
def raw_bytes(draw: st.DrawFn, text: str) -> bytes:
    """The record's bytes, sometimes padded, broken or trailed by junk."""
    raw = text.encode("utf-8", "surrogatepass")
    change = draw(st.sampled_from(["none"] * 20 + ["space", "bom", "junk", "bad_utf8", "truncate"]))
    if change == "space":
        raw = b" \n" + raw + b"\t "
    elif change == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif change == "junk":
        raw += b" x"
    elif change == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + b"\xff" + raw[at:]
    elif change == "truncate":
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    return raw


@st.composite
def single_records(draw: st.DrawFn) -> bytes:
    return draw(raw_bytes(draw(observation("A1", valid_bias=draw(st.booleans())))))


@st.composite
def batch_records(draw: st.DrawFn) -> bytes:
    asset = draw(st.sampled_from(["A1", "sim-0000"]))
    obs = draw(st.lists(observation(asset, valid_bias=draw(st.booleans())), min_size=0, max_size=6))
    head = [("asset_id", js(asset))]
    if draw(st.sampled_from([False] * 9 + [True])):
        head = [("asset_id", draw(id_text))]
    if draw(st.booleans()):
        head.insert(0, ("schema_version", draw(version_text)))
    pairs = [*head, ("observations", "[" + ",".join(obs) + "]")]
    extra = draw(st.sampled_from(["none"] * 8 + ["extra", "not_a_list", "duplicate_asset"]))
    if extra == "extra":
        pairs.append(("metrics", "{}"))
    elif extra == "not_a_list":
        pairs = [(k, "{}" if k == "observations" else v) for k, v in pairs]
    elif extra == "duplicate_asset":
        pairs.append(("asset_id", js("A2")))
    return draw(raw_bytes("{" + ",".join(f"{js(k)}:{v}" for k, v in pairs) + "}"))


# --- comparison ---------------------------------------------------------------------------------
def assert_same_value(got: object, want: object) -> None:
    assert type(got) is type(want), (got, want)
    if isinstance(want, float):
        assert repr(got) == repr(want)  # the same bits: -0.0 is not 0.0 here
    elif isinstance(want, dt.datetime):
        assert isinstance(got, dt.datetime)
        assert got == want and got.isoformat() == want.isoformat() and got.tzinfo is want.tzinfo is dt.UTC
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)  # the same keys in the same order
        for key in want:
            assert_same_value(got[key], want[key])
    else:
        assert got == want


def assert_same_event(got: TelemetryEvent, want: TelemetryEvent) -> None:
    """Field by field, and everything pydantic keeps on an instance."""
    assert type(got) is type(want) is TelemetryEvent
    assert list(got.__dict__) == list(want.__dict__)
    for name in want.__dict__:
        assert_same_value(got.__dict__[name], want.__dict__[name])
    assert got.model_fields_set == want.model_fields_set
    assert got.__pydantic_extra__ == want.__pydantic_extra__ and got.__pydantic_private__ == want.__pydantic_private__
    assert got == want and got.model_dump_json() == want.model_dump_json()


def outcome(raw: bytes) -> tuple[str, Any]:
    """decode_record_timed's result, the rejection of the whole record, or whatever else it raises.

    Anything raised other than InputRejected is compared too (the two paths must agree even there);
    the two inputs that once raised so are tested on their own below.
    """
    try:
        return "ok", decode_record_timed(raw, NOW)
    except InputRejected as exc:
        return "rejected", (exc.reason, exc.message, exc.asset_id)
    except Exception as exc:  # noqa: BLE001 - compared between the two paths, type and message
        return "raised", (type(exc), str(exc))


def assert_same_outcome(raw: bytes) -> None:
    got = outcome(raw)
    with reference_path():
        want = outcome(raw)
    assert got[0] == want[0], (raw, got, want)
    if want[0] != "ok":
        assert got[1] == want[1]
        return
    (events, times, rejected), (want_events, want_times, want_rejected) = got[1], want[1]
    assert len(events) == len(want_events) and times == want_times
    for ev, want_ev in zip(events, want_events, strict=True):
        assert_same_event(ev, want_ev)
    assert [(r.index, r.raw, r.error.reason, r.error.message, r.error.asset_id) for r in rejected] == [
        (r.index, r.raw, r.error.reason, r.error.message, r.error.asset_id) for r in want_rejected
    ]


# --- the properties -----------------------------------------------------------------------------
@EXAMPLES
@given(single_records())
def test_a_single_event_the_fast_path_takes_is_the_event_pydantic_gives(raw: bytes) -> None:
    _PARSED.clear()  # its times parsed, not remembered from an earlier example
    fast = fast_telemetry_event(raw)
    if fast is not None:
        assert_same_event(fast, TelemetryEvent.model_validate_json(raw))
    assert_same_outcome(raw)


@EXAMPLES
@given(batch_records())
def test_a_batch_the_fast_path_takes_has_the_observations_pydantic_gives(raw: bytes) -> None:
    _PARSED.clear()  # its times parsed (and their prefixes checked together), not remembered
    fast = fast_telemetry_batch(raw)
    if fast is not None:
        want = TelemetryBatch.model_validate_json(raw).observations
        assert len(fast) == len(want)
        for ev, want_ev in zip(fast, want, strict=True):
            assert_same_event(ev, want_ev)
    assert_same_outcome(raw)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            good_id,
            st.sampled_from(["Z", "z", "+12:00", "-05:30", "+00:00"]),
            st.dictionaries(st.text(max_size=8), st.floats(min_value=-1e15, max_value=1e15), max_size=3),
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_common_valid_record_takes_the_fast_path(
    rows: list[tuple[str, str, dict[str, float], dict[str, str], bool]],
) -> None:
    """A plain valid record is decoded without pydantic (else the fast path would be dead code)."""
    obs = []
    for i, (event_id, zone, metrics, attributes, as_int) in enumerate(rows):
        ob = {"event_id": event_id, "asset_id": "A1", "observed_at": f"2024-05-20T10:00:{i:02d}{zone}", "kind": "k"}
        ob |= {"metrics": {k: round(v) if as_int else v for k, v in metrics.items()}, "attributes": attributes}
        obs.append(ob)
    raw = orjson.dumps({"asset_id": "A1", "observations": obs})
    assert fast_telemetry_batch(raw) is not None
    assert fast_telemetry_event(orjson.dumps(obs[0])) is not None
    assert_same_outcome(raw)
    assert_same_outcome(orjson.dumps(obs[0]))


def test_bounds_of_a_batch_give_the_same_outcome() -> None:
    """The most observations a batch may carry, one more, none, and the size limit."""
    ob = b'{"event_id":"e%d","asset_id":"A1","observed_at":"2024-05-20T10:00:00Z","kind":"k"}'
    for n in (MAX_BATCH_OBSERVATIONS, MAX_BATCH_OBSERVATIONS + 1, 0):
        raw = b'{"asset_id":"A1","observations":[' + b",".join(ob % i for i in range(n)) + b"]}"
        assert (fast_telemetry_batch(raw) is not None) == (0 < n <= MAX_BATCH_OBSERVATIONS)
        assert_same_outcome(raw)
    raw = b'{"asset_id":"A1","observations":[' + ob % 1 + b"]}"
    with pytest.raises(InputRejected, match="oversized"):
        decode_record_timed(raw, NOW, max_bytes=len(raw) - 1)


@pytest.mark.parametrize(
    "change",
    [
        {"metrics": {"a": True}},
        {"metrics": {"a": 2**53 + 1}},
        {"metrics": {"a": "5"}},
        {"schema_version": 1.0},
        {"schema_version": True},
        {"event_id": "e1\n"},
        {"observed_at": "2024-05-20T10:00:00"},
        {"observed_at": "1700000000"},
        {"observed_at": "0001-01-01T00:00:00+01:00"},
        {"received_at": "2024-05-20"},
        {"asset_id": "A2"},
        {"metrix": {}},
    ],
)
def test_what_the_fast_path_leaves_to_pydantic(change: dict[str, object]) -> None:
    """Records the fast path does not take (pydantic takes some of them: 1.0 as schema_version, 2**53 + 1)."""
    ob = {"event_id": "e1", "asset_id": "A1", "observed_at": "2024-05-20T10:00:00Z", "kind": "k"} | change
    raw = orjson.dumps({"asset_id": "A1", "observations": [ob]})
    assert fast_telemetry_batch(raw) is None
    assert (fast_telemetry_event(orjson.dumps(ob)) is None) == ("asset_id" not in change)  # alone, A2 is fine
    assert_same_outcome(raw)
    assert_same_outcome(orjson.dumps(ob))


def test_the_sample_poll_records_decode_fast_and_the_same() -> None:
    """The shipped Auckland sample as producers batch it: every record on the fast path, equal events."""
    records = [raw for _, raw, _ in telemetry_records(sample_telemetry()[:3000])]
    assert records
    for raw in records:
        assert (fast_telemetry_batch(raw) or [fast_telemetry_event(raw)])[0] is not None
        assert_same_outcome(raw)


def test_a_fast_event_is_frozen_like_a_validated_one() -> None:
    raw = b'{"event_id":"e1","asset_id":"A1","observed_at":"2024-05-20T10:00:00+12:00","kind":"k"}'
    ev = fast_telemetry_event(raw)
    assert ev is not None and ev.observed_at.tzinfo is dt.UTC and ev.observed_at.hour == 22
    with pytest.raises(ValidationError):
        ev.kind = "other"  # type: ignore[misc]


def _bare(schema: Any) -> Any:
    """A JSON Schema without titles and descriptions."""
    if isinstance(schema, dict):
        return {k: _bare(v) for k, v in schema.items() if k not in {"title", "description"}}
    return [_bare(v) for v in schema] if isinstance(schema, list) else schema


ID_SCHEMA = {"maxLength": 200, "minLength": 1, "pattern": "^[A-Za-z0-9._:@/\\-]+$", "type": "string"}


def test_the_fast_path_copies_the_schemas_it_stands_for() -> None:
    """The fast path is a copy of TelemetryEvent and TelemetryBatch: a change to them must change it too.

    When this fails, the models changed (a field, a bound, a validator): make ``_FastEvent`` /
    ``_FastBatch`` and ``_fast_event`` say the same, then update the snapshot here.
    """
    event = _bare(TelemetryEvent.model_json_schema())
    assert event == {
        "additionalProperties": False,
        "properties": {
            "schema_version": {"const": 1, "default": 1, "type": "integer"},
            "event_id": ID_SCHEMA,
            "asset_id": ID_SCHEMA,
            "observed_at": {"format": "date-time", "type": "string"},
            "received_at": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}], "default": None},
            "entity_id": {"anyOf": [{"maxLength": 200, "type": "string"}, {"type": "null"}], "default": None},
            "kind": {"maxLength": 64, "minLength": 1, "type": "string"},
            "metrics": {"additionalProperties": {"type": "number"}, "type": "object"},
            "attributes": {"additionalProperties": {"type": "string"}, "type": "object"},
        },
        "required": ["event_id", "asset_id", "observed_at", "kind"],
        "type": "object",
    }
    batch = _bare(TelemetryBatch.model_json_schema())
    batch.pop("$defs")
    assert batch["properties"]["asset_id"] == ID_SCHEMA and batch["required"] == ["asset_id", "observations"]
    assert batch["properties"]["observations"]["maxItems"] == MAX_BATCH_OBSERVATIONS == 10_000
    assert set(batch["properties"]) == {"schema_version", "asset_id", "observations"}
    # the only validators: the times' RFC 3339 parser (which the fast path calls) and the batch's one-asset rule
    for model, model_validators in ((TelemetryEvent, []), (TelemetryBatch, ["_one_asset"])):
        found = model.__pydantic_decorators__
        assert list(found.model_validators) == model_validators
        assert not (found.field_validators or found.validators or found.root_validators)
    for name in ("observed_at", "received_at"):
        metadata = (
            TelemetryEvent.model_fields[name].metadata
            or TelemetryEvent.model_fields[name].annotation.__args__[0].__metadata__
        )  # type: ignore[union-attr]
        assert [m.func for m in metadata if hasattr(m, "func")] == [decode_fast._rfc3339_only]
    # and the copy: the same fields, required ones and bounds
    fast = _bare(msgspec.json.schema(decode_fast._FastEvent))["$defs"]["_FastEvent"]
    assert list(fast["properties"]) == list(event["properties"]) and fast["required"] == event["required"]
    for name in ("event_id", "asset_id", "kind"):
        assert {k: v for k, v in event["properties"][name].items() if k != "pattern"} == fast["properties"][name]
    assert "^" + decode_fast._FAST_ID_CHARS.pattern + "$" == ID_SCHEMA["pattern"]


def test_a_time_that_leaves_the_calendar_in_utc_is_rejected_not_raised() -> None:
    """``0001-01-01T00:00:00+01:00`` is year 0 in UTC: once an OverflowError out of the decoder (a crash of
    the record's handling), now a schema violation naming the field and the value."""
    ob = b'{"event_id":"e1","asset_id":"A1","observed_at":"0001-01-01T00:00:00+01:00","kind":"k"}'
    with pytest.raises(InputRejected) as one:
        decode_record_timed(ob, NOW)
    assert one.value.reason == "schema_violation" and "observed_at" in one.value.message
    assert "0001-01-01T00:00:00+01:00" in one.value.message
    assert_same_outcome(ob)
    good = b'{"event_id":"e2","asset_id":"A1","observed_at":"2024-05-20T10:00:00Z","kind":"k"}'
    events, _, rejected = decode_record_timed(b'{"asset_id":"A1","observations":[' + ob + b"," + good + b"]}", NOW)
    assert [e.event_id for e in events] == ["e2"]
    assert [(r.index, r.error.reason) for r in rejected] == [(0, "schema_violation")]


def test_an_integer_beyond_64_bits_beside_a_bad_observation_is_judged_per_observation() -> None:
    """A batch not valid as a whole is decoded observation by observation, each re-encoded first; an
    integer beyond 64 bits (valid JSON) once made that re-encoding raise TypeError and the whole record
    fail. Now each observation gets its own verdict and the good one is used."""
    huge = (
        b'{"event_id":"e1","asset_id":"A1","observed_at":"2024-05-20T10:00:00Z","kind":"k","metrics":{"a":'
        + b"9" * 30
        + b"}}"
    )
    naive = b'{"event_id":"e2","asset_id":"A1","observed_at":"2024-05-20T10:00:00","kind":"k"}'
    good = b'{"event_id":"e3","asset_id":"A1","observed_at":"2024-05-20T10:00:00Z","kind":"k","metrics":{"a":1}}'
    raw = b'{"asset_id":"A1","observations":[' + b",".join((huge, naive, good)) + b"]}"
    events, _, rejected = decode_record_timed(raw, NOW)
    assert "e3" in [e.event_id for e in events]
    assert (1, "naive_time") in [(r.index, r.error.reason) for r in rejected]
    # the huge integer is judged as a record of its own would be (pydantic's strict float decides)
    alone = outcome(huge)
    assert alone[0] in ("ok", "rejected")
    assert ("e1" in [e.event_id for e in events]) == (alone[0] == "ok")
    assert_same_outcome(raw)
