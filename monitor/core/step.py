"""One telemetry record in, its effects out: the call a stream driver makes per record.

The worker hands the record's bytes and origin to :func:`apply_telemetry_record` once and gets
back, once, everything the record caused: the typed outputs (valuations of the windows it closed,
dead letters of what was refused, with the record's origin and the observation's index), the asset
it named and the newest event time the core took. The driver then moves the stream clock with that
time (which partitions hold the clock needs what only Kafka knows: committed offsets, high
watermarks, the assignment) and publishes, persists and acknowledges.

Before this step the worker walked the core itself: decode, then per observation load the asset,
apply, catch the refusal, build its dead letter, track the newest time (seven calls down and ten
returns for one record, issue 18). Nothing here keeps state of its own or reads a clock: the wall
time comes in ``limits``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

from monitor.core.assets import AssetBook
from monitor.core.common import Output
from monitor.core.decode import Provenance, RejectedObservation, dead_letter, decode_record_timed, is_batch
from monitor.errors import InputRejected
from monitor.schemas import TelemetryEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordEffects:
    """What one telemetry record did.

    Attributes
    ----------
    outputs
        Typed outputs in the order made: valuations of the windows it closed (and dead letters of held
        records refused on release), then the dead letters of this record's refused observations.
    asset_id
        The asset the record named (a batch names one), or None when nothing in it could be decoded.
    newest
        The newest event time (POSIX s) among the observations the core took; None if it took none.
        Only these move the stream clock.
    """

    outputs: list[Output]
    asset_id: str | None
    newest: float | None


class RecordSources(Sequence[Provenance]):
    """The :class:`Provenance` of each decoded observation of one record, made only when asked for.

    ``sources[pos]`` is the origin of the observation at position ``pos`` among those decoded: the
    record's topic, partition and offset with its index in the record (``indices[pos]``) if the record
    is a batch, else None. Equal, item by item, to the list of them the step used to build; but only an
    observation that leaves the common path (held, ahead, unknown asset) reads its own, so the ≈ 60 a
    poll record need no tuple each (0.38 µs an observation timed alone; 5 % of a saturated worker's
    loop-thread samples in py-spy, the young collections those allocations set off included, 2026-12-08).
    Raises IndexError past the end, as a list would.

    >>> s = RecordSources(Provenance(partition=1, offset=9), [0, 2], True)
    >>> len(s), s[1], list(s) == [s[0], s[1]]
    (2, Provenance(topic='pledge.telemetry', partition=1, offset=9, batch_index=2), True)
    """

    __slots__ = ("batch", "indices", "origin")

    def __init__(self, origin: Provenance, indices: Sequence[int], batch: bool) -> None:
        self.origin = origin
        self.indices = indices
        self.batch = batch

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, pos: int) -> Provenance: ...

    @overload
    def __getitem__(self, pos: slice) -> list[Provenance]: ...

    def __getitem__(self, pos: int | slice) -> Provenance | list[Provenance]:
        if isinstance(pos, slice):
            return [self[i] for i in range(*pos.indices(len(self)))]
        index = self.indices[pos]  # IndexError past the end, batch or not (iteration stops on it)
        o = self.origin
        return Provenance(o.topic, o.partition, o.offset, index if self.batch else None)


def apply_telemetry_record(
    book: AssetBook,
    raw: bytes | None,
    origin: Provenance,
    key: str | None,
    limits: tuple[float, float, float, int],
    load: Callable[[str], None] | None = None,
    tick: bool = False,
    on_observation: Callable[[TelemetryEvent], None] | None = None,
) -> RecordEffects:
    """Decode one telemetry record and apply its observations to ``book``; return its effects.

    Parameters
    ----------
    book
        The worker's assets.
    raw
        The record's value: one :class:`~monitor.schemas.TelemetryEvent` or a
        :class:`~monitor.schemas.TelemetryBatch` (UTF-8 JSON), or None for a tombstone.
    origin
        The record's topic, partition and offset (``batch_index`` None): each observation is applied
        with its own index in it, and dead letters carry them.
    key
        The record's key as text (dead letters carry it), or None.
    limits
        ``(now, max_skew_s, earliest, max_bytes)``: the wall clock (POSIX s) and the decoder's bounds
        (:func:`~monitor.core.decode.decode_telemetry_record`).
    load
        Called with the asset id before its first observation is applied: the driver brings the
        asset's state into ``book`` (from a table after a restart or a rebalance).
    tick
        Passed to :meth:`AssetBook.on_record`: False when the driver ticks the clock itself.
    on_observation
        Called with each decoded observation before it is applied (fault injection in tests).

    Returns
    -------
    RecordEffects

    Every refusal is accounted (:meth:`AssetBook.on_reject`) and dead-lettered here: a record that
    cannot be used as a whole with its own bytes; one observation of a batch with its JSON and index;
    a single record the core refuses (unknown metric, conflicting duplicate...) with its bytes.

    Examples
    --------
    >>> from monitor.core.common import CoreParams
    >>> from monitor.sensors import NullSensor
    >>> fx = apply_telemetry_record(AssetBook(CoreParams(), NullSensor()), b"{", Provenance(partition=0, offset=7),
    ...                             "A1", (1.8e9, 300.0, 0.0, 1_048_576))
    >>> [(o.topic, o.message.reason, o.message.offset) for o in fx.outputs], fx.asset_id, fx.newest
    ([('dead-letter', 'undecodable', 7)], None, None)
    """
    now = limits[0]
    outputs: list[Output] = []

    def refuse(exc: InputRejected, observation: RejectedObservation | None = None) -> None:
        data, index = (raw, None) if observation is None else (observation.raw, observation.index)
        dl = dead_letter(
            data, exc, topic=origin.topic, partition=origin.partition, offset=origin.offset, key=key, now=now,
            observation_index=index,
        )  # fmt: skip
        where = f"{origin.topic}[{origin.partition}]@{origin.offset}{'' if index is None else f'#{index}'}"
        log.info("dead-letter %s: %s", where, exc)
        outputs.append(Output("dead-letter", key or "", dl))

    try:
        observations, times, rejected = decode_record_timed(raw, *limits)
    except InputRejected as exc:  # the record as a whole
        book.on_reject(exc)
        refuse(exc)
        return RecordEffects(outputs, None, None)
    for bad in rejected:
        book.on_reject(bad.error)
    batch = is_batch(raw)
    asset_id = observations[0].asset_id if observations else None  # a batch holds one asset (decoder-checked)
    if asset_id is not None and load is not None:
        load(asset_id)
    refused = {bad.index for bad in rejected}  # the decoded ones' indices in the record skip these
    n = len(observations) + len(refused)
    indices: Sequence[int] = [i for i in range(n) if i not in refused] if refused else range(n)
    sources = RecordSources(origin, indices, batch)
    made, failed, newest = book.on_record(observations, times, sources, tick=tick, on_observation=on_observation)
    outputs += made
    for pos, err in failed:  # refused by the core (unknown metric, conflicting duplicate...)
        book.on_reject(err)
        if batch:
            rejected.append(RejectedObservation(indices[pos], observations[pos].model_dump_json().encode(), err))
        else:
            refuse(err)
    for bad in rejected:
        refuse(bad.error, bad)
    return RecordEffects(outputs, asset_id, newest)
