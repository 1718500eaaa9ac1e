"""Keep a worker's long-lived state out of the garbage collector's full passes (``gc.freeze``).

A worker holding a thousand assets holds millions of tracked objects, half of them the nodes of
river's HalfSpaceTrees (≈ 1,270 an asset). CPython's full (generation-2) pass walks them all: 0.2–0.55 s
on a 200-asset state, 1.2 s measured inside one portfolio-page answer of a 1,000-asset state
(``docs/benchmarks.md``). The pass is rare but stalls the event loop, records and HTTP answers alike,
and nothing in those objects is garbage: they live as long as the worker holds the partition.

``gc.freeze()`` moves every object alive into a permanent generation that later passes skip (the
approach CPython added for long-lived servers, Python 3.7; objects there are still freed by their
reference counts). Measured on the 200-asset state: a full pass 0.21 s before, 0.0 s right after,
0.029 s an hour of records later (``docs/benchmarks.md``). What it costs: a cycle of frozen objects that
becomes garbage is not collected until :meth:`FrozenState.thaw`. The core drops state only when a
partition is revoked (a released pledge keeps its asset), and revocation thaws first, so a rebalance
lets the forgotten states be collected; the reload after it freezes again.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

__all__ = ["REFREEZE_EVERY_S", "FrozenState"]

log = logging.getLogger("pledgewatch.worker")

#: Seconds between two refreezes on the worker's timer. A refreeze is one pass over the objects not frozen
#: yet (tens of ms once the bulk is frozen), so every 10 minutes costs well under 0.1 % of a core, and
#: state created meanwhile (the models of an asset pledged since) leaves the full passes within 10 minutes.
REFREEZE_EVERY_S = 600.0


class FrozenState:
    """When to collect and freeze the worker's heap, and when to thaw it.

    Parameters
    ----------
    every_s
        Seconds between two refreezes (:data:`REFREEZE_EVERY_S`).
    clock
        Monotonic clock in seconds (injected for tests).
    """

    def __init__(self, every_s: float = REFREEZE_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.frozen_at: float | None = None

    def freeze(self, why: str) -> int:
        """Collect what is garbage now, then freeze every object alive; returns the objects frozen in all."""
        t0 = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.frozen_at = self.clock()
        count = gc.get_freeze_count()
        log.info("heap frozen (%s): %d objects, %.3f s", why, count, time.perf_counter() - t0)
        return count

    def maybe_refreeze(self) -> bool:
        """Freeze again if :attr:`every_s` passed since the last freeze (only once a first freeze was made)."""
        if self.frozen_at is None or self.clock() - self.frozen_at < self.every_s:
            return False
        self.freeze("periodic")
        return True

    def thaw(self) -> None:
        """Give every frozen object back to the collector (before state is forgotten: a rebalance)."""
        gc.unfreeze()
        self.frozen_at = None
