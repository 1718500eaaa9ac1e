"""Telemetry records carrying one asset's poll (``TelemetryBatch``, issue 18 item 4).

A batch amortises the stream framework's per-record cost over its observations; it must change
nothing else: every observation is decoded by the rules of a record of its own, a bad one is
dead-lettered alone with its index, and a stream of batches is applied exactly as the same
observations one record each.
"""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.backtest import load_loan_book, run_backtest
from monitor.core.decode import dead_letter, decode_telemetry_record, is_batch, telemetry_records
from monitor.errors import InputRejected
from monitor.incidents import apply_incidents, parse_incident
from monitor.schemas import MAX_BATCH_OBSERVATIONS, TelemetryEvent
from tests.conftest import BOOK, T0, make_event, sample_telemetry

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()


def batch(asset: str, observations: list[object], **extra: object) -> bytes:
    return orjson.dumps({"asset_id": asset, "observations": observations, **extra})


def ob(i: int, asset: str = "A1", **kw: object) -> dict[str, object]:
    return orjson.loads(make_event(event_id=f"e{i}", asset_id=asset, **kw).model_dump_json())


def test_a_valid_batch_gives_its_observations_in_order() -> None:
    events, rejected = decode_telemetry_record(batch("A1", [ob(i) for i in range(5)]), NOW)
    assert [e.event_id for e in events] == [f"e{i}" for i in range(5)] and rejected == []


def test_a_bad_observation_is_rejected_alone_with_its_index_and_the_reason_a_lone_record_would_get() -> None:
    naive = ob(1)
    naive["observed_at"] = "2016-05-20T10:00:00"
    typo = ob(2)
    typo["metrix"] = typo.pop("metrics")
    future = ob(3, observed_at=dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    other = ob(4, asset="A2")
    events, rejected = decode_telemetry_record(batch("A1", [ob(0), naive, typo, future, other, ob(5)]), NOW)
    assert [e.event_id for e in events] == ["e0", "e5"]
    got = [(r.index, r.error.reason) for r in rejected]
    assert got == [(1, "naive_time"), (2, "extra_field"), (3, "implausible_time"), (4, "schema_violation")]
    for r in rejected:  # the same reason as the observation sent on its own, the field named with its index
        assert r.error.message.startswith(f"observations.{r.index}.")
        if r.index != 4:
            with pytest.raises(InputRejected) as alone:
                decode_telemetry_record(r.raw, NOW)
            assert alone.value.reason == r.error.reason
    assert "expected the batch's asset 'A1'" in rejected[3].error.message
    dl = dead_letter(rejected[0].raw, rejected[0].error, topic="t", partition=0, offset=7, key="A1", now=NOW,
                     observation_index=rejected[0].index)  # fmt: skip
    assert dl.observation_index == 1 and dl.reason == "naive_time" and dl.asset_id == "A1"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"asset_id": "A1", "observations": []}', "schema_violation"),
        (b'{"asset_id": "A1", "observations": {"e": 1}}', "schema_violation"),
        (b'{"asset_id": "A 1", "observations": [1]}', "schema_violation"),
        (b'{"asset_id": "A1", "observations": [], "extra": 1}', "extra_field"),
        (b'{"asset_id": "A1", "observations": [', "undecodable"),
        (b'["observations"]', "not_an_object"),
    ],
)
def test_a_batch_unusable_as_a_whole_is_rejected_as_a_whole(raw: bytes, reason: str) -> None:
    with pytest.raises(InputRejected) as exc:
        decode_telemetry_record(raw, NOW)
    assert exc.value.reason == reason


def test_too_many_observations_are_refused_as_a_whole() -> None:
    one = make_event().model_dump_json().encode()
    raw = b'{"asset_id":"A1","observations":[' + b",".join([one] * (MAX_BATCH_OBSERVATIONS + 1)) + b"]}"
    with pytest.raises(InputRejected) as exc:
        decode_telemetry_record(raw, NOW, max_bytes=len(raw))
    assert exc.value.reason == "schema_violation" and "observations" in exc.value.message


def test_a_single_event_record_is_decoded_as_before() -> None:
    raw = make_event().model_dump_json().encode()
    assert not is_batch(raw)
    assert decode_telemetry_record(raw, NOW) == ([make_event()], [])


_events = st.lists(
    st.tuples(st.sampled_from(["A1", "A2"]), st.integers(0, 3), st.integers(0, 2)),
    min_size=0,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(spec=_events, size=st.integers(1, 7))
def test_property__records_of_any_batch_size_decode_to_the_same_observations_in_the_same_order(
    spec: list[tuple[str, int, int]], size: int
) -> None:
    events = [
        make_event(event_id=f"e{i}", asset_id=a, received_at=T0 + dt.timedelta(minutes=poll), entity_id=f"v{v}")
        for i, (a, poll, v) in enumerate(spec)
    ]
    records = list(telemetry_records(events, size))
    assert all(n <= size for _, _, n in records) and sum(n for _, _, n in records) == len(events)
    decoded: list[TelemetryEvent] = []
    for key, value, n in records:
        got, rejected = decode_telemetry_record(value, NOW)
        assert not rejected and len(got) == n and {e.asset_id for e in got} == {key}
        assert is_batch(value) == (n > 1)
        decoded += got
    assert decoded == events


def test_the_auckland_sample_in_batches_gives_the_backtest_of_single_records() -> None:
    from rules.rulebook import load_rulebook
    from tests.conftest import ROOT

    rulebook = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")
    book = load_loan_book(BOOK)
    incidents = [parse_incident("cut:akl-routes-7xx@3h:0.6"), parse_incident("freeze:akl-routes-9xx@3h")]
    events = list(apply_incidents(sample_telemetry(), incidents))
    single = run_backtest(book, events, rulebook)
    records = list(telemetry_records(events, 500))
    assert len(records) < len(events) / 5  # the polls do group: a tenth as many records or fewer
    batched = run_backtest(book, [value for _, value, _ in records], rulebook)
    assert [o.model_dump() for o in batched.valuations] == [o.model_dump() for o in single.valuations]
    assert [(a.alert_id, a.status) for a in batched.alerts] == [(a.alert_id, a.status) for a in single.alerts]
    assert [m.margin_call_id for m in batched.margin_calls] == [m.margin_call_id for m in single.margin_calls]
    assert batched.events == single.events == len(events)
