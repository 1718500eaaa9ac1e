"""Strict schemas: unknown fields, non-finite numbers, naive or integer times are rejected."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.core import decode_loan_event, decode_telemetry
from monitor.errors import InputRejected
from monitor.schemas import (
    REASON_CODES,
    Alert,
    CollateralValuation,
    LoanEventAdapter,
    LoanOpened,
    MarginCall,
    Thresholds,
    parse_cure_period,
)
from tests.conftest import make_event, make_loan, make_pledge

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp()


def raw(**kw: object) -> bytes:
    base = {
        "event_id": "e1",
        "asset_id": "A1",
        "observed_at": "2024-03-04T08:00:00+08:00",
        "kind": "trip_completed",
        "metrics": {"trips": 1},
    }
    base.update(kw)
    return orjson.dumps(base)


def reason(data: bytes | None) -> str:
    with pytest.raises(InputRejected) as info:
        decode_telemetry(data, NOW)
    assert info.value.reason in REASON_CODES
    return info.value.reason


def test_decode_telemetry__valid_record_is_aware_utc_comparable() -> None:
    ev = decode_telemetry(raw(), NOW)
    assert ev.observed_at.utcoffset() == dt.timedelta(0)  # given at +08:00, stored in UTC (C15)
    assert ev.observed_at.timestamp() == dt.datetime(2024, 3, 4, 0, 0, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xfe not json", "undecodable"),
        (None, "tombstone"),
        (b"[1, 2]", "not_an_object"),
        (raw(passanger_count=3), "extra_field"),
        (raw(metrics={"trips": "forty"}), "schema_violation"),
        (
            b'{"event_id":"e1","asset_id":"A1","observed_at":"2024-03-04T08:00:00+08:00","kind":"k",'
            b'"metrics":{"passengers":1e309}}',
            "non_finite",
        ),
        (raw(metrics={"on_time_ratio": "NaN"}), "schema_violation"),
        (raw(observed_at="2024-03-04T08:00:00"), "naive_time"),
        (raw(observed_at=1733900000), "schema_violation"),
        (raw(observed_at="2014-12-31T23:59:59Z"), "implausible_time"),
        (raw(observed_at="2024-06-01T00:10:00Z"), "implausible_time"),
    ],
)
def test_decode_telemetry__bad_input_gets_a_reason_code(data: bytes | None, expected: str) -> None:
    assert reason(data) == expected


def test_decode_telemetry__message_names_field_value_and_expectation() -> None:
    with pytest.raises(InputRejected) as info:
        decode_telemetry(raw(passanger_count=3), NOW)
    assert "passanger_count" in info.value.message
    assert info.value.asset_id == "A1"


def test_thresholds__must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="warning > margin_call > close_out"):
        Thresholds(warning=1.2, margin_call=1.3, close_out=1.1)


def test_loan_event_union__dispatches_on_type_and_rejects_unknown_types() -> None:
    loan = make_loan()
    assert isinstance(decode_loan_event(loan.model_dump_json().encode()), LoanOpened)
    bad = orjson.loads(loan.model_dump_json())
    bad["type"] = "loan_reopened"
    with pytest.raises(InputRejected) as info:
        decode_loan_event(orjson.dumps(bad))
    assert info.value.reason == "schema_violation"


def test_cure_period__parses_and_rejects() -> None:
    assert parse_cure_period("5bd") == (5, "bd")
    with pytest.raises(ValueError, match="cure_period"):
        parse_cure_period("5 days")


@pytest.mark.parametrize("model", [make_event(), make_loan(), make_pledge()])
def test_round_trip__every_input_message_survives_its_own_json(model: object) -> None:
    cls = type(model)
    dumped = model.model_dump_json()  # type: ignore[attr-defined]
    if cls.__name__ in ("LoanOpened", "CollateralPledged"):
        assert LoanEventAdapter.validate_json(dumped) == model
    else:
        assert cls.model_validate_json(dumped) == model  # type: ignore[attr-defined]


@given(
    st.datetimes(
        min_value=dt.datetime(2015, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive; timezones= makes them aware
        max_value=dt.datetime(2030, 1, 1),  # noqa: DTZ001
        timezones=st.timezones(),
    )
)
def test_property__any_aware_rfc3339_time_in_range_round_trips(t: dt.datetime) -> None:
    ev = make_event(observed_at=t, received_at=None)
    back = decode_telemetry(ev.model_dump_json().encode(), dt.datetime(2030, 1, 2, tzinfo=dt.UTC).timestamp())
    assert back.observed_at.timestamp() == t.timestamp()
    assert back.observed_at.utcoffset() == dt.timedelta(0)


@given(st.binary(max_size=200))
def test_property__arbitrary_bytes_are_decoded_or_rejected_with_a_known_reason(data: bytes) -> None:
    try:
        decode_telemetry(data, NOW)
    except InputRejected as exc:
        assert exc.reason in REASON_CODES


@given(
    st.dictionaries(
        st.text(max_size=10), st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5)), max_size=8
    )
)
def test_property__arbitrary_json_objects_are_decoded_or_rejected(obj: dict) -> None:  # type: ignore[type-arg]
    try:
        ev = decode_telemetry(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), NOW)
    except (InputRejected, orjson.JSONEncodeError) as exc:
        if isinstance(exc, InputRejected):
            assert exc.reason in REASON_CODES
        return
    assert ev.event_id


def test_outputs__reject_unknown_fields_too() -> None:
    for cls in (Alert, MarginCall, CollateralValuation):
        assert cls.model_config["extra"] == "forbid"


def test_pledge__baseline_length_is_checked_against_the_profile_season() -> None:
    from monitor.schemas import Appraisal
    from tests.conftest import make_pledge

    hourly = Appraisal(value=1.0, appraised_on=dt.date(2024, 1, 1), appraiser="t", baseline_activity=[1.0] * 24)
    assert make_pledge(appraisal=hourly).asset_profile == "bus_dispatch"
    with pytest.raises(
        ValidationError,
        match=r"appraisal.baseline_activity: got 24 values, expected for profile "
        r"daily_ridership: 364 values, one per day of a 52-week year",
    ):
        make_pledge(appraisal=hourly, asset_profile="daily_ridership")
    daily = Appraisal(value=1.0, appraised_on=dt.date(2024, 1, 1), appraiser="t", baseline_activity=[1.0] * 364)
    with pytest.raises(ValidationError, match=r"got 364 values, expected for profile bus_dispatch: 24 values"):
        make_pledge(appraisal=daily)


@given(
    st.one_of(
        st.text(alphabet="0123456789-:T.+Zz ", min_size=10, max_size=32),
        st.datetimes(
            min_value=dt.datetime(2015, 1, 2),  # noqa: DTZ001 - bounds are naive; timezones= makes them aware
            max_value=dt.datetime(2024, 5, 31),  # noqa: DTZ001
            timezones=st.one_of(st.none(), st.timezones()),
        ).map(dt.datetime.isoformat),
    )
)
def test_property__a_remembered_time_string_decodes_as_the_first_time(text: str) -> None:
    """The parsed-string memo changes nothing: the second decode of a string equals the first, or both fail."""
    from monitor import schemas

    def once() -> tuple[str, object]:
        try:
            return "ok", decode_telemetry(raw(observed_at=text), NOW).observed_at
        except InputRejected as exc:
            return exc.reason, None

    schemas._PARSED.clear()
    first = once()
    second = once()  # from the memo when the first parsed
    schemas._PARSED.clear()
    assert first == second == once()


def test_time_memo__naive_times_stay_rejected_and_the_memo_is_bounded() -> None:
    from monitor import schemas

    for _ in range(2):
        assert reason(raw(observed_at="2024-03-04T08:00:00")) == "naive_time"
    for i in range(schemas._PARSED_MAX + 10):
        schemas._rfc3339_only(f"2024-03-04T08:00:{i % 60:02d}.{i:06d}+08:00")
    assert len(schemas._PARSED) <= schemas._PARSED_MAX
