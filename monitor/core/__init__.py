"""The domain core: per-asset revaluation and per-loan risk as plain objects (no Kafka, no I/O).

Modules, each one concept:

- :mod:`monitor.core.common`: :class:`CoreParams`, the :class:`Output` type, stable digests;
- :mod:`monitor.core.decode`: bytes to checked events, and the dead-letter builder;
- :mod:`monitor.core.decode_fast`: its fast path for the common valid telemetry record (msgspec);
- :mod:`monitor.core.margin`: line status and the top-up that restores the warning line;
- :mod:`monitor.core.assets`: :class:`AssetMonitor` and :class:`AssetBook` (windows, stream clock);
- :mod:`monitor.core.loans`: :class:`LoanMonitor` and :class:`LoanBook` (rules, margin calls);
- :mod:`monitor.core.step`: :func:`apply_telemetry_record`, one telemetry record in, its effects out
  (the worker's one call into the asset side per record);
- :mod:`monitor.core.router`: :class:`Monitor`, both sides wired in one process for ``backtest``.

``streams/`` keeps the assets and loans in faust tables keyed by asset and loan, with the same
routing through topics, so a backtest is the production code path. The core imports neither
``streams`` nor the application modules (CLI, reports, sources); ``tests/unit/test_layers.py``
checks it.
"""

from monitor.core.assets import AssetBook, AssetMonitor
from monitor.core.common import CoreParams, Output
from monitor.core.decode import Provenance, dead_letter, decode_loan_event, decode_telemetry
from monitor.core.loans import LoanBook, LoanMonitor
from monitor.core.margin import line_status, required_top_up
from monitor.core.router import Monitor
from monitor.core.step import RecordEffects, apply_telemetry_record

__all__ = [
    "AssetBook",
    "AssetMonitor",
    "CoreParams",
    "LoanBook",
    "LoanMonitor",
    "Monitor",
    "Output",
    "Provenance",
    "RecordEffects",
    "apply_telemetry_record",
    "dead_letter",
    "decode_loan_event",
    "decode_telemetry",
    "line_status",
    "required_top_up",
]
