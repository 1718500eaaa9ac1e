"""The fast path of telemetry decoding (issue 18): the common valid record checked by msgspec, not pydantic.

Split from :mod:`monitor.core.decode`, which calls it first and falls back to pydantic whenever it says
"not sure"; it never rejects anything itself, so every rejection, reason code and message stays the
strict schema's (:mod:`monitor.schemas`). Kept apart because it is a second copy of
:class:`~monitor.schemas.TelemetryEvent`'s rules, pinned to the models by ``tests/unit/test_decode_fast.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from pydantic import BaseModel

from monitor.schemas import (
    _PARSED,
    _PARSED_MAX,
    _RFC3339,
    MAX_BATCH_OBSERVATIONS,
    TelemetryEvent,
    _iso_in_utc,
    _rfc3339_only,
)

__all__ = ["fast_telemetry_batch", "fast_telemetry_event"]

# --- the fast path (issue 18): the common valid record without pydantic ---------------------------
# msgspec decodes and checks a record against a copy of the TelemetryEvent schema in C (≈ 0.75 µs an
# observation of a poll record against pydantic's ≈ 5.5, its time parsing included: docs/benchmarks.md,
# 2026-12-08); the times are parsed as the schema parses them and the events built directly. It only ever says
# "valid, and here are the events" or "not sure": any record it does not accept (and every invalid one)
# goes through pydantic as before, so every rejection, reason code and message is pydantic's. Its
# schema is at least as strict as TelemetryEvent's (tests/unit/test_decode_fast.py checks, field by
# field, that whatever it accepts pydantic accepts, giving equal events).

#: An id as msgspec checks it: its length (in code points, as pydantic counts). Its characters are
#: checked after, for all ids of a record in one match of :data:`_FAST_ID_CHARS` (a regex a field
#: would cost more than the rest of the decoding).
_FAST_ID = Annotated[str, Meta(min_length=1, max_length=200)]
#: The characters of :data:`monitor.schemas._ID`'s pattern; matched with ``fullmatch`` over the ids
#: joined (each is at least one character, so the join is all of them iff each is all of them).
_FAST_ID_CHARS = re.compile(r"[A-Za-z0-9._:@/\-]+")
#: A metric the fast path takes: a JSON number of magnitude below 2**53. Below it every JSON integer is
#: exactly a float, so how each parser rounds a long integer never matters (msgspec checks the bound on
#: the converted float, and an integer of 2**53 or more never converts to less); NaN fails the bounds.
#: Beyond it (and for NaN/Infinity tokens, bools, strings), pydantic decides.
_FAST_METRIC = Annotated[float, Meta(gt=-(2.0**53), lt=2.0**53)]


class _FastEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """:class:`~monitor.schemas.TelemetryEvent` as msgspec checks it; an absent optional field is UNSET.

    The times stay strings here: they are parsed as the schema parses them (:func:`_fresh_time`).
    ``schema_version`` takes the integer 1 only (pydantic also takes ``1.0`` and ``true``: those go to it).
    """

    schema_version: Literal[1] | UnsetType = UNSET
    event_id: _FAST_ID
    asset_id: _FAST_ID
    observed_at: str
    received_at: str | UnsetType | None = UNSET
    entity_id: Annotated[str, Meta(max_length=200)] | UnsetType | None = UNSET
    kind: Annotated[str, Meta(min_length=1, max_length=64)]
    metrics: dict[str, _FAST_METRIC] | UnsetType = UNSET
    attributes: dict[str, str] | UnsetType = UNSET


class _FastBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """:class:`~monitor.schemas.TelemetryBatch` as msgspec checks it (the one-asset rule is checked after)."""

    schema_version: Literal[1] | UnsetType = UNSET
    asset_id: _FAST_ID
    observations: Annotated[list[_FastEvent], Meta(min_length=1, max_length=MAX_BATCH_OBSERVATIONS)]


#: Lines that each begin as :data:`monitor.schemas._RFC3339` requires (the same pattern after each line
#: break): the uncached time strings of a batch joined by line breaks match iff each begins so (each
#: begins a line), the check :func:`~monitor.schemas._parse_rfc3339` makes before ``fromisoformat``,
#: made once a record instead of once a string (it was ≈ 40 % of parsing one).
_FAST_TIME_PREFIX = _RFC3339.pattern.removeprefix("^")
_FAST_TIME_PREFIXES = re.compile(f"{_FAST_TIME_PREFIX}.*(?:\\n{_FAST_TIME_PREFIX}.*)*")
_FAST_EVENT_DECODER = msgspec.json.Decoder(_FastEvent)
_FAST_BATCH_DECODER = msgspec.json.Decoder(_FastBatch)
#: The fields a decoded event always has (required by the schema); the optional ones present are added.
_REQUIRED_SET = frozenset(("event_id", "asset_id", "observed_at", "kind"))
_new_event = TelemetryEvent.__new__
#: The slots pydantic's validation fills on a model instance, set the same way (``model_construct`` does too)
_set_dict, _set_fields_set, _set_extra, _set_private = (
    BaseModel.__dict__[slot].__set__
    for slot in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


def _fresh_time(text: str, fresh: list[tuple[str, dt.datetime]] | None) -> dt.datetime:
    """A time string not in the schema's cache, parsed as :func:`~monitor.schemas._parse_rfc3339` parses it.

    With ``fresh`` None, by the schema's own :func:`~monitor.schemas._rfc3339_only`. Else by the
    schema's own parsing without its RFC 3339 check (:func:`~monitor.schemas._iso_in_utc`), the string
    and its time added to ``fresh``: the caller then checks the RFC 3339 prefix of all of them in one
    match and caches them (:func:`fast_telemetry_batch`). Raises what ``fromisoformat`` or the conversion to UTC raise.
    """
    if fresh is None:
        parsed: dt.datetime = _rfc3339_only(text)  # a string in, a datetime out (or it raises)
        return parsed
    parsed = _iso_in_utc(text)
    fresh.append((text, parsed))
    return parsed


def _fast_event(ob: _FastEvent, fresh: list[tuple[str, dt.datetime]] | None = None) -> TelemetryEvent | None:
    """The TelemetryEvent pydantic would build from ``ob``'s JSON, or None when its times need pydantic.

    The id characters are not checked here (the callers check all of a record's at once). A time string
    comes from the schema's own cache, or :func:`_fresh_time`; what that raises (a time that is not
    RFC 3339) propagates, for the caller to hand the record to pydantic.
    """
    text = ob.observed_at
    observed = _PARSED.get(text) or _fresh_time(text, fresh)
    if observed.tzinfo is None:  # a naive time: pydantic's to reject
        return None
    fields_set = set(_REQUIRED_SET)
    received_text = ob.received_at
    received: dt.datetime | None = None
    if received_text is not UNSET:
        fields_set.add("received_at")
        if received_text is not None:
            if received_text == text:  # a poll's first sight of an observation: received when observed
                received = observed
            else:
                received = _PARSED.get(received_text) or _fresh_time(received_text, fresh)
            if received.tzinfo is None:
                return None
    version = ob.schema_version
    if version is UNSET:
        version = 1
    else:
        fields_set.add("schema_version")
    entity = ob.entity_id
    if entity is UNSET:
        entity = None
    else:
        fields_set.add("entity_id")
    metrics = ob.metrics
    if metrics is UNSET:
        metrics = {}
    else:
        fields_set.add("metrics")
    attributes = ob.attributes
    if attributes is UNSET:
        attributes = {}
    else:
        fields_set.add("attributes")
    ev = _new_event(TelemetryEvent)
    _set_dict(
        ev,
        {
            "schema_version": version,
            "event_id": ob.event_id,
            "asset_id": ob.asset_id,
            "observed_at": observed,
            "received_at": received,
            "entity_id": entity,
            "kind": ob.kind,
            "metrics": metrics,
            "attributes": attributes,
        },
    )
    _set_fields_set(ev, fields_set)
    _set_extra(ev, None)
    _set_private(ev, None)
    return ev


def fast_telemetry_event(raw: bytes) -> TelemetryEvent | None:
    """``TelemetryEvent.model_validate_json(raw)`` for a record msgspec finds valid; None if it is not sure.

    None means only "ask pydantic": the record may be valid (e.g. a metric of 2**53 or more) or not.
    """
    try:
        ob = _FAST_EVENT_DECODER.decode(raw)
    except msgspec.MsgspecError:
        return None
    if _FAST_ID_CHARS.fullmatch(ob.event_id + ob.asset_id) is None:
        return None
    try:
        return _fast_event(ob)
    except Exception:  # noqa: BLE001 - a time the parser refuses (or cannot convert): pydantic says why
        return None


def fast_telemetry_batch(raw: bytes) -> list[TelemetryEvent] | None:
    """``TelemetryBatch.model_validate_json(raw).observations`` for a batch msgspec finds valid; else None.

    A batch is taken only when every observation is (and names the batch's asset); None means "ask
    pydantic", which then finds the rejected observations and says why.
    """
    try:
        batch = _FAST_BATCH_DECODER.decode(raw)
    except msgspec.MsgspecError:
        return None
    asset = batch.asset_id
    events = []
    ids = [asset]
    fresh: list[tuple[str, dt.datetime]] = []
    try:
        for ob in batch.observations:
            if ob.asset_id != asset:
                return None
            ev = _fast_event(ob, fresh)
            if ev is None:
                return None
            events.append(ev)
            ids.append(ob.event_id)
    except Exception:  # noqa: BLE001 - a time the parser refuses (or cannot convert): pydantic says why
        return None
    if _FAST_ID_CHARS.fullmatch("".join(ids)) is None:
        return None
    if fresh:
        if _FAST_TIME_PREFIXES.fullmatch("\n".join([text for text, _ in fresh])) is None:
            return None
        for text, parsed in fresh:  # cached as _rfc3339_only caches
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[text] = parsed
    return events
