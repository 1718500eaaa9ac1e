"""Source adapters: turn operators' recorded feeds into ``TelemetryEvent`` records.

A **source** is a plugin: an object with a ``name``, a one-line ``accepts`` (what it reads, shown
when a file is not recognised), ``recognise(path) -> bool`` (by content, never by file name alone)
and ``read(path, pledged) -> Iterator[TelemetryEvent]`` (envelopes of the pledged assets, in the
order the feed gives them). pledgewatch finds sources through the Python entry-point group
``pledgewatch.sources`` (the built-ins register there too, in ``pyproject.toml``); a bank's own
adapter is a package that declares one::

    [project.entry-points."pledgewatch.sources"]
    dispatch-log = "my_adapter:SOURCE"

``docs/sources.md`` ("Write an adapter") walks through ``examples/plugins/dispatch-log``.

Why entry points: they are the standard way Python packages announce plugins to each other
(importlib.metadata, PyPA entry-points specification); an adapter is installed with pip like any
package, and pledgewatch need not be forked or told where it lives.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from monitor.errors import ConfigError
from monitor.schemas import CollateralPledged, TelemetryEvent

__all__ = [
    "GROUP",
    "Pledged",
    "TelemetrySource",
    "add_route_group",
    "first_line",
    "open_text",
    "read_source",
    "recognise",
    "sources",
]

#: The entry-point group sources register under.
GROUP = "pledgewatch.sources"
#: Built-in sources (entry-point name → ``module:attribute``), as ``pyproject.toml`` registers them;
#: used as they are when pledgewatch runs from a source tree whose package metadata is missing.
BUILT_IN = {
    "envelope": "monitor.sources.envelope:SOURCE",
    "auckland-tripupdates": "monitor.sources.auckland:SOURCE",
    "bustime": "monitor.sources.bustime:SOURCE",
    "vehicle-positions-csv": "monitor.sources.wmata:SOURCE",
    "gtfs-rt-vehicle-positions": "monitor.sources.vehicle_positions:SOURCE",
    "gps-polls-csv": "monitor.sources.gps_polls:SOURCE",
    "cta-daily": "monitor.sources.cta:SOURCE",
}
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pledged:
    """What a source is asked for: the pledged assets and their pledges.

    ``assets`` is ``None`` for every asset the file holds (``export`` without a loan book);
    ``pledges`` are the loan book's ``collateral_pledged`` events (route sets, time zones,
    profiles), possibly empty when the caller only knows asset ids.
    """

    assets: frozenset[str] | None
    pledges: tuple[CollateralPledged, ...] = ()

    def wants(self, asset_id: str) -> bool:
        """Whether records of ``asset_id`` are asked for."""
        return self.assets is None or asset_id in self.assets


@runtime_checkable
class TelemetrySource(Protocol):
    """A telemetry source plugin (see the module docstring)."""

    name: str
    accepts: str

    def recognise(self, path: Path) -> bool:
        """Whether ``path`` (a file or folder) holds this source's records, judged by content."""
        ...

    def read(self, path: Path, pledged: Pledged) -> Iterator[TelemetryEvent]:
        """``TelemetryEvent`` records of the pledged assets in ``path``.

        Raises ``ConfigError`` naming the file, the line, the field and what was expected when the
        content is bad.
        """
        ...


def add_route_group(
    groups: dict[str, frozenset[str] | None], pledge: CollateralPledged, routes: frozenset[str]
) -> None:
    """Record ``pledge``'s asset as the route set ``routes`` in ``groups`` (asset id → routes).

    Raises
    ------
    ConfigError
        When the asset was pledged before with other routes (one asset is one route set).
    """
    earlier = groups.get(pledge.asset_id, routes)
    if earlier != routes:
        msg = (
            f"collateral_pledged {pledge.event_id}: asset {pledge.asset_id!r} routes: got {sorted(routes)}, expected "
            f"the same routes as its earlier pledge {sorted(earlier or ())}"
        )
        raise ConfigError(msg)
    groups[pledge.asset_id] = routes


def _load(name: str, target: str) -> TelemetrySource:
    import importlib

    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if not isinstance(obj, TelemetrySource):
        msg = f"source plugin {name!r} ({target}): expected an object with name, accepts, recognise() and read()"
        raise ConfigError(msg)
    return obj


def sources() -> list[TelemetrySource]:
    """Every registered source: the entry points of ``pledgewatch.sources``, built-ins included.

    Raises
    ------
    ConfigError
        When a registered plugin cannot be imported or lacks the interface (names the plugin).
    """
    found: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in BUILT_IN and ep.value != BUILT_IN[ep.name]:
            # allowed (a bank may replace a reader), but never silently
            log.warning("source plugin %r (%s) replaces the built-in %s", ep.name, ep.value, BUILT_IN[ep.name])
        found.setdefault(ep.name, ep.value)
    for name, target in BUILT_IN.items():
        found.setdefault(name, target)
    out = []
    for name, target in found.items():
        try:
            out.append(_load(name, target))
        except ImportError as exc:
            raise ConfigError(f"source plugin {name!r} ({target}): cannot import it: {exc}") from None
    return out


def open_text(path: Path) -> Iterator[str]:
    """Lines of a text file, gunzipped when its content is gzip (by its magic bytes, not its name).

    Raises ``UnicodeDecodeError`` for content that is not UTF-8 text and ``OSError`` when unreadable.
    """
    with path.open("rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, not read as part of the header
    with gzip.open(path, "rt", encoding="utf-8-sig") if gz else path.open(encoding="utf-8-sig") as fh:
        yield from fh


def first_line(path: Path) -> tuple[int, str] | None:
    """Number and text of the first non-blank line of a (possibly gzipped) text file; ``None`` if none.

    ``None`` too for a path that is not a file (a folder), so a recogniser needs no check of its own.
    Raises ``UnicodeDecodeError`` / ``gzip.BadGzipFile`` / ``OSError`` for binary or unreadable content.
    """
    if not path.is_file():
        return None
    for n, line in enumerate(open_text(path), 1):
        if line.strip():
            return n, line.rstrip("\r\n")
    return None


def _why_not(path: Path) -> str:
    """Where and why no source recognised ``path``: the first bad line, or what the folder holds."""
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir())
        if not files:
            return f"{path}: empty folder"
        return f"{path}: no file of a known kind among its {len(files)} files (first: {files[0]!r})"
    try:
        first = first_line(path)
    except (UnicodeDecodeError, OSError, EOFError):
        return f"{path}: binary content, not UTF-8 text or gzip of it"
    if first is None:
        return f"{path}: empty file"
    n, text = first
    shown = text if len(text) <= 80 else text[:77] + "..."
    return f"{path}:{n}: {shown!r} is not the first line of any telemetry kind"


def recognise(path: str | Path, registered: Sequence[TelemetrySource] | None = None) -> TelemetrySource:
    """The one source that recognises ``path``.

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ConfigError
        When no source recognises it (one message: the file, its first bad line, the kinds
        accepted) or more than one does (names them).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"telemetry: {p} does not exist")
    regs = list(registered) if registered is not None else sources()
    hits = []
    for s in regs:
        try:
            if s.recognise(p):
                hits.append(s)
        except (OSError, UnicodeDecodeError, EOFError, ValueError):
            continue  # a recogniser that cannot read the content does not recognise it
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ConfigError(f"telemetry {p}: recognised by several sources {[s.name for s in hits]}, expected one")
    kinds = "; ".join(f"{s.name} ({s.accepts})" for s in regs)
    raise ConfigError(f"telemetry {_why_not(p)}; expected one of: {kinds}")


def read_source(
    path: str | Path, assets: Iterable[str] | None = None, pledges: Iterable[CollateralPledged] = ()
) -> Iterator[TelemetryEvent]:
    """Telemetry of the pledged ``assets`` in ``path``, read by the source that recognises it.

    Raises what :func:`recognise` and the source's ``read`` raise.
    """
    p = Path(path)
    source = recognise(p)
    log.info("telemetry %s read as %s", p, source.name)
    return source.read(p, Pledged(frozenset(assets) if assets is not None else None, tuple(pledges)))
