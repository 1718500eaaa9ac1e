"""Bytes to checked events: the strict decoders of telemetry and loan events, and the dead-letter builder.

Every rejection is an :class:`~monitor.errors.InputRejected` with a reason code (docs/topics.md);
nothing here keeps state.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType
from pydantic import BaseModel, Field, ValidationError

from monitor.core.common import EARLIEST, _ts
from monitor.errors import InputRejected
from monitor.schemas import (
    _ID,
    _PARSED,
    _PARSED_MAX,
    _RFC3339,
    MAX_BATCH_OBSERVATIONS,
    DeadLetter,
    LoanEventAdapter,
    PaymentOverdue,
    TelemetryBatch,
    TelemetryEvent,
    _rfc3339_only,
    _Strict,
)

#: pydantic error type -> reason code, in priority order: when one record has several errors, the
#: first kind listed here names it (a misspelled required field is an ``extra_field``, not ``missing``).
_PYDANTIC_REASONS = {
    "json_invalid": "undecodable",
    "model_type": "not_an_object",
    "model_attributes_type": "not_an_object",
    "dict_type": "not_an_object",
    "extra_forbidden": "extra_field",
    "finite_number": "non_finite",
    "timezone_aware": "naive_time",
}


def _peek_asset(raw: bytes | None) -> str | None:
    try:
        obj = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    val = obj.get("asset_id") if isinstance(obj, dict) else None
    return val if isinstance(val, str) else None


def _rejection(exc: ValidationError, raw: bytes | None) -> InputRejected:
    errors = exc.errors()
    rank = {t: i for i, t in enumerate(_PYDANTIC_REASONS)}
    err = min(errors, key=lambda e: rank.get(e["type"], len(rank)))
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<record>"
    reason = _PYDANTIC_REASONS.get(err["type"], "schema_violation")
    got = err.get("input")
    got_s = repr(got)[:80] if not isinstance(got, dict) else "an object"
    expected = str(err["msg"]).removeprefix("Value error, ")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return InputRejected(reason, f"{loc}: got {got_s}, expected {expected}{more}", _peek_asset(raw))


def _check_time(
    field: str, t: dt.datetime | None, now: float, max_skew_s: float, asset_id: str | None, earliest: float
) -> float:
    """Check a time's plausibility; return it in POSIX seconds (NaN for None)."""
    if t is None:
        return math.nan
    ts = t.timestamp()
    if ts < earliest or ts > now + max_skew_s:
        msg = (
            f"{field}: got {t.isoformat()}, expected after {_ts(earliest).date().isoformat()} and at most "
            f"{max_skew_s:.0f} s ahead of the clock ({_ts(now).isoformat()})"
        )
        raise InputRejected("implausible_time", msg, asset_id)
    return ts


#: Largest record decoded, bytes (Kafka's default ``message.max.bytes`` is about 1 MiB).
MAX_BYTES = 1_048_576


def _check_size(raw: bytes, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        msg = f"record: got {len(raw):,} bytes, expected at most {max_bytes:,} (max_message_bytes)"
        raise InputRejected("oversized", msg)


def decode_telemetry(
    raw: bytes | None, now: float, max_skew_s: float = 300.0, earliest: float = EARLIEST, max_bytes: int = MAX_BYTES
) -> TelemetryEvent:
    """Decode one telemetry record strictly.

    Parameters
    ----------
    raw
        The record value (UTF-8 JSON) or ``None`` for a tombstone.
    now
        Wall-clock time, POSIX seconds (injected; the core never reads the clock).
    max_skew_s
        Allowed clock skew into the future, seconds.
    earliest
        Records observed before this (POSIX seconds; 2015-01-01 by default) are implausible.
    max_bytes
        Larger records are rejected as ``oversized`` before parsing (bounded work per record).

    Returns
    -------
    TelemetryEvent

    Raises
    ------
    InputRejected
        With a reason code of :data:`monitor.schemas.REASON_CODES` (tombstone, undecodable,
        extra_field, non_finite, naive_time, implausible_time, schema_violation...).
    """
    return _decode_one(raw, now, max_skew_s, earliest, max_bytes)[0]


def _decode_one(
    raw: bytes | None, now: float, max_skew_s: float, earliest: float, max_bytes: int
) -> tuple[TelemetryEvent, float]:
    """:func:`decode_telemetry`, with the event time in POSIX seconds."""
    if raw is None:
        raise InputRejected("tombstone", "record value is null (tombstone), expected a TelemetryEvent")
    _check_size(raw, max_bytes)
    ev = fast_telemetry_event(raw)
    if ev is None:
        try:
            ev = TelemetryEvent.model_validate_json(raw)
        except ValidationError as exc:
            raise _rejection(exc, raw) from None
    ts = _check_time("observed_at", ev.observed_at, now, max_skew_s, ev.asset_id, earliest)
    _check_time("received_at", ev.received_at, now, max_skew_s, ev.asset_id, earliest)
    return ev, ts


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
_fromisoformat = dt.datetime.fromisoformat
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

    With ``fresh`` None, by the schema's own :func:`~monitor.schemas._rfc3339_only`. Else by the same
    ``fromisoformat`` call on the same text (``z`` read as ``Z``), the string and its time added to
    ``fresh``: the caller then checks the RFC 3339 prefix of all of them in one match and caches them
    (:func:`fast_telemetry_batch`). Raises what ``fromisoformat`` or the conversion to UTC raise.
    """
    if fresh is None:
        parsed: dt.datetime = _rfc3339_only(text)  # a string in, a datetime out (or it raises)
        return parsed
    parsed = _fromisoformat(text[:-1] + "Z" if text.endswith("z") else text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC)
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


#: A record holding this key is a :class:`~monitor.schemas.TelemetryBatch` (a TelemetryEvent has no
#: such field and rejects unknown ones), told apart without parsing twice.
_BATCH_MARK = b'"observations"'


class _BatchEnvelope(_Strict):
    """A batch with its observations not yet decoded: whole-record problems are found here."""

    schema_version: Literal[1] = 1
    asset_id: _ID
    observations: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH_OBSERVATIONS)]


@dataclass(frozen=True, slots=True)
class RejectedObservation:
    """One observation of a batch that could not be used: its index, its own JSON and why."""

    index: int
    raw: bytes
    error: InputRejected


def is_batch(raw: bytes | None) -> bool:
    """Whether a telemetry record is a :class:`~monitor.schemas.TelemetryBatch` (by its ``observations`` key)."""
    return raw is not None and _BATCH_MARK in raw


def decode_telemetry_record(
    raw: bytes | None, now: float, max_skew_s: float = 300.0, earliest: float = EARLIEST, max_bytes: int = MAX_BYTES
) -> tuple[list[TelemetryEvent], list[RejectedObservation]]:
    """Decode one telemetry record: a single :class:`TelemetryEvent` or a :class:`TelemetryBatch`.

    Every observation of a batch is decoded by the rules of :func:`decode_telemetry` (the same
    strict schema, times checked against ``now``); one that breaks them is returned among the
    rejected with its index, and the others are used. A batch whose observations are all valid is
    validated in one pass (the fast path); otherwise each is checked on its own.

    Parameters are those of :func:`decode_telemetry`.

    Returns
    -------
    tuple
        ``(events, rejected)``: the usable observations in order, and the rejected ones.

    Raises
    ------
    InputRejected
        When the record as a whole cannot be used: a single event that fails, or a batch that is
        not JSON, has an unknown field, no or too many observations (1 to
        :data:`~monitor.schemas.MAX_BATCH_OBSERVATIONS`) or a bad ``asset_id``.

    Examples
    --------
    >>> ob = '{"event_id":"e%d","asset_id":"A1","observed_at":"2016-05-20T10:00:00+12:00","kind":"feed_poll"}'
    >>> raw = ('{"asset_id":"A1","observations":[' + ob % 1 + "," + ob % 2 + "]}").encode()
    >>> events, rejected = decode_telemetry_record(raw, now=1.8e9)
    >>> [e.event_id for e in events], rejected
    (['e1', 'e2'], [])
    >>> bad = raw.replace(b"+12:00", b"", 1)  # the first observation's time loses its offset
    >>> events, rejected = decode_telemetry_record(bad, now=1.8e9)
    >>> [e.event_id for e in events], [(r.index, r.error.reason) for r in rejected]
    (['e2'], [(0, 'naive_time')])
    """
    events, _, rejected = decode_record_timed(raw, now, max_skew_s, earliest, max_bytes)
    return events, rejected


def decode_record_timed(
    raw: bytes | None, now: float, max_skew_s: float = 300.0, earliest: float = EARLIEST, max_bytes: int = MAX_BYTES
) -> tuple[list[TelemetryEvent], list[float], list[RejectedObservation]]:
    """:func:`decode_telemetry_record` with each usable observation's event time (POSIX s), computed once.

    Returns ``(events, times, rejected)``: ``times[i]`` is ``events[i].observed_at.timestamp()``.
    """
    if raw is None or not is_batch(raw):
        ev, ts = _decode_one(raw, now, max_skew_s, earliest, max_bytes)
        return [ev], [ts], []
    _check_size(raw, max_bytes)
    events: list[TelemetryEvent] = []
    times: list[float] = []
    rejected: list[RejectedObservation] = []
    observations = fast_telemetry_batch(raw)
    if observations is None:
        try:
            observations = TelemetryBatch.model_validate_json(raw).observations
        except ValidationError:
            pass
    if observations is not None:
        latest = now + max_skew_s  # _check_time's bounds, tested inline first: the usual time passes both
        for i, ev in enumerate(observations):
            ts = ev.observed_at.timestamp()
            received = ev.received_at
            if earliest <= ts <= latest and (received is None or earliest <= received.timestamp() <= latest):
                events.append(ev)
                times.append(ts)
                continue
            try:
                ts = _check_time("observed_at", ev.observed_at, now, max_skew_s, ev.asset_id, earliest)
                _check_time("received_at", ev.received_at, now, max_skew_s, ev.asset_id, earliest)
            except InputRejected as exc:
                rejected.append(RejectedObservation(i, ev.model_dump_json().encode(), exc))
            else:
                events.append(ev)
                times.append(ts)
        return events, times, rejected
    try:
        envelope = _BatchEnvelope.model_validate_json(raw)
    except ValidationError as exc:
        raise _rejection(exc, raw) from None
    for i, item in enumerate(envelope.observations):
        one = _reencode(item)
        try:
            ev, ts = _decode_one(one, now, max_skew_s, earliest, max_bytes)
            if ev.asset_id != envelope.asset_id:
                msg = f"asset_id: got {ev.asset_id!r}, expected the batch's asset {envelope.asset_id!r}"
                raise InputRejected("schema_violation", msg, envelope.asset_id)
        except InputRejected as exc:
            error = InputRejected(exc.reason, f"observations.{i}.{exc.message}", exc.asset_id or envelope.asset_id)
            rejected.append(RejectedObservation(i, one, error))
        else:
            events.append(ev)
            times.append(ts)
    return events, times, rejected


def _reencode(item: Any) -> bytes:
    """One observation of a batch (as parsed from JSON) as JSON bytes again, to be decoded on its own.

    orjson writes integers of at most 64 bits; a larger one (valid JSON, which its own decode then
    judges) goes through the standard library's encoder, which writes any integer exactly.
    """
    try:
        return orjson.dumps(item)
    except TypeError:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def decode_loan_event(
    raw: bytes | None,
    now: float | None = None,
    max_skew_s: float = 300.0,
    earliest: float = EARLIEST,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """Decode one loan event (tagged union on ``type``).

    Parameters
    ----------
    raw
        The record value (UTF-8 JSON) or ``None`` for a tombstone.
    now
        Wall-clock time, POSIX seconds; when given, ``effective_at`` must lie after ``earliest`` and at
        most ``max_skew_s`` ahead of it (a loan event from the future would move the loan's clock).
    max_skew_s
        Allowed clock skew into the future, seconds.
    earliest
        Earliest plausible ``effective_at``, POSIX seconds (2015-01-01 by default).
    max_bytes
        Larger records are rejected as ``oversized`` before parsing.

    Raises
    ------
    InputRejected
        Reason ``tombstone``, ``oversized``, ``undecodable``, ``not_an_object``, ``extra_field``, ``schema_violation``,
        ``implausible_time``...
    """
    if raw is None:
        raise InputRejected("tombstone", "record value is null (tombstone), expected a LoanEvent")
    _check_size(raw, max_bytes)
    try:
        ev = LoanEventAdapter.validate_json(raw)
    except ValidationError as exc:
        raise _rejection(exc, None) from None
    if now is not None:
        _check_time("effective_at", ev.effective_at, now, max_skew_s, None, earliest)
        if isinstance(ev, PaymentOverdue):  # no later than effective_at (the model checks), not before earliest
            _check_time("as_of", ev.as_of, now, max_skew_s, None, earliest)
    return ev


class Provenance(NamedTuple):
    """Where a telemetry observation came from, kept while the core holds it (dead letters name it).

    ``topic`` is the logical source (``pledge.telemetry``), ``partition`` and ``offset`` the Kafka
    record's (None in a backtest), ``batch_index`` the 0-based position of the observation in a batch record
    (None for a single record). A record held for its pledge or for the stream to confirm its event
    time and refused when released is dead-lettered with these, as if refused on arrival.

    >>> Provenance(partition=2, offset=41, batch_index=3).offset
    41
    """

    topic: str = "pledge.telemetry"
    partition: int | None = None
    offset: int | None = None
    batch_index: int | None = None


def dead_letter(
    raw: bytes | None,
    exc: InputRejected,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: str | None,
    now: float,
    observation_index: int | None = None,
) -> DeadLetter:
    """Build the dead-letter record of a rejected input (original bytes kept, base64).

    For one observation of a batch, ``raw`` is that observation's JSON and ``observation_index`` its
    0-based index in the record.
    """
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        reason=exc.reason,
        message=exc.message[:500],
        asset_id=exc.asset_id,
        original_b64=base64.b64encode(raw or b"").decode(),
        received_at=_ts(now),
        observation_index=observation_index,
    )


# --- encoding: what producers send ------------------------------------------------------------
#: Bytes of one batch record at most: half of Kafka's default ``message.max.bytes`` (1 MiB), so a
#: batch never comes near the broker's or the worker's limit (``max_message_bytes``).
BATCH_MAX_BYTES = 512 * 1024


def telemetry_records(
    events: Iterable[TelemetryEvent], max_observations: int = 500
) -> Iterator[tuple[str, bytes, int]]:
    """Encode observations as telemetry records: ``(key, value, observations in it)`` each.

    Consecutive observations of one asset from one poll (the same ``received_at``, or the same
    ``observed_at`` when there is none) become one :class:`~monitor.schemas.TelemetryBatch` of at most
    ``max_observations`` and :data:`BATCH_MAX_BYTES`; a lone observation, or any with
    ``max_observations`` 1, stays a plain :class:`TelemetryEvent` record. The order of the
    observations is kept exactly, so a stream of batches is applied as the stream of single records.

    Raises
    ------
    ValueError
        When ``max_observations`` is not between 1 and :data:`~monitor.schemas.MAX_BATCH_OBSERVATIONS`.

    Examples
    --------
    >>> import datetime as dt
    >>> t = dt.datetime(2016, 5, 20, tzinfo=dt.UTC)
    >>> evs = [TelemetryEvent(event_id=f"e{i}", asset_id=a, observed_at=t, kind="feed_poll") for i, a in
    ...        enumerate(["A1", "A1", "A2", "A1"])]
    >>> [(key, n) for key, _, n in telemetry_records(evs)]
    [('A1', 2), ('A2', 1), ('A1', 1)]
    """
    if not 1 <= max_observations <= MAX_BATCH_OBSERVATIONS:
        msg = f"max_observations: got {max_observations}, expected 1 to {MAX_BATCH_OBSERVATIONS}"
        raise ValueError(msg)
    group: list[bytes] = []
    size = 0
    current: tuple[str, dt.datetime] | None = None

    def flush() -> tuple[str, bytes, int]:
        assert current is not None
        if len(group) == 1:
            return current[0], group[0], 1
        head = orjson.dumps({"schema_version": 1, "asset_id": current[0]})[:-1]
        return current[0], head + b',"observations":[' + b",".join(group) + b"]}", len(group)

    for ev in events:
        poll = (ev.asset_id, ev.received_at or ev.observed_at)
        one = ev.model_dump_json().encode()
        if group and (poll != current or len(group) >= max_observations or size + len(one) > BATCH_MAX_BYTES):
            yield flush()
            group, size = [], 0
        current = poll
        group.append(one)
        size += len(one) + 1
    if group:
        yield flush()
