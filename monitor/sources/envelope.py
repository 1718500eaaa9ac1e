"""Source: ``TelemetryEvent`` envelopes as JSON lines (``.jsonl``, or gzip of it), and the writer.

The envelope is the contract's own record (``docs/topics.md``, ``pledge.telemetry``): one JSON object
a line with at least ``event_id``, ``asset_id``, ``observed_at`` and ``kind``. Any feed pledgewatch
reads can be written as envelopes (``pledgewatch export``) and read back with the same result, so a
bank's data team can convert a feed once, with its own tools, and hand over envelopes.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent
from monitor.sources import Pledged, first_line, open_text

__all__ = ["SOURCE", "EnvelopeSource", "write_envelopes"]

#: Keys that make a JSON object an envelope rather than another feed's record.
ENVELOPE_KEYS = frozenset({"event_id", "asset_id", "observed_at", "kind"})


class EnvelopeSource:
    """``TelemetryEvent`` JSON lines, plain or gzip (recognised by the first line's keys)."""

    name = "envelope"
    accepts = "TelemetryEvent JSON lines, .jsonl or .jsonl.gz"

    def recognise(self, path: Path) -> bool:
        """Whether the first non-blank line of the file is a JSON object with the envelope's keys."""
        first = first_line(path)
        if first is None:
            return False
        try:
            obj = json.loads(first[1])
        except ValueError:
            return False
        # two of the four keys and no poll wrapper: an envelope with a field missing or misnamed is
        # still an envelope, and its reader then names the field, rather than "not any telemetry kind"
        return isinstance(obj, dict) and len(ENVELOPE_KEYS & obj.keys()) >= 2 and "response" not in obj

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """The file's envelopes of the pledged assets, in file order.

        Raises
        ------
        ConfigError
            At the first line that is not a valid envelope: the file, the line, the field, the
            value and what was expected.
        """
        for n, line in enumerate(open_text(path), 1):
            if not line.strip():
                continue
            try:
                ev = TelemetryEvent.model_validate_json(line)
            except ValidationError as exc:
                raise ConfigError(f"{path}:{n}: {_reason(exc)} (a TelemetryEvent envelope, docs/topics.md)") from None
            if pledged.wants(ev.asset_id):
                yield ev


def _reason(exc: ValidationError) -> str:
    """``field: got …, expected …`` of the first error of an envelope line."""
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"])
    if err["type"] == "json_invalid":
        return f"not a JSON object ({err['msg'].removeprefix('Invalid JSON: ')})"
    if err["type"] == "missing":
        return f"{field}: missing, expected it"
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown field, expected only the envelope's fields"
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
    if "got " in msg:  # the schema's own message already shows the value
        return f"{field or '(record)'}: expected {msg}"
    got = err.get("input")
    shown = "an object" if isinstance(got, dict) else repr(got)
    return f"{field or '(record)'}: got {shown}, expected {msg}"


def write_envelopes(events: Iterable[TelemetryEvent], out: Path) -> int:
    """Write ``events`` as envelope JSON lines to ``out`` (gzip when it ends in ``.gz``); the count.

    Raises ``OSError`` when the file cannot be written.
    """
    n = 0
    with out.open("wb") as raw:
        # mtime 0: the same events give the same bytes (a committed export does not change on a rerun)
        # and no file name in the header: the same feed gives the same bytes whatever the file is called
        sink = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if out.suffix == ".gz" else raw
        with io.TextIOWrapper(sink, encoding="utf-8") as fh:
            for ev in events:
                fh.write(ev.model_dump_json() + "\n")
                n += 1
    return n


SOURCE = EnvelopeSource()
