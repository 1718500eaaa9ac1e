"""Bytes to checked events: the strict decoders of telemetry and loan events, and the dead-letter builder.

Every rejection is an :class:`~monitor.errors.InputRejected` with a reason code (docs/topics.md);
nothing here keeps state. The common valid telemetry record is first offered to the fast path
(:mod:`monitor.core.decode_fast`), which only ever accepts or says "not sure".

Why one module of about 430 lines: the decoders of both input topics, a batch's per-observation
fallback, the dead letter that quotes what they refused and the producers' encoder
(:func:`telemetry_records`) are the two sides of one contract's bytes, changed together.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import Field, ValidationError

from monitor.core.common import EARLIEST, _ts
from monitor.core.decode_fast import fast_telemetry_batch, fast_telemetry_event
from monitor.errors import InputRejected
from monitor.schemas import (
    _ID,
    MAX_BATCH_OBSERVATIONS,
    DeadLetter,
    LoanEventAdapter,
    PaymentOverdue,
    TelemetryBatch,
    TelemetryEvent,
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
