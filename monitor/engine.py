"""Former home of the core, kept only so that state pickled before the split still loads.

Asset and loan states checkpointed to the changelog before the core was split into
:mod:`monitor.core` name their classes ``monitor.engine.AssetMonitor``, ``monitor.engine.LoanMonitor``
and ``monitor.engine._AssetSlot``; pickle finds them here. New code imports :mod:`monitor.core`.
"""

from monitor.core.assets import AssetBook, AssetMonitor
from monitor.core.common import CoreParams, Output
from monitor.core.loans import LoanBook, LoanMonitor, _AssetSlot
from monitor.core.router import Monitor

__all__ = ["AssetBook", "AssetMonitor", "CoreParams", "LoanBook", "LoanMonitor", "Monitor", "Output", "_AssetSlot"]
