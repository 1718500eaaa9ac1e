"""Hypothesis strategies of hostile ingress records: raw bytes, arbitrary JSON, and real records mutated.

Shared by the in-process fuzz test (``tests/unit/test_fuzz.py``) and the one on the real broker
(``tests/integration/test_fuzz.py``). A third of the records are real ones (an Auckland trip
update and a loan-book event) with one to three mutations (a field dropped, retyped, misspelled,
a number made huge, negative or non-finite, a time made naive or far off, an id made long), so
the fuzz reaches past the JSON parser into the schema, time and unit checks and the core.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

TELEMETRY = {
    "schema_version": 1,
    "event_id": "akl:14267026973@1463696424",
    "asset_id": "akl-routes-2xx",
    "observed_at": "2016-05-19T22:20:24Z",
    "received_at": "2016-05-19T22:20:27Z",
    "entity_id": "14267026973",
    "kind": "trip_update",
    "metrics": {"delay_s": 33.0},
    "attributes": {"trip_id": "14258012470", "route_id": "25802", "stop_id": "8914", "stop_event": "arrival"},
}
LOAN_EVENT = {
    "schema_version": 1,
    "event_id": "L-AKL-001:repaid:fuzz",
    "loan_id": "L-AKL-001",
    "effective_at": "2016-05-19T23:00:00+12:00",
    "type": "repayment",
    "amount": 10000.0,
}
ASSETS = ["akl-routes-0xx", "akl-routes-2xx", "akl-routes-7xx", "akl-routes-9xx", "no-such-asset"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["NaN", "Infinity", "-1e309", "1e309", "2016-05-19T22:20:24", "1463696424", "", "0"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
times = st.sampled_from(
    [
        "2016-05-19T22:20:24",  # naive
        "2016-05-19T22:20:24+25:00",
        "1999-01-01T00:00:00Z",
        "2099-01-01T00:00:00Z",
        "2016-02-30T00:00:00Z",
        "1463696424000",
        "yesterday",
    ]
) | st.datetimes().map(lambda d: d.isoformat())


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with one to three mutations."""
    rec = json.loads(json.dumps(template))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "retype", "extra", "time", "number", "metric", "id", "asset"]))
        keys = sorted(rec)
        if op == "drop" and keys:
            rec.pop(draw(st.sampled_from(keys)))
        elif op == "retype" and keys:
            rec[draw(st.sampled_from(keys))] = draw(json_values)
        elif op == "extra":
            rec[draw(st.sampled_from(["asset_idd", "metric", "observedAt", "amount_cents", "x"]))] = draw(json_values)
        elif op == "time":
            rec[draw(st.sampled_from(["observed_at", "received_at", "effective_at"]))] = draw(times)
        elif op == "number":
            value = draw(st.sampled_from([1e308, -1.0, -3, 65533, 2**63, 0, float("nan"), float("inf")]))
            if "metrics" in rec and isinstance(rec["metrics"], dict):
                rec["metrics"][draw(st.sampled_from(["delay_s", "passengers", "entities"]))] = value
            else:
                rec["amount"] = value
        elif op == "metric":
            rec["metrics"] = draw(st.dictionaries(st.text(max_size=15), json_values, max_size=4))
        elif op == "id":
            rec[draw(st.sampled_from(["event_id", "asset_id", "loan_id"]))] = draw(
                st.text(max_size=300) | st.just("x" * 5000)
            )
        elif op == "asset":
            rec["asset_id"] = draw(st.sampled_from(ASSETS))
    return rec


def dump(value: Any) -> bytes:
    """JSON bytes that keep NaN and Infinity as the (invalid JSON) tokens a careless producer writes."""
    return json.dumps(value, allow_nan=True, default=str).encode("utf-8", "surrogatepass")


#: A telemetry record value: raw bytes, a tombstone, any JSON, or a mutated real record.
telemetry_records = st.one_of(
    st.binary(max_size=400),
    st.none(),
    json_values.map(dump),
    mutated(TELEMETRY).map(dump),
    st.just(dump(TELEMETRY)),
)
#: A loan-book record value, likewise.
loan_records = st.one_of(
    st.binary(max_size=400),
    st.none(),
    json_values.map(dump),
    mutated(LOAN_EVENT).map(dump),
)
