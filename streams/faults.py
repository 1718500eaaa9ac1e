"""Fault injection for the reliability tests only (case C05): a telemetry handler that blocks the loop.

Unset, the production setting, nothing is injected and nothing is called per observation.
"""

from __future__ import annotations

import logging
import os
import time

from monitor.errors import ConfigError
from monitor.schemas import TelemetryEvent

__all__ = ["SlowRecordFault"]

log = logging.getLogger(__name__)


class SlowRecordFault:
    """Blocks the event loop for ``seconds`` once, when the observation ``event_id`` is handled (C05).

    A blocking ``time.sleep``, not ``asyncio.sleep``: the field failure is a handler that holds the
    loop, so the worker cannot take part in the rebalance a joining worker starts.
    """

    def __init__(self, event_id: str, seconds: float) -> None:
        self.event_id = event_id
        self.seconds = seconds
        self.fired = False

    @classmethod
    def from_env(cls) -> SlowRecordFault | None:
        """Read ``PLEDGEWATCH_FAULT_SLOW_RECORD=EVENT_ID:SECONDS``; None when unset (the only production setting).

        Raises
        ------
        ConfigError
            When set but not ``EVENT_ID:SECONDS`` with SECONDS a positive number.
        """
        text = os.environ.get("PLEDGEWATCH_FAULT_SLOW_RECORD", "").strip()
        if not text:
            return None
        event_id, _, seconds = text.rpartition(":")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not event_id or not value > 0:
            raise ConfigError(
                f"PLEDGEWATCH_FAULT_SLOW_RECORD: got {text!r}, expected EVENT_ID:SECONDS with SECONDS > 0 (tests only)"
            )
        return cls(event_id, value)

    def __call__(self, ev: TelemetryEvent) -> None:
        """Per observation, before the core applies it: block once if it is the chosen one."""
        if self.fired or ev.event_id != self.event_id:
            return
        self.fired = True
        log.warning("fault injection: handling of telemetry record %s blocks for %.0f s", self.event_id, self.seconds)
        time.sleep(self.seconds)
        log.warning("fault injection: handling of telemetry record %s resumes", self.event_id)
